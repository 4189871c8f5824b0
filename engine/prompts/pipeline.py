"""The ingest pipeline: read → normalise → filter → embed → dedup → catalog + queue.

Phase 1 streams fixed-size chunks through three plain batch functions
(``normalize_batch``, ``filter_batch``, ``embed_batch``) — locally (optionally with a pool of
spaCy worker processes) or as Ray Data ``map_batches`` over many files (``use_ray``); both run
the very same functions, so results are identical. Rejected rows go to the catalog as they
come; kept rows are spilled to per-bucket Parquet files (bucket = hash of category), so memory
stays bounded by one chunk. Phase 2 deduplicates one bucket at a time against the survivors of
earlier runs (stored embeddings), writes kept/duplicate rows, enqueues survivors, and stores
their embeddings.
"""

from __future__ import annotations

import collections
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from engine.prompts.dedup import DEFAULT_THRESHOLD, EMBED_DIM, N_BUCKETS, bucket_of, embed_batch, near_dedup
from engine.prompts.filter import filter_batch, filter_version
from engine.prompts.ingest import RawRecord, Source, check_source, iter_records
from engine.prompts.normalize import normalize_batch

CHUNK = 2048
MAX_EXAMPLES = 20


@dataclass
class IngestSummary:
    files: int = 0
    read: int = 0
    bad_lines: collections.Counter = field(default_factory=collections.Counter)
    bad_examples: list[str] = field(default_factory=list)
    kept: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    duplicates_exact: int = 0
    duplicates_near: int = 0
    enqueued: int = 0
    filter_version: str = ""
    seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return self.duplicates_exact + self.duplicates_near

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "read": self.read, "kept": self.kept, "rejected": dict(self.rejected),
            "duplicates_exact": self.duplicates_exact, "duplicates_near": self.duplicates_near,
            "bad_lines": dict(self.bad_lines), "bad_examples": self.bad_examples, "enqueued": self.enqueued,
            "filter_version": self.filter_version, "seconds": round(self.seconds, 3),
        }


def source_name(src: Source, name: str | None, n_files: int) -> str:
    if name:
        return name if n_files == 1 else f"{name}:{src.path.name}"
    return str(src.path)


def read_chunks(sources: Sequence[Source], names: Sequence[str], chunk: int = CHUNK) -> Iterator[dict[str, list]]:
    """Column chunks: raw, error, detail, source, source_line, file_index."""
    cols: dict[str, list] = {k: [] for k in ("raw", "error", "detail", "source", "source_line", "file_index")}
    for fi, (src, name) in enumerate(zip(sources, names)):
        for rec in iter_records(src):
            _append(cols, rec, name, fi)
            if len(cols["raw"]) >= chunk:
                yield cols
                cols = {k: [] for k in cols}
    if cols["raw"]:
        yield cols


def _append(cols: dict[str, list], rec: RawRecord, name: str, fi: int) -> None:
    cols["raw"].append(rec.text or "")
    cols["error"].append(rec.error)
    cols["detail"].append(rec.detail)
    cols["source"].append(name)
    cols["source_line"].append(rec.line)
    cols["file_index"].append(fi)


