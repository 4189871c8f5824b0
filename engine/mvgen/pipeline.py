"""``MultiViewVideoPipeline``: prompt (and optionally a first image) -> an orbit video of V views.

A thin orchestration over three parts, in the diffusers style:

* ``unet`` — :class:`diffusers.UNetSpatioTemporalConditionModel` (see :mod:`engine.mvgen.model`);
* ``scheduler`` — any diffusers discrete scheduler; the default is
  :class:`~diffusers.DPMSolverMultistepScheduler` (DPM-Solver++ 2M): a deterministic ODE solver
  that gives clean samples in 10-20 steps, which is what makes CPU sampling take seconds, and
  whose deterministic steps make a seed reproduce its sample exactly. Training uses the same
  1000-step cosine schedule with v-prediction (``DDPMScheduler.from_config`` of this config),
  so DDIM / Euler / UniPC can be swapped in by editing ``scheduler/scheduler_config.json``;
* ``text_encoder`` — a frozen sentence-transformers model (:mod:`engine.mvgen.text`), referenced
  by name, not copied (MiniLM alone would be 90 MB);
* ``vae`` — only when the checkpoint has a ``vae/`` folder (an SVD-class latent model); the tiny
  default denoises pixels directly.

Not a ``diffusers.DiffusionPipeline`` subclass: that class can neither load nor save a
sentence-transformers encoder, and we must not embed one. Same conventions instead:
``from_pretrained`` / ``save_pretrained``, a ``model_index.json`` naming each component, one
sub-folder per component with its JSON config and safetensors weights.

Checkpoint layout::

    model_index.json          components + the vf3d section (MultiViewConfig)
    unet/config.json          unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json
    vae/ (optional)           config.json + diffusion_pytorch_model.safetensors
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.mvgen.errors import CheckpointError, GenerationError
from engine.mvgen.text import DEFAULT_TEXT_ENCODER, TextEncoder
from engine.render.cameras import DEFAULT_FOV_DEG, DEFAULT_RADIUS, OrbitCameras, draw_elevation

FORMAT_VERSION = 1
MODEL_INDEX = "model_index.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"


@dataclass
class MultiViewConfig:
    """What a checkpoint generates and how it is conditioned (stored in ``model_index.json``)."""

    num_views: int = 8
    resolution: int = 32
    text_encoder: str = DEFAULT_TEXT_ENCODER
    text_max_tokens: int = 16
    image_conditioning: bool = False
    patch_size: int = 1  # pixel space only: the UNet sees (3*p*p)-channel patches of p x p pixels
    radius: float = DEFAULT_RADIUS
    fov_deg: float = DEFAULT_FOV_DEG
    elevation_range: tuple[float, float] = (0.0, 45.0)
    default_steps: int = 20
    default_guidance: float = 3.0
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiViewConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        cfg.elevation_range = tuple(cfg.elevation_range)  # type: ignore[assignment]
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["elevation_range"] = list(self.elevation_range)
        return d


@dataclass
class MultiViewOutput:
    """``frames`` uint8 [B, V, H, W, 3] on a white background; one orbit and seed per sample."""

    frames: np.ndarray
    cameras: list[OrbitCameras]
    seeds: list[int]
    elevations_deg: list[float] = field(default_factory=list)


def default_checkpoint_path() -> Path:
    """The embedded default checkpoint shipped inside the package."""
    return Path(__file__).resolve().parent / "default"


def default_scheduler(num_train_timesteps: int = 1000):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        algorithm_type="dpmsolver++",
        solver_order=2,
        timestep_spacing="trailing",
    )


def resolve_device(device: str | torch.device | None = None, settings: Any = None) -> torch.device:
    """``device`` if given, else ``settings.compute.device`` ('auto' = cuda when present)."""
    if device is None:
        if settings is None:
            from catalog.settings import load_settings

            settings = load_settings()
        device = settings.compute.device
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def _autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    if mixed_precision in ("no", "", None):
        return None
    if mixed_precision == "bf16":
        return torch.bfloat16
    if mixed_precision == "fp16":
        if device.type == "cpu":
            raise GenerationError("fp16 autocast needs a GPU; set VF3D_COMPUTE__MIXED_PRECISION=bf16 or 'no' on CPU")
        return torch.float16
    raise GenerationError(f"unknown mixed precision {mixed_precision!r}; use 'no', 'bf16' or 'fp16'")


def _canonical(config: Any) -> Any:
    """A config dict without load-time bookkeeping keys (``_name_or_path``, ...), for hashing."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


