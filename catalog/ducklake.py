"""The DuckLake catalog: where every sample row lives, with atomic batches and snapshots.

Metadata sits in SQLite (``<root>/catalog.sqlite``, the default) or Postgres
(``catalog.metadata_dsn``); Parquet data files sit in the object store under ``catalog/``
(a local directory, or ``s3://bucket/prefix/catalog/`` through httpfs). Every commit is a
DuckLake snapshot; reads can be pinned to one (``AT (VERSION => n)``).

``commit_batch`` uploads media objects first, then inserts the rows and the ``batches`` row
in ONE DuckLake transaction; objects of batches that never commit are orphans that ``gc``
removes after a grace period.
"""

from __future__ import annotations

import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

from catalog import schema
from catalog.errors import Vf3dError
from catalog.records import SampleRecord, media_column, media_key, rows_to_arrow, utcnow


class CatalogError(Vf3dError):
    """The catalog cannot be opened or written; the message names the setting or the fix."""


class CommitConflictError(CatalogError):
    """A batch commit kept conflicting with concurrent commits."""


@dataclass
class CommitResult:
    batch_id: str
    added: int  # rows inserted (0 when the batch was already committed)
    snapshot_id: int | None  # the snapshot this commit created (None for a no-op)
    objects: int = 0  # media objects uploaded
    bytes: int = 0


@dataclass
class Snapshot:
    snapshot_id: int
    time: datetime
    schema_version: int
    changes: dict
    author: str | None = None
    message: str | None = None


@dataclass
class GcResult:
    removed: list[str] = field(default_factory=list)  # object keys deleted (or that would be, dry run)
    bytes: int = 0
    kept_recent: int = 0  # orphans younger than the grace period, left for in-flight batches
    scanned: int = 0


@dataclass
class TableInfo:
    name: str
    rows: int
    files: int
    bytes: int


def metadata_target(settings) -> tuple[str, str]:
    """(``ducklake:...`` attach string, human description) for the settings' metadata store."""
    dsn = settings.catalog.metadata_dsn.strip()
    if not dsn:
        path = Path(settings.root).expanduser().resolve() / "catalog.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"ducklake:sqlite:{path}", str(path)
    if dsn.startswith(("postgresql://", "postgres://")):
        return f"ducklake:postgres:{libpq_keywords(dsn)}", dsn
    if dsn.startswith("sqlite:"):
        path = Path(dsn.removeprefix("sqlite:///") if dsn.startswith("sqlite:///") else dsn.removeprefix("sqlite:"))
        path = path.expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"ducklake:sqlite:{path}", str(path)
    raise CatalogError(
        f"setting VF3D_CATALOG__METADATA_DSN: unsupported DSN {dsn!r}; use 'postgresql://user@host:port/db' "
        "or leave it empty for a SQLite file under VF3D_ROOT"
    )


def libpq_keywords(dsn: str) -> str:
    """postgresql://user:pw@host:port/db?opt=v -> 'host=... port=... user=... password=... dbname=...'."""
    from urllib.parse import parse_qsl, unquote, urlparse

    url = urlparse(dsn)
    parts = {
        "host": url.hostname,
        "port": url.port,
        "user": unquote(url.username) if url.username else None,
        "password": unquote(url.password) if url.password else None,
        "dbname": url.path.lstrip("/") or None,
    }
    parts.update(dict(parse_qsl(url.query)))
    return " ".join(f"{k}={v}" for k, v in parts.items() if v not in (None, ""))


def data_path(store) -> str:
    """Where DuckLake writes Parquet: ``<store base>/catalog/``."""
    return store.base_uri.rstrip("/") + "/catalog/"


def _check_postgres(dsn: str) -> None:
    """Fail fast with a one-line error when the metadata Postgres cannot be reached."""
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(
            f"setting VF3D_CATALOG__METADATA_DSN: cannot connect to Postgres ({first}); "
            "check host, port, user, database name and that the server is running"
        ) from None


