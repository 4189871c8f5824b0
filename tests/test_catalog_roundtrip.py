"""The catalog's must-show round trip, on local dir + SQLite and on SeaweedFS S3 + Postgres.

1,000 synthetic samples in 10 atomic batches; GROUP BY category matches Python; a query pinned
to the snapshot after batch 5 sees exactly 500; re-committing a batch adds nothing; a batch that
fails after its uploads leaves no rows and `vf3d catalog gc` removes its orphan objects.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from typer.testing import CliRunner

from catalog.ducklake import Catalog
from catalog.sql import run_readonly
from catalog_helpers import settings_for, setup_env, synthetic_batch


class InjectedFault(RuntimeError):
    pass


@pytest.fixture(params=["local-sqlite", pytest.param("s3-postgres", marks=[pytest.mark.s3, pytest.mark.postgres])])
def setup(request, tmp_path, monkeypatch):
    if request.param == "local-sqlite":
        setup_env(monkeypatch, tmp_path / "root")
        return settings_for(tmp_path / "root"), request.param
    server = request.getfixturevalue("s3_server")
    dsn = request.getfixturevalue("pg_dsn")
    prefix = "rt-" + uuid.uuid4().hex[:8]
    setup_env(monkeypatch, tmp_path / "root", server, prefix, dsn)
    settings = settings_for(tmp_path / "root", server, prefix, dsn)
    Catalog.open(settings, create_bucket=True).close()  # what `vf3d catalog init` does
    return settings, request.param


@pytest.mark.slow
def test_round_trip(setup):
    settings, kind = setup
    batches = [synthetic_batch(b) for b in range(10)]
    with Catalog.open(settings) as cat:
        snaps = []
        for b, recs in enumerate(batches):
            res = cat.commit_batch(f"batch-{b:02d}", recs, run_id="run-test")
            assert res.added == 100 and res.objects == 300
            snaps.append(res.snapshot_id)
        assert snaps == sorted(snaps) and len(set(snaps)) == 10

        # GROUP BY category: exact counts, averages equal to Python's
        expect = defaultdict(list)
        for recs in batches:
            for r in recs:
                expect[r.category].append(r.score_overall)
        got = run_readonly(settings, "SELECT category, count(*) AS n, avg(score_overall) AS mean FROM samples GROUP BY category ORDER BY category")
        assert [r["category"] for r in got.to_pylist()] == sorted(expect)
        for row in got.to_pylist():
            assert row["n"] == len(expect[row["category"]])
            assert row["mean"] == pytest.approx(sum(expect[row["category"]]) / len(expect[row["category"]]), rel=1e-12)

        # quality_summary view agrees
        qs = {r["category"]: r for r in run_readonly(settings, "SELECT * FROM quality_summary").to_pylist()}
        assert {c: r["n"] for c, r in qs.items()} == {c: len(v) for c, v in expect.items()}
        assert sum(r["n_kept"] for r in qs.values()) == sum(r.status == "kept" for recs in batches for r in recs)

        # snapshot after batch 5 -> exactly 500 rows, via the curator path and the writer path
        assert run_readonly(settings, "SELECT count(*) AS n FROM samples", snapshot=snaps[4]).column("n")[0].as_py() == 500
        assert cat.read(f"SELECT count(*) FROM samples AT (VERSION => {snaps[4]})").column(0)[0].as_py() == 500
        assert run_readonly(settings, "SELECT count(*) AS n FROM samples").column("n")[0].as_py() == 1000

        # every row points at its uploaded media
        some = cat.read("SELECT sample_id, uri_views, uri_video, uri_sheet, extrinsics FROM samples LIMIT 3").to_pylist()
        for row in some:
            key = row["uri_views"].split("/samples/", 1)[1]
            assert cat.store.get("samples/" + key) == next(
                r.media["views.npz"] for recs in batches for r in recs if r.sample_id == row["sample_id"]
            )
            assert len(row["extrinsics"]) == 4 * 16

        # re-committing a batch adds nothing and makes no snapshot
        before = cat.current_snapshot()
        again = cat.commit_batch("batch-03", batches[3])
        assert again.added == 0 and again.snapshot_id is None
        assert cat.current_snapshot() == before
        assert cat.read("SELECT count(*) FROM samples").column(0)[0].as_py() == 1000

        # a batch failing after its uploads: no rows, orphans left for gc
        doomed = synthetic_batch(99)

        def fault():
            raise InjectedFault("injected after uploads")

        with pytest.raises(InjectedFault):
            cat.commit_batch("batch-doomed", doomed, _fault=fault)
        assert cat.read("SELECT count(*) FROM samples").column(0)[0].as_py() == 1000
        assert cat.read("SELECT count(*) FROM batches WHERE batch_id = 'batch-doomed'").column(0)[0].as_py() == 0
        orphan_keys = {f"samples/{r.sample_id[:2]}/{r.sample_id}/{n}" for r in doomed for n in r.media}
        assert all(cat.store.exists(k) for k in list(orphan_keys)[:5])
        # a default grace period keeps young orphans (they could be an in-flight batch)
        assert cat.gc().removed == []
        assert cat.store.exists(next(iter(orphan_keys)))

    # `vf3d catalog gc` removes exactly the orphans
    from serve.cli import app

    result = CliRunner().invoke(app, ["catalog", "gc", "--grace", "0"])
    assert result.exit_code == 0, result.output
    assert "removed 300 orphan objects" in result.output
    with Catalog.open(settings) as cat:
        assert not any(cat.store.exists(k) for k in orphan_keys)
        remaining = sum(1 for _ in cat.store.list("samples/"))
        assert remaining == 3000
        assert cat.gc(grace_s=0).removed == []
