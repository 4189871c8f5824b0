"""Fine-tuning a video diffusion model into a multi-view generator (VFusion3D §3.1), and the
bootstrap recipe that builds the embedded default.

The paper's recipe: start from a video model that already knows images, freeze its spatial
layers and train only the temporal ones on orbit renders (``freeze="spatial"``), so the model
keeps its image knowledge and learns 3D-consistent camera motion.

We have no pretrained video model small enough for 2 CPU cores, so :func:`bootstrap` makes its
own stand-in in two stages with fixed seeds:

1. *image prior*: the whole UNet trained on **single views** (1-frame videos) of the renders;
2. *the paper's fine-tune*: spatial layers frozen, temporal layers trained on **8-view orbits**.

Objective: v-prediction on the scheduler's 1000-step cosine schedule, min-SNR-5 weighting,
10% text dropout to the null embedding (for classifier-free guidance). AdamW, linear warmup,
gradient clipping, EMA of the trained weights with warm-up (the checkpoint holds the EMA weights).
Batches and noise are pure functions of (seed, step), so a resumed run continues exactly where
the interrupted one stopped.

Note: this is the discrete DDPM objective; an EDM-parameterised checkpoint (SVD's continuous
sigmas) needs the EDM loss, which is not implemented here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.mvgen.data import OrbitDataset
from engine.mvgen.errors import TrainingError
from engine.mvgen.model import FreezeMode, set_trainable
from engine.mvgen.pipeline import MultiViewVideoPipeline

STATE_FILE = "train_state.pt"
CHECKPOINT_DIR = "checkpoint"


@dataclass
class FinetuneConfig:
    steps: int = 1000
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    freeze: FreezeMode = "spatial"
    frames: int | None = None  # views per training sample; 1 = single-view (image prior) stage
    cond_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    grad_clip: float = 1.0
    ema_decay: float | None = 0.9999  # the EMA's ceiling; None disables EMA
    ema_power: float = 2 / 3  # EMA warm-up: decay = 1 - (1 + step)^-power (0.986 at step 600, 0.99 at 1000)
    mixed_precision: str = "no"  # 'bf16' / 'fp16' autocast (GPU)
    gradient_checkpointing: bool = False
    seed: int = 0
    checkpoint_every: int = 250
    num_threads: int | None = 2


@dataclass
class FinetuneResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    checkpoint: Path | None = None
    trainable_params: int = 0
    frozen_params: int = 0


def _batch(data: OrbitDataset, text: torch.Tensor, cfg: FinetuneConfig, step: int):
    """Batch ``step``: a pure function of (seed, step) — the basis of exact resume."""
    rng = np.random.default_rng([cfg.seed, step, 0xDA7A])
    idx = rng.integers(0, len(data), cfg.batch_size)
    frames = data.frames[idx]  # [B, V, H, W, 3]
    if cfg.frames is not None and cfg.frames < data.num_views:
        if cfg.frames == 1:
            views = rng.integers(0, data.num_views, cfg.batch_size)
            frames = frames[np.arange(cfg.batch_size), views][:, None]
        else:  # a contiguous arc of the orbit
            frames = frames[:, : cfg.frames]
    x0 = torch.from_numpy(frames).float().div_(127.5).sub_(1.0).permute(0, 1, 4, 2, 3).contiguous()
    emb = text[idx].float()
    drop = torch.from_numpy(rng.random(cfg.batch_size) < cfg.cond_dropout)
    emb[drop] = 0.0  # the null embedding (see engine.mvgen.text)
    elev = torch.from_numpy(data.elevations[idx]).float()[:, None]
    return x0, emb, elev


def finetune(
    pipe: MultiViewVideoPipeline,
    data: OrbitDataset,
    cfg: FinetuneConfig,
    out_dir: str | Path,
    resume: bool = False,
    callback: Callable[[int, int, float], None] | None = None,
) -> FinetuneResult:
    """Train ``pipe.unet`` in place on ``data``; writes ``out_dir/checkpoint`` (+ state, loss PNG).

    On return ``pipe`` holds the final (EMA) weights.
    """
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if len(data) == 0:
        raise TrainingError("the training set is empty; render some assets first (--assets N)")
    if data.resolution != pipe.config.resolution:
        raise TrainingError(
            f"renders are {data.resolution}px but the checkpoint generates {pipe.config.resolution}px; "
            "render at the checkpoint's resolution"
        )
    if pipe.vae is not None:
        raise TrainingError("fine-tuning latent (VAE) checkpoints is not implemented; use a pixel-space checkpoint")
    device = pipe.device
    unet = pipe.unet
    trainable, frozen = set_trainable(unet, cfg.freeze)
    params = [p for p in unet.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"--freeze {cfg.freeze} leaves nothing to train")
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = noise_scheduler.alphas_cumprod.to(device)
    text = pipe.encode_prompts(data.captions).cpu()  # frozen encoder: encode every caption once
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    # short runs need the warm-up: a fixed 0.995 EMA at step 300 still averages the fast early
    # trajectory and samples noise, while the raw weights already draw coloured objects
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True, power=cfg.ema_power) if cfg.ema_decay else None
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    start, losses, elapsed = 0, [], 0.0
    state_path = out / STATE_FILE
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state["config"]["freeze"] != cfg.freeze:
            raise TrainingError(f"{state_path} was trained with --freeze {state['config']['freeze']}; resume with the same flags")
        unet.load_state_dict(state["unet"])
        optimizer.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["lr_scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        start, losses, elapsed = int(state["step"]), list(state["losses"]), float(state["seconds"])

    def save(step: int) -> Path:
        torch.save({
            "step": step, "losses": losses, "seconds": elapsed + time.perf_counter() - t0,
            "config": dataclasses.asdict(cfg), "unet": unet.state_dict(), "optimizer": optimizer.state_dict(),
            "lr_scheduler": sched.state_dict(), "ema": ema.state_dict() if ema is not None else None,
        }, state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)
        if ema is not None:
            ema.store(params)
            ema.copy_to(params)
        pipe.invalidate_checkpoint_id()
        path = pipe.save_pretrained(out / CHECKPOINT_DIR)
        if ema is not None:
            ema.restore(params)
        save_loss_curve(losses, out / "loss.png", title=f"freeze={cfg.freeze}, frames={cfg.frames or data.num_views}")
        return path

    unet.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        x0, emb, elev = _batch(data, text, cfg, step)
        x0, emb, elev = pipe.pixels_to_model(x0.to(device)), emb.to(device), elev.to(device)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen).to(device)
        x_t = noise_scheduler.add_noise(x0, noise, t)
        target = noise_scheduler.get_velocity(x0, noise, t)
        if pipe.config.image_conditioning:  # the clean first view, on every frame (as SVD does)
            x_t = torch.cat([x_t, x0[:, :1].expand_as(x0)], dim=2)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            pred = unet(x_t, t, encoder_hidden_states=emb, added_time_ids=elev).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=cfg.min_snr_gamma) / (snr + 1)  # min-SNR for v-prediction
        loss = (weight * ((pred.float() - target) ** 2).mean(dim=(1, 2, 3, 4))).mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        sched.step()
        if ema is not None:
            ema.step(params)
        losses.append(loss.item())
        if callback:
            callback(step + 1, cfg.steps, losses[-1])
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save(step + 1)

    path = save(cfg.steps)
    if ema is not None:
        ema.copy_to(params)  # the pipeline leaves training with its EMA weights
    unet.eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    pipe.invalidate_checkpoint_id()
    total = elapsed + time.perf_counter() - t0
    (out / "train_summary.json").write_text(json.dumps({
        "steps": cfg.steps, "seconds": round(total, 1), "final_loss_avg50": float(np.mean(losses[-50:])) if losses else None,
        "trainable_params": trainable, "frozen_params": frozen, "config": dataclasses.asdict(cfg),
        "checkpoint_id": pipe.checkpoint_id, "dataset_size": len(data),
    }, indent=2) + "\n")
    return FinetuneResult(cfg.steps, total, losses, path, trainable, frozen)


def save_loss_curve(losses: list[float], path: str | Path, title: str = "") -> None:
    """Raw and smoothed training loss vs step, as a PNG."""
    if not losses:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(losses)
    k = max(1, min(50, len(y) // 10))
    smooth = np.convolve(y, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(np.arange(1, len(y) + 1), y, lw=0.5, alpha=0.35, label="loss")
    ax.plot(np.arange(k, len(y) + 1), smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("min-SNR weighted v-loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------- the embedded default


@dataclass
class BootstrapConfig:
    assets: int = 3000
    views: int = 8
    resolution: int = 32
    patch_size: int = 2  # the UNet works on 16x16 grids of 2x2-pixel patches: ~2.5x cheaper than 32x32
    stage1_steps: int = 1000  # single views, everything trains (the image prior stand-in)
    stage1_batch: int = 24
    stage1_lr: float = 1e-3
    stage2_steps: int = 350  # orbits, spatial frozen, temporal trains (the paper)
    stage2_batch: int = 8
    stage2_lr: float = 5e-4
    guidance_scale: float = 5.0  # the checkpoint's default classifier-free guidance
    seed: int = 0
    num_threads: int = 2  # 1 is faster when other processes keep the 2 cores busy (OpenMP spin-waits)


def bootstrap(
    out_dir: str | Path,
    cfg: BootstrapConfig,
    cache_dir: str | Path,
    progress: Callable[[str, int, int, float | None], None] | None = None,
    resume: bool = False,
) -> tuple[MultiViewVideoPipeline, dict]:
    """The whole recipe behind ``engine/mvgen/default`` (fixed seeds); returns (pipeline, report)."""
    from engine.mvgen.data import load_or_render
    from engine.mvgen.pipeline import MultiViewConfig

    torch.set_num_threads(cfg.num_threads)
    out = Path(out_dir)
    report: dict = {"config": dataclasses.asdict(cfg)}
    t0 = time.perf_counter()
    data = load_or_render(cfg.assets, cache_dir, cfg.views, cfg.resolution, cfg.seed,
                          progress=lambda i, n: progress and progress("render", i, n, None))
    report["render_seconds"] = round(time.perf_counter() - t0, 1)
    report["dataset"] = {"orbits": len(data), "views": data.num_views, "resolution": data.resolution}

    mv_config = MultiViewConfig(num_views=cfg.views, resolution=cfg.resolution, patch_size=cfg.patch_size,
                                default_guidance=cfg.guidance_scale)
    pipe = MultiViewVideoPipeline.from_config(mv_config, seed=cfg.seed)
    stage1 = FinetuneConfig(steps=cfg.stage1_steps, batch_size=cfg.stage1_batch, lr=cfg.stage1_lr, freeze="none",
                            frames=1, seed=cfg.seed, num_threads=cfg.num_threads, warmup_steps=100, checkpoint_every=100)
    stage2 = FinetuneConfig(steps=cfg.stage2_steps, batch_size=cfg.stage2_batch, lr=cfg.stage2_lr, freeze="spatial",
                            frames=None, seed=cfg.seed + 1, num_threads=cfg.num_threads, warmup_steps=50, checkpoint_every=100)
    for name, stage in (("stage1", stage1), ("stage2", stage2)):
        stage_dir = out / name
        done = (stage_dir / "train_summary.json").is_file()
        if resume and done:
            pipe = MultiViewVideoPipeline.from_pretrained(stage_dir / CHECKPOINT_DIR, device=pipe.device)
            report[name] = json.loads((stage_dir / "train_summary.json").read_text())
            continue
        result = finetune(pipe, data, stage, stage_dir, resume=resume,
                          callback=lambda s, n, loss, name=name: progress and progress(name, s, n, loss))
        report[name] = {"steps": result.steps, "seconds": round(result.seconds, 1),
                        "trainable_params": result.trainable_params, "frozen_params": result.frozen_params,
                        "final_loss_avg50": float(np.mean(result.losses[-50:]))}
    pipe.save_pretrained(out / CHECKPOINT_DIR)
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    report["checkpoint_id"] = pipe.checkpoint_id
    (out / "bootstrap_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return pipe, report