class Catalog:
    """An open DuckLake catalog (one DuckDB connection). Use ``Catalog.open(settings)``."""

    def __init__(self, settings, conn, store, name: str, data_path: str, metadata: str):
        self.settings = settings
        self.conn = conn
        self.store = store
        self.name = name
        self.data_path = data_path
        self.metadata = metadata

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, settings=None, *, migrate: bool = True, read_only: bool = False, create_bucket: bool = False) -> "Catalog":
        """Attach the catalog (creating its tables on first use) and apply missing migrations.

        A missing S3 bucket is an error naming VF3D_S3__BUCKET (a typo must not silently start
        an empty catalog elsewhere); ``create_bucket=True`` — ``vf3d catalog init`` — creates it.
        """
        from catalog import duck
        from catalog.settings import load_settings
        from catalog.store import duckdb_secret_sql, open_store

        settings = settings or load_settings()
        store = open_store(settings, create=create_bucket and not read_only, check=settings.uses_s3)
        target, metadata = metadata_target(settings)
        if settings.catalog.metadata_dsn:
            _check_postgres(settings.catalog.metadata_dsn)
        name = settings.catalog.name
        path = data_path(store)
        conn = duck.connect(duck.extensions_for(settings))
        try:
            if settings.uses_s3:
                conn.execute(duckdb_secret_sql(settings))
            opts = [f"DATA_PATH '{_q(path)}'"] + (["READ_ONLY"] if read_only else [])
            conn.execute(f"ATTACH '{_q(target)}' AS {_ident(name)} ({', '.join(opts)})")
            conn.execute(f"USE {_ident(name)}")
            if migrate and not read_only:
                schema.apply_migrations(conn)
        except Vf3dError:
            conn.close()
            raise
        except Exception as exc:
            conn.close()
            raise CatalogError(f"cannot open the catalog at {metadata} (data in {path}): {_first_line(exc)}") from None
        return cls(settings, conn, store, name, path, metadata)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return schema.current_version(self.conn)

    # ---------------------------------------------------------------- writes
    def commit_batch(
        self,
        batch_id: str,
        samples: list[SampleRecord],
        *,
        run_id: str | None = None,
        _fault: Callable[[], None] | None = None,
        _race: Callable[[], None] | None = None,
        attempts: int = 8,
    ) -> CommitResult:
        """Upload the samples' media, then insert rows + the ``batches`` row in one transaction.

        A batch id already committed is a no-op (``added=0``), also when two processes commit
        the same id at once: every commit updates the ``commit_lock`` row, so concurrent
        commits conflict in DuckLake and the loser re-checks ``batches`` before retrying.
        Test hooks: ``_fault`` runs after the uploads and before the transaction; ``_race`` runs
        inside the transaction after the batch-id check (to commit a rival in between).
        """
        if not batch_id:
            raise CatalogError("commit_batch needs a non-empty batch_id (e.g. a hash of the leased prompt ids)")
        if self._batch_committed(batch_id):
            return CommitResult(batch_id, 0, None)
        now = utcnow()
        rows, uploads = [], []
        for rec in samples:
            row = rec.row()
            for name, data in rec.media.items():
                key = media_key(rec.sample_id, name)
                uploads.append((key, data))
                col = media_column(name)
                if col and not row.get(col):
                    row[col] = self.store.uri_for(key)
            row["batch_id"] = batch_id
            row["run_id"] = row["run_id"] or run_id
            row["created_at"] = row["created_at"] or now
            rows.append(row)
        nbytes = self._upload(uploads)
        if _fault is not None:
            _fault()
        return self.commit_table(
            batch_id, rows_to_arrow(rows), run_id=run_id, now=now, objects=len(uploads), nbytes=nbytes,
            _race=_race, attempts=attempts,
        )

    def commit_table(
        self,
        batch_id: str,
        table,
        *,
        run_id: str | None = None,
        now: datetime | None = None,
        objects: int = 0,
        nbytes: int = 0,
        _race: Callable[[], None] | None = None,
        attempts: int = 8,
    ) -> CommitResult:
        """The transaction half of ``commit_batch`` for rows already in Arrow (samples schema,
        ``batch_id``/``created_at`` filled, media already uploaded): bulk loaders and benchmarks."""
        now = now or utcnow()
        cols = ", ".join(schema.SAMPLE_COLUMNS)
        n = table.num_rows
        for attempt in range(attempts):
            conn = self.conn
            try:
                conn.execute("BEGIN TRANSACTION")
                if conn.execute("SELECT count(*) FROM batches WHERE batch_id = ?", [batch_id]).fetchone()[0]:
                    conn.execute("ROLLBACK")
                    return CommitResult(batch_id, 0, None)
                conn.execute(
                    "UPDATE commit_lock SET commits = commits + 1, last_batch = ? WHERE id = 1", [batch_id]
                )
                if _race is not None:
                    _race()
                conn.register("_vf3d_batch", table)
                conn.execute(f"INSERT INTO samples ({cols}) SELECT {cols} FROM _vf3d_batch")
                conn.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", [batch_id, n, run_id, now])
                conn.execute(
                    f"CALL ducklake_set_commit_message('{_q(self.name)}', ?, ?)",
                    [socket.gethostname(), f"batch {batch_id}: {n} samples"],
                )
                conn.execute("COMMIT")
                conn.unregister("_vf3d_batch")
                snap = conn.execute(f"SELECT id FROM ducklake_last_committed_snapshot('{_q(self.name)}')").fetchone()
                return CommitResult(batch_id, n, snap[0] if snap else None, objects, nbytes)
            except Exception as exc:
                schema._rollback(conn)
                try:
                    conn.unregister("_vf3d_batch")
                except Exception:
                    pass
                if not schema.is_conflict(exc):
                    raise CatalogError(f"batch {batch_id} did not commit: {_first_line(exc)}") from exc
                time.sleep(min(2.0, 0.02 * 2**min(attempt, 6)) * random.random())
        raise CommitConflictError(
            f"batch {batch_id} conflicted with concurrent commits {attempts} times; "
            "run one batched committer per fleet (DESIGN.md §6) or retry later"
        )

    def _batch_committed(self, batch_id: str) -> bool:
        return bool(self.conn.execute("SELECT count(*) FROM batches WHERE batch_id = ?", [batch_id]).fetchone()[0])

    def _upload(self, uploads: list[tuple[str, bytes]]) -> int:
        if not uploads:
            return 0
        with ThreadPoolExecutor(max_workers=min(8, len(uploads))) as pool:
            list(pool.map(lambda kv: self.store.put(kv[0], kv[1]), uploads))
        return sum(len(d) for _, d in uploads)

    def write_prompts(self, rows: Iterable[dict]) -> int:
        """Upsert prompts rows by ``prompt_id`` in one transaction; returns rows written."""
        import pyarrow as pa

        rows = list({r["prompt_id"]: r for r in rows}.values())
        if not rows:
            return 0
        import json

        types = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "JSON": pa.string(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC")}
        now = utcnow()
        data = []
        for r in rows:
            d = {c: r.get(c) for c in schema.PROMPT_COLUMNS}
            if d["attributes"] is not None and not isinstance(d["attributes"], str):
                d["attributes"] = json.dumps(d["attributes"])
            d["created_at"] = d["created_at"] or now
            data.append(d)
        table = pa.Table.from_pylist(
            data, schema=pa.schema([(c, types[t]) for c, t in schema.PROMPT_COLUMNS.items()])
        )
        cols = ", ".join(schema.PROMPT_COLUMNS)
        for attempt in range(20):
            try:
                self.conn.execute("BEGIN TRANSACTION")
                self.conn.register("_vf3d_prompts", table)
                self.conn.execute("DELETE FROM prompts WHERE prompt_id IN (SELECT prompt_id FROM _vf3d_prompts)")
                self.conn.execute(f"INSERT INTO prompts ({cols}) SELECT {cols} FROM _vf3d_prompts")
                self.conn.execute("COMMIT")
                return len(rows)
            except Exception as exc:
                schema._rollback(self.conn)
                if not schema.is_conflict(exc) or attempt == 19:
                    raise CatalogError(f"prompts did not commit: {_first_line(exc)}") from exc
                time.sleep(0.05 * random.random() * (attempt + 1))
            finally:
                try:
                    self.conn.unregister("_vf3d_prompts")
                except Exception:
                    pass
        return 0

    # ---------------------------------------------------------------- reads
    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first."""
        rows = self.conn.execute(
            f"SELECT snapshot_id, snapshot_time, schema_version, changes, author, commit_message "
            f"FROM ducklake_snapshots('{_q(self.name)}') ORDER BY snapshot_id"
        ).fetchall()
        return [Snapshot(*r) for r in rows]

    def current_snapshot(self) -> int:
        return self.conn.execute(f"SELECT id FROM ducklake_current_snapshot('{_q(self.name)}')").fetchone()[0]

    def read(self, sql: str, params: list | None = None):
        """Run trusted (vf3d's own) SQL on the writer connection -> pyarrow Table."""
        return self.conn.execute(sql, params or []).to_arrow_table()

    def query(self, sql: str, snapshot: int | None = None, limit: int | None = None, timeout_s: float | None = None):
        """Curators' read-only SQL (see ``catalog.sql.run_readonly``) -> pyarrow Table."""
        from catalog.sql import run_readonly

        return run_readonly(self.settings, sql, snapshot=snapshot, limit=limit, timeout_s=timeout_s)

    def info(self) -> dict:
        """Tables (rows, data files, bytes), the last snapshot, where metadata and data live."""
        stats = {
            r[0]: r
            for r in self.conn.execute(
                f"SELECT table_name, file_count, file_size_bytes FROM ducklake_table_info('{_q(self.name)}')"
            ).fetchall()
        }
        tables = []
        names = [
            r[0]
            for r in self.conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY table_name", [self.name]
            ).fetchall()
        ]
        for name in names:
            rows = self.conn.execute(f"SELECT count(*) FROM {_ident(name)}").fetchone()[0]
            _, files, nbytes = stats.get(name, (name, 0, 0))
            tables.append(TableInfo(name, rows, int(files or 0), int(nbytes or 0)))
        snaps = self.snapshots()
        return {
            "metadata": self.metadata,
            "data_path": self.data_path,
            "schema_version": self.schema_version,
            "tables": tables,
            "last_snapshot": snaps[-1] if snaps else None,
            "snapshots": len(snaps),
        }

    # ---------------------------------------------------------------- maintenance
    def compact(self, expire_older_than_s: float | None = None, cleanup: bool = True) -> dict:
        """Flush inlined rows, merge small adjacent files; optionally expire old snapshots and
        delete files no snapshot needs any more. Returns data-file counts before/after."""
        before = self._file_count()
        n = _q(self.name)
        self.conn.execute(f"CALL ducklake_flush_inlined_data('{n}')")
        self.conn.execute(f"CALL ducklake_merge_adjacent_files('{n}')")
        expired = 0
        if expire_older_than_s is not None:
            cutoff = datetime.now(timezone.utc) - timedelta(seconds=expire_older_than_s)
            expired = len(
                self.conn.execute(
                    f"CALL ducklake_expire_snapshots('{n}', older_than => ?::TIMESTAMPTZ)", [cutoff]
                ).fetchall()
            )
        removed = 0
        if cleanup:
            removed = len(self.conn.execute(f"CALL ducklake_cleanup_old_files('{n}', cleanup_all => true)").fetchall())
        return {"files_before": before, "files_after": self._file_count(), "snapshots_expired": expired, "files_deleted": removed}

    def _file_count(self) -> int:
        row = self.conn.execute(f"SELECT coalesce(sum(file_count), 0) FROM ducklake_table_info('{_q(self.name)}')").fetchone()
        return int(row[0])

    def gc(self, grace_s: float = 3600.0, dry_run: bool = False) -> GcResult:
        """Delete media objects under ``samples/`` that no committed row references.

        Only objects older than ``grace_s`` go: younger ones may belong to a batch still between
        its uploads and its commit. An object is referenced when its sample id (the key's third
        part) is a committed sample."""
        referenced = {r[0] for r in self.conn.execute("SELECT DISTINCT sample_id FROM samples").fetchall()}
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=grace_s)
        result = GcResult()
        for obj in self.store.list("samples/"):
            result.scanned += 1
            parts = obj.key.split("/")
            if len(parts) >= 3 and parts[2] in referenced:
                continue
            modified = obj.modified if obj.modified.tzinfo else obj.modified.replace(tzinfo=timezone.utc)
            if modified > cutoff:
                result.kept_recent += 1
                continue
            result.removed.append(obj.key)
            result.bytes += obj.size
        if result.removed and not dry_run:
            self.store.delete_many(result.removed)
        return result


def _q(text: str) -> str:
    """Escape a value for a single-quoted SQL literal."""
    return str(text).replace("'", "''")


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
