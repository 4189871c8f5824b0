"""From generated samples to catalog records: quality scores, media objects, the quality gate.

:func:`finish_samples` is the per-sample CPU work (scores, then ``views.npz`` / ``orbit.mp4`` /
``sheet.png``). It runs where ``fleet.score_on`` says: in the generator replica right after its
batch (the default: the work spreads over the replicas and runs between generation calls
instead of beside them, where it would steal cores from the generator's threads), or in the
dispatcher. :func:`to_records` is what the dispatcher always does: ids, lineage and the gate.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def sample_meta(sample: Any, prompt: str, run_id: str) -> dict[str, Any]:
    """The lineage stored inside ``views.npz`` next to the frames and cameras."""
    from catalog.records import sample_id

    return {
        "sample_id": sample_id(sample.prompt_id, sample.sample_index, sample.seed, sample.checkpoint_id),
        "prompt_id": sample.prompt_id, "prompt": prompt, "seed": sample.seed, "sample_index": sample.sample_index,
        "checkpoint_id": sample.checkpoint_id, "elevation_deg": sample.elevation_deg,
        "azimuths_deg": list(sample.azimuths_deg), "radius": sample.radius, "fov_deg": sample.fov_deg,
        "run_id": run_id,
    }


def finish_samples(samples: Sequence[Any], prompts: Sequence[str], settings: Any,
                   run_ids: Sequence[str] | str = "") -> None:
    """Score and encode, in place, the samples that have no ``scores``/``media`` yet.

    ``prompts`` (and ``run_ids`` when a sequence) align with ``samples``. Scores are computed
    batched, one batch per frame shape (one model, so normally one batch).
    """
    from catalog.media import sample_media
    from engine.quality import score_batch

    if len(samples) != len(prompts):
        raise ValueError(f"{len(samples)} samples but {len(prompts)} prompts")
    todo = [i for i, s in enumerate(samples) if s.scores is None]
    groups: dict[tuple, list[int]] = {}
    for i in todo:
        groups.setdefault(tuple(samples[i].frames.shape), []).append(i)
    for idx in groups.values():
        frames = np.stack([samples[i].frames for i in idx])
        for i, scores in zip(idx, score_batch(frames, [prompts[i] for i in idx], settings=settings)):
            samples[i].scores = scores
    runs = [run_ids] * len(samples) if isinstance(run_ids, str) else list(run_ids)
    for s, prompt, run_id in zip(samples, prompts, runs):
        if s.media is None:
            s.media = sample_media(s.frames, np.asarray(s.extrinsics), np.asarray(s.intrinsics),
                                   sample_meta(s, prompt, run_id))


def to_records(samples: Sequence[Any], leases: dict[str, Any], run_id: str, threshold: float) -> list[Any]:
    """Catalog records of finished samples; ``status`` is ``kept`` at or above ``threshold``, else ``rejected``."""
    from catalog.records import SampleRecord, sample_id

    records = []
    for s in samples:
        if s.scores is None or s.media is None:
            raise ValueError(f"sample {s.prompt_id}#{s.sample_index} is not finished (finish_samples first)")
        lease = leases[s.prompt_id]
        columns = {k: (None if v is None else (float(v) if k.startswith("score_") else v))
                   for k, v in s.scores.columns().items()}
        records.append(
            SampleRecord(
                sample_id=sample_id(s.prompt_id, s.sample_index, s.seed, s.checkpoint_id),
                prompt_id=s.prompt_id,
                prompt_text=lease.text,
                category=lease.category or None,
                n_views=int(s.frames.shape[0]),
                resolution=int(s.frames.shape[1]),
                elevation_deg=float(s.elevation_deg),
                azimuths_deg=[float(a) for a in s.azimuths_deg],
                radius=float(s.radius),
                fov_deg=float(s.fov_deg),
                extrinsics=np.asarray(s.extrinsics, dtype=np.float32),
                intrinsics=np.asarray(s.intrinsics, dtype=np.float32),
                checkpoint_id=s.checkpoint_id,
                seed=int(s.seed),
                sampler=s.sampler,
                steps=int(s.steps),
                guidance_scale=float(s.guidance_scale),
                **columns,
                status="kept" if float(s.scores.overall) >= threshold else "rejected",
                run_id=run_id,
                media=s.media,
            )
        )
    return records
