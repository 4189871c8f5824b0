"""Fast checks of the fleet's pure parts: ids and seeds, the stand-in, the autoscaling policy
against a real queue with Serve's own AutoscalingContext, deployment options, CLI parsing."""

from __future__ import annotations

import time

import numpy as np
import pytest


def test_seeds_and_batch_ids_are_deterministic():
    from engine.dispatch import batch_id_for, sample_seed

    assert sample_seed(0, "p1", 0) == sample_seed(0, "p1", 0)
    seeds = {sample_seed(0, f"p{i}", j) for i in range(200) for j in range(3)}
    assert len(seeds) == 600 and all(0 <= s < 2**31 - 1 for s in seeds)
    assert sample_seed(1, "p1", 0) != sample_seed(0, "p1", 0)
    assert batch_id_for(["b", "a", "c"]) == batch_id_for(["c", "b", "a"]) != batch_id_for(["a", "b"])


def test_standin_frames_are_deterministic_and_shaped():
    from serve.fleet.models import SampleRequest
    from serve.fleet.standin import StandinModel

    model = StandinModel(latency_s=0.0, num_views=6, resolution=24)
    a, b = model.generate([SampleRequest("p", "a red mug", 0, 7, 20.0), SampleRequest("q", "a red mug", 1, 8, 30.0)])
    again = model.generate([SampleRequest("p", "a red mug", 0, 7, 20.0)])[0]
    assert a.frames.shape == (6, 24, 24, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, again.frames) and not np.array_equal(a.frames, b.frames)
    assert a.extrinsics.shape == (6, 4, 4) and a.intrinsics.shape == (6, 3, 3)
    assert a.azimuths_deg == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0] and a.elevation_deg == 20.0


def _ctx(current: int, target: int, lo: int, hi: int, requests: float = 0.0):
    from ray.serve._private.common import DeploymentID
    from ray.serve.config import AutoscalingConfig, AutoscalingContext

    return AutoscalingContext(
        deployment_id=DeploymentID(name="MultiViewGenerator", app_name="vf3d-fleet"),
        deployment_name="MultiViewGenerator", app_name="vf3d-fleet",
        current_num_replicas=current, target_num_replicas=target, running_replicas=[],
        total_num_requests=requests, total_queued_requests=0.0, aggregated_metrics={}, raw_metrics={},
        capacity_adjusted_min_replicas=lo, capacity_adjusted_max_replicas=hi, policy_state={},
        last_scale_up_time=None, last_scale_down_time=None, current_time=time.time(),
        config=AutoscalingConfig(min_replicas=lo, max_replicas=hi),
    )


def test_queue_depth_policy_reads_the_real_queue(tmp_path):
    from engine.queue import PromptQueue
    from serve.fleet.autoscale import QueueDepthPolicy

    dsn = f"sqlite:///{tmp_path / 'queue.sqlite'}"
    queue = PromptQueue(dsn)
    policy = QueueDepthPolicy(queue_dsn=dsn, prompts_per_replica=10, poll_interval_s=0.05)

    def decide(current, target, lo=0, hi=8, requests=0.0):
        """Call the policy like Serve's control loop does (every tick) for a few polls; last answer."""
        deadline = time.monotonic() + 0.6
        while True:
            desired, state = policy(_ctx(current, target, lo, hi, requests))
            if time.monotonic() > deadline and state.get("queue_backlog") is not None:
                return desired, state
            time.sleep(0.02)

    assert decide(1, 1) == (0, {"queue_backlog": 0, "queue_error": ""})  # empty queue: down to min (0)
    queue.enqueue([{"prompt_id": f"p{i}", "text": f"mug {i}"} for i in range(45)])
    desired, state = decide(1, 1)
    assert state["queue_backlog"] == 45 and desired == 5
    assert decide(1, 1, hi=3)[0] == 3  # capped at max
    leases = queue.lease(20)
    time.sleep(0.1)
    assert decide(3, 3)[1]["queue_backlog"] == 45  # leased work still counts
    for lease in leases:
        queue.ack(lease)
    queue.purge(state="pending")
    time.sleep(0.1)
    assert decide(3, 3, lo=1)[0] == 1
    assert decide(0, 0, lo=0, requests=2.0)[0] == 1  # requests waiting at a handle wake one replica


