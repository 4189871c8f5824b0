"""The multi-view generator: spatial freeze, exact resume, save/load round trip, clear checkpoint
errors, batching, and the CLI. Everything runs the real diffusers UNet, the real MiniLM encoder
and real orbit renders; models are tiny (the embedded default's architecture, random weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from engine.mvgen import CheckpointError, GenerationError, MultiViewConfig, MultiViewVideoPipeline
from engine.mvgen.data import OrbitDataset, heldout_prompts, is_heldout_caption, procedural_dataset
from engine.mvgen.model import is_temporal
from engine.mvgen.train import FinetuneConfig, finetune


@pytest.fixture(scope="module")
def orbits(tmp_path_factory) -> tuple[OrbitDataset, str]:
    """Six procedural assets rendered on 8-view, 32 px orbits, and their .npz cache."""
    data = procedural_dataset(6, views=8, resolution=32, seed=3)
    path = tmp_path_factory.mktemp("orbits") / "orbits.npz"
    data.save(path)
    return data, str(path)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> str:
    """A randomly initialised checkpoint with the embedded default's architecture."""
    pipe = MultiViewVideoPipeline.from_config(MultiViewConfig(patch_size=2), seed=0)
    return str(pipe.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny"))


def _state(pipe: MultiViewVideoPipeline) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pipe.unet.state_dict().items()}


def test_freeze_spatial_trains_only_temporal_layers(orbits, tiny_ckpt, tmp_path):
    data, _ = orbits
    pipe = MultiViewVideoPipeline.from_pretrained(tiny_ckpt, device="cpu")
    before = _state(pipe)
    cfg = FinetuneConfig(steps=3, batch_size=2, lr=1e-3, freeze="spatial", ema_decay=0.9, warmup_steps=1, num_threads=2)
    result = finetune(pipe, data, cfg, tmp_path / "run")
    assert result.trainable_params > 0 and result.frozen_params > 0
    for source in (pipe, MultiViewVideoPipeline.from_pretrained(result.checkpoint, device="cpu")):
        after = _state(source)
        spatial = [k for k in before if not is_temporal(k)]
        temporal = [k for k in before if is_temporal(k)]
        assert spatial and temporal
        assert all(torch.equal(before[k], after[k]) for k in spatial), "a spatial parameter changed"
        changed = [k for k in temporal if not torch.equal(before[k], after[k])]
        assert len(changed) > 0.9 * len(temporal), f"only {len(changed)}/{len(temporal)} temporal tensors changed"
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["checkpoint_id"] == pipe.checkpoint_id


