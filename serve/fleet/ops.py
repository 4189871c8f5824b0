"""Fleet operations: connect to (or start) Ray, deploy, scale, watch and stop the fleet.

The CLI (``vf3d fleet …``) and the tests call these; they return plain data and never print.

Ray: ``address`` ``""`` = a local Ray started here with ``ray start --head --block`` (a free GCS
port — never 6379, Redis's and Ray's default — no dashboard, ``num_cpus`` = the machine's),
recorded in ``<root>/fleet/ray.json`` so later commands join it and ``down`` stops exactly that
process; ``auto`` = the cluster this machine belongs to; ``host:port`` / ``ray://host:10001`` =
an existing cluster.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from catalog.errors import Vf3dError
from serve.fleet.deployment import DISPATCHER, GENERATOR

RAY_NAMESPACE = "vf3d"


class FleetError(Vf3dError):
    """A fleet operation failed; the message names what and the fix."""


# ----------------------------------------------------------------------------- Ray
def _state_file(settings: Any) -> Path:
    return Path(settings.root).resolve() / "fleet" / "ray.json"


def free_port(avoid: tuple[int, ...] = (6379,)) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


def start_local_ray(settings: Any, num_cpus: int | None = None, timeout_s: float = 90.0) -> str:
    """Start a local Ray head (``ray start --head --block`` in its own session); returns its address."""
    state = _state_file(settings)
    state.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cpus = int(num_cpus or os.cpu_count() or 1)
    ray_bin = Path(sys.executable).parent / "ray"
    cmd = [
        str(ray_bin) if ray_bin.exists() else "ray", "start", "--head", f"--port={port}",
        f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats", "--block",
    ]
    token = _auth_env(settings, create=True)
    log = open(state.parent / "ray-head.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **token})
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FleetError(f"local Ray did not start (exit {proc.returncode}); see {state.parent / 'ray-head.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        raise FleetError(f"local Ray did not answer on {address} within {timeout_s:.0f}s; see {state.parent / 'ray-head.log'}")
    state.write_text(json.dumps({"address": address, "pid": proc.pid, "started": time.time()}))
    return address


def _auth_env(settings: Any, create: bool = False) -> dict[str, str]:
    """Ray token auth for the local Ray this CLI starts: a token file of its own under root."""
    path = _state_file(settings).parent / "auth_token"
    if create and not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    if not path.exists():
        return {}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def local_ray(settings: Any) -> dict[str, Any] | None:
    """The local Ray this CLI started (address, pid), if it is still alive."""
    state = _state_file(settings)
    if not state.exists():
        return None
    info = json.loads(state.read_text())
    try:
        os.kill(int(info["pid"]), 0)
    except OSError:
        return None
    return info


def stop_local_ray(settings: Any, timeout_s: float = 30.0) -> bool:
    """SIGTERM the ``ray start --block`` process recorded by :func:`start_local_ray` (it stops its node)."""
    info = local_ray(settings)
    state = _state_file(settings)
    if info is None:
        state.unlink(missing_ok=True)
        return False
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.3)
    state.unlink(missing_ok=True)
    return True


def connect(settings: Any, address: str | None = None, *, start: bool = True) -> str:
    """``ray.init`` to the fleet's cluster (see the module docstring); returns the address used."""
    address = address if address is not None else (settings.compute.ray_address or "")
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return address or "current"
    if not address:
        info = local_ray(settings)
        if info is not None:
            address = info["address"]
        elif start:
            address = start_local_ray(settings)
        else:
            raise FleetError("no fleet is running here (no local Ray recorded); start one with `vf3d fleet up`")
        # token auth of our own local Ray; set before Ray's C++ config is loaded
        os.environ.update(_auth_env(settings))
        if "ray" in sys.modules:
            from ray._raylet import Config

            Config.initialize("")
    import ray

    try:
        ray.init(address=address, namespace=RAY_NAMESPACE, logging_level="WARNING", log_to_driver=False)
    except Exception as err:  # noqa: BLE001
        raise FleetError(
            f"cannot connect to Ray at {address!r}: {type(err).__name__}: {err}. "
            "Pass --address auto (this machine's cluster), host:port or ray://host:10001, "
            "or leave it empty to start a local Ray (a cluster with token auth needs RAY_AUTH_MODE=token "
            "and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN_PATH)"
        ) from None
    return address


# ----------------------------------------------------------------------------- Serve
def _client():
    from ray import serve
    from ray.serve.context import _get_global_client

    serve.start(proxy_location="Disabled")
    return _get_global_client()


def deploy(config: dict[str, Any]) -> None:
    """Deploy a ServeDeploySchema dict declaratively (replica-count changes are lightweight)."""
    from ray.serve.schema import ServeDeploySchema

    _client().deploy_apps(ServeDeploySchema.model_validate(config))


