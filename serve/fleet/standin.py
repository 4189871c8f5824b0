"""A fixed-latency stand-in for the generator: deterministic frames of the right shape, no model.

It sleeps ``latency_s`` per batch call (``time.sleep`` releases the GIL, so many latency-bound
replicas share few cores) and draws each sample's frames from its (prompt, seed) alone: a
coloured disc orbiting with the camera, so quality scores behave like a real, consistent
sample. Fleet tests and the orchestration benchmark use it to measure everything but the model.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from serve.fleet.models import GeneratedSample, SampleRequest

STANDIN_CHECKPOINT_PREFIX = "standin-"


class StandinModel:
    """Fixed-latency fake generator (see the module docstring)."""

    def __init__(self, latency_s: float = 0.05, num_views: int = 8, resolution: int = 32, steps: int = 1):
        self.latency_s = float(latency_s)
        self.num_views = int(num_views)
        self.resolution = int(resolution)
        self.steps = int(steps)
        self.checkpoint_id = f"{STANDIN_CHECKPOINT_PREFIX}v{self.num_views}r{self.resolution}"

    @classmethod
    def from_settings(cls, settings: Any) -> "StandinModel":
        fleet = settings.fleet
        return cls(latency_s=fleet.standin_latency_s, num_views=fleet.num_views or 8, steps=fleet.steps or 1)

    def generate(self, requests: list[SampleRequest]) -> list[GeneratedSample]:
        if self.latency_s:
            time.sleep(self.latency_s)
        return [self.sample(r) for r in requests]

    def sample(self, req: SampleRequest) -> GeneratedSample:
        from engine.render.cameras import OrbitCameras

        cams = OrbitCameras.from_views(self.num_views, req.elevation_deg, resolution=self.resolution)
        frames = standin_frames(req.text, req.seed, self.num_views, self.resolution)
        return GeneratedSample.from_orbit(req, frames, cams, checkpoint_id=self.checkpoint_id,
                                          sampler="standin", steps=self.steps, guidance_scale=0.0)


def standin_frames(text: str, seed: int, num_views: int, resolution: int) -> np.ndarray:
    """Deterministic uint8 [V, R, R, 3] frames: a disc of a (text, seed) colour on white, orbiting."""
    digest = hashlib.sha256(f"{text}\x1f{int(seed)}".encode()).digest()
    colour = np.frombuffer(digest[:3], dtype=np.uint8).astype(np.float32) * 0.6 + 20.0
    radius = resolution * (0.22 + 0.08 * digest[3] / 255.0)
    yy, xx = np.mgrid[0:resolution, 0:resolution].astype(np.float32) + 0.5
    frames = np.full((num_views, resolution, resolution, 3), 255, dtype=np.uint8)
    for v in range(num_views):
        angle = 2.0 * np.pi * v / num_views
        cx = resolution / 2 + 0.12 * resolution * np.cos(angle)
        cy = resolution / 2 + 0.04 * resolution * np.sin(angle)
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        shade = np.clip(1.0 - 0.35 * dist / radius, 0.0, 1.0)[..., None]
        disc = (dist <= radius)[..., None]
        frames[v] = np.where(disc, colour * shade + 30.0 * (1 - shade), frames[v]).astype(np.uint8)
    return frames
