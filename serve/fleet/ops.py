"""Fleet operations: connect to (or start) Ray, deploy, scale, watch and stop the fleet.

The CLI (``vf3d fleet …``) and the tests call these; they return plain data and never print.

Ray: ``address`` ``""`` = a local Ray started here with ``ray start --head --block`` (a free GCS
port — never 6379, Redis's and Ray's default — no dashboard, ``num_cpus`` = the machine's),
recorded in ``<root>/fleet/ray.json`` so later commands join it and ``down`` stops exactly that
process; ``auto`` = the cluster this machine belongs to; ``host:port`` / ``ray://host:10001`` =
an existing cluster.

Metrics: every Ray node's metrics agent serves the fleet's ``vf3d_fleet_*`` metrics (with Ray's
``ray_`` prefix, counters with ``_total``) in Prometheus text format at
``http://<node-ip>:<metrics_export_port>/metrics``; the local Ray takes its port from
``compute.metrics_export_port`` and :func:`status` lists every node's URL.
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


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def start_local_ray(settings: Any, num_cpus: int | None = None, timeout_s: float = 90.0) -> str:
    """Start a local Ray head (``ray start --head --block`` in its own session); returns its address.

    Its Prometheus endpoint listens on ``compute.metrics_export_port`` (0: a free port picked
    here); ``ray.json`` records the port and the URL."""
    state = _state_file(settings)
    state.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    metrics_port = int(settings.compute.metrics_export_port)
    if not metrics_port:
        metrics_port = free_port(avoid=(6379, port))
    elif metrics_port == port or _port_in_use(metrics_port):
        raise FleetError(
            f"metrics port {metrics_port} (VF3D_COMPUTE__METRICS_EXPORT_PORT) is already in use; "
            "set it to a free port, or to 0 to let `vf3d fleet up` pick one"
        )
    cpus = int(num_cpus or os.cpu_count() or 1)
    ray_bin = Path(sys.executable).parent / "ray"
    cmd = [
        str(ray_bin) if ray_bin.exists() else "ray", "start", "--head", f"--port={port}",
        f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats",
        f"--metrics-export-port={metrics_port}", "--block",
    ]
    env = {**os.environ, **_auth_env(settings, create=True)}
    # `down` stops this node after the fleet has drained: Ray's SIGTERM node drain (30 s by
    # default, waiting for the detached Serve controller to go idle) has nothing to migrate here
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    log_path = state.parent / "ray-head.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FleetError(f"local Ray did not start (exit {proc.returncode}); see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        raise FleetError(f"local Ray did not answer on {address} within {timeout_s:.0f}s; see {log_path}")
    state.write_text(json.dumps({
        "address": address, "pid": proc.pid, "started": time.time(), "metrics_export_port": metrics_port,
        "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
    }))
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
    """SIGTERM the ``ray start --block`` process recorded by :func:`start_local_ray` (it stops its
    node); SIGKILL its process group if it has not exited after ``timeout_s``."""
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
    else:
        try:
            os.killpg(pid, signal.SIGKILL)  # its own session: start_new_session=True
        except OSError:
            pass
    state.unlink(missing_ok=True)
    return True


ADDRESS_FORMS = "empty (a local Ray started here), 'auto', host:port (the GCS, e.g. 10.0.0.5:6379) or ray://host:10001"


def check_address(address: str) -> str:
    """The address stripped, or :class:`FleetError` naming the accepted forms (see the module docstring)."""
    address = address.strip()
    if address in ("", "auto"):
        return address
    if address == "local":
        raise FleetError(
            "--address local would start a Ray inside this command that dies with it (and the fleet with it); "
            f"leave the address empty to start a local Ray that outlives the command; accepted: {ADDRESS_FORMS}"
        )
    scheme, sep, rest = address.partition("://")
    if sep and scheme != "ray":
        hint = " (port 8265 is the dashboard/Jobs API, not a Ray address)" if rest.rstrip("/").endswith(":8265") else ""
        raise FleetError(f"Ray address {address!r} has scheme {scheme + '://'!r}{hint}; accepted: {ADDRESS_FORMS}")
    hostport = rest if sep else address
    host, colon, port = hostport.rpartition(":")
    if not colon:
        if sep and hostport and "/" not in hostport:  # ray://host: Ray Client's default port 10001
            return address
        raise FleetError(f"Ray address {address!r} lacks a port; accepted: {ADDRESS_FORMS}")
    if not host or "/" in hostport or not port.isdigit() or not 0 < int(port) < 65536:
        raise FleetError(f"Ray address {address!r} is not host:port with a port 1-65535; accepted: {ADDRESS_FORMS}")
    return address


def _set_ray_env(env: dict[str, str]) -> None:
    """Set Ray auth variables for this process; Ray's C++ config re-reads them (before ``ray.init``)."""
    os.environ.update(env)
    from ray._raylet import Config

    Config.initialize("")


