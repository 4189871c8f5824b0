"""Migrations are idempotent; batch commits stay exactly-once across processes; ids are deterministic."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from catalog import schema
from catalog.ducklake import Catalog, CatalogError
from catalog.errors import Vf3dError
from catalog.records import SampleRecord, media_key, sample_id
from catalog_helpers import settings_for, synthetic_batch

EXPECTED_TABLES = {"prompts", "samples", "batches", "subsets", "subset_members", "experiments", "runs"}


def test_migrations_idempotent(tmp_path):
    settings = settings_for(tmp_path)
    with Catalog.open(settings) as cat:
        assert cat.schema_version == schema.LATEST_VERSION
        tables = {t.name for t in cat.info()["tables"]}
        assert EXPECTED_TABLES <= tables
        snap = cat.current_snapshot()
        cols = [r[0] for r in cat.conn.execute("DESCRIBE samples").fetchall()]
        assert cols == list(schema.SAMPLE_COLUMNS)
    with Catalog.open(settings) as cat:  # opening again applies nothing and writes no snapshot
        assert schema.apply_migrations(cat.conn) == []
        assert cat.current_snapshot() == snap
        assert cat.read("SELECT version FROM schema_migrations ORDER BY version").column(0).to_pylist() == [
            v for v, _, _ in schema.MIGRATIONS
        ]


def test_sample_id_deterministic():
    a = sample_id("p1", 0, 7, "ck")
    assert a == sample_id("p1", 0, 7, "ck") and len(a) == 64
    assert len({a, sample_id("p1", 1, 7, "ck"), sample_id("p1", 0, 8, "ck"), sample_id("p1", 0, 7, "ck2")}) == 4
    assert media_key(a, "views.npz") == f"samples/{a[:2]}/{a}/views.npz"


def test_write_prompts_upserts(tmp_path):
    with Catalog.open(settings_for(tmp_path)) as cat:
        cat.write_prompts([{"prompt_id": "a", "text": "a red chair", "status": "kept", "attributes": {"n": 1}},
                           {"prompt_id": "b", "text": "a dog", "status": "kept"}])
        cat.write_prompts([{"prompt_id": "a", "text": "a red chair", "status": "rejected", "reject_reason": "dup"}])
        rows = {r["prompt_id"]: r for r in cat.read("SELECT * FROM prompts").to_pylist()}
        assert set(rows) == {"a", "b"} and rows["a"]["status"] == "rejected"


def test_numpy_cameras_flatten(tmp_path):
    import numpy as np

    ext = np.arange(2 * 16, dtype=np.float32).reshape(2, 4, 4)
    rec = SampleRecord(sample_id="ab" * 32, prompt_id="p", prompt_text="t", n_views=2, extrinsics=ext,
                       intrinsics=np.ones((2, 3, 3)), azimuths_deg=np.array([0.0, 180.0]))
    with Catalog.open(settings_for(tmp_path)) as cat:
        cat.commit_batch("b", [rec])
        row = cat.read("SELECT extrinsics, intrinsics, azimuths_deg FROM samples").to_pylist()[0]
    assert row["extrinsics"] == ext.reshape(-1).tolist() and len(row["intrinsics"]) == 18


def test_failed_commit_is_one_line_error(tmp_path):
    with Catalog.open(settings_for(tmp_path)) as cat:
        with pytest.raises(CatalogError, match="non-empty batch_id"):
            cat.commit_batch("", [])


def test_bad_metadata_dsn_names_setting(tmp_path):
    with pytest.raises(Vf3dError, match="VF3D_CATALOG__METADATA_DSN"):
        Catalog.open(settings_for(tmp_path, dsn="postgresql://root@127.0.0.1:1/nope"))
    with pytest.raises(Vf3dError, match="VF3D_CATALOG__METADATA_DSN"):
        Catalog.open(settings_for(tmp_path, dsn="mysql://x/y"))


def _commit_worker(args):
    root, dsn, start = args
    settings = settings_for(root, dsn=dsn)
    with Catalog.open(settings) as cat:
        time.sleep(max(0.0, start - time.time()))
        return [cat.commit_batch(f"b{b}", synthetic_batch(b, n=20, media=False)).added for b in range(4)]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_same_batch_from_two_processes_commits_once(tmp_path, backend, request):
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else ""
    Catalog.open(settings_for(tmp_path, dsn=dsn)).close()
    start = time.time() + 6.0  # both workers start committing at the same moment
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_commit_worker, [(tmp_path, dsn, start)] * 2)
    per_batch = [sum(r[b] for r in results) for b in range(4)]
    assert per_batch == [20, 20, 20, 20], results
    with Catalog.open(settings_for(tmp_path, dsn=dsn)) as cat:
        assert cat.read("SELECT count(*), count(DISTINCT sample_id) FROM samples").to_pylist()[0] == {
            "count_star()": 80, "count(DISTINCT sample_id)": 80}
        assert cat.read("SELECT count(*) FROM batches").column(0)[0].as_py() == 4


@pytest.mark.postgres
def test_rival_commit_inside_transaction_conflicts(tmp_path, pg_dsn):
    """A rival commits the same batch while ours is mid-transaction: ours conflicts, re-checks, adds 0.

    Postgres only: on SQLite our open transaction's read lock blocks the rival in the same thread
    (SQLite serialises writers); the two-process test above covers SQLite."""
    dsn = pg_dsn
    settings = settings_for(tmp_path, dsn=dsn)
    recs = synthetic_batch(1, n=10, media=False)
    with Catalog.open(settings) as ours, Catalog.open(settings) as rival:
        rival_results = []
        res = ours.commit_batch("b1", recs, _race=lambda: rival_results.append(rival.commit_batch("b1", recs).added))
        assert rival_results[0] == 10 and res.added == 0
        assert ours.read("SELECT count(*) FROM samples").column(0)[0].as_py() == 10
        assert ours.read("SELECT count(*) FROM batches").column(0)[0].as_py() == 1


@pytest.mark.s3
def test_bad_s3_settings_one_line(tmp_path, s3_server):
    """Unreachable endpoint / wrong credentials: one-line Vf3dError naming the setting, no traceback text."""
    bad = [
        ({"endpoint": "127.0.0.1:1", "access_key": "a", "secret_key": "b"}, "VF3D_S3__ENDPOINT"),
        ({"endpoint": s3_server.endpoint, "access_key": s3_server.access_key, "secret_key": "wrong"}, "VF3D_S3__"),
        ({"endpoint": s3_server.endpoint, "access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
          "bucket": "no-such-bucket-vf3d"}, "VF3D_S3__BUCKET"),
    ]
    from catalog.settings import load_settings

    for s3, setting in bad:
        with pytest.raises(Vf3dError) as info:
            Catalog.open(load_settings(root=tmp_path, s3=s3))
        assert setting in str(info.value) and "\n" not in str(info.value)
