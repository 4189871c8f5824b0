"""The catalog's tables, as data: ordered, versioned migrations applied idempotently.

Each migration is ``(version, name, [sql, ...])``; statements run unqualified inside the
attached DuckLake catalog (the connection has ``USE``d it). ``apply_migrations`` applies the
missing ones, each in its own DuckLake transaction together with its row in
``schema_migrations`` — so a catalog opened twice, or by two processes at once, ends up with
every migration exactly once (a concurrent duplicate conflicts in DuckLake and is re-checked).
"""

from __future__ import annotations

import time

MIGRATIONS_TABLE = "schema_migrations"

SAMPLE_COLUMNS: dict[str, str] = {
    "sample_id": "VARCHAR",
    "prompt_id": "VARCHAR",
    "prompt_text": "VARCHAR",
    "category": "VARCHAR",
    "n_views": "INTEGER",
    "resolution": "INTEGER",
    "elevation_deg": "DOUBLE",
    "azimuths_deg": "DOUBLE[]",
    "radius": "DOUBLE",
    "fov_deg": "DOUBLE",
    "extrinsics": "FLOAT[]",
    "intrinsics": "FLOAT[]",
    "checkpoint_id": "VARCHAR",
    "seed": "BIGINT",
    "sampler": "VARCHAR",
    "steps": "INTEGER",
    "guidance_scale": "DOUBLE",
    "uri_views": "VARCHAR",
    "uri_video": "VARCHAR",
    "uri_sheet": "VARCHAR",
    "score_consistency": "DOUBLE",
    "score_framing": "DOUBLE",
    "score_sharpness": "DOUBLE",
    "score_prompt_color": "DOUBLE",
    "score_clip": "DOUBLE",
    "score_overall": "DOUBLE",
    "scorer_version": "VARCHAR",
    "status": "VARCHAR",
    "run_id": "VARCHAR",
    "batch_id": "VARCHAR",
    "created_at": "TIMESTAMPTZ",
}

SCORE_COLUMNS = [c for c in SAMPLE_COLUMNS if c.startswith("score_")]

PROMPT_COLUMNS: dict[str, str] = {
    "prompt_id": "VARCHAR",
    "text": "VARCHAR",
    "source": "VARCHAR",
    "source_line": "BIGINT",
    "status": "VARCHAR",
    "reject_reason": "VARCHAR",
    "category": "VARCHAR",
    "attributes": "JSON",
    "filter_version": "VARCHAR",
    "duplicate_of": "VARCHAR",
    "created_at": "TIMESTAMPTZ",
}


def _create(table: str, columns: dict[str, str]) -> str:
    cols = ",\n  ".join(f"{name} {typ}" for name, typ in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {cols}\n)"


def _quality_summary() -> str:
    parts = ["category", "count(*) AS n", "count(*) FILTER (WHERE status = 'kept') AS n_kept"]
    for col in SCORE_COLUMNS:
        short = col.removeprefix("score_")
        parts += [
            f"avg({col}) AS {short}_mean",
            f"quantile_cont({col}, 0.1) AS {short}_p10",
            f"quantile_cont({col}, 0.5) AS {short}_p50",
            f"quantile_cont({col}, 0.9) AS {short}_p90",
        ]
    return "CREATE OR REPLACE VIEW quality_summary AS SELECT " + ", ".join(parts) + " FROM samples_latest GROUP BY category"


MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "core tables",
        [
            _create("prompts", PROMPT_COLUMNS),
            _create("samples", SAMPLE_COLUMNS),
            _create(
                "batches",
                {"batch_id": "VARCHAR", "n_samples": "INTEGER", "run_id": "VARCHAR", "committed_at": "TIMESTAMPTZ"},
            ),
            _create(
                "subsets",
                {
                    "subset_id": "VARCHAR", "name": "VARCHAR", "snapshot_id": "BIGINT", "query": "VARCHAR",
                    "n_samples": "BIGINT", "seed": "BIGINT", "parent_id": "VARCHAR", "description": "VARCHAR",
                    "created_at": "TIMESTAMPTZ",
                },
            ),
            _create("subset_members", {"subset_id": "VARCHAR", "sample_id": "VARCHAR", "position": "BIGINT"}),
            _create(
                "experiments",
                {
                    "experiment_id": "VARCHAR", "name": "VARCHAR", "description": "VARCHAR", "config": "JSON",
                    "created_at": "TIMESTAMPTZ",
                },
            ),
            _create(
                "runs",
                {
                    "run_id": "VARCHAR", "kind": "VARCHAR", "experiment_id": "VARCHAR", "config": "JSON",
                    "status": "VARCHAR", "host": "VARCHAR", "metrics": "JSON", "started_at": "TIMESTAMPTZ",
                    "finished_at": "TIMESTAMPTZ",
                },
            ),
            # One row every batch commit updates: two concurrent commits both delete from this
            # table, which DuckLake treats as a logical conflict — so the batch-id check inside
            # each commit is serialised (see catalog.ducklake.Catalog.commit_batch).
            _create("commit_lock", {"id": "INTEGER", "commits": "BIGINT", "last_batch": "VARCHAR"}),
            "INSERT INTO commit_lock VALUES (1, 0, NULL)",
        ],
    ),
    (
        2,
        "curator views",
        [
            # The newest row of each sample (re-scoring appends a row; the latest wins).
            "CREATE OR REPLACE VIEW samples_latest AS SELECT * FROM samples "
            "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at DESC, batch_id DESC) = 1",
            _quality_summary(),
        ],
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(conn) -> int:
    """Highest applied migration (0 for a fresh catalog)."""
    exists = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name = ?",
        [MIGRATIONS_TABLE],
    ).fetchone()[0]
    if not exists:
        return 0
    return conn.execute(f"SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}").fetchone()[0]


def apply_migrations(conn, attempts: int = 8) -> list[int]:
    """Apply every missing migration; returns the versions this call applied (empty when current)."""
    applied: list[int] = []
    for version, name, statements in MIGRATIONS:
        for attempt in range(attempts):
            if current_version(conn) >= version:
                break
            try:
                conn.execute("BEGIN TRANSACTION")
                if version == 1:
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                        "(version INTEGER, name VARCHAR, applied_at TIMESTAMPTZ)"
                    )
                for sql in statements:
                    conn.execute(sql)
                conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, ?, now())", [version, name])
                db = conn.execute("SELECT current_database()").fetchone()[0].replace("'", "''")
                conn.execute(f"CALL ducklake_set_commit_message('{db}', 'vf3d', ?)", [f"migration {version}: {name}"])
                conn.execute("COMMIT")
                applied.append(version)
                break
            except Exception as exc:
                _rollback(conn)
                if attempt == attempts - 1 or not is_conflict(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
    return applied


def is_conflict(exc: BaseException) -> bool:
    """A DuckLake/SQLite/Postgres write conflict that a retry can resolve."""
    text = str(exc).lower()
    return any(s in text for s in ("conflict", "database is locked", "could not serialize", "deadlock", "busy"))


def _rollback(conn) -> None:
    try:
        conn.execute("ROLLBACK")
    except Exception:
        pass
