"""The fleet's ``vf3d_fleet_*`` metrics reach Prometheus through Ray's metrics agent.

``vf3d fleet up`` starts the CLI's local Ray with ``--metrics-export-port`` from
``VF3D_COMPUTE__METRICS_EXPORT_PORT``; the stand-in fleet works a Postgres queue; the test reads
``vf3d fleet status`` for the endpoint and scrapes it over HTTP like Prometheus would. Ray 2.60
exports application metrics with a ``ray_`` prefix and counters with a ``_total`` suffix;
``RAY_metrics_report_interval_ms`` (default 10 s) is shortened so values arrive within a second.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict

import pytest
from fleet_cli import (
    catalog_counts,
    cli_env,
    enqueue,
    fleet_env,
    process_tree,
    status_json,
    vf3d,
    wait_done,
    wait_gone,
)


def scrape(url: str) -> dict[str, list[tuple[dict, float]]]:
    """Prometheus text format → {sample name: [(labels, value)]}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200 and resp.headers.get_content_type() == "text/plain"
        text = resp.read().decode()
    out: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def total(metrics: dict, name: str, **labels: str) -> float | None:
    """Sum of the samples of ``name`` matching ``labels``; None when there are none."""
    values = [v for lab, v in metrics.get(name, []) if all(lab.get(k) == want for k, want in labels.items())]
    return sum(values) if values else None


@pytest.mark.slow
@pytest.mark.postgres
def test_fleet_metrics_are_scraped_from_the_local_rays_prometheus_endpoint(tmp_path, pg_dsn, monkeypatch):
    from catalog.settings import load_settings
    from serve.fleet import ops

    port = ops.free_port()
    root = tmp_path / ".vf3d"
    vf3d_env = fleet_env(root, pg_dsn, VF3D_COMPUTE__METRICS_EXPORT_PORT=str(port))
    for key, value in vf3d_env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.compute.metrics_export_port == port
    env = cli_env(vf3d_env, RAY_metrics_report_interval_ms="1000")
    n, spp = 6, 2
    queue = enqueue(settings, n, spp)
    try:
        vf3d("fleet", "up", "--timeout", "120", env=env)
        state = json.loads((root / "fleet" / "ray.json").read_text())
        assert state["metrics_export_port"] == port and state["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
        wait_done(queue, n)

        st = status_json(env)
        (endpoint,) = st["metrics"]
        assert endpoint["head"] and endpoint["url"].endswith(f":{port}/metrics")
        human = vf3d("fleet", "status", env=env).stdout
        assert f"Prometheus metrics (head {endpoint['node']}): {endpoint['url']}" in human
        run_id = st["dispatcher"]["run_id"]
        committed = catalog_counts(settings)
        assert committed["total"] == n * spp

        want = {
            "ray_vf3d_fleet_samples_generated_total": n * spp,
            "ray_vf3d_fleet_samples_kept_total": committed["kept"],
            "ray_vf3d_fleet_samples_rejected_total": committed["rejected"],
            "ray_vf3d_fleet_replicas": 1,
        }
        deadline = time.monotonic() + 45
        while True:
            metrics = scrape(endpoint["url"])
            got = {name: total(metrics, name, run_id=run_id) for name in want}
            done = total(metrics, "ray_vf3d_fleet_queue_depth", run_id=run_id, state="done")
            if (got == want and done == n) or time.monotonic() > deadline:
                break
            time.sleep(1)
        # counters from the dispatcher (kept / rejected from commits, generated per replica)
        assert got == want, {k: v for k, v in metrics.items() if "vf3d" in k}
        assert done == n and total(metrics, "ray_vf3d_fleet_queue_depth", run_id=run_id, state="pending") == 0
        replicas = {lab["replica"] for lab, _ in metrics["ray_vf3d_fleet_samples_generated_total"]}
        assert len(replicas) == 1
        # one commit latency observation per committed batch, in the histogram's buckets
        commits = st["dispatcher"]["totals"]["commits"]
        assert total(metrics, "ray_vf3d_fleet_commit_latency_s_count", run_id=run_id) >= commits >= 1
        assert total(metrics, "ray_vf3d_fleet_commit_latency_s_bucket", run_id=run_id, le="+Inf") >= commits
        assert total(metrics, "ray_vf3d_fleet_commit_latency_s_sum", run_id=run_id) > 0

        ray_family = process_tree(state["pid"])
        assert len(ray_family) > 5, ray_family  # ray start, gcs, raylet, agents, replicas…
        down = vf3d("fleet", "down", "--drain", "--timeout", "120", env=env).stdout
        assert "stopped the local Ray" in down
        assert not (root / "fleet" / "ray.json").exists()
        left = wait_gone(ray_family, 20)
        assert not left, f"the local Ray left processes behind: {left}"
    finally:
        ops.stop_local_ray(settings)  # after a failure: leave no Ray behind


def test_a_busy_metrics_port_is_refused_before_ray_starts(tmp_path):
    import socket

    from catalog.settings import load_settings
    from serve.fleet import ops

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = load_settings(root=tmp_path / ".vf3d", compute={"metrics_export_port": port})
        with pytest.raises(ops.FleetError, match=f"metrics port {port} .*VF3D_COMPUTE__METRICS_EXPORT_PORT.* in use"):
            ops.start_local_ray(settings)
    assert ops.local_ray(settings) is None
