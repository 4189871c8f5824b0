"""Rows the catalog writes: ``SampleRecord`` (a samples row + its media bytes) and id helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone

from catalog.schema import SAMPLE_COLUMNS

# media object name -> the samples column holding its URI
MEDIA_COLUMNS = {"views.npz": "uri_views", "orbit.mp4": "uri_video", "sheet.png": "uri_sheet"}


def sample_id(prompt_id: str, index: int, seed: int, checkpoint_id: str) -> str:
    """Deterministic sample id: sha256 of (prompt, index within prompt, seed, generator checkpoint)."""
    key = f"{prompt_id}\x1f{int(index)}\x1f{int(seed)}\x1f{checkpoint_id}"
    return hashlib.sha256(key.encode()).hexdigest()


def media_key(sid: str, name: str) -> str:
    """Object-store key of one media object of a sample: ``samples/<id[:2]>/<id>/<name>``."""
    return f"samples/{sid[:2]}/{sid}/{name}"


def media_column(name: str) -> str | None:
    """The uri_* column a media object fills (by name, else by file type), or None."""
    if name in MEDIA_COLUMNS:
        return MEDIA_COLUMNS[name]
    suffix = name.rsplit(".", 1)[-1].lower()
    return {"npz": "uri_views", "safetensors": "uri_views", "mp4": "uri_video", "webp": "uri_video",
            "gif": "uri_video", "png": "uri_sheet"}.get(suffix)


@dataclass
class SampleRecord:
    """One multi-view sample: the ``samples`` columns plus ``media`` (object name -> bytes).

    ``batch_id`` and ``created_at`` are filled by ``Catalog.commit_batch``; ``uri_*`` are filled
    from ``media`` when left empty.
    """

    sample_id: str
    prompt_id: str
    prompt_text: str
    category: str | None = None
    n_views: int = 0
    resolution: int = 0
    elevation_deg: float = 0.0
    azimuths_deg: list[float] = field(default_factory=list)
    radius: float = 0.0
    fov_deg: float = 0.0
    extrinsics: list[float] = field(default_factory=list)
    intrinsics: list[float] = field(default_factory=list)
    checkpoint_id: str = ""
    seed: int = 0
    sampler: str = ""
    steps: int = 0
    guidance_scale: float = 0.0
    uri_views: str | None = None
    uri_video: str | None = None
    uri_sheet: str | None = None
    score_consistency: float | None = None
    score_framing: float | None = None
    score_sharpness: float | None = None
    score_prompt_color: float | None = None
    score_clip: float | None = None
    score_overall: float | None = None
    scorer_version: str = ""
    status: str = "kept"
    run_id: str | None = None
    batch_id: str | None = None
    created_at: datetime | None = None
    media: dict[str, bytes] = field(default_factory=dict, repr=False)

    def row(self) -> dict:
        """The samples row as a dict (no media); camera arrays flattened to plain float lists."""
        out = {}
        for name in SAMPLE_COLUMNS:
            value = getattr(self, name)
            if name in ("azimuths_deg", "extrinsics", "intrinsics") and value is not None:
                value = [float(v) for v in _flat(value)]
            out[name] = value
        return out


def _flat(value) -> list:
    if hasattr(value, "reshape"):  # numpy arrays: [V,4,4] -> V*16 row-major
        return value.reshape(-1).tolist()
    flat = []
    for v in value:
        if isinstance(v, (list, tuple)) or hasattr(v, "__len__"):
            flat.extend(_flat(v))
        else:
            flat.append(v)
    return flat


assert [f.name for f in fields(SampleRecord)][:-1] == list(SAMPLE_COLUMNS), "SampleRecord and SAMPLE_COLUMNS drifted"


def rows_to_arrow(rows: list[dict]):
    """A pyarrow Table with exactly the samples schema (types match the DuckLake table)."""
    import pyarrow as pa

    types = {
        "VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(),
        "DOUBLE[]": pa.list_(pa.float64()), "FLOAT[]": pa.list_(pa.float32()),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    }
    schema = pa.schema([(name, types[typ]) for name, typ in SAMPLE_COLUMNS.items()])
    return pa.Table.from_pylist(rows, schema=schema)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
