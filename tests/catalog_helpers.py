"""Synthetic samples and settings for the catalog tests (no model needed)."""

from __future__ import annotations

import random

from catalog.records import SampleRecord, sample_id
from catalog.settings import load_settings

CATEGORIES = ["animal", "vehicle", "furniture", "food", "plant"]


def synthetic_batch(batch: int, n: int = 100, seed: int = 0, media: bool = True) -> list[SampleRecord]:
    """n deterministic samples for batch number ``batch`` with small random media objects."""
    rng = random.Random(seed * 1_000_003 + batch)
    out = []
    for i in range(n):
        prompt_id = f"prompt-{batch:03d}-{i:04d}"
        sid = sample_id(prompt_id, 0, 1000 * batch + i, "ckpt-test")
        views = 4
        rec = SampleRecord(
            sample_id=sid, prompt_id=prompt_id, prompt_text=f"a small {i} thing", category=rng.choice(CATEGORIES),
            n_views=views, resolution=32, elevation_deg=rng.uniform(0, 45),
            azimuths_deg=[360.0 * v / views for v in range(views)], radius=2.0, fov_deg=40.0,
            extrinsics=[float(v % 5) for v in range(16 * views)], intrinsics=[30.0, 0, 16, 0, 30.0, 16, 0, 0, 1] * views,
            checkpoint_id="ckpt-test", seed=1000 * batch + i, sampler="euler", steps=8, guidance_scale=3.0,
            score_consistency=rng.random(), score_framing=rng.random(), score_sharpness=rng.random(),
            score_prompt_color=rng.random(), score_overall=rng.random(), scorer_version="test-1",
            status="kept" if rng.random() > 0.3 else "rejected",
        )
        if media:
            rec.media = {"views.npz": rng.randbytes(64), "orbit.mp4": rng.randbytes(48), "sheet.png": rng.randbytes(32)}
        out.append(rec)
    return out


def s3_overrides(server, prefix: str) -> dict:
    return {
        "s3": {"endpoint": server.endpoint, "access_key": server.access_key, "secret_key": server.secret_key,
               "bucket": "vf3dtest", "prefix": prefix},
    }


def setup_env(monkeypatch, root, server=None, prefix: str = "", dsn: str = "") -> None:
    """Point VF3D_* env vars at a set-up so CLI commands (which call load_settings()) see it."""
    monkeypatch.setenv("VF3D_ROOT", str(root))
    if server is not None:
        monkeypatch.setenv("VF3D_S3__ENDPOINT", server.endpoint)
        monkeypatch.setenv("VF3D_S3__ACCESS_KEY", server.access_key)
        monkeypatch.setenv("VF3D_S3__SECRET_KEY", server.secret_key)
        monkeypatch.setenv("VF3D_S3__BUCKET", "vf3dtest")
        monkeypatch.setenv("VF3D_S3__PREFIX", prefix)
    if dsn:
        monkeypatch.setenv("VF3D_CATALOG__METADATA_DSN", dsn)


def settings_for(root, server=None, prefix: str = "", dsn: str = ""):
    overrides: dict = {"root": root}
    if server is not None:
        overrides.update(s3_overrides(server, prefix))
    if dsn:
        overrides["catalog"] = {"metadata_dsn": dsn}
    return load_settings(**overrides)