class MultiViewVideoPipeline:
    """Generate orbit videos: ``pipe("a red mug", seed=0).frames[0]`` is uint8 [V, H, W, 3]."""

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler: Any,
        config: MultiViewConfig | None = None,
        text_encoder: TextEncoder | None = None,
        vae: torch.nn.Module | None = None,
        device: str | torch.device | None = "cpu",
        mixed_precision: str = "no",
    ):
        self.config = config or MultiViewConfig()
        self.device = resolve_device(device)
        self.unet = unet.to(self.device).eval()
        self.scheduler = scheduler
        self.vae = vae.to(self.device).eval() if vae is not None else None
        self.text_encoder = text_encoder or TextEncoder(self.config.text_encoder, self.config.text_max_tokens, self.device)
        self.mixed_precision = mixed_precision
        self._autocast = _autocast_dtype(mixed_precision, self.device)
        self._checkpoint_id: str | None = None

    # ------------------------------------------------------------------ construction / IO

    @classmethod
    def from_config(cls, config: MultiViewConfig, unet_config: dict[str, Any] | None = None, seed: int = 0, **kwargs):
        """A freshly initialised (untrained) pipeline; ``seed`` fixes the initial weights."""
        from engine.mvgen.model import build_unet, tiny_unet_config

        text_encoder = kwargs.pop("text_encoder", None) or TextEncoder(config.text_encoder, config.text_max_tokens, "cpu")
        if unet_config is None:
            p = config.patch_size
            unet_config = tiny_unet_config(
                resolution=config.resolution // p,
                num_views=config.num_views,
                channels=3 * p * p,
                condition_channels=3 * p * p if config.image_conditioning else 0,
                text_width=text_encoder.width,
            )
        torch.manual_seed(seed)
        return cls(build_unet(unet_config), default_scheduler(), config, text_encoder=text_encoder, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | Path,
        device: str | torch.device | None = None,
        mixed_precision: str | None = None,
        settings: Any = None,
    ) -> MultiViewVideoPipeline:
        """Load a checkpoint folder (or ``"default"``, or a hub id when online).

        Device and mixed precision default to ``settings.compute`` (cuda when present).
        """
        import diffusers

        if settings is None:
            from catalog.settings import load_settings

            settings = load_settings()
        root = _locate(path_or_hub_id)
        fix = (
            f"re-create it with `vf3d mv bootstrap --out {root}` or `pipe.save_pretrained('{root}')`"
            if root != default_checkpoint_path()
            else "reinstall vf3d (`pip install -e .`) or rebuild it with `vf3d mv bootstrap --install`"
        )
        index_path = root / MODEL_INDEX
        if not index_path.is_file():
            raise CheckpointError(f"no multi-view checkpoint at {root} ({MODEL_INDEX} is missing); {fix}")
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {index_path} is not valid JSON ({exc}); {fix}") from None
        config = MultiViewConfig.from_dict(index.get("vf3d", {}))
        if config.format_version > FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {root} has format {config.format_version}; upgrade vf3d to load it")

        def load(sub: str, loader: Callable[[Path], Any]) -> Any:
            folder = root / sub
            if not folder.is_dir():
                raise CheckpointError(f"checkpoint {root} has no '{sub}/' folder; {fix}")
            try:
                return loader(folder)
            except CheckpointError:
                raise
            except Exception as exc:  # noqa: BLE001 - safetensors/diffusers raise many types
                msg = str(exc).splitlines()[0][:200] if str(exc) else ""
                raise CheckpointError(
                    f"cannot load '{sub}' from {folder} ({type(exc).__name__}: {msg}) — the file is corrupt or "
                    f"truncated; {fix}"
                ) from None

        def component_class(folder: Path, config_name: str) -> Any:
            cfg = json.loads((folder / config_name).read_text())
            return getattr(diffusers, cfg["_class_name"])

        unet = load("unet", lambda f: _load_model(component_class(f, "config.json"), f))
        scheduler = load("scheduler", lambda f: component_class(f, "scheduler_config.json").from_pretrained(f))
        vae = load("vae", lambda f: _load_model(component_class(f, "config.json"), f)) if (root / "vae").is_dir() else None
        dev = resolve_device(device, settings)
        mp = mixed_precision if mixed_precision is not None else settings.compute.mixed_precision
        text_encoder = TextEncoder(config.text_encoder, config.text_max_tokens, dev)
        return cls(unet, scheduler, config, text_encoder=text_encoder, vae=vae, device=dev, mixed_precision=mp)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the checkpoint (safetensors + JSON configs); returns the folder."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(root / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(root / "scheduler")
        components: dict[str, Any] = {
            "unet": ["diffusers", type(self.unet).__name__],
            "scheduler": ["diffusers", type(self.scheduler).__name__],
            "vae": [None, None],
            "text_encoder": self.config.text_encoder,
        }
        if self.vae is not None:
            self.vae.save_pretrained(root / "vae", safe_serialization=True)
            components["vae"] = ["diffusers", type(self.vae).__name__]
        from diffusers import __version__ as diffusers_version

        index = {"_class_name": type(self).__name__, "_diffusers_version": diffusers_version, **components}
        index["vf3d"] = self.config.to_dict()
        (root / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return root

    @property
    def checkpoint_id(self) -> str:
        """``mv-<16 hex>``: a stable hash of every weight and config (same weights -> same id)."""
        if self._checkpoint_id is None:
            h = hashlib.sha256()
            configs = {
                "vf3d": self.config.to_dict(),
                "unet": [type(self.unet).__name__, _canonical(self.unet.config)],
                "scheduler": [type(self.scheduler).__name__, _canonical(self.scheduler.config)],
                "vae": [type(self.vae).__name__, _canonical(self.vae.config)] if self.vae is not None else None,
            }
            h.update(json.dumps(configs, sort_keys=True, default=list).encode())
            for module in (self.unet, self.vae):
                if module is None:
                    continue
                for name, tensor in sorted(module.state_dict().items()):
                    t = tensor.detach().to("cpu").contiguous()
                    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
                    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            self._checkpoint_id = "mv-" + h.hexdigest()[:16]
        return self._checkpoint_id

    def invalidate_checkpoint_id(self) -> None:
        """Call after changing weights in place (training does)."""
        self._checkpoint_id = None

    # ------------------------------------------------------------------ generation

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.out_channels)

    @property
    def latent_scale(self) -> int:
        """Pixels per latent cell along each axis (the patch size in pixel space)."""
        if self.vae is None:
            return int(self.config.patch_size)
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def pixels_to_model(self, x: torch.Tensor) -> torch.Tensor:
        """[..., 3, H, W] pixels in [-1, 1] -> the denoiser's space (patches, or VAE latents)."""
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        if self.vae is not None:
            x = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mode().float()
        elif self.config.patch_size > 1:
            x = torch.nn.functional.pixel_unshuffle(x, self.config.patch_size)
        return x.reshape(*lead, *x.shape[-3:])

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.text_encoder.encode(list(prompts)).to(self.device)

    def _prepare_image(self, image: Any, batch: int) -> torch.Tensor:
        """First image(s) -> [B, C, h, w] conditioning in the denoiser's space ([-1, 1] pixels or latents)."""
        from PIL import Image

        imgs = image if isinstance(image, (list, tuple)) else [image]
        if isinstance(image, np.ndarray) and image.ndim == 4:
            imgs = list(image)
        r = self.config.resolution
        arrays = []
        for im in imgs:
            pil = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, np.uint8)[..., :3])
            arrays.append(np.asarray(pil.convert("RGB").resize((r, r), Image.BICUBIC), np.float32) / 127.5 - 1.0)
        if len(arrays) == 1 and batch > 1:
            arrays = arrays * batch
        if len(arrays) != batch:
            raise GenerationError(f"got {len(arrays)} images for {batch} prompts; pass one image per prompt")
        return self.pixels_to_model(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(self.device))

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        b, v = latents.shape[:2]
        x = latents.flatten(0, 1)
        if self.vae is not None:
            import inspect

            scale = float(getattr(self.vae.config, "scaling_factor", 1.0))
            kwargs = {"num_frames": v} if "num_frames" in inspect.signature(self.vae.decode).parameters else {}
            x = self.vae.decode((x / scale).to(self.vae.dtype), **kwargs).sample.float()
        elif self.config.patch_size > 1:
            x = torch.nn.functional.pixel_shuffle(x, self.config.patch_size)
        x = ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).reshape(b, v, *x.shape[2:], x.shape[1])[..., :3].cpu().numpy()

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        image: Any = None,
        num_views: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        elevation_deg: float | Sequence[float] | None = None,
        seed: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> MultiViewOutput:
        """Generate one orbit per prompt (batched).

        seed: an int (sample i gets ``seed + i``) or one seed per sample; else drawn from
        ``generator``, else random. Each returned seed regenerates its sample alone.
        elevation_deg: one value, one per sample, or None (drawn from the seed in the
        checkpoint's elevation range, as the paper draws orbits).
        guidance_scale: classifier-free guidance against the null text; 1 disables it.
        """
        cfg = self.config
        if prompt is None and image is None:
            raise GenerationError("give a prompt, an image, or both")
        if image is not None and not cfg.image_conditioning:
            raise GenerationError(
                "this checkpoint was trained without image conditioning; drop `image` or load an image-to-orbit checkpoint"
            )
        if image is None and cfg.image_conditioning:
            raise GenerationError("this is an image-to-orbit checkpoint; pass `image=` (the first view)")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt) if prompt is not None else None
        if prompts is None:
            n_img = len(image) if isinstance(image, (list, tuple)) or (isinstance(image, np.ndarray) and image.ndim == 4) else 1
            prompts = [""] * n_img
        batch = len(prompts)
        if batch == 0:
            return MultiViewOutput(np.zeros((0, num_views or cfg.num_views, cfg.resolution, cfg.resolution, 3), np.uint8), [], [])
        views = int(num_views or cfg.num_views)
        if not 1 <= views <= 64:
            raise GenerationError(f"num_views must be in [1, 64], got {views}")
        steps = int(num_inference_steps or cfg.default_steps)
        if steps < 1:
            raise GenerationError(f"num_inference_steps must be at least 1, got {steps}")
        guidance = float(cfg.default_guidance if guidance_scale is None else guidance_scale)
        seeds = _resolve_seeds(seed, generator, batch)
        elevations = _resolve_elevations(elevation_deg, seeds, cfg.elevation_range)

        # conditioning: text (+ null text for guidance), elevation as the added time id, first image
        text = self.encode_prompts(prompts)
        use_cfg = guidance != 1.0
        if use_cfg:
            text = torch.cat([self.text_encoder.null(batch).to(self.device), text])
        time_ids = torch.tensor(elevations, dtype=torch.float32, device=self.device)[:, None]
        time_ids = torch.cat([time_ids, time_ids]) if use_cfg else time_ids
        cond = None
        if image is not None:
            cond = self._prepare_image(image, batch)[:, None].expand(-1, views, -1, -1, -1)
            cond = torch.cat([cond, cond]) if use_cfg else cond

        # initial noise: one CPU generator per sample, so a sample never depends on its batch
        size = cfg.resolution // self.latent_scale
        noise = [torch.randn((views, self.latent_channels, size, size), generator=torch.Generator().manual_seed(s)) for s in seeds]
        scheduler = type(self.scheduler).from_config(self.scheduler.config)  # fresh state per call
        scheduler.set_timesteps(steps, device=self.device)
        latents = torch.stack(noise).to(self.device) * scheduler.init_noise_sigma

        for i, t in enumerate(scheduler.timesteps):
            x = torch.cat([latents, latents]) if use_cfg else latents
            x = scheduler.scale_model_input(x, t)
            if cond is not None:
                x = torch.cat([x, cond], dim=2)
            with torch.autocast(self.device.type, dtype=self._autocast, enabled=self._autocast is not None):
                out = self.unet(x, t, encoder_hidden_states=text, added_time_ids=time_ids).sample.float()
            if use_cfg:
                uncond, cond_out = out.chunk(2)
                out = uncond + guidance * (cond_out - uncond)
            latents = scheduler.step(out, t, latents).prev_sample
            if callback is not None:
                callback(i + 1, steps)

        frames = self._decode(latents)
        cameras = [
            OrbitCameras.from_views(views, e, resolution=cfg.resolution, radius=cfg.radius, fov_deg=cfg.fov_deg)
            for e in elevations
        ]
        return MultiViewOutput(frames=frames, cameras=cameras, seeds=seeds, elevations_deg=elevations)