def test_deployment_options_follow_settings(tmp_path):
    from catalog.settings import load_settings
    from serve.fleet.app import deployment_options

    s = load_settings(root=tmp_path, fleet={"max_batch_size": 8, "num_cpus": 2, "num_gpus": 1, "replicas": 3})
    gen = deployment_options(s)["MultiViewGenerator"]
    assert gen["max_ongoing_requests"] == 32 and gen["num_replicas"] == 3  # 4 batches queued per replica
    assert gen["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 1.0,
                                        "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "2"}}}
    s = load_settings(root=tmp_path, fleet={"max_batch_size": 8, "max_ongoing_requests": 2, "autoscale": True,
                                             "min_replicas": 0, "max_replicas": 5})
    gen = deployment_options(s)["MultiViewGenerator"]
    assert gen["max_ongoing_requests"] == 8, "never below the batch size, or batches cannot fill"
    auto = gen["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["initial_replicas"]) == (0, 5, 1)
    assert auto["policy"]["policy_function"] == "serve.fleet.autoscale:QueueDepthPolicy"
    assert "num_replicas" not in gen


def test_cli_autoscale_spec_errors_are_one_line():
    from typer.testing import CliRunner

    from serve.cli import app

    result = CliRunner().invoke(app, ["fleet", "up", "--autoscale", "3"])
    assert result.exit_code != 0
    assert "MIN:MAX" in str(result.exception) or "MIN:MAX" in result.output
    with pytest.raises(Exception, match="not both"):
        from serve.cli.fleet_cmds import up

        up(replicas=1, autoscale="0:2", address=None, model=None, checkpoint=None, timeout=1.0)


@pytest.mark.parametrize("score_on", ["replica", "dispatcher"])
def test_scores_and_media_run_where_score_on_says_and_give_the_same_catalog(tmp_path, score_on):
    """The dispatcher loop in-process (no Ray) against the generator replica's own batch code:
    with score_on='replica' samples come back scored and encoded, with 'dispatcher' they come back
    bare and the dispatcher finishes them; the catalog rows and media are the same either way."""
    from catalog.ducklake import Catalog
    from catalog.media import unpack_views
    from catalog.records import media_key
    from catalog.settings import load_settings
    from engine.dispatch import Dispatcher
    from engine.queue import PromptQueue
    from serve.fleet.deployment import MultiViewGenerator

    def run(root, placement):
        settings = load_settings(root=root, fleet={"model": "standin", "standin_latency_s": 0.0, "score_on": placement,
                                                   "lease_batch": 3, "max_in_flight": 4, "quality_threshold": 0.85})
        Catalog.open(settings).close()
        queue = PromptQueue.from_settings(settings)
        queue.enqueue([{"prompt_id": f"p{i}", "text": f"a {c} mug"} for i, c in enumerate(["red", "blue", "green", "white"])],
                      samples_per_prompt=2)
        replica = MultiViewGenerator.func_or_class(settings)
        came_back = []

        def submit(req):
            sample = replica._generate([req])[0]
            came_back.append((sample.scores is not None, sample.media is not None))
            return sample

        totals = Dispatcher(settings, submit, run_id="run-1", queue=queue).run(until_empty=True)
        assert totals.samples_committed == 8 and queue.stats()["done"] == 4
        with Catalog.open(settings) as cat:
            rows = cat.read("SELECT sample_id, score_consistency, score_framing, score_sharpness, score_prompt_color, "
                            "score_overall, status FROM samples ORDER BY sample_id").to_pylist()
            metas = [unpack_views(cat.store.get(media_key(r["sample_id"], "views.npz"))).meta for r in rows]
        return came_back, rows, metas

    came_back, rows, metas = run(tmp_path / "a", score_on)
    finished_in_replica = score_on == "replica"
    assert came_back == [(finished_in_replica, finished_in_replica)] * 8
    assert len(rows) == 8 and {r["status"] for r in rows} <= {"kept", "rejected"}
    assert all(m["run_id"] == "run-1" and m["sample_id"] == r["sample_id"] for m, r in zip(metas, rows))
    # the other placement gives the same rows
    _, rows_other, metas_other = run(tmp_path / "b", "dispatcher" if finished_in_replica else "replica")
    assert rows_other == rows and metas_other == metas


@pytest.mark.postgres
def test_a_catalog_that_cannot_open_stops_the_run_before_anything_is_leased(tmp_path, pg_dsn):
    """A catalog created with one root, a dispatcher started with another: DuckLake refuses the
    data path; the run must stop at once with that reason, leasing (and burning) no prompt."""
    from catalog.ducklake import Catalog
    from catalog.settings import load_settings
    from engine.dispatch import DispatchError, Dispatcher
    from engine.queue import PromptQueue

    def settings(root):
        return load_settings(root=root, queue={"dsn": pg_dsn}, catalog={"metadata_dsn": pg_dsn},
                             fleet={"model": "standin", "standin_latency_s": 0.0})

    Catalog.open(settings(tmp_path / "a")).close()
    wrong = settings(tmp_path / "b")
    queue = PromptQueue.from_settings(wrong)
    queue.enqueue([{"prompt_id": "p1", "text": "a red mug"}])
    calls = []
    with pytest.raises(DispatchError, match="nothing was leased.*data path.*VF3D_ROOT"):
        Dispatcher(wrong, calls.append, queue=queue).run(until_empty=True)
    assert calls == [] and queue.stats()["pending"] == 1 and queue.stats()["leased"] == 0
