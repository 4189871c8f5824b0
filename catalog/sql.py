"""Curators' read-only SQL over the catalog, enforced by DuckDB itself.

Four layers, each DuckDB's own machinery rather than string matching:

1. DuckDB's parser (``duckdb.extract_statements``): exactly one statement, of type SELECT.
2. DuckDB's parse tree (``json_serialize_sql``): no call to a function that can change the
   catalog or reach around it (DuckLake maintenance, ``ducklake_set_option``, ``query()``,
   ``sqlite_*``/``postgres_*`` scanners, ``checkpoint``) — these are table functions a SELECT
   could otherwise invoke.
3. A separate connection that attaches the catalog ``READ_ONLY`` (pinned with
   ``SNAPSHOT_VERSION`` when asked), with an S3 secret scoped to the catalog's data prefix.
4. ``allowed_directories``/``allowed_paths`` = the catalog's data path and metadata file, then
   ``enable_external_access=false`` and ``lock_configuration=true``: no other file or URL can
   be read, and no setting can be changed back.

Row limit (``VF3D_SQL__ROW_LIMIT``) and timeout (``VF3D_SQL__TIMEOUT_S``; ``conn.interrupt()``
from a timer thread) bound every query.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from catalog.errors import Vf3dError


class SqlError(Vf3dError):
    """A curator query failed (syntax error, unknown column, ...)."""


class SqlRefusedError(SqlError):
    """A statement was refused because it is not a plain read of the catalog."""


class SqlTimeoutError(SqlError):
    """A query ran past its time limit and was interrupted."""


# Table/scalar functions that could write, run maintenance, or read around the catalog.
DENIED_FUNCTIONS = {
    "query", "query_table", "checkpoint", "force_checkpoint",
    "sqlite_scan", "sqlite_query", "sqlite_attach", "postgres_scan", "postgres_scan_pushdown",
    "postgres_query", "postgres_execute", "postgres_attach", "postgres_configure_pool",
}
# DuckLake functions that only read; every other ducklake_* function is refused.
READONLY_DUCKLAKE = {
    "ducklake_snapshots", "ducklake_table_info", "ducklake_list_files", "ducklake_table_changes",
    "ducklake_table_insertions", "ducklake_table_deletions", "ducklake_current_snapshot",
    "ducklake_last_committed_snapshot", "ducklake_settings", "ducklake_options",
}


def check_statement(sql: str):
    """Return the single SELECT statement in ``sql`` or raise ``SqlRefusedError`` naming why."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(f"SQL does not parse: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise SqlRefusedError(
            f"refused: exactly one statement per query, got {len(statements)}; send them one at a time"
        )
    stmt = statements[0]
    if stmt.type != duckdb.StatementType.SELECT:
        kind = stmt.type.name
        raise SqlRefusedError(
            f"refused: {kind} statements are not allowed; curator SQL is read-only (SELECT/WITH/FROM/"
            "DESCRIBE/SUMMARIZE only)"
        )
    return stmt


