"""What a generator replica hosts: a model behind one small interface, built by a pluggable factory.

A fleet model turns a batch of :class:`SampleRequest` into the same number of
:class:`GeneratedSample` (frames uint8 [V,H,W,3] plus the orbit cameras and sampler settings
that made them). ``load_model(settings)`` picks the factory from ``settings.fleet.model``:

* ``pipeline`` — the multi-view video diffusion pipeline (``engine.mvgen``), checkpoint from
  ``fleet.checkpoint`` (empty: the embedded default), device from ``compute.device``;
* ``standin`` — :class:`serve.fleet.standin.StandinModel`, a fixed-latency fake with
  deterministic frames of the right shape (tests, orchestration benchmarks);
* ``package.module:factory`` — any callable ``factory(settings) -> FleetModel``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from catalog.errors import SettingsError


@dataclass(frozen=True)
class SampleRequest:
    """One sample to generate: the prompt, which sample of it, and the seed that fixes it."""

    prompt_id: str
    text: str
    sample_index: int
    seed: int
    elevation_deg: float
    run_id: str = ""  # the fleet run asking (stored in the sample's media lineage)


@dataclass
class GeneratedSample:
    """A generated orbit video and everything needed to reproduce and place it."""

    prompt_id: str
    sample_index: int
    seed: int
    frames: np.ndarray  # uint8 [V, H, W, 3]
    extrinsics: np.ndarray  # float32 [V, 4, 4] world-to-camera
    intrinsics: np.ndarray  # float32 [V, 3, 3] pixels
    elevation_deg: float
    azimuths_deg: list[float]
    radius: float
    fov_deg: float
    checkpoint_id: str
    sampler: str
    steps: int
    guidance_scale: float
    replica: str = ""  # filled by the replica that ran it
    gen_s: float = 0.0  # this sample's share of its batch call (generation, + scores and media on the replica)
    batch_size: int = 1
    scores: Any = None  # engine.quality.SampleScores, once finished (engine.dispatch.finish_samples)
    media: dict[str, bytes] | None = None  # views.npz / orbit.mp4 / sheet.png, once finished
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return int(self.frames.shape[1])

    @classmethod
    def from_orbit(cls, req: "SampleRequest", frames: np.ndarray, cameras: Any, *, checkpoint_id: str,
                   sampler: str, steps: int, guidance_scale: float) -> "GeneratedSample":
        """A sample of ``req`` from generated frames and their ``OrbitCameras``."""
        return cls(
            prompt_id=req.prompt_id,
            sample_index=req.sample_index,
            seed=req.seed,
            frames=np.ascontiguousarray(frames, dtype=np.uint8),
            extrinsics=np.asarray(cameras.extrinsics(), dtype=np.float32),
            intrinsics=np.asarray(cameras.intrinsics(), dtype=np.float32),
            elevation_deg=float(cameras.elevation_deg),
            azimuths_deg=[float(a) for a in cameras.azimuths_deg],
            radius=float(cameras.radius),
            fov_deg=float(cameras.fov_deg),
            checkpoint_id=checkpoint_id,
            sampler=str(sampler),
            steps=steps,
            guidance_scale=guidance_scale,
        )


class FleetModel(Protocol):
    """What a replica needs from a model: a checkpoint id and a batched generate."""

    checkpoint_id: str

    def generate(self, requests: list[SampleRequest]) -> list[GeneratedSample]: ...


def load_model(settings: Any) -> FleetModel:
    """Build the model named by ``settings.fleet.model`` (once per replica)."""
    name = settings.fleet.model
    if name == "standin":
        from serve.fleet.standin import StandinModel

        return StandinModel.from_settings(settings)
    if name == "pipeline":
        return PipelineModel.from_settings(settings)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise SettingsError(
                f"setting VF3D_FLEET__MODEL: cannot import {name!r} ({err}); use 'pipeline', 'standin' "
                "or 'package.module:factory' naming a callable factory(settings) -> model"
            ) from None
        return factory(settings)
    raise SettingsError(
        f"setting VF3D_FLEET__MODEL: unknown model {name!r}; use 'pipeline', 'standin' or 'package.module:factory'"
    )


class PipelineModel:
    """The multi-view video diffusion pipeline (engine.mvgen) behind the fleet interface."""

    def __init__(self, pipe: Any, num_views: int | None, steps: int | None, guidance_scale: float | None):
        self.pipe = pipe
        self.num_views = num_views
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.checkpoint_id = str(pipe.checkpoint_id)

    @classmethod
    def from_settings(cls, settings: Any) -> "PipelineModel":
        from engine.mvgen import MultiViewVideoPipeline, default_checkpoint_path

        path = settings.fleet.checkpoint or str(default_checkpoint_path())
        device = settings.compute.device
        pipe = MultiViewVideoPipeline.from_pretrained(path, device=None if device == "auto" else device, settings=settings)
        fleet = settings.fleet
        return cls(pipe, fleet.num_views, fleet.steps, fleet.guidance_scale)

    def _call_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.num_views is not None:
            kwargs["num_views"] = self.num_views
        if self.steps is not None:
            kwargs["num_inference_steps"] = self.steps
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        return kwargs

    def generate(self, requests: list[SampleRequest]) -> list[GeneratedSample]:
        out = self.pipe(
            [r.text for r in requests],
            seed=[r.seed for r in requests],
            elevation_deg=[r.elevation_deg for r in requests],
            **self._call_kwargs(),
        )
        frames = np.asarray(out.frames)
        cfg = getattr(self.pipe, "config", None)
        sampler = type(getattr(self.pipe, "scheduler", self.pipe)).__name__
        steps = int(self.steps or getattr(cfg, "default_steps", 0) or 0)
        guidance = float(self.guidance_scale if self.guidance_scale is not None else getattr(cfg, "default_guidance", 0.0))
        results = []
        for i, req in enumerate(requests):
            results.append(
                GeneratedSample.from_orbit(req, frames[i], out.cameras[i], checkpoint_id=self.checkpoint_id,
                                           sampler=sampler, steps=steps, guidance_scale=guidance)
            )
        return results
