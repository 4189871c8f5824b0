"""Scaling the fleet on a multi-node Ray (``ray.cluster_utils.Cluster``, 3 nodes x 1 CPU).

* fixed scaling while generating: 1 -> 3 -> 1 replicas with ``ops.scale`` (a declarative
  redeploy: running replicas and the dispatcher are kept), no errors, no loss;
* autoscaling on queue depth (``QueueDepthPolicy``): a backlog of pending prompts raises the
  replica count, an emptied queue lowers it.
"""

from __future__ import annotations

import time

import pytest

from test_fleet import check_catalog, enqueue, fleet_settings, wait_done

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    import services

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_server_port": services.free_port(),
                                                            "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="vf3d", logging_level="WARNING", log_to_driver=False)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 3
    yield cluster
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


def generator_replicas(settings) -> dict:
    from ray import serve

    app = serve.status().applications.get(settings.fleet.app_name)
    return dict(app.deployments["MultiViewGenerator"].replica_states) if app else {}


def test_scale_1_3_1_while_running_loses_nothing(ray_cluster, tmp_path, pg_dsn):
    from serve.fleet import ops

    settings = fleet_settings(tmp_path, pg_dsn, replicas=1, num_cpus=0.6, dispatcher_num_cpus=0.3,
                              standin_latency_s=0.25, max_batch_size=2, lease_batch=4, max_in_flight=8)
    queue = enqueue(settings, 120, 2)
    run_id = ops.up(settings, timeout_s=120)
    assert generator_replicas(settings) == {"RUNNING": 1}
    dispatcher_pid = ops.dispatcher(settings).status.remote().result(timeout_s=30)["pid"]
    seen = []

    wait_done(queue, 20, 120)
    ops.scale(settings, 3, timeout_s=120)  # 3 x 0.6 CPU only fits across the 3 nodes
    seen.append(generator_replicas(settings))
    mid = queue.stats()
    assert mid["pending"] > 0, "the run finished before the scale-up was observed"
    served_before = set(ops.dispatcher(settings).status.remote().result(timeout_s=30)["totals"]["per_replica"])

    wait_done(queue, min(mid["done"] + 40, 110), 120)
    ops.scale(settings, 1, timeout_s=120)
    seen.append(generator_replicas(settings))

    stats = wait_done(queue, 120, 240)
    st = ops.dispatcher(settings).status.remote().result(timeout_s=30)
    assert st["pid"] == dispatcher_pid, "scaling restarted the dispatcher"
    assert len(set(st["totals"]["per_replica"]) - served_before) >= 1, "added replicas never served"
    final = ops.down(settings, drain=True, timeout_s=120)
    assert seen == [{"RUNNING": 3}, {"RUNNING": 1}]
    assert stats["done"] == 120 and stats["dead"] == 0
    assert final["totals"]["prompts_nacked"] == 0, final["last_errors"]
    assert final["totals"]["samples_committed"] == 240
    assert len(final["totals"]["per_replica"]) >= 3
    got = check_catalog(settings, 120, 2, read_media=10)
    assert {r["run_id"] for r in got["rows"]} == {run_id}


def test_autoscaling_follows_queue_depth(ray_cluster, tmp_path, pg_dsn):
    from serve.fleet import ops

    settings = fleet_settings(
        tmp_path, pg_dsn, autoscale=True, min_replicas=1, max_replicas=3, prompts_per_replica=10,
        upscale_delay_s=0.0, downscale_delay_s=2.0, autoscale_poll_s=0.5, num_cpus=0.6, dispatcher_num_cpus=0.3,
        standin_latency_s=1.0, max_batch_size=1, lease_batch=1, max_in_flight=2,
    )
    queue = enqueue(settings, 200, 1)
    ops.up(settings, timeout_s=120)
    t0 = time.monotonic()
    peak = 0
    while time.monotonic() - t0 < 90 and peak < 3:
        peak = max(peak, generator_replicas(settings).get("RUNNING", 0))
        time.sleep(0.5)
    assert peak == 3, f"a backlog of {queue.pending_count()} prompts did not raise replicas to 3"
    queue.purge(state="pending")  # the backlog is gone: replicas should fall back to min_replicas
    t0 = time.monotonic()
    low = None
    while time.monotonic() - t0 < 90:
        states = generator_replicas(settings)
        if states == {"RUNNING": 1}:
            low = 1
            break
        time.sleep(0.5)
    ops.down(settings, drain=False, timeout_s=60)
    assert low == 1, "an empty queue did not lower the replica count"