def _denied_calls(tree) -> list[str]:
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            name = node.get("function_name")
            if isinstance(name, str):
                low = name.lower()
                if low in DENIED_FUNCTIONS or (low.startswith("ducklake_") and low not in READONLY_DUCKLAKE):
                    found.append(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return found


def check_functions(conn, sql: str) -> None:
    """Refuse calls to functions that can change the catalog (read from DuckDB's parse tree)."""
    text = conn.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()[0]
    tree = json.loads(text)
    if tree.get("error"):
        # DESCRIBE/SHOW/SUMMARIZE are SELECTs DuckDB cannot serialise; they call no functions.
        return
    denied = _denied_calls(tree)
    if denied:
        raise SqlRefusedError(
            f"refused: function {denied[0]}() can modify the catalog or read outside it; "
            "curator SQL may only read (use `vf3d catalog compact|gc` for maintenance)"
        )


@dataclass
class _Target:
    attach: str
    data_path: str
    allowed_paths: list[str]
    secret: str | None


def _target(settings) -> _Target:
    from catalog import duck
    from catalog.ducklake import data_path, metadata_target
    from catalog.store import open_store

    store = open_store(settings)
    attach, desc = metadata_target(settings)
    path = data_path(store)
    allowed = []
    if not settings.catalog.metadata_dsn or settings.catalog.metadata_dsn.startswith("sqlite:"):
        allowed = [desc, desc + "-journal", desc + "-wal", desc + "-shm"]
    secret = duck.s3_secret_sql(settings, scope=path, name="vf3d_catalog_read") if settings.uses_s3 else None
    return _Target(attach, path, allowed, secret)


class ReadOnlySession:
    """A locked-down DuckDB connection over the catalog, optionally pinned to a snapshot.

    Open once and run many queries (the HTTP API and benchmarks do); ``run_readonly`` is the
    one-shot form.
    """

    def __init__(self, settings=None, snapshot: int | None = None):
        from catalog import duck
        from catalog.settings import load_settings

        self.settings = settings or load_settings()
        self.snapshot = snapshot
        name = self.settings.catalog.name
        target = _target(self.settings)
        q = lambda s: str(s).replace("'", "''")  # noqa: E731
        conn = duck.connect(duck.extensions_for(self.settings))
        try:
            if target.secret:
                conn.execute(target.secret)
            opts = ["READ_ONLY"]
            if snapshot is not None:
                opts.append(f"SNAPSHOT_VERSION {int(snapshot)}")
            conn.execute(f"ATTACH '{q(target.attach)}' AS \"{name}\" ({', '.join(opts)})")
            conn.execute(f'USE "{name}"')
        except Exception as exc:
            conn.close()
            text = _first_line(exc)
            if snapshot is not None and "snapshot" in text.lower():
                raise SqlError(f"snapshot {snapshot} does not exist: {text}; list them with `vf3d catalog snapshots`") from None
            raise SqlError(f"cannot open the catalog read-only: {text}; run `vf3d catalog init` first?") from None
        dirs = [target.data_path]
        conn.execute(f"SET allowed_directories = [{', '.join(repr(d) for d in dirs)}]")
        if target.allowed_paths:
            conn.execute(f"SET allowed_paths = [{', '.join(repr(p) for p in target.allowed_paths)}]")
        conn.execute("SET enable_external_access = false")
        conn.execute("SET lock_configuration = true")
        self.conn = conn
        self._lock = threading.Lock()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "ReadOnlySession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, sql: str, limit: int | None = None, timeout_s: float | None = None):
        """Run one read-only query -> pyarrow Table (schema metadata ``vf3d.truncated`` says if
        rows were cut at ``limit``)."""
        import duckdb
        import pyarrow as pa

        limit = int(limit or self.settings.sql.row_limit)
        timeout_s = float(timeout_s or self.settings.sql.timeout_s)
        stmt = check_statement(sql)
        with self._lock:
            check_functions(self.conn, stmt.query)
            timer = threading.Timer(timeout_s, self.conn.interrupt)
            timer.daemon = True
            start = time.monotonic()
            timer.start()
            try:
                reader = self.conn.execute(stmt.query).fetch_record_batch(min(limit + 1, 100_000))
                batches, count = [], 0
                for batch in reader:
                    batches.append(batch)
                    count += batch.num_rows
                    if count > limit:
                        break
                table = pa.Table.from_batches(batches, schema=reader.schema)
            except duckdb.InterruptException:
                raise SqlTimeoutError(
                    f"query interrupted after {time.monotonic() - start:.1f} s (limit {timeout_s:g} s); "
                    "narrow it, or raise --timeout / VF3D_SQL__TIMEOUT_S"
                ) from None
            except duckdb.PermissionException as exc:
                raise SqlRefusedError(f"refused by DuckDB: {_first_line(exc)}") from None
            except duckdb.Error as exc:
                text = _first_line(exc)
                if "read-only" in text.lower() or "read only" in text.lower():
                    raise SqlRefusedError(f"refused by DuckDB: {text}") from None
                raise SqlError(text) from None
            finally:
                timer.cancel()
        truncated = table.num_rows > limit
        if truncated:
            table = table.slice(0, limit)
        meta = dict(table.schema.metadata or {})
        meta[b"vf3d.truncated"] = b"true" if truncated else b"false"
        meta[b"vf3d.limit"] = str(limit).encode()
        return table.replace_schema_metadata(meta)


def run_readonly(settings, sql: str, snapshot: int | None = None, limit: int | None = None, timeout_s: float | None = None):
    """Run one curator query on a fresh locked-down connection -> pyarrow Table."""
    with ReadOnlySession(settings, snapshot=snapshot) as session:
        return session.run(sql, limit=limit, timeout_s=timeout_s)


def is_truncated(table) -> bool:
    return (table.schema.metadata or {}).get(b"vf3d.truncated") == b"true"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