def _locate(path_or_hub_id: str | Path) -> Path:
    """A local checkpoint folder for a path, ``"default"``, or a hub id (downloaded once)."""
    if str(path_or_hub_id) == "default":
        return default_checkpoint_path()
    path = Path(path_or_hub_id).expanduser()
    text = str(path_or_hub_id)
    looks_like_hub = text.count("/") == 1 and not text.startswith((".", "/", "~")) and not path.exists()
    if not looks_like_hub:
        return path.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"no local checkpoint at {text!r} and the hub download failed ({type(exc).__name__}); "
            "pass an existing checkpoint folder, or allow network access (unset HF_HUB_OFFLINE)"
        ) from None


def _load_model(model_cls: Any, folder: Path) -> torch.nn.Module:
    """Instantiate a diffusers model from ``config.json`` and load its safetensors strictly."""
    from safetensors.torch import load_file

    weights = folder / WEIGHTS
    if not weights.is_file():
        # sharded or variant checkpoints (real SVD releases): let diffusers resolve them
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
            return model_cls.from_pretrained(folder)
        raise CheckpointError(f"{weights} is missing")
    model = model_cls.from_config(model_cls.load_config(folder))
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match {folder / 'config.json'} ({len(missing)} missing, {len(unexpected)} unexpected "
            f"tensors, e.g. {(missing or unexpected)[0]})"
        )
    return model


def _resolve_seeds(seed: int | Sequence[int] | None, generator: torch.Generator | None, batch: int) -> list[int]:
    if seed is not None:
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(batch)]
        seeds = [int(s) for s in seed]
        if len(seeds) != batch:
            raise GenerationError(f"got {len(seeds)} seeds for {batch} samples; pass one seed per sample or one int")
        return seeds
    if generator is not None:
        return [int(s) for s in torch.randint(0, 2**31 - 1, (batch,), generator=generator)]
    return [secrets.randbelow(2**31 - 1) for _ in range(batch)]


def _resolve_elevations(elevation: float | Sequence[float] | None, seeds: list[int], rng: tuple[float, float]) -> list[float]:
    if elevation is None:
        return [draw_elevation(s, *rng) for s in seeds]
    if isinstance(elevation, (int, float, np.floating, np.integer)):
        return [float(elevation)] * len(seeds)
    values = [float(e) for e in elevation]
    if len(values) != len(seeds):
        raise GenerationError(f"got {len(values)} elevations for {len(seeds)} samples; pass one or one per sample")
    return values
