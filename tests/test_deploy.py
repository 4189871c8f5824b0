"""deploy/: every YAML parses; Kubernetes objects validate against the bundled 1.37 schemas
(kubernetes-validate, offline); the RayService's embedded Serve config validates against Ray's
``ServeDeploySchema`` and its import paths resolve; the compose file passes a structural check
of the Compose spec (no docker engine here); the Dockerfile builds CPU and CUDA from one file.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.37.0"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all_yaml() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _rayservice() -> dict:
    (doc,) = _docs(K8S / "rayservice.yaml")
    return doc


def test_every_yaml_parses():
    files = _all_yaml()
    assert {p.name for p in files} >= {"docker-compose.yml", "rayservice.yaml", "minio.yaml", "postgres.yaml", "config.yaml"}
    for path in files:
        docs = _docs(path)
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), path


def _core_objects() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _docs(path):
            if doc.get("apiVersion", "").startswith("ray.io/"):
                continue
            out.append((path, doc))
    return out


def test_kubernetes_core_objects_validate_strict():
    import kubernetes_validate

    objects = _core_objects()
    kinds = {d["kind"] for _, d in objects}
    assert kinds >= {"Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "Job"}
    for path, doc in objects:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"].get("namespace", "vf3d") == "vf3d", f"{path}: {doc['kind']} outside namespace vf3d"


def test_kubernetes_validation_rejects_a_broken_manifest():
    """The validator really checks (offline): a misspelt field and a wrong type both fail."""
    import kubernetes_validate

    (_, sts) = next((p, d) for p, d in _core_objects() if d["kind"] == "StatefulSet")
    bad = yaml.safe_load(yaml.safe_dump(sts))
    bad["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = yaml.safe_load(yaml.safe_dump(sts))
    bad["spec"]["template"]["spec"]["containerz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_rayservice_pod_templates_validate_as_core_pod_templates():
    """RayService is a CRD (no bundled schema): its pod templates are core PodTemplateSpecs."""
    import kubernetes_validate

    rs = _rayservice()
    assert rs["apiVersion"] == "ray.io/v1" and rs["kind"] == "RayService"
    cluster = rs["spec"]["rayClusterConfig"]
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    for name, group in groups:
        tmpl = {
            "apiVersion": "v1", "kind": "PodTemplate",
            "metadata": {"name": f"vf3d-{name}", "namespace": "vf3d"},
            "template": group["template"],
        }
        kubernetes_validate.validate(tmpl, K8S_VERSION, strict=True)
        assert isinstance(group["rayStartParams"], dict)
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), f"{name}: rayStartParams must be strings"
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]


def test_rayservice_matches_ray_and_has_a_gpu_group():
    import ray

    cluster = _rayservice()["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    gpu = [g for g in cluster["workerGroupSpecs"] if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu, "no GPU worker group"
    serve_cfg = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    gen = next(d for d in serve_cfg["applications"][0]["deployments"] if d["name"] == "MultiViewGenerator")
    gpus_per_pod = int(gpu[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert 0 < gen["ray_actor_options"]["num_gpus"] <= gpus_per_pod
    assert gen["autoscaling_config"]["max_replicas"] <= sum(g["maxReplicas"] for g in gpu) * gpus_per_pod


def test_serve_config_validates_against_serve_deploy_schema():
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(raw)
    (app,) = schema.applications
    assert app.import_path == "serve.fleet.app:build_app"
    names = {d.name for d in app.deployments}
    assert names == {"MultiViewGenerator", "FleetDispatcher"}
    gen = next(d for d in app.deployments if d.name == "MultiViewGenerator")
    auto = AutoscalingConfig(**gen.autoscaling_config) if isinstance(gen.autoscaling_config, dict) else gen.autoscaling_config
    assert auto.min_replicas == 0 and auto.max_replicas >= 1
    assert auto.upscale_delay_s >= 30 and auto.downscale_delay_s >= auto.upscale_delay_s
    # @serve.batch can fill: max_ongoing_requests >= the batch size in the app args
    assert gen.max_ongoing_requests >= app.args["fleet"]["max_batch_size"]


def test_serve_config_import_paths_resolve_and_the_app_builds():
    """The builder and the autoscaling policy named in the config import, and the app builds from its args."""
    raw = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    app = raw["applications"][0]
    module, attr = app["import_path"].split(":")
    build_app = getattr(importlib.import_module(module), attr)
    gen = next(d for d in app["deployments"] if d["name"] == "MultiViewGenerator")
    policy_path = gen["autoscaling_config"]["policy"]["policy_function"]
    pmod, pattr = policy_path.split(":")
    policy_cls = getattr(importlib.import_module(pmod), pattr)
    policy = policy_cls(**gen["autoscaling_config"]["policy"]["policy_kwargs"])
    assert policy.desired(backlog=100, min_replicas=0, max_replicas=16) == 4  # 100 / 32 prompts per replica
    built = build_app(app["args"])
    assert type(built).__name__ == "Application"


def test_local_serve_config_validates_too(tmp_path):
    """What `vf3d fleet up` deploys (fixed and autoscaled) is a valid ServeDeploySchema."""
    from ray.serve.schema import ServeDeploySchema

    from catalog.settings import load_settings
    from serve.fleet.app import serve_config

    for fleet in ({"replicas": 3}, {"autoscale": True, "min_replicas": 0, "max_replicas": 4}):
        settings = load_settings(root=tmp_path, fleet=fleet)
        cfg = serve_config(settings, "run-x")
        schema = ServeDeploySchema.model_validate(cfg)
        gen = next(d for d in schema.applications[0].deployments if d.name == "MultiViewGenerator")
        assert gen.max_ongoing_requests >= settings.fleet.max_batch_size
        if fleet.get("autoscale"):
            assert gen.autoscaling_config["policy"]["policy_function"] == "serve.fleet.autoscale:QueueDepthPolicy"
        else:
            assert gen.num_replicas == 3


# ------------------------------------------------------------------------------- compose
# Structural check against the Compose specification (compose-spec.json's rules, written out
# here): no docker engine runs on these machines, so `docker compose config` is unavailable.
COMPOSE_TOP = {"version", "name", "services", "networks", "volumes", "secrets", "configs", "include", "models"}
SERVICE_KEYS = {
    "annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop", "cgroup", "cgroup_parent", "command",
    "configs", "container_name", "cpu_count", "cpu_percent", "cpu_shares", "cpu_quota", "cpu_period", "cpu_rt_period",
    "cpu_rt_runtime", "cpus", "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file", "environment", "expose",
    "extends", "external_links", "extra_hosts", "gpus", "group_add", "healthcheck", "hostname", "image", "init",
    "ipc", "isolation", "labels", "links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness",
    "memswap_limit", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform",
    "ports", "post_start", "pre_stop", "privileged", "profiles", "pull_policy", "read_only", "restart", "runtime",
    "scale", "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt",
    "sysctls", "tmpfs", "tty", "ulimits", "user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir",
    "models", "label_file", "use_api_socket",
}
HEALTHCHECK_KEYS = {"disable", "interval", "retries", "test", "timeout", "start_period", "start_interval"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART = {"no", "always", "on-failure", "unless-stopped"}
INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+]([^}]*))?\}|\$\$|\$([A-Za-z_][A-Za-z0-9_]*)")


def _interpolate(value):
    """Compose variable interpolation with defaults (unset variables -> their default or '')."""
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, str):
        assert value.count("${") == len(re.findall(r"\$\{[^}]*\}", value)), f"unbalanced interpolation in {value!r}"
        return INTERP.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), value)
    return value


def _compose() -> dict:
    return _interpolate(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def test_compose_file_is_structurally_valid():
    doc = _compose()
    extra = {k for k in doc if not k.startswith("x-")} - COMPOSE_TOP
    assert not extra, f"unknown top-level keys {extra}"
    services = doc["services"]
    volumes = set(doc.get("volumes") or {})
    for name, svc in services.items():
        assert re.fullmatch(r"[a-zA-Z0-9._-]+", name)
        unknown = {k for k in svc if not k.startswith("x-")} - SERVICE_KEYS
        assert not unknown, f"service {name}: unknown keys {unknown}"
        assert "image" in svc or "build" in svc, f"service {name} has neither image nor build"
        deps = svc.get("depends_on") or {}
        for dep, cond in (deps.items() if isinstance(deps, dict) else ((d, {"condition": "service_started"}) for d in deps)):
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond["condition"] in DEPENDS_CONDITIONS
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy but {dep} has no healthcheck"
        if "healthcheck" in svc:
            assert set(svc["healthcheck"]) <= HEALTHCHECK_KEYS
            test = svc["healthcheck"]["test"]
            assert isinstance(test, str) or test[0] in ("CMD", "CMD-SHELL", "NONE")
        if "restart" in svc:
            assert svc["restart"] in RESTART
        env = svc.get("environment") or {}
        assert isinstance(env, dict) and all(isinstance(v, (str, int, float, bool)) or v is None for v in env.values())
        for port in svc.get("ports") or []:
            assert re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+(-\d+)?:\d+(-\d+)?(/(tcp|udp))?", str(port)), port
        for vol in svc.get("volumes") or []:
            src = str(vol).split(":", 1)[0]
            if not src.startswith((".", "/", "~")):
                assert src in volumes, f"{name} mounts undeclared named volume {src}"
        if "deploy" in svc and "replicas" in svc["deploy"]:
            assert int(svc["deploy"]["replicas"]) >= 0
        for key in ("command", "entrypoint"):
            if key in svc:
                assert isinstance(svc[key], (str, list))


def test_compose_runs_the_fleet_stack_on_one_host():
    doc = _compose()
    services = doc["services"]
    assert {"postgres", "minio", "ray-head", "ray-worker", "fleet", "api"} <= set(services)
    head = services["ray-head"]["command"]
    port = next(a for a in head if a.startswith("--port="))
    assert port != "--port=6379", "Ray's default GCS port collides with Redis"
    assert any(a.startswith("--address=ray-head:" + port.split("=")[1]) for a in services["ray-worker"]["command"])
    env = services["fleet"]["environment"]
    assert env["VF3D_S3__ENDPOINT"] == "minio:9000"
    assert env["VF3D_QUEUE__DSN"].startswith("postgresql://") and "@postgres:5432/" in env["VF3D_QUEUE__DSN"]
    # the env variables name real settings
    from catalog.settings import load_settings

    vf3d_env = {k: v for k, v in env.items() if k.startswith("VF3D_")}
    overrides: dict = {}
    for key, value in vf3d_env.items():
        parts = key.removeprefix("VF3D_").lower().split("__")
        node = overrides
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    settings = load_settings(**overrides)
    assert settings.s3.endpoint == "minio:9000" and settings.fleet.num_gpus == 0


def test_dockerfile_builds_cpu_and_cuda_variants():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", text, re.M))
    assert {"base-cpu", "base-cuda"} <= stages
    assert re.search(r"^FROM base-\$\{VARIANT\} AS final$", text, re.M)
    assert "torch==${TORCH_VERSION}" in text and "whl/cpu" in text and re.search(r"whl/cu\d+", text)
    for src in re.findall(r"^COPY --chown=\S+ (\S+) ", text, re.M):
        for part in src.split():
            assert (DEPLOY.parent / part).exists(), f"Dockerfile copies missing {part}"
