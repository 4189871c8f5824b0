"""The generator fleet on a real local Ray + Serve, with the queue and the catalog on Postgres.

The stand-in model (fixed latency, deterministic frames) keeps these fast; everything else —
Serve batching and routing, the dispatcher, quality scores, media, DuckLake commits, the
queue's leases — is the real thing. Faults are real too: a replica process killed with
``ray.kill`` mid-batch, the dispatcher's process SIGKILLed mid-commit, and the object store's
directory replaced by a file so every write fails for a while.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from fleet_cli import enqueue, wait_done

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def ray_local():
    import ray
    from ray import serve

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="vf3d", logging_level="WARNING",
             log_to_driver=False)
    yield
    serve.shutdown()
    ray.shutdown()


def fleet_settings(tmp_path: Path, pg_dsn: str, lease_ttl_s: float = 20.0, **fleet):
    from catalog.settings import load_settings

    base = {
        "model": "standin", "standin_latency_s": 0.1, "replicas": 2, "num_cpus": 0.5, "dispatcher_num_cpus": 0.5,
        "max_batch_size": 4, "batch_wait_timeout_s": 0.05, "lease_batch": 8, "max_in_flight": 16,
        "health_check_period_s": 2.0, "request_timeout_s": 60.0, "commit_retry_s": 120.0, "poll_interval_s": 0.5,
        "quality_threshold": 0.85,
    }
    base.update(fleet)
    return load_settings(
        root=tmp_path / ".vf3d",
        queue={"dsn": pg_dsn, "lease_ttl_s": lease_ttl_s, "max_attempts": 5},
        catalog={"metadata_dsn": pg_dsn},
        fleet=base,
    )


def dispatcher_status(settings, timeout_s: float = 60.0) -> dict:
    from serve.fleet import ops

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ops.dispatcher(settings).status.remote().result(timeout_s=10)
        except Exception:  # the dispatcher replica may be restarting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def check_catalog(settings, n_prompts: int, spp: int, *, read_media: int | None = None) -> dict:
    """Exactly n_prompts * spp samples, distinct ids, spp per prompt, scores set, media readable."""
    import numpy as np

    from catalog.ducklake import Catalog
    from catalog.media import decode_video, unpack_views
    from catalog.records import media_key

    with Catalog.open(settings) as cat:
        total, distinct, prompts, lo, hi = cat.read(
            "SELECT count(*), count(DISTINCT sample_id), count(DISTINCT prompt_id), min(c), max(c) FROM "
            "(SELECT sample_id, prompt_id, count(*) OVER (PARTITION BY prompt_id) AS c FROM samples)"
        ).to_pylist()[0].values()
        assert (total, distinct, prompts) == (n_prompts * spp, n_prompts * spp, n_prompts)
        assert lo == hi == spp
        missing = cat.read(
            "SELECT count(*) AS n FROM samples WHERE score_consistency IS NULL OR score_framing IS NULL "
            "OR score_sharpness IS NULL OR score_overall IS NULL OR scorer_version IS NULL OR status NOT IN ('kept', 'rejected') "
            "OR uri_views IS NULL OR uri_video IS NULL OR uri_sheet IS NULL OR len(extrinsics) != n_views * 16"
        ).to_pylist()[0]["n"]
        assert missing == 0
        rows = cat.read("SELECT sample_id, n_views, resolution, run_id, status, score_overall FROM samples ORDER BY sample_id").to_pylist()
        for row in rows[: read_media or len(rows)]:
            pack = unpack_views(cat.store.get(media_key(row["sample_id"], "views.npz")))
            assert pack.frames.shape == (row["n_views"], row["resolution"], row["resolution"], 3)
            assert pack.meta["sample_id"] == row["sample_id"]
        video = decode_video(cat.store.get(media_key(rows[0]["sample_id"], "orbit.mp4")))
        assert video.shape[0] >= rows[0]["n_views"] and video.shape[0] % rows[0]["n_views"] == 0  # whole orbits
        assert video.shape[1] >= rows[0]["resolution"]
        assert cat.store.get(media_key(rows[0]["sample_id"], "sheet.png"))[:8] == b"\x89PNG\r\n\x1a\n"
        runs = cat.read("SELECT run_id, status, metrics FROM runs").to_pylist()
        by_status = {s: sum(1 for r in rows if r["status"] == s) for s in ("kept", "rejected")}
        assert all((r["status"] == "kept") == (r["score_overall"] >= settings.fleet.quality_threshold) for r in rows)
        return {"rows": rows, "runs": runs, "by_status": by_status, "np": np}


def run_fleet(settings, n: int, spp: int, during=None, timeout_s: float = 240.0):
    from serve.fleet import ops

    queue = enqueue(settings, n, spp)
    run_id = ops.up(settings, timeout_s=120)
    stats = wait_done(queue, n, timeout_s, during)
    final = ops.down(settings, drain=True, timeout_s=120)
    return run_id, queue, stats, final


def test_fleet_200_prompts_x2_samples_exactly_400(ray_local, tmp_path, pg_dsn):
    import json

    settings = fleet_settings(tmp_path, pg_dsn)
    run_id, queue, stats, final = run_fleet(settings, 200, 2)
    assert stats == {"pending": 0, "leased": 0, "done": 200, "dead": 0, "expired": 0}
    got = check_catalog(settings, 200, 2)
    tot = final["totals"]
    assert final["run_id"] == run_id and final["finished"]
    assert tot["samples_committed"] == 400 and tot["prompts_acked"] == 200 and tot["prompts_nacked"] == 0
    assert tot["samples_kept"] + tot["samples_rejected"] == 400
    assert tot["samples_kept"] == got["by_status"]["kept"] and tot["samples_rejected"] == got["by_status"]["rejected"]
    assert len(tot["per_replica"]) == 2, "both replicas served"
    (run,) = got["runs"]
    assert run["run_id"] == run_id and run["status"] == "finished"
    metrics = json.loads(run["metrics"])
    assert metrics["catalog_samples"] == 400 and metrics["samples_committed"] == 400
    assert metrics["catalog_kept"] == got["by_status"]["kept"]
    assert {r["run_id"] for r in got["rows"]} == {run_id}


def test_replica_killed_mid_batch_loses_and_duplicates_nothing(ray_local, tmp_path, pg_dsn):
    import ray

    settings = fleet_settings(tmp_path, pg_dsn, standin_latency_s=0.3)
    killed: list[str] = []

    def kill_one(stats):
        if killed or stats["done"] < 10:
            return
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["namespace"] == "serve" and "MultiViewGenerator" in a["name"]]
        victim = ray.get_actor(names[0], namespace="serve")
        ray.kill(victim, no_restart=True)
        killed.append(names[0])

    run_id, queue, stats, final = run_fleet(settings, 60, 2, during=kill_one)
    assert killed, "no replica was killed"
    assert stats["done"] == 60 and stats["dead"] == 0
    check_catalog(settings, 60, 2, read_media=20)
    tot = final["totals"]
    assert tot["requests_failed"] >= 1, "the kill did not hit a request in flight"
    assert tot["samples_committed"] == 120


def test_dispatcher_killed_mid_commit_resumes_without_loss(ray_local, tmp_path, pg_dsn):
    from serve.fleet import ops

    # short leases: the dead dispatcher's leases come back soon
    settings = fleet_settings(tmp_path, pg_dsn, lease_ttl_s=8.0, standin_latency_s=0.05, lease_batch=16)
    queue = enqueue(settings, 80, 2)
    run_id = ops.up(settings, timeout_s=120)
    handle = ops.dispatcher(settings)
    first_pid, phase = None, None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = handle.status.remote().result(timeout_s=10)
        if st["phase"] == "commit" and st["totals"]["commits"] >= 1:
            first_pid, phase = st["pid"], st["phase"]
            os.kill(first_pid, signal.SIGKILL)
            break
    assert first_pid is not None, "never caught the dispatcher committing"
    stats = wait_done(queue, 80, 240)
    st = dispatcher_status(settings)
    assert st["pid"] != first_pid, "Serve restarted the dispatcher in a new process"
    assert st["run_id"] == run_id, "the restarted dispatcher continues the same run"
    ops.down(settings, drain=True, timeout_s=120)
    assert stats["done"] == 80 and stats["dead"] == 0
    got = check_catalog(settings, 80, 2, read_media=20)
    assert {r["run_id"] for r in got["rows"]} == {run_id}
    assert phase == "commit"


def test_object_store_refusing_writes_for_a_while(ray_local, tmp_path, pg_dsn):
    settings = fleet_settings(tmp_path, pg_dsn, standin_latency_s=0.05)
    samples_dir = Path(settings.root).resolve() / "objects" / "samples"
    state = {"broken_at": None, "restored_at": None}

    def outage(stats):
        if state["broken_at"] is None and stats["done"] >= 8:
            # every media write now fails: samples/<xx>/... cannot be created under a file
            samples_dir.rename(samples_dir.with_name("samples.away"))
            samples_dir.write_bytes(b"the object store refuses writes")
            state["broken_at"] = time.monotonic()
        elif state["broken_at"] and state["restored_at"] is None and time.monotonic() - state["broken_at"] > 6.0:
            samples_dir.unlink()
            samples_dir.with_name("samples.away").rename(samples_dir)
            state["restored_at"] = time.monotonic()

    run_id, queue, stats, final = run_fleet(settings, 60, 2, during=outage)
    assert state["restored_at"] is not None, "the outage never ended (the run finished before it began?)"
    assert stats["done"] == 60 and stats["dead"] == 0
    check_catalog(settings, 60, 2, read_media=30)
    tot = final["totals"]
    assert tot["commit_failures"] >= 1, "no commit failed during the outage"
    assert tot["samples_committed"] == 120


def test_health_check_fails_while_a_generation_call_is_stuck(ray_local, tmp_path):
    """A replica blocked in a long synchronous call stops passing health pings and Serve replaces it."""
    import ray
    from ray import serve

    from catalog.settings import load_settings
    from serve.fleet.app import settings_args
    from serve.fleet.deployment import MultiViewGenerator
    from serve.fleet.models import SampleRequest

    settings = load_settings(root=tmp_path, fleet={
        "model": "standin", "standin_latency_s": 60.0, "stuck_timeout_s": 2.0, "request_timeout_s": 120.0,
        "max_batch_size": 1, "batch_wait_timeout_s": 0.0})

    def replicas() -> set[str]:
        return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a["namespace"] == "serve" and "stuck-test" in a["name"]}

    handle = serve.run(
        MultiViewGenerator.options(num_replicas=1, health_check_period_s=1.0, health_check_timeout_s=5.0,
                                   ray_actor_options={"num_cpus": 0.1}, graceful_shutdown_timeout_s=1.0)
        .bind(settings_args(settings)),
        name="stuck-test", route_prefix=None,
    )
    try:
        assert handle.info.remote().result(timeout_s=30)["running_for_s"] == 0.0  # idle: healthy
        before = replicas()
        assert len(before) == 1
        response = handle.generate.remote(SampleRequest("p", "a red mug", 0, 1, 10.0))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 45 and replicas() & before:
            time.sleep(0.25)
        replaced_after = time.monotonic() - t0
        assert not (replicas() & before), "the stuck replica still runs"
        assert replaced_after < 45
        with pytest.raises(Exception):
            response.result(timeout_s=30)  # the stuck call died with its replica
        # the new replica is healthy and serves
        assert handle.info.remote().result(timeout_s=60)["running_for_s"] == 0.0
    finally:
        serve.delete("stuck-test")


def test_fleet_with_the_real_pipeline(ray_local, tmp_path, pg_dsn):
    """The embedded default multi-view checkpoint behind the fleet (loaded once per replica,
    batched diffusers calls), 2 denoising steps to keep it quick."""
    from engine.mvgen import MultiViewVideoPipeline, default_checkpoint_path

    expected_id = MultiViewVideoPipeline.from_pretrained(default_checkpoint_path(), device="cpu").checkpoint_id
    settings = fleet_settings(tmp_path, pg_dsn, model="pipeline", checkpoint="", steps=2, replicas=1,
                              num_cpus=1.0, max_batch_size=4, lease_batch=4, max_in_flight=8, quality_threshold=0.0)
    run_id, queue, stats, final = run_fleet(settings, 6, 2, timeout_s=240)
    assert stats["done"] == 6 and stats["dead"] == 0
    got = check_catalog(settings, 6, 2)
    from catalog.ducklake import Catalog

    with Catalog.open(settings) as cat:
        rows = cat.read("SELECT DISTINCT checkpoint_id, sampler, steps FROM samples").to_pylist()
    assert rows == [{"checkpoint_id": expected_id, "sampler": rows[0]["sampler"], "steps": 2}]
    assert rows[0]["sampler"] and rows[0]["sampler"] != "standin"
    assert len(got["rows"]) == 12 and final["totals"]["samples_committed"] == 12
