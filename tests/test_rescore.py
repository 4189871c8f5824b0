"""`vf3d score`: re-scoring stored samples appends rows with current scores; media untouched."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from catalog.ducklake import Catalog
from catalog.media import sample_media
from catalog.records import SampleRecord, media_key, sample_id
from catalog.sql import SqlRefusedError
from catalog_helpers import settings_for, setup_env
from engine.quality import SCORER_VERSION, score_batch
from engine.quality.rescore import rescore, rescore_batch_id
from serve.cli import app

runner = CliRunner()
N = 6
CATS = ["x", "y", "x", "y", "x", "y"]


@pytest.fixture(scope="module")
def renders():
    """Six real orbits (procedural assets, 8 views at 32 px), rendered once for the module."""
    from engine.render import render_orbit

    out = []
    for i in range(N):
        r = render_orbit(f"proc:{100 + i}", views=8, resolution=32)
        out.append(r)
    return out


def _records(renders) -> list[SampleRecord]:
    recs = []
    for i, r in enumerate(renders):
        pid = f"p{i}"
        sid = sample_id(pid, 0, i, "ckpt-old")
        cam = r.cameras
        ext, intr = cam.extrinsics(), cam.intrinsics()
        recs.append(SampleRecord(
            sample_id=sid, prompt_id=pid, prompt_text=r.caption, category=CATS[i], n_views=8, resolution=32,
            elevation_deg=float(cam.elevation_deg), azimuths_deg=[float(a) for a in cam.azimuths_deg],
            radius=float(cam.radius), fov_deg=float(cam.fov_deg), extrinsics=ext, intrinsics=intr,
            checkpoint_id="ckpt-old", seed=i, sampler="render", steps=0, guidance_scale=0.0,
            # deliberately wrong old scores; alternate statuses so re-scoring flips some
            score_consistency=0.01, score_framing=0.01, score_sharpness=0.01, score_prompt_color=0.01,
            score_overall=0.01 if i % 2 else 0.99, scorer_version="old-0", status="rejected" if i % 2 else "kept",
            media=sample_media(r.rgb, ext, intr, {"sample_id": sid}),
        ))
    return recs


@pytest.fixture
def lake(tmp_path, monkeypatch, renders):
    root = tmp_path / "vf3d"
    settings = settings_for(root)
    recs = _records(renders)
    with Catalog.open(settings) as cat:
        cat.commit_batch("gen-1", recs)
    setup_env(monkeypatch, root)
    frames = {rec.sample_id: r.rgb for rec, r in zip(recs, renders)}
    prompts = {rec.sample_id: rec.prompt_text for rec in recs}
    cats = {rec.sample_id: rec.category for rec in recs}
    return settings, frames, prompts, cats


def _media(settings) -> dict[str, bytes]:
    with Catalog.open(settings) as cat:
        return {o.key: cat.store.get(o.key) for o in cat.store.list("samples/")}


def _latest(settings) -> dict[str, dict]:
    with Catalog.open(settings) as cat:
        rows = cat.conn.execute("SELECT * FROM samples_latest").to_arrow_table().to_pylist()
    return {r["sample_id"]: r for r in rows}


def _counts(settings) -> tuple[int, int]:
    with Catalog.open(settings) as cat:
        n = cat.conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        snaps = len(cat.snapshots())
    return n, snaps


def test_score_cli_rescores_stale_rows_and_leaves_media_alone(lake):
    settings, frames, prompts, _ = lake
    before_media = _media(settings)
    before_latest = _latest(settings)
    assert len(before_media) == 3 * N

    out = runner.invoke(app, ["score", "--batch-size", "4"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "scored" in out.output

    latest = _latest(settings)
    sids = sorted(latest)
    direct = score_batch(np.stack([frames[s] for s in sids]), [prompts[s] for s in sids], settings=settings)
    flips = [0, 0]
    for sid, sc in zip(sids, direct):
        row, old = latest[sid], before_latest[sid]
        assert row["scorer_version"] == SCORER_VERSION
        for col, val in sc.columns().items():
            if col.startswith("score_"):
                assert row[col] == (None if val is None else pytest.approx(val, abs=1e-6)), col
        want = "kept" if row["score_overall"] >= settings.fleet.quality_threshold else "rejected"
        assert row["status"] == want
        flips[0] += old["status"] == "kept" and want == "rejected"
        flips[1] += old["status"] == "rejected" and want == "kept"
        # everything but scores/status/batch/time is carried over, media URIs included
        for col in ("prompt_id", "prompt_text", "category", "uri_views", "uri_video", "uri_sheet", "extrinsics", "seed"):
            assert row[col] == old[col], col
        assert row["batch_id"].startswith("rescore-") and row["created_at"] > old["created_at"]
    assert any(flips), "fixture should flip at least one status"

    with Catalog.open(settings) as cat:
        per_sample = cat.conn.execute("SELECT sample_id, count(*) FROM samples GROUP BY ALL").fetchall()
    assert len(per_sample) == N and all(n == 2 for _, n in per_sample)
    assert _media(settings) == before_media  # byte-identical, no object added or removed

    # second run: nothing is stale -> no-op (no rows, no snapshot)
    counts = _counts(settings)
    out = runner.invoke(app, ["score"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "nothing to re-score" in out.output
    assert _counts(settings) == counts


def test_where_filter_and_hostile_where(lake):
    settings, _, _, cats = lake
    counts = _counts(settings)
    for hostile in ("1=1; DROP TABLE samples", "1=1; DELETE FROM samples", "1=1; CALL ducklake_expire_snapshots('vf3d')"):
        out = runner.invoke(app, ["score", "--where", hostile])
        assert out.exit_code != 0 and isinstance(out.exception, SqlRefusedError), out.output
        assert "\n" not in str(out.exception) and "refused" in str(out.exception)
    assert _counts(settings) == counts
    assert all(r["scorer_version"] == "old-0" for r in _latest(settings).values())

    out = runner.invoke(app, ["score", "--where", "category = 'x'"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    latest = _latest(settings)
    for sid, row in latest.items():
        assert row["scorer_version"] == (SCORER_VERSION if cats[sid] == "x" else "old-0")
    assert _counts(settings)[0] == N + CATS.count("x")

    # --all re-scores current rows too (here: limited to one sample)
    out = runner.invoke(app, ["score", "--all", "--where", "category = 'x'", "--limit", "1"])
    assert out.exit_code == 0, out.output
    assert _counts(settings)[0] == N + CATS.count("x") + 1


def test_corrupt_or_missing_views_are_reported_not_fatal(lake):
    settings, _, _, _ = lake
    sids = sorted(_latest(settings))
    bad, gone = sids[1], sids[4]
    with Catalog.open(settings) as cat:
        cat.store.put(media_key(bad, "views.npz"), b"PK\x03\x04 definitely not a zip")
        cat.store.delete(media_key(gone, "views.npz"))
    before_media = _media(settings)

    out = runner.invoke(app, ["score"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert bad in out.output and gone in out.output and "failed" in out.output
    latest = _latest(settings)
    for sid in sids:
        assert latest[sid]["scorer_version"] == ("old-0" if sid in (bad, gone) else SCORER_VERSION)
    assert _media(settings) == before_media

    with Catalog.open(settings) as cat:
        res = rescore(cat)
    assert res.selected == 2 and res.scored == 0
    reasons = {f.sample_id: f.reason for f in res.failed}
    assert set(reasons) == {bad, gone}
    assert "missing" in reasons[gone] and "unreadable" in reasons[bad]


def test_interrupted_rescore_resumes_without_duplicates(lake):
    settings, _, _, _ = lake

    class Crash(Exception):
        pass

    def crash_after_first_chunk(done, total):
        if done >= 2:
            raise Crash

    with Catalog.open(settings) as cat:
        with pytest.raises(Crash):
            rescore(cat, batch_size=2, progress=crash_after_first_chunk)
        assert cat.conn.execute("SELECT count(*) FROM samples").fetchone()[0] == N + 2
        res = rescore(cat, batch_size=2)
        assert (res.selected, res.scored, res.n_failed) == (N - 2, N - 2, 0)
        per = cat.conn.execute("SELECT count(*) FROM samples GROUP BY sample_id").fetchall()
        assert sorted(n for (n,) in per) == [2] * N

    # the batch id is a pure function of version, config and (sample, source batch) pairs
    a = rescore_batch_id("v", "{}", [("s1", "b1"), ("s2", "b1")])
    assert a == rescore_batch_id("v", "{}", [("s2", "b1"), ("s1", "b1")])
    assert a != rescore_batch_id("v2", "{}", [("s1", "b1"), ("s2", "b1")])
    assert a != rescore_batch_id("v", "{}", [("s1", "b2"), ("s2", "b1")])
