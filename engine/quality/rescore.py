"""Re-score stored samples with the current scorer, without touching their media.

A re-score APPENDS one new ``samples`` row per sample: the same ``sample_id``, the same
``uri_*`` (the media objects are only read, never written), new ``score_*`` columns, the current
``scorer_version`` and a ``status`` recomputed by the quality gate (``fleet.quality_threshold``:
``score_overall >= threshold`` -> kept). ``samples_latest`` shows the newest row per sample, so
the new scores win while the old rows stay for time travel.

Selection
    ``only_stale`` (default) takes the rows of ``samples_latest`` whose ``scorer_version`` is not
    :data:`SCORER_VERSION`. ``where`` is a curator filter and therefore untrusted SQL: it never
    reaches the writer connection. It runs as ``SELECT sample_id FROM samples_latest WHERE
    <where>`` through :func:`catalog.sql.run_readonly` (DuckDB's own single-SELECT check, a
    read-only attach, no external access); the rows for those ids are then read with bound
    parameters.

Idempotence
    Each committed batch gets a deterministic id: a hash of the scorer version, the scoring
    configuration (weights, CLIP model), and the (sample_id, source batch_id) pairs it re-scores.
    Re-running after a crash re-commits nothing already committed (a committed batch id is a
    no-op; the re-scored samples are no longer stale anyway).

Failures
    A sample whose ``views.npz`` is missing or unreadable is reported in
    :attr:`RescoreResult.failed` and skipped; the others are still scored. Store outages and
    catalog errors stay fatal.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import numpy as np

from engine.quality.scores import SCORER_VERSION, QualityScorer

VIEWS_OBJECT = "views.npz"
BATCH_PREFIX = "rescore-"


@dataclass
class RescoreFailure:
    sample_id: str
    reason: str


@dataclass
class RescoreResult:
    """What a re-score did (counts are over samples)."""

    selected: int = 0  # rows chosen for re-scoring
    scored: int = 0  # new rows committed
    already_committed: int = 0  # samples in batches an earlier (interrupted) run had committed
    kept_to_rejected: int = 0
    rejected_to_kept: int = 0
    failed: list[RescoreFailure] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)  # batch ids committed by this call
    scorer_version: str = SCORER_VERSION
    threshold: float = 0.5

    @property
    def n_failed(self) -> int:
        return len(self.failed)


def _config_fingerprint(scorer: QualityScorer) -> str:
    return json.dumps({"weights": scorer.weights, "clip": scorer.clip_model_path or ""}, sort_keys=True)


def rescore_batch_id(version: str, config: str, pairs: list[tuple[str, str | None]]) -> str:
    """Deterministic batch id of one re-score chunk: sha256 over version, config and (sample, source batch)."""
    h = hashlib.sha256()
    h.update(version.encode())
    h.update(b"\x1e")
    h.update(config.encode())
    for sid, src in sorted(pairs, key=lambda p: p[0]):
        h.update(b"\x1e" + sid.encode() + b"\x1f" + (src or "").encode())
    return BATCH_PREFIX + h.hexdigest()[:32]


def _select_rows(catalog, where: str | None, limit: int | None, only_stale: bool) -> list[dict]:
    """The samples_latest rows to re-score, ordered by (n_views, resolution, sample_id)."""
    conn = catalog.conn
    clauses, params = [], []
    ids_table = None
    if where is not None and where.strip():
        from catalog.sql import run_readonly

        # untrusted: DuckDB parses it as exactly one SELECT on a read-only, locked-down connection
        table = run_readonly(catalog.settings, f"SELECT sample_id FROM samples_latest WHERE {where}", limit=2**62)
        import pyarrow as pa

        ids_table = pa.table({"sample_id": table.column(0).cast(pa.string())})
        if ids_table.num_rows == 0:
            return []
    if only_stale:
        clauses.append("scorer_version IS DISTINCT FROM ?")
        params.append(SCORER_VERSION)
    sql = "SELECT * FROM samples_latest"
    if ids_table is not None:
        conn.register("_vf3d_rescore_ids", ids_table)
        clauses.append("sample_id IN (SELECT sample_id FROM _vf3d_rescore_ids)")
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY n_views, resolution, sample_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    try:
        return conn.execute(sql, params).to_arrow_table().to_pylist()
    finally:
        if ids_table is not None:
            conn.unregister("_vf3d_rescore_ids")


def _chunks(rows: list[dict], batch_size: int):
    """Split rows (already sorted) into chunks of one (n_views, resolution) shape, <= batch_size each."""
    chunk: list[dict] = []
    key = None
    for row in rows:
        k = (row["n_views"], row["resolution"])
        if chunk and (k != key or len(chunk) >= batch_size):
            yield chunk
            chunk = []
        key = k
        chunk.append(row)
    if chunk:
        yield chunk


def _fetch_frames(store, sid: str) -> np.ndarray:
    """Frames of one sample from ONE GET of its views.npz."""
    from catalog.media import unpack_views
    from catalog.records import media_key

    return unpack_views(store.get(media_key(sid, VIEWS_OBJECT))).frames


def rescore(
    catalog,
    where: str | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    only_stale: bool = True,
    progress: Callable[[int, int], Any] | None = None,
    *,
    threshold: float | None = None,
    workers: int = 8,
) -> RescoreResult:
    """Re-score samples of ``catalog`` (see the module docstring). ``progress(done, total)`` is
    called after each chunk with samples handled so far (scored + failed + already committed)."""
    from catalog.media import MediaError
    from catalog.records import rows_to_arrow, utcnow
    from catalog.schema import SAMPLE_COLUMNS
    from catalog.store.errors import ObjectNotFoundError

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    settings = catalog.settings
    if threshold is None:
        threshold = float(settings.fleet.quality_threshold)
    scorer = QualityScorer.from_settings(settings)
    config = _config_fingerprint(scorer)
    result = RescoreResult(threshold=threshold)
    rows = _select_rows(catalog, where, limit, only_stale)
    result.selected = total = len(rows)
    done = 0
    if progress is not None:
        progress(0, total)
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, batch_size)))
    try:
        for chunk in _chunks(rows, batch_size):
            fetched = list(pool.map(lambda r: _try_fetch(catalog.store, r["sample_id"], (ObjectNotFoundError, MediaError)), chunk))
            good: list[tuple[dict, np.ndarray]] = []
            for row, (frames, err) in zip(chunk, fetched):
                if err is not None:
                    result.failed.append(RescoreFailure(row["sample_id"], err))
                else:
                    good.append((row, frames))
            if good:
                _score_and_commit(catalog, scorer, config, good, threshold, result, utcnow(), rows_to_arrow, SAMPLE_COLUMNS)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    finally:
        pool.shutdown(wait=True)
    return result


def _try_fetch(store, sid: str, expected: tuple) -> tuple[np.ndarray | None, str | None]:
    try:
        return _fetch_frames(store, sid), None
    except expected as exc:
        kind = "missing" if isinstance(exc, LookupError) else "unreadable"
        return None, f"views.npz {kind}: {' '.join(str(exc).split())[:400]}"


def _score_and_commit(catalog, scorer, config, good, threshold, result, now, rows_to_arrow, columns) -> None:
    # score in groups of identical frame shape (rows agree on n_views/resolution; the media decide)
    groups: dict[tuple, list[int]] = {}
    for i, (_, frames) in enumerate(good):
        groups.setdefault(tuple(frames.shape), []).append(i)
    scores: list[Any] = [None] * len(good)
    for idx in groups.values():
        got = scorer.score(np.stack([good[i][1] for i in idx]), [good[i][0]["prompt_text"] or "" for i in idx])
        for i, sc in zip(idx, got):
            scores[i] = sc
    batch_id = rescore_batch_id(SCORER_VERSION, config, [(r["sample_id"], r["batch_id"]) for r, _ in good])
    new_rows, flips = [], [0, 0]
    for (row, _), sc in zip(good, scores):
        new = {c: row.get(c) for c in columns}
        for k, v in sc.columns().items():
            new[k] = None if v is None else (float(v) if k.startswith("score_") else v)
        new["status"] = "kept" if new["score_overall"] is not None and new["score_overall"] >= threshold else "rejected"
        if row.get("status") == "kept" and new["status"] == "rejected":
            flips[0] += 1
        elif row.get("status") == "rejected" and new["status"] == "kept":
            flips[1] += 1
        new["batch_id"] = batch_id
        # strictly newer than the row it supersedes, even if that row's writer clock ran ahead
        old = row.get("created_at")
        new["created_at"] = now if old is None or old < now else old + timedelta(microseconds=1)
        new_rows.append(new)
    res = catalog.commit_table(batch_id, rows_to_arrow(new_rows), now=now)
    if res.added:
        result.scored += res.added
        result.kept_to_rejected += flips[0]
        result.rejected_to_kept += flips[1]
        result.batches.append(batch_id)
    else:
        result.already_committed += len(new_rows)
