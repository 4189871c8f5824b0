"""Curators' read-only SQL: hostile statements are refused with a clear error and change nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from catalog.ducklake import Catalog
from catalog.sql import ReadOnlySession, SqlError, SqlRefusedError, SqlTimeoutError, is_truncated, run_readonly
from catalog_helpers import settings_for, synthetic_batch


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("sqlguard")
    settings = settings_for(root)
    with Catalog.open(settings) as cat:
        first = cat.commit_batch("b0", synthetic_batch(0, n=50)).snapshot_id
        cat.commit_batch("b1", synthetic_batch(1, n=50))
    return settings, root, first


def _state(cat, root: Path):
    """Everything a hostile statement might change: files on disk and the catalog's contents."""
    files = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in root.rglob("*") if p.is_file())
    counts = {t.name: t.rows for t in cat.info()["tables"]}
    return files, counts, cat.current_snapshot()


HOSTILE = [
    "DROP TABLE samples",
    "DELETE FROM samples",
    "INSERT INTO batches VALUES ('evil', 1, NULL, now())",
    "UPDATE samples SET category = 'evil'",
    "CREATE TABLE evil AS SELECT 1",
    "CREATE VIEW samples_evil AS SELECT 1",
    "COPY samples TO '{root}/objects/catalog/leak.csv'",
    "COPY (SELECT 1) TO '{tmp}/leak.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
    "ATTACH '{tmp}/evil.duckdb' AS evil",
    "DETACH vf3d",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA memory_limit = '1GB'",
    "CALL ducklake_expire_snapshots('vf3d', versions => [1])",
    "CHECKPOINT",
    "VACUUM",
    "EXPORT DATABASE '{tmp}/export'",
    "SELECT 1; DROP TABLE samples",
    "SELECT * FROM ducklake_set_option('vf3d', 'data_inlining_row_limit', 5)",
    "SELECT * FROM ducklake_merge_adjacent_files('vf3d')",
    "SELECT * FROM ducklake_cleanup_old_files('vf3d', cleanup_all => true)",
    "SELECT * FROM ducklake_expire_snapshots('vf3d', versions => [1])",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM sqlite_scan('{root}/catalog.sqlite', 'ducklake_snapshot')",
    "BEGIN TRANSACTION",
    "CREATE MACRO evil() AS 1",
    "EXPLAIN ANALYZE SELECT 1",
]


def test_hostile_statements_refused_and_change_nothing(lake, tmp_path):
    settings, root, _ = lake
    with Catalog.open(settings, migrate=False) as cat, ReadOnlySession(settings) as session:
        before = _state(cat, root)
        for i, template in enumerate(HOSTILE):
            sql = template.format(root=root, tmp=tmp_path)
            with pytest.raises(SqlRefusedError, match="refused") as info:
                # one long-lived session (as the HTTP API keeps) and, for a few, a fresh one
                session.run(sql) if i % 4 else run_readonly(settings, sql)
            assert "\n" not in str(info.value), sql
            assert _state(cat, root) == before, f"state changed after: {sql}"
        assert session.run("SELECT count(*) AS n FROM samples").column("n")[0].as_py() == 100
    assert list(tmp_path.iterdir()) == []  # nothing written outside the catalog either
    assert len(HOSTILE) >= 12


def test_refusal_messages_say_why():
    from catalog.sql import check_statement

    with pytest.raises(SqlRefusedError, match="DROP statements are not allowed"):
        check_statement("DROP TABLE samples")
    with pytest.raises(SqlRefusedError, match="exactly one statement"):
        check_statement("SELECT 1; SELECT 2")
    with pytest.raises(SqlError, match="does not parse"):
        check_statement("SELEC 1")


def test_reads_work(lake):
    settings, _, first = lake
    assert run_readonly(settings, "SELECT count(*) AS n FROM samples").column("n")[0].as_py() == 100
    assert run_readonly(settings, "FROM samples_latest SELECT count(*) AS n").column("n")[0].as_py() == 100
    summary = run_readonly(settings, "SELECT * FROM quality_summary ORDER BY category").to_pylist()
    assert sum(r["n"] for r in summary) == 100
    for r in summary:
        assert r["overall_p10"] <= r["overall_p50"] <= r["overall_p90"]
    assert run_readonly(settings, "DESCRIBE samples").num_rows == 31
    assert run_readonly(settings, "SELECT count(*) AS n FROM ducklake_snapshots('vf3d')").column("n")[0].as_py() >= 4
    # reading the catalog's own Parquet files is a read, and allowed
    data = settings.root.resolve() / "objects" / "catalog"
    got = run_readonly(settings, f"SELECT count(*) AS n FROM read_parquet('{data}/**/*.parquet')")
    assert got.column("n")[0].as_py() >= 100


def test_snapshot_pin(lake):
    settings, _, first = lake
    assert run_readonly(settings, "SELECT count(*) AS n FROM samples", snapshot=first).column("n")[0].as_py() == 50
    assert run_readonly(settings, "SELECT count(*) AS n FROM samples_latest", snapshot=first).column("n")[0].as_py() == 50
    with pytest.raises(SqlError, match="snapshot 9999 does not exist"):
        run_readonly(settings, "SELECT 1", snapshot=9999)


def test_row_limit_and_timeout(lake):
    settings, _, _ = lake
    table = run_readonly(settings, "SELECT * FROM range(1000)", limit=10)
    assert table.num_rows == 10 and is_truncated(table)
    assert not is_truncated(run_readonly(settings, "SELECT * FROM range(10)", limit=10))
    with pytest.raises(SqlTimeoutError, match="interrupted"):
        run_readonly(settings, "SELECT count(*) FROM range(100000000000) a", timeout_s=0.5)


def test_session_reuse_survives_refusals(lake):
    settings, _, _ = lake
    with ReadOnlySession(settings) as session:
        with pytest.raises(SqlRefusedError):
            session.run("SET enable_external_access = true")
        with pytest.raises(SqlRefusedError):
            session.run("SELECT * FROM read_csv('/etc/passwd')")
        assert session.run("SELECT current_setting('enable_external_access') AS v").column("v")[0].as_py() is False
        assert session.run("SELECT count(*) AS n FROM samples").column("n")[0].as_py() == 100


def test_secrets_stay_redacted(lake):
    settings, _, _ = lake
    with pytest.raises(SqlError):
        run_readonly(settings, "SELECT * FROM duckdb_secrets(redact = false)")


@pytest.mark.s3
def test_s3_secret_scoped_to_catalog(s3_server, tmp_path):
    """On S3 the read connection's secret covers only <prefix>/catalog/: media objects stay unreadable."""
    settings = settings_for(tmp_path, s3_server, prefix="guard")
    with Catalog.open(settings, create_bucket=True) as cat:
        cat.commit_batch("b0", synthetic_batch(0, n=5))
    assert run_readonly(settings, "SELECT count(*) AS n FROM samples").column("n")[0].as_py() == 5
    for sql in ["SELECT * FROM read_blob('s3://vf3dtest/guard/samples/*/*/views.npz')",
                "SELECT * FROM read_csv('s3://vf3dtest/other/x.csv')"]:
        with pytest.raises(SqlRefusedError):
            run_readonly(settings, sql)
    assert os.environ.get("VF3D_S3__ENDPOINT") is None
