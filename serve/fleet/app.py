"""The fleet as one Serve application, declared the same way everywhere.

``build_app(args)`` is the application builder named by every Serve config
(``import_path: serve.fleet.app:build_app``): the KubeRay RayService's ``serveConfigV2``,
``serve deploy``, and ``vf3d fleet up``, which deploys :func:`serve_config` through Serve's
declarative API. Declarative deploys let ``vf3d fleet scale N`` change only the replica count
(running replicas and the dispatcher are kept), where an imperative ``serve.run`` would
restart every replica.

``args`` = ``{"settings": {...vf3d settings overrides...}, "run_id": "..."}``; on a cluster
the settings come from the pods' ``VF3D_*`` environment and ``args`` holds only the fleet
section (``{"fleet": {...}}`` is accepted as a shorthand).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from serve.fleet.deployment import (
    DISPATCHER,
    GENERATOR,
    FleetDispatcher,
    MultiViewGenerator,
    replica_threads,
    settings_from,
)

IMPORT_PATH = "serve.fleet.app:build_app"
POLICY_PATH = "serve.fleet.autoscale:QueueDepthPolicy"


def settings_args(settings: Any) -> dict[str, Any]:
    """Settings as JSON-able overrides with secrets revealed and paths absolute (for replicas)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, Path):
            return str(value.resolve())
        return value

    return plain(settings.model_dump(mode="python"))


def _split_args(args: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    args = dict(args or {})
    run_id = str(args.pop("run_id", "") or "")
    overrides = args.pop("settings", None)
    if overrides is None:
        overrides = args  # shorthand: {"fleet": {...}, "queue": {...}}
    return dict(overrides), run_id


def max_ongoing(fleet: Any) -> int:
    """Per-replica request cap: ≥ max_batch_size so @serve.batch batches can fill."""
    return max(fleet.max_ongoing_requests or 4 * fleet.max_batch_size, fleet.max_batch_size)


def autoscaling_config(fleet: Any, queue_dsn: str = "", max_attempts: int = 3) -> dict[str, Any]:
    """Serve autoscaling config for the generator: queue-depth policy, delays, scale to zero."""
    return {
        "min_replicas": int(fleet.min_replicas),
        "max_replicas": int(max(fleet.max_replicas, fleet.min_replicas, 1)),
        "initial_replicas": int(max(fleet.min_replicas, 1 if fleet.min_replicas == 0 else fleet.min_replicas)),
        "upscale_delay_s": float(fleet.upscale_delay_s),
        "downscale_delay_s": float(fleet.downscale_delay_s),
        "downscale_to_zero_delay_s": float(fleet.downscale_to_zero_delay_s),
        "policy": {
            "policy_function": POLICY_PATH,
            "policy_kwargs": {
                "queue_dsn": queue_dsn,
                "prompts_per_replica": float(fleet.prompts_per_replica),
                "poll_interval_s": float(fleet.autoscale_poll_s),
                "max_attempts": int(max_attempts),
            },
        },
    }


def deployment_options(settings: Any) -> dict[str, dict[str, Any]]:
    """Serve options of both deployments, from the settings (the same dicts a Serve config holds).

    The generator's ``OMP_NUM_THREADS`` is set to :func:`replica_threads`: Ray would set it to
    floor(num_cpus), so a replica reserving 1.8 CPUs ran torch's 2 threads under an OpenMP default
    of 1 — about 10 % slower on 2 cores than the plain pipeline (bench/fleet_bench.py)."""
    fleet = settings.fleet
    gen: dict[str, Any] = {
        "name": GENERATOR,
        "max_ongoing_requests": max_ongoing(fleet),
        "ray_actor_options": {
            "num_cpus": float(fleet.num_cpus), "num_gpus": float(fleet.num_gpus),
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(replica_threads(fleet))}},
        },
        "health_check_period_s": float(fleet.health_check_period_s),
        "health_check_timeout_s": float(max(30.0, fleet.health_check_period_s)),
        "graceful_shutdown_timeout_s": float(min(fleet.request_timeout_s, 600.0)),
        "logging_config": {"enable_access_log": False},
    }
    if fleet.autoscale:
        gen["autoscaling_config"] = autoscaling_config(fleet, _queue_dsn(settings), settings.queue.max_attempts)
    else:
        gen["num_replicas"] = int(fleet.replicas)
    disp = {
        "name": DISPATCHER,
        "num_replicas": 1,
        "max_ongoing_requests": 16,
        "ray_actor_options": {"num_cpus": float(fleet.dispatcher_num_cpus), "num_gpus": 0.0},
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 60.0,
        "logging_config": {"enable_access_log": False},
    }
    return {GENERATOR: gen, DISPATCHER: disp}


def _queue_dsn(settings: Any) -> str:
    if settings.queue.dsn:
        return settings.queue.dsn
    return f"sqlite:///{Path(settings.root).resolve() / 'queue.sqlite'}"


def build_app(args: dict[str, Any] | None = None):
    """Serve application builder: FleetDispatcher(MultiViewGenerator) configured from settings."""
    overrides, run_id = _split_args(args)
    settings = settings_from(overrides)
    opts = deployment_options(settings)
    gen = {k: v for k, v in opts[GENERATOR].items() if k != "name"}
    if "autoscaling_config" in gen:
        from ray.serve.config import AutoscalingConfig, AutoscalingPolicy

        cfg = dict(gen["autoscaling_config"])
        cfg["policy"] = AutoscalingPolicy(**cfg["policy"])
        gen["autoscaling_config"] = AutoscalingConfig(**cfg)
    disp = {k: v for k, v in opts[DISPATCHER].items() if k != "name"}
    generator = MultiViewGenerator.options(**gen).bind(overrides)
    return FleetDispatcher.options(**disp).bind(generator, overrides, run_id)


def serve_config(settings: Any, run_id: str, *, include_settings: bool = True) -> dict[str, Any]:
    """A ``ServeDeploySchema`` dict for the fleet (what ``vf3d fleet up`` deploys)."""
    args: dict[str, Any] = {"run_id": run_id}
    args["settings"] = settings_args(settings) if include_settings else {"fleet": settings.fleet.model_dump(mode="json")}
    opts = deployment_options(settings)
    return {
        "proxy_location": "Disabled",
        "applications": [
            {
                "name": settings.fleet.app_name,
                "route_prefix": None,
                "import_path": IMPORT_PATH,
                "args": args,
                "deployments": [opts[GENERATOR], opts[DISPATCHER]],
            }
        ],
    }
