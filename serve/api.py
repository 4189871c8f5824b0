"""The vf3d HTTP API (``vf3d api``): read-only views of the catalog, its media, and the queue.

Every catalog read goes through ``catalog.sql``'s locked-down read-only DuckDB connection, so
nothing sent here can change the catalog. Endpoints:

- ``GET /health`` -> ``{"status", "schema_version", "snapshot"}``
- ``POST /sql`` ``{"sql", "snapshot", "limit"}`` -> ``{"columns", "rows", "truncated"}``;
  refused or failing statements are 400 ``{"error": message}``
- ``GET /samples/{sample_id}`` -> the ``samples_latest`` row (camera arrays left out)
- ``GET /samples/{sample_id}/media/{name}`` -> ``views.npz`` | ``orbit.mp4`` | ``sheet.png``
- ``GET /queue/stats`` -> count per queue state
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import re
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from catalog.errors import Vf3dError

SAMPLE_ID_RE = re.compile(r"[0-9a-f]{64}")
MEDIA_TYPES = {"views.npz": "application/octet-stream", "orbit.mp4": "video/mp4", "sheet.png": "image/png"}
CHUNK = 1 << 20


class SqlRequest(BaseModel):
    sql: str
    snapshot: int | None = None
    limit: int | None = None


def json_safe(value: Any) -> Any:
    """A value JSON can carry: datetimes -> ISO text, bytes -> None, NaN/inf -> None, nested lists/dicts."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(settings=None) -> FastAPI:
    """The FastAPI app over ``settings`` (default: ``load_settings()``, i.e. VF3D_* env vars)."""
    from catalog.settings import load_settings

    settings = settings or load_settings()
    app = FastAPI(title="vf3d", description="Read-only access to the vf3d catalog, its media and the prompt queue.")
    app.state.settings = settings

    @app.exception_handler(Vf3dError)
    def _vf3d_error(request: Request, exc: Vf3dError) -> JSONResponse:
        return _error(400, str(exc))

    @app.get("/health")
    def health() -> dict:
        from catalog import schema
        from catalog.sql import ReadOnlySession

        out: dict[str, Any] = {"status": "ok", "schema_version": None, "snapshot": None}
        try:
            with ReadOnlySession(settings) as session:
                out["schema_version"] = int(schema.current_version(session.conn))
                name = settings.catalog.name.replace("'", "''")
                out["snapshot"] = int(session.conn.execute(f"SELECT id FROM ducklake_current_snapshot('{name}')").fetchone()[0])
        except Vf3dError as exc:  # the process is up; the catalog may not be initialised yet
            out["catalog_error"] = str(exc)
        return out

    @app.post("/sql")
    def sql(req: SqlRequest) -> dict:
        from catalog.sql import is_truncated, run_readonly

        if req.limit is not None and req.limit < 1:
            return _error(400, "limit must be at least 1 (or null for VF3D_SQL__ROW_LIMIT)")
        table = run_readonly(settings, req.sql, snapshot=req.snapshot, limit=req.limit)
        columns = list(table.column_names)
        rows = [[json_safe(row[c]) for c in columns] for row in table.to_pylist()] if columns else []
        return {"columns": columns, "rows": rows, "truncated": is_truncated(table)}

    @app.get("/samples/{sample_id}")
    def sample(sample_id: str):
        from catalog.sql import ReadOnlySession

        if not SAMPLE_ID_RE.fullmatch(sample_id):
            return _error(400, "sample_id must be 64 lowercase hex characters (a sha256)")
        with ReadOnlySession(settings) as session:
            cur = session.conn.execute(
                "SELECT * EXCLUDE (extrinsics, intrinsics) FROM samples_latest WHERE sample_id = ?", [sample_id]
            )
            columns = [d[0] for d in cur.description]
            row = cur.fetchone()
        if row is None:
            return _error(404, f"no sample {sample_id} in the catalog")
        return {c: json_safe(v) for c, v in zip(columns, row)}

    @app.get("/samples/{sample_id}/media/{name}")
    def media(sample_id: str, name: str):
        from catalog.records import media_key
        from catalog.store import open_store
        from catalog.store.errors import ObjectNotFoundError

        if name not in MEDIA_TYPES:
            return _error(404, f"no media {name!r}; use one of {', '.join(MEDIA_TYPES)}")
        if not SAMPLE_ID_RE.fullmatch(sample_id):
            return _error(400, "sample_id must be 64 lowercase hex characters (a sha256)")
        store = open_store(settings)
        key = media_key(sample_id, name)
        try:
            info = store.stat(key)
            stream = store.open(key)
        except ObjectNotFoundError:
            return _error(404, f"no {name} stored for sample {sample_id}")

        def chunks() -> Iterator[bytes]:
            with stream:
                while block := stream.read(CHUNK):
                    yield block

        headers = {"Content-Length": str(info.size), "Content-Disposition": f'inline; filename="{name}"'}
        return StreamingResponse(chunks(), media_type=MEDIA_TYPES[name], headers=headers)

    @app.get("/queue/stats")
    def queue_stats() -> dict:
        from engine.queue import PromptQueue

        queue = PromptQueue.from_settings(settings)
        try:
            return queue.stats()
        finally:
            queue.close()

    return app