def test_resume_continues_exactly(orbits, tiny_ckpt, tmp_path):
    data, _ = orbits
    cfg = dict(batch_size=2, lr=1e-3, freeze="spatial", ema_decay=None, warmup_steps=1, num_threads=2)
    straight = MultiViewVideoPipeline.from_pretrained(tiny_ckpt, device="cpu")
    finetune(straight, data, FinetuneConfig(steps=4, **cfg), tmp_path / "a")
    interrupted = MultiViewVideoPipeline.from_pretrained(tiny_ckpt, device="cpu")
    finetune(interrupted, data, FinetuneConfig(steps=2, **cfg), tmp_path / "b")
    resumed = MultiViewVideoPipeline.from_pretrained(tmp_path / "b" / "checkpoint", device="cpu")
    finetune(resumed, data, FinetuneConfig(steps=4, **cfg), tmp_path / "b", resume=True)
    a, b = _state(straight), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_save_load_round_trip_is_bit_exact(tiny_ckpt, tmp_path):
    pipe = MultiViewVideoPipeline.from_pretrained(tiny_ckpt, device="cpu")
    out = pipe(["a red mug", "a blue cube"], num_inference_steps=3, seed=11)
    again = MultiViewVideoPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "copy"), device="cpu")
    a, b = _state(pipe), _state(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.checkpoint_id == pipe.checkpoint_id
    assert again.scheduler.config == pipe.scheduler.config
    out2 = again(["a red mug", "a blue cube"], num_inference_steps=3, seed=11)
    assert np.array_equal(out.frames, out2.frames)
    assert out.frames.shape == (2, 8, 32, 32, 3) and out.frames.dtype == np.uint8
    assert out.seeds == [11, 12] and len(out.cameras) == 2
    assert out.cameras[0].num_views == 8 and out.cameras[0].resolution == 32


def test_checkpoint_id_changes_with_weights(tiny_ckpt):
    pipe = MultiViewVideoPipeline.from_pretrained(tiny_ckpt, device="cpu")
    before = pipe.checkpoint_id
    assert before.startswith("mv-") and len(before) == 19
    with torch.no_grad():
        next(iter(pipe.unet.parameters())).view(-1)[0] += 1e-3
    pipe.invalidate_checkpoint_id()
    assert pipe.checkpoint_id != before


def test_truncated_weights_give_a_clear_error(tiny_ckpt, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_ckpt, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        MultiViewVideoPipeline.from_pretrained(broken, device="cpu")
    msg = str(err.value)
    assert str(broken / "unet") in msg and "corrupt or truncated" in msg and "vf3d mv bootstrap" in msg


def test_missing_checkpoint_gives_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no multi-view checkpoint at .*model_index.json is missing.*vf3d mv bootstrap"):
        MultiViewVideoPipeline.from_pretrained(tmp_path / "nowhere", device="cpu")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has no 'unet/' folder"):
        MultiViewVideoPipeline.from_pretrained(tmp_path / "half", device="cpu")


def test_batched_generation_matches_one_by_one(tiny_ckpt):
    """Each sample owns its noise generator and a fixed-length text encoding, so a batch equals
    its samples generated alone, up to float reassociation in batched BLAS kernels (documented
    tolerance: at most 2/255 per pixel, under 0.5% of pixels differing)."""
    pipe = MultiViewVideoPipeline.from_pretrained(tiny_ckpt, device="cpu")
    prompts = ["a red mug", "a green torus", "a yellow cone"]
    batched = pipe(prompts, num_inference_steps=3, seed=[5, 6, 7], elevation_deg=[10.0, 20.0, 30.0])
    for i, p in enumerate(prompts):
        alone = pipe(p, num_inference_steps=3, seed=batched.seeds[i], elevation_deg=batched.elevations_deg[i])
        diff = np.abs(alone.frames[0].astype(int) - batched.frames[i].astype(int))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.005
    assert batched.cameras[2].elevation_deg == 30.0


def test_generation_rejects_bad_requests(tiny_ckpt):
    pipe = MultiViewVideoPipeline.from_pretrained(tiny_ckpt, device="cpu")
    with pytest.raises(GenerationError, match="without image conditioning"):
        pipe("a red mug", image=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(GenerationError, match="one seed per sample"):
        pipe(["a", "b"], seed=[1])
    with pytest.raises(GenerationError, match="give a prompt"):
        pipe()


def test_image_to_orbit_checkpoint_conditions_on_the_first_view(orbits, tmp_path):
    data, _ = orbits
    pipe = MultiViewVideoPipeline.from_config(MultiViewConfig(patch_size=2, image_conditioning=True), seed=0)
    assert pipe.unet.config.in_channels == 24  # 12 noisy patch channels + 12 first-view channels
    finetune(pipe, data, FinetuneConfig(steps=1, batch_size=2, freeze="none", ema_decay=None, num_threads=2), tmp_path / "i2o")
    out = pipe(image=data.frames[:2, 0], num_inference_steps=2, seed=0)
    assert out.frames.shape == (2, 8, 32, 32, 3)


def test_heldout_prompts_are_not_in_the_training_set(orbits):
    prompts = heldout_prompts()
    assert len(prompts) >= 50 and all(is_heldout_caption(p) for p in prompts)
    data, _ = orbits
    assert not any(is_heldout_caption(c) for c in data.captions)


def test_cli_finetune_freeze_spatial(orbits, tiny_ckpt, tmp_path):
    from serve.cli import app

    _, npz = orbits
    out = tmp_path / "cli-run"
    res = CliRunner().invoke(app, ["mv", "finetune", "--assets", npz, "--init", tiny_ckpt, "--freeze", "spatial",
                                   "--steps", "2", "--batch-size", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "fine-tuned" in res.output and (out / "checkpoint" / "model_index.json").is_file()
    before = _state(MultiViewVideoPipeline.from_pretrained(tiny_ckpt, device="cpu"))
    after = _state(MultiViewVideoPipeline.from_pretrained(out / "checkpoint", device="cpu"))
    assert all(torch.equal(before[k], after[k]) for k in before if not is_temporal(k))
    assert any(not torch.equal(before[k], after[k]) for k in before if is_temporal(k))


def test_cli_generate_writes_video_and_sheet(tmp_path):
    from catalog.media import decode_video, unpack_views
    from serve.cli import app

    res = CliRunner().invoke(app, ["generate", "a red mug", "-o", str(tmp_path), "--seed", "3", "--steps", "4"])
    assert res.exit_code == 0, res.output
    video = decode_video((tmp_path / "orbit.mp4").read_bytes())
    assert video.shape[1:] == (32, 32, 3) and video.shape[0] == 16  # 8 views, looped twice
    assert (tmp_path / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pack = unpack_views((tmp_path / "views.npz").read_bytes())
    assert pack.frames.shape == (8, 32, 32, 3) and pack.extrinsics.shape == (8, 4, 4)
    meta = json.loads((tmp_path / "generation.json").read_text())
    assert meta["checkpoint_id"].startswith("mv-") and meta["seed"] == 3


def test_cli_generate_missing_checkpoint_is_one_clear_error(tmp_path):
    from serve.cli import app

    res = CliRunner().invoke(app, ["generate", "a red mug", "-o", str(tmp_path), "--checkpoint", str(tmp_path / "none")])
    assert res.exit_code != 0 and isinstance(res.exception, CheckpointError)
    assert "vf3d mv bootstrap" in str(res.exception)
