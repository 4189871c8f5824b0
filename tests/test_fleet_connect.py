"""`vf3d fleet` joining an existing Ray cluster: host:port, ``auto`` and Ray Client (``ray://``).

A real head (``ray start --head --block``, its own temp dir under ``RAY_TMPDIR``, never port 6379,
token auth off as on most clusters) runs for the module (one with token auth for its own test);
each test deploys the stand-in fleet on it with ``vf3d fleet up --address …`` in a subprocess, lets it work a Postgres queue into a
Postgres-backed catalog, watches it with ``vf3d fleet status`` and stops it with
``vf3d fleet down --drain``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fleet_cli import (
    catalog_counts,
    cli_env,
    enqueue,
    fleet_env,
    ray_head,
    status_json,
    vf3d,
    wait_done,
)


@pytest.fixture(scope="module")
def cluster():
    """A real Ray head without token auth (as most clusters run) for the module."""
    with ray_head("disabled") as head:
        yield head


def _run_joined(tmp_path: Path, pg_dsn: str, address: str, ray_env: dict[str, str], monkeypatch) -> dict:
    """up → prompts done → status → down --drain on the joined cluster; returns what the test checks."""
    from catalog.settings import load_settings

    vf3d_env = fleet_env(tmp_path / ".vf3d", pg_dsn)
    for key, value in vf3d_env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    env = cli_env(vf3d_env, **ray_env)
    n, spp = 6, 2
    queue = enqueue(settings, n, spp)
    t0 = time.monotonic()
    up = vf3d("fleet", "up", "--address", address, "--timeout", "120", env=env)
    stats = wait_done(queue, n)
    st = status_json(env, "--address", address)
    down = vf3d("fleet", "down", "--drain", "--address", address, "--timeout", "120", env=env)
    return {"up": up.stdout, "stats": stats, "status": st, "down": down.stdout, "queue": queue.stats(),
            "catalog": catalog_counts(settings), "n": n, "spp": spp, "took_s": time.monotonic() - t0,
            "local_ray_file": (tmp_path / ".vf3d" / "fleet" / "ray.json").exists()}


def _check(got: dict, cluster: dict) -> None:
    n, spp = got["n"], got["spp"]
    assert got["stats"]["done"] == n and got["stats"]["dead"] == 0
    assert got["queue"] == {"pending": 0, "leased": 0, "done": n, "dead": 0, "expired": 0}, "down --drain left work queued"
    cat = got["catalog"]
    assert (cat["total"], cat["distinct_ids"], cat["prompts"], cat["runs"]) == (n * spp, n * spp, n, 1)
    assert cat["kept"] + cat["rejected"] == n * spp
    st = got["status"]
    assert st["deployed"] and st["app_status"] == "RUNNING"
    assert st["dispatcher"]["totals"]["samples_committed"] == n * spp
    assert st["deployments"]["MultiViewGenerator"]["replicas"] == {"RUNNING": 1}
    # the fleet ran on the joined head, not on a Ray the CLI started for itself
    assert [m["node"] for m in st["metrics"]] == [cluster["registered"].rsplit(":", 1)[0]]
    assert not got["local_ray_file"], "the CLI started a local Ray instead of joining"
    assert f"committed {n * spp} samples" in got["down"]


@pytest.mark.slow
@pytest.mark.postgres
def test_join_by_host_port(cluster, tmp_path, pg_dsn, monkeypatch):
    got = _run_joined(tmp_path, pg_dsn, cluster["gcs"], {}, monkeypatch)
    _check(got, cluster)
    assert f"on Ray {cluster['gcs']}" in got["up"]


@pytest.mark.slow
@pytest.mark.postgres
def test_join_auto_finds_the_cluster_from_its_temp_dir(cluster, tmp_path, pg_dsn, monkeypatch):
    """``auto``: no RAY_ADDRESS; Ray reads the address ``ray start`` left in <RAY_TMPDIR>/ray."""
    got = _run_joined(tmp_path, pg_dsn, "auto", {"RAY_TMPDIR": cluster["tmpdir"]}, monkeypatch)
    _check(got, cluster)
    assert f"on Ray {cluster['registered']}" in got["up"]  # auto, resolved


@pytest.mark.slow
@pytest.mark.postgres
def test_join_by_ray_client(cluster, tmp_path, pg_dsn, monkeypatch):
    got = _run_joined(tmp_path, pg_dsn, cluster["client"], {}, monkeypatch)
    _check(got, cluster)


@pytest.mark.slow
@pytest.mark.postgres
def test_join_a_token_auth_cluster_without_setting_the_auth_mode(tmp_path, pg_dsn, monkeypatch):
    """A cluster with token auth, joined by host:port with only its token given (RAY_AUTH_TOKEN_PATH):
    `connect` asks the GCS and turns token auth on for the driver."""
    with ray_head("token") as head:
        got = _run_joined(tmp_path, pg_dsn, head["gcs"], {"RAY_AUTH_TOKEN_PATH": head["token_path"]}, monkeypatch)
        _check(got, head)


@pytest.mark.parametrize("address, complaint", [
    ("local", "leave the address empty"),
    ("http://10.0.0.5:8265", "8265 is the dashboard"),
    ("10.0.0.5", "lacks a port"),
    ("10.0.0.5:port", "port 1-65535"),
    ("10.0.0.5:70000", "port 1-65535"),
])
def test_bad_addresses_are_refused_with_the_accepted_forms(address, complaint):
    from serve.fleet.ops import FleetError, check_address

    with pytest.raises(FleetError, match="accepted: empty") as err:
        check_address(address)
    assert complaint in str(err.value)


@pytest.mark.parametrize("address", ["", "auto", " 10.0.0.5:6379 ", "head.example:6380", "ray://head:10001", "ray://head"])
def test_the_accepted_address_forms_pass(address):
    from serve.fleet.ops import check_address

    assert check_address(address) == address.strip()


def test_the_cli_refuses_a_bad_address_in_one_line(tmp_path):
    env = cli_env(fleet_env(tmp_path / ".vf3d", "postgresql://nobody@127.0.0.1:1/none"))
    proc = vf3d("fleet", "status", "--address", "http://10.0.0.5:8265", env=env, check=False, timeout_s=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "8265 is the dashboard" in proc.stderr and "ray://host:10001" in proc.stderr
    assert "Traceback" not in proc.stderr
