"""Drive ``vf3d fleet …`` in subprocesses against real Ray, for the fleet's CLI tests.

Each Ray connection gets its own process (a driver is one per process), so the tests run the
console script the way ops do; settings reach it as ``VF3D_*`` variables, the same ones the
test process loads to enqueue prompts and read the catalog.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

VF3D = str(Path(sys.executable).parent / "vf3d")
RAY = str(Path(sys.executable).parent / "ray")
# Ray variables of the test process that must not leak into the commands under test
RAY_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR")


def fleet_env(root: Path, pg_dsn: str, **extra: str) -> dict[str, str]:
    """``VF3D_*`` settings of a small stand-in fleet on Postgres: 1 replica, half a CPU each."""
    fleet = {
        "MODEL": "standin", "STANDIN_LATENCY_S": "0.05", "REPLICAS": "1", "NUM_CPUS": "0.5",
        "DISPATCHER_NUM_CPUS": "0.5", "MAX_BATCH_SIZE": "4", "BATCH_WAIT_TIMEOUT_S": "0.05", "LEASE_BATCH": "4",
        "MAX_IN_FLIGHT": "8", "HEALTH_CHECK_PERIOD_S": "2.0", "REQUEST_TIMEOUT_S": "60.0",
        "COMMIT_RETRY_S": "60.0", "POLL_INTERVAL_S": "0.5", "QUALITY_THRESHOLD": "0.85",
    }
    env = {f"VF3D_FLEET__{k}": v for k, v in fleet.items()}
    env.update({
        "VF3D_ROOT": str(root), "VF3D_QUEUE__DSN": pg_dsn, "VF3D_QUEUE__LEASE_TTL_S": "30",
        "VF3D_CATALOG__METADATA_DSN": pg_dsn,
    })
    env.update(extra)
    return env


def cli_env(vf3d_env: dict[str, str], **ray_env: str) -> dict[str, str]:
    """The environment of one ``vf3d`` command: this process's, minus its Ray variables, plus these."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_VARS}
    env["COLUMNS"] = "250"  # rich wraps at 80 columns without a terminal
    env.update(vf3d_env)
    env.update(ray_env)
    return env


def vf3d(*args: str, env: dict[str, str], timeout_s: float = 180.0, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([VF3D, *args], check=False, env=env, capture_output=True, text=True, timeout=timeout_s)
    if check and proc.returncode != 0:
        raise AssertionError(f"vf3d {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def status_json(env: dict[str, str], *args: str) -> dict:
    out = vf3d("fleet", "status", "--json", *args, env=env).stdout
    return json.loads(out[out.index("{"):])


def enqueue(settings, n: int, samples_per_prompt: int):
    from engine.queue import PromptQueue

    queue = PromptQueue.from_settings(settings)
    colours = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple"]
    items = [{"prompt_id": f"prompt-{i:05d}", "text": f"a {colours[i % 8]} ceramic mug number {i}", "category": "mug"}
             for i in range(n)]
    assert queue.enqueue(items, samples_per_prompt=samples_per_prompt) == n
    return queue


def wait_done(queue, n: int, timeout_s: float = 120.0, during=None) -> dict:
    """Queue stats once ``n`` prompts are done or dead; ``during(stats)`` is called on every poll."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = queue.stats()
        if during is not None:
            during(stats)
        if stats["done"] + stats["dead"] >= n:
            return stats
        time.sleep(0.2)
    raise AssertionError(f"the fleet did not finish {n} prompts in {timeout_s:.0f}s: {queue.stats()}")


def catalog_counts(settings) -> dict:
    """Samples in the catalog: total, distinct ids and prompts, kept and rejected, run ids."""
    from catalog.ducklake import Catalog

    with Catalog.open(settings) as cat:
        row = cat.read(
            "SELECT count(*) AS total, count(DISTINCT sample_id) AS distinct_ids, count(DISTINCT prompt_id) AS prompts, "
            "count(*) FILTER (WHERE status = 'kept') AS kept, count(*) FILTER (WHERE status = 'rejected') AS rejected, "
            "count(DISTINCT run_id) AS runs FROM samples"
        ).to_pylist()[0]
    return row


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live process under it (from /proc: Ray's workers run in sessions of their
    own, so a process group does not hold them all)."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        if alive(p):
            tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def alive(pid: int) -> bool:
    """Running (a zombie awaiting its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def stop_ray_head(proc: subprocess.Popen, timeout_s: float = 30.0) -> list[int]:
    """SIGTERM a ``ray start --block`` (it stops its node), wait for it and every process under
    it, then SIGKILL what is left; returns the pids that had to be killed."""
    family = process_tree(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    left = wait_gone(family, timeout_s)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    wait_gone(left, 10)
    return left


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ray start exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"nothing listens on {port} after {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def ray_head(auth_mode: str = "disabled"):
    """A real Ray head (``ray start --head --block``, 2 CPUs, never port 6379) with a Ray Client
    server, in a temp dir of its own under a fresh ``RAY_TMPDIR`` (where ``auto`` finds it).
    ``auth_mode='token'``: token auth with a token file of its own (``token_path``)."""
    from serve.fleet.ops import free_port

    tmp = Path(tempfile.mkdtemp(prefix="vf3d-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    gcs_port = free_port()
    client_port = free_port(avoid=(6379, gcs_port))
    # no SIGTERM drain at teardown (Ray waits up to 30 s for the detached Serve controller to idle)
    ray_env = {"RAY_TMPDIR": str(tmp), "RAY_AUTH_MODE": auth_mode, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    token_path = tmp / "auth_token"
    if auth_mode == "token":
        token_path.write_text(os.urandom(24).hex())
        ray_env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    log = tmp / "head.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [RAY, "start", "--head", f"--port={gcs_port}", "--num-cpus=2", "--include-dashboard=false",
             "--disable-usage-stats", f"--ray-client-server-port={client_port}", f"--temp-dir={tmp / 'ray'}", "--block"],
            env=cli_env({}, **ray_env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    killed: list[int] = []
    try:
        _wait_port(gcs_port, proc, log)
        _wait_port(client_port, proc, log)
        address_file = tmp / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 60
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert address_file.exists(), f"ray start wrote no {address_file}"
        yield {"gcs": f"127.0.0.1:{gcs_port}", "client": f"ray://127.0.0.1:{client_port}", "tmpdir": str(tmp),
               "registered": address_file.read_text().strip(), "token_path": str(token_path)}
    finally:
        killed = stop_ray_head(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not killed, f"Ray processes outlived the head's SIGTERM and were killed: {killed}"