def _is_this_machine(host: str) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


def _same_cluster(address: str, local_address: str) -> bool:
    """``address`` (host:port) is the GCS of the local Ray recorded here (by port, on this machine)."""
    host, _, port = address.rpartition(":")
    return port == local_address.rpartition(":")[2] and _is_this_machine(host)


def _resolve_auto() -> str:
    """What Ray's ``auto`` means here: RAY_ADDRESS, else the cluster the last ``ray start`` on this
    machine recorded (``<RAY_TMPDIR or /tmp>/ray/ray_current_cluster``), else a running GCS."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return check_address(env)
    from ray._private.services import canonicalize_bootstrap_address

    try:
        found = canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError):
        found = None
    if not found:
        raise FleetError(
            "--address auto found no Ray cluster on this machine (no address left by `ray start` in "
            "<RAY_TMPDIR or /tmp>/ray/ray_current_cluster, no GCS process, no RAY_ADDRESS); start one with "
            "`ray start --head`, or give host:port or ray://host:10001, or leave the address empty for a local Ray"
        )
    return found


def _gcs_auth_mode(address: str) -> str | None:
    """What the GCS at host:port asks of clients: ``token``, ``disabled``, or None if it cannot be asked.

    A client without auth is refused at once by a token cluster and served by one without."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    _set_ray_env({"RAY_AUTH_MODE": "disabled"})
    try:
        GcsClient(address=address)
    except AuthenticationError:
        return "token"
    except Exception:  # noqa: BLE001 - unreachable etc.: ray.init reports it
        return None
    finally:
        os.environ.pop("RAY_AUTH_MODE", None)
        _set_ray_env({})
    return "disabled"


def connect(settings: Any, address: str | None = None, *, start: bool = True) -> str:
    """``ray.init`` to the fleet's cluster (see the module docstring); returns the address used
    (``auto`` resolved to the cluster's host:port).

    Token auth: the local Ray started here uses its own token. For a cluster joined by host:port
    or ``auto``, unless ``RAY_AUTH_MODE`` is set, the driver takes the cluster's own mode (asked of
    its GCS): Ray's ``auto`` would otherwise turn token auth on whenever ``~/.ray/auth_token``
    exists, and a token driver on a cluster without auth connects but never gets replies from
    Serve replicas."""
    address = check_address(address if address is not None else (settings.compute.ray_address or ""))
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return address or "current"
    local = local_ray(settings)
    if not address:
        if local is not None:
            address = local["address"]
        elif start:
            address = start_local_ray(settings)
            local = local_ray(settings)
        else:
            raise FleetError("no fleet is running here (no local Ray recorded); start one with `vf3d fleet up`")
    elif address == "auto":
        address = _resolve_auto()
    if not address.startswith("ray://"):  # (Ray Client: its server handles auth)
        if local is not None and _same_cluster(address, local["address"]):
            _set_ray_env(_auth_env(settings))  # our own local Ray's token
        elif "RAY_AUTH_MODE" not in os.environ:
            mode = _gcs_auth_mode(address)
            if mode is not None:
                _set_ray_env({"RAY_AUTH_MODE": mode})
    import ray

    try:
        ray.init(address=address, namespace=RAY_NAMESPACE, logging_level="WARNING", log_to_driver=False)
    except Exception as err:  # noqa: BLE001
        ours = (f" (the local Ray `vf3d fleet up` started at {local['address']} takes the token in "
                f"{_state_file(settings).parent / 'auth_token'}: leave --address empty to join it)") if local else ""
        raise FleetError(
            f"cannot connect to Ray at {address!r}: {type(err).__name__}: {err}. "
            f"Give --address as {ADDRESS_FORMS}; "
            "a cluster with token auth needs its token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
            f"{ours}"
        ) from None
    return address


def metrics_urls() -> list[dict[str, Any]]:
    """Every alive node's Prometheus endpoint (Ray's metrics agent): ``[{node, url}]``."""
    import ray

    out = []
    for node in ray.nodes():
        port = int(node.get("MetricsExportPort") or 0)
        if node.get("Alive") and port > 0:
            ip = node.get("NodeManagerAddress", "127.0.0.1")
            out.append({"node": ip, "head": bool(node.get("Resources", {}).get("node:__internal_head__")),
                        "url": f"http://{ip}:{port}/metrics"})
    return sorted(out, key=lambda m: (not m["head"], m["node"]))


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
    """Replicas and their states, queue depth by state, the dispatcher's rates, totals, last errors,
    and each node's Prometheus URL (``metrics``)."""
    from ray import serve

    app_name = settings.fleet.app_name
    out: dict[str, Any] = {"app": app_name, "deployed": False}
    try:
        out["metrics"] = metrics_urls()
    except Exception as err:  # noqa: BLE001
        out["metrics"] = [{"error": f"{type(err).__name__}: {err}"}]
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