def file_rows(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Ray ``flat_map``: one file → its rows (same columns as ``read_chunks``), streamed."""
    src = check_source(item["path"], item.get("field") or None, item.get("column") or None)
    for rec in iter_records(src):
        cols: dict[str, list] = collections.defaultdict(list)
        _append(cols, rec, item["source"], int(item["file_index"]))
        yield {k: v[0] for k, v in cols.items()}


def process_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """normalise + filter one chunk (what the local worker processes run)."""
    return filter_batch(normalize_batch(batch))


def _normalize_with_errors(batch: dict[str, Any]) -> dict[str, Any]:
    out = normalize_batch(batch)
    for i, err in enumerate(out["error"]):
        if err:
            out["reason"][i], out["text"][i], out["prompt_id"][i] = "bad:" + str(err), "", ""
    return out


def process_chunk(batch: dict[str, Any]) -> dict[str, Any]:
    return filter_batch(_normalize_with_errors(batch))


def run_local(sources: Sequence[Source], names: Sequence[str], n_process: int = 1, chunk: int = CHUNK) -> Iterator[dict[str, Any]]:
    chunks = read_chunks(sources, names, chunk)
    if n_process <= 1:
        for c in chunks:
            yield embed_batch(process_chunk(c))
        return
    import multiprocessing as mp

    import itertools

    with mp.get_context("spawn").Pool(n_process) as pool:
        while True:  # bounded windows: Pool.imap would otherwise read the whole input ahead
            window = list(itertools.islice(chunks, 2 * n_process))
            if not window:
                return
            for out in pool.imap(process_chunk, window):
                yield embed_batch(out)


def run_ray(sources: Sequence[Source], names: Sequence[str], chunk: int = CHUNK, address: str = "") -> Iterator[dict[str, Any]]:
    """The same batch functions as Ray Data ``map_batches`` over the files (one read task per file)."""
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    items = [
        {"path": str(s.path), "field": s.key if s.fmt in ("jsonl", "json") else "",
         "column": s.key if s.fmt in ("csv", "tsv", "parquet") else "", "source": n, "file_index": i}
        for i, (s, n) in enumerate(zip(sources, names))
    ]
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = (
        ray.data.from_items(items)
        .flat_map(file_rows)
        .map_batches(_normalize_with_errors, batch_size=chunk, batch_format="numpy")
        .map_batches(filter_batch, batch_size=chunk, batch_format="numpy")
        .map_batches(embed_batch, batch_size=chunk, batch_format="numpy")
    )
    for batch in ds.iter_batches(batch_size=chunk, batch_format="numpy"):
        yield {k: (v if k == "embedding" else v.tolist()) for k, v in batch.items()}


class _Spill:
    """Kept rows spilled to per-bucket Parquet files (bounded memory)."""

    COLS = ("prompt_id", "text", "source", "source_line", "file_index", "category", "attributes", "filter_version")

    def __init__(self, n_buckets: int) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="vf3d-prompts-")
        self.n_buckets = n_buckets
        self.writers: dict[int, Any] = {}

    def add(self, batch: dict[str, Any], rows: list[int]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_bucket: dict[int, list[int]] = collections.defaultdict(list)
        for i in rows:
            by_bucket[bucket_of(batch["category"][i], self.n_buckets)].append(i)
        emb = np.asarray(batch["embedding"], np.float32)
        for b, idx in by_bucket.items():
            data = {c: [batch[c][i] for i in idx] for c in self.COLS}
            table = pa.table({
                **{c: pa.array(data[c], pa.int64() if c in ("source_line", "file_index") else pa.string()) for c in self.COLS},
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb[idx].reshape(-1)), EMBED_DIM),
            })
            if b not in self.writers:
                self.writers[b] = pq.ParquetWriter(Path(self.dir.name) / f"b{b:02d}.parquet", table.schema)
            self.writers[b].write_table(table)

    def buckets(self) -> Iterator[Any]:
        import pyarrow.parquet as pq

        for w in self.writers.values():
            w.close()
        for b in sorted(self.writers):
            yield pq.read_table(Path(self.dir.name) / f"b{b:02d}.parquet")

    def close(self) -> None:
        self.dir.cleanup()


def ingest(
    paths: Sequence[str | Path],
    *,
    sink: Callable[[list[dict]], Any] | None = None,
    queue: Any = None,
    embeddings: Any = None,
    source: str | None = None,
    field_name: str | None = None,
    column: str | None = None,
    use_ray: bool = False,
    ray_address: str = "",
    priority: int = 0,
    samples_per_prompt: int = 1,
    threshold: float = DEFAULT_THRESHOLD,
    n_process: int = 1,
    chunk: int = CHUNK,
    progress: Callable[[str, int], None] | None = None,
    n_buckets: int = N_BUCKETS,
) -> IngestSummary:
    """Run the whole pipeline; ``sink`` receives prompts rows (e.g. ``catalog.write_prompts``),
    ``queue`` a ``PromptQueue`` for survivors, ``embeddings`` an ``EmbeddingStore`` for cross-run dedup.
    Every file is checked first (``BadInputError`` before any work); bad lines are counted, not fatal.
    """
    t0 = time.perf_counter()
    sources = [check_source(p, field_name, column) for p in paths]
    names = [source_name(s, source, len(sources)) for s in sources]
    summary = IngestSummary(files=len(sources), filter_version=filter_version())
    pending: list[dict] = []

    def flush(force: bool = False) -> None:
        if pending and (force or len(pending) >= 20_000):
            if sink is not None:
                sink(list(pending))
            pending.clear()

    spill = _Spill(n_buckets)
    try:
        batches = run_ray(sources, names, chunk, ray_address) if use_ray else run_local(sources, names, n_process, chunk)
        for batch in batches:
            kept_rows = []
            for i in range(len(batch["reason"])):
                summary.read += 1
                reason = batch["reason"][i]
                if reason.startswith("bad:"):
                    why = reason[4:]
                    summary.bad_lines[why] += 1
                    if len(summary.bad_examples) < MAX_EXAMPLES:
                        summary.bad_examples.append(f"{batch['source'][i]}:{batch['source_line'][i]}: {why} ({batch['detail'][i]})")
                elif batch["status"][i] == "kept":
                    kept_rows.append(i)
                else:
                    summary.rejected[reason] += 1
                    if batch["prompt_id"][i]:
                        pending.append(_row(batch, i, "rejected", reason))
            if kept_rows:
                spill.add(batch, kept_rows)
            flush()
            if progress:
                progress("read", summary.read)
        flush(force=True)
        for table in spill.buckets():
            _dedup_bucket(table, summary, sink, queue, embeddings, threshold, priority, samples_per_prompt)
            if progress:
                progress("dedup", summary.kept + summary.duplicates)
    finally:
        spill.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _row(batch: dict[str, Any], i: int, status: str, reason: str = "", duplicate_of: str | None = None) -> dict[str, Any]:
    return {
        "prompt_id": batch["prompt_id"][i], "text": batch["text"][i], "source": batch["source"][i],
        "source_line": int(batch["source_line"][i]), "status": status, "reject_reason": reason or None,
        "category": batch["category"][i] or None, "attributes": batch["attributes"][i],
        "filter_version": batch["filter_version"][i], "duplicate_of": duplicate_of,
    }


def _dedup_bucket(table: Any, summary: IngestSummary, sink: Any, queue: Any, embeddings: Any, threshold: float,
                  priority: int, samples_per_prompt: int) -> None:
    cols = {c: table[c].to_pylist() for c in _Spill.COLS}
    n = table.num_rows
    emb = np.asarray(table["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False), np.float32).reshape(n, EMBED_DIM)
    existing = embeddings.load(set(cols["category"])) if embeddings is not None else {}
    order = list(zip(cols["file_index"], cols["source_line"]))
    res = near_dedup(cols["prompt_id"], cols["category"], emb, order=order, threshold=threshold, existing=existing)
    rows, survivors = [], []
    for i in range(n):
        if res.exact[i]:
            summary.duplicates_exact += 1
            continue
        if res.duplicate_of[i]:
            summary.duplicates_near += 1
            rows.append(_row(cols, i, "duplicate", "near_duplicate", res.duplicate_of[i]))
        else:
            summary.kept += 1
            rows.append(_row(cols, i, "kept"))
            survivors.append(i)
    if sink is not None and rows:
        for start in range(0, len(rows), 20_000):
            sink(rows[start:start + 20_000])
    if queue is not None and survivors:
        summary.enqueued += queue.enqueue(
            ({"prompt_id": cols["prompt_id"][i], "text": cols["text"][i], "category": cols["category"][i]} for i in survivors),
            priority=priority, samples_per_prompt=samples_per_prompt,
        )
    if embeddings is not None and survivors:
        embeddings.append([cols["prompt_id"][i] for i in survivors], [cols["category"][i] for i in survivors], emb[survivors])


def demo_captions_path() -> Path:
    return Path(__file__).parent / "data" / "demo_captions.jsonl"


def summary_rows(summary: IngestSummary) -> Iterable[tuple[str, str]]:
    yield "files", str(summary.files)
    yield "read", str(summary.read)
    yield "kept", str(summary.kept)
    for reason, n in sorted(summary.rejected.items(), key=lambda kv: -kv[1]):
        yield f"rejected: {reason}", str(n)
    yield "duplicates (exact)", str(summary.duplicates_exact)
    yield "duplicates (near)", str(summary.duplicates_near)
    for reason, n in sorted(summary.bad_lines.items()):
        yield f"bad lines: {reason}", str(n)
    yield "enqueued (new)", str(summary.enqueued)
    yield "filter version", summary.filter_version
    yield "seconds", f"{summary.seconds:.1f}"


__all__ = ["IngestSummary", "ingest", "run_local", "run_ray", "process_chunk"]