def wait_running(app_name: str, timeout_s: float = 300.0, want_replicas: int | None = None) -> dict[str, Any]:
    """Block until the app is RUNNING (and the generator has ``want_replicas`` running)."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        last = app
        if app is not None and str(app.status) in ("RUNNING", "ApplicationStatus.RUNNING"):
            gen = app.deployments.get(GENERATOR)
            running = gen.replica_states.get("RUNNING", 0) if gen else 0
            if want_replicas is None or (running == want_replicas and sum(gen.replica_states.values()) == want_replicas):
                return {name: dict(d.replica_states) for name, d in app.deployments.items()}
        if app is not None and "DEPLOY_FAILED" in str(app.status):
            raise FleetError(f"fleet app {app_name!r} failed to deploy: {app.message}")
        time.sleep(0.25)
    msg = "not deployed"
    if last is not None:
        parts = [getattr(last, "message", "")] + [f"{n}: {d.message}" for n, d in last.deployments.items() if d.message]
        msg = "; ".join(p for p in parts if p) or str(last.status)
    raise FleetError(f"fleet app {app_name!r} not running after {timeout_s:.0f}s ({msg}); see `vf3d fleet status`")


def up(settings: Any, run_id: str | None = None, *, wait: bool = True, timeout_s: float = 300.0) -> str:
    """Deploy the fleet (generator replicas + dispatcher) for a new run; returns the run id."""
    from engine.dispatch import new_run_id
    from serve.fleet.app import serve_config

    run_id = run_id or new_run_id()
    deploy(serve_config(settings, run_id))
    if wait:
        wait_running(settings.fleet.app_name, timeout_s)
    return run_id


def deployed_config(app_name: str) -> dict[str, Any]:
    details = _client().get_serve_details()
    app = (details.get("applications") or {}).get(app_name)
    if not app or not app.get("deployed_app_config"):
        raise FleetError(f"no fleet app {app_name!r} is deployed; start one with `vf3d fleet up`")
    cfg = dict(app["deployed_app_config"])
    return cfg


def scale(settings: Any, replicas: int, *, wait: bool = True, timeout_s: float = 300.0) -> None:
    """Set a fixed generator replica count on the running fleet (autoscaling off); nothing restarts."""
    if replicas < 0:
        raise FleetError(f"replicas must be ≥ 0, got {replicas}")
    app_name = settings.fleet.app_name
    app_cfg = deployed_config(app_name)
    deps = [dict(d) for d in app_cfg.get("deployments") or []]
    found = False
    for dep in deps:
        if dep.get("name") == GENERATOR:
            dep.pop("autoscaling_config", None)
            dep["num_replicas"] = int(replicas)
            found = True
    if not found:
        deps.append({"name": GENERATOR, "num_replicas": int(replicas)})
    app_cfg["deployments"] = deps
    deploy({"proxy_location": "Disabled", "applications": [app_cfg]})
    if wait:
        wait_running(app_name, timeout_s, want_replicas=replicas)


def dispatcher(settings: Any):
    from ray import serve

    return serve.get_deployment_handle(DISPATCHER, settings.fleet.app_name)


def status(settings: Any, queue: Any = None) -> dict[str, Any]:
    """Replicas and their states, queue depth by state, the dispatcher's rates, totals, last errors."""
    from ray import serve

    app_name = settings.fleet.app_name
    out: dict[str, Any] = {"app": app_name, "deployed": False}
    app = serve.status().applications.get(app_name)
    if app is not None:
        out["deployed"] = True
        out["app_status"] = str(getattr(app.status, "value", app.status))
        out["deployments"] = {
            name: {"status": str(getattr(d.status, "value", d.status)), "replicas": dict(d.replica_states), "message": d.message}
            for name, d in app.deployments.items()
        }
        try:
            out["dispatcher"] = dispatcher(settings).status.remote().result(timeout_s=30)
        except Exception as err:  # noqa: BLE001
            out["dispatcher"] = {"error": f"{type(err).__name__}: {err}"}
    try:
        from engine.queue import PromptQueue

        q = queue or PromptQueue.from_settings(settings)
        out["queue"] = q.stats()
        out["queue_errors"] = [r for r in q.peek(5, state="dead")]
    except Exception as err:  # noqa: BLE001
        out["queue"] = {"error": f"{type(err).__name__}: {err}"}
    return out


def down(settings: Any, *, drain: bool = True, timeout_s: float = 600.0) -> dict[str, Any]:
    """Stop the fleet. ``drain``: stop leasing, let in-flight samples finish and commit; else
    stop at once and release uncommitted leases. Then delete the Serve app."""
    from ray import serve

    app_name = settings.fleet.app_name
    final: dict[str, Any] = {}
    if app_name in serve.status().applications:
        handle = dispatcher(settings)
        try:
            (handle.drain if drain else handle.stop).remote().result(timeout_s=60)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                final = handle.status.remote().result(timeout_s=60)
                if final.get("finished"):
                    break
                time.sleep(0.5)
            else:
                raise FleetError(f"fleet did not drain within {timeout_s:.0f}s; run `vf3d fleet down` without --drain")
        finally:
            serve.delete(app_name)
    return final
