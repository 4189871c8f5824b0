"""The one typed settings object for all of vf3d.

Values come, highest priority first, from: keyword arguments, ``VF3D_*`` environment
variables (sections use a double underscore: ``VF3D_S3__ENDPOINT``), a ``vf3d.toml`` file
(path from ``VF3D_CONFIG``, else ``./vf3d.toml``; one TOML table per section), then the
embedded defaults, which put everything under ``./.vf3d/`` and need no services.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from catalog.errors import SettingsError


class S3Settings(BaseModel):
    """An S3-compatible object store (MinIO in production, any S3 server). Unset endpoint = local dir."""

    endpoint: str = Field("", description="host:port of the S3 server; empty keeps objects on local disk")
    bucket: str = Field("vf3d", description="bucket holding every vf3d object")
    prefix: str = Field("", description="key prefix inside the bucket (lets several deployments share one)")
    access_key: SecretStr = Field(SecretStr(""), description="S3 access key")
    secret_key: SecretStr = Field(SecretStr(""), description="S3 secret key")
    region: str = Field("us-east-1", description="S3 region")
    secure: bool = Field(False, description="use https to reach the endpoint")


class StoreSettings(BaseModel):
    """How vf3d talks to its object store (the local directory or the S3 server)."""

    local_dir: Path | None = Field(None, description="directory of the local object store; empty: <root>/objects")
    max_attempts: int = Field(5, ge=1, description="tries per S3 request on transient errors (backoff with jitter)")
    backoff_s: float = Field(0.2, ge=0, description="first retry delay; doubles each retry, capped at 5 s, full jitter")
    connect_timeout_s: float = Field(3.0, gt=0, description="TCP connect timeout to the S3 endpoint")
    read_timeout_s: float = Field(120.0, gt=0, description="socket read timeout for S3 requests")
    part_size_mb: int = Field(16, ge=5, le=5120, description="multipart part size for streamed uploads (MiB)")
    parallel_uploads: int = Field(3, ge=1, description="parts uploaded at once per multipart upload")


class CatalogSettings(BaseModel):
    """Where the DuckLake catalog keeps its metadata."""

    metadata_dsn: str = Field(
        "",
        description="empty: a SQLite file under root; 'postgresql://user@host:port/db' for multi-writer fleets",
    )
    name: str = Field("vf3d", description="name the DuckLake catalog is attached as")


class SqlSettings(BaseModel):
    """Limits on curators' read-only SQL."""

    row_limit: int = Field(10_000, ge=1, description="most rows one query returns")
    timeout_s: float = Field(60.0, gt=0, description="a query running longer is interrupted")


class QueueSettings(BaseModel):
    """The durable prompt queue (SQLModel)."""

    dsn: str = Field("", description="empty: a SQLite file under root; a SQLAlchemy/Postgres URL for fleets")
    max_attempts: int = Field(3, ge=1, description="attempts before a prompt is dead-lettered")
    lease_ttl_s: float = Field(600.0, gt=0, description="an unacknowledged lease returns to the queue after this")


class ComputeSettings(BaseModel):
    """Device and precision for every model (generator, scorers, LRM)."""

    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="'auto' picks cuda when present")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field("no", description="autocast dtype on GPU")
    batch_size: int = Field(4, ge=1, description="default batch size for generation and scoring")
    ray_address: str = Field("", description="empty: start a local Ray; 'auto', host:port (the GCS) or 'ray://host:10001' to join one")
    metrics_export_port: int = Field(
        0, ge=0, le=65535,
        description="Prometheus /metrics port of the local Ray `vf3d fleet up` starts (`vf3d fleet status` prints the URL); 0 = a free port",
    )


class FleetSettings(BaseModel):
    """The generator fleet: Ray Serve replicas, batching, health, scaling, dispatch, quality gate."""

    model: str = Field("pipeline", description="'pipeline' (the multi-view generator), 'standin' (fixed-latency fake), or 'module:factory'")
    checkpoint: str = Field("", description="generator checkpoint dir or hub id; empty = the embedded default")
    standin_latency_s: float = Field(0.05, ge=0, description="stand-in model: seconds per batch call (latency-bound, GIL released)")
    replicas: int = Field(2, ge=0, description="fixed number of generator replicas (when autoscale is off)")
    autoscale: bool = Field(False, description="scale replicas on prompt-queue depth between min_replicas and max_replicas")
    min_replicas: int = Field(1, ge=0, description="autoscaling floor; 0 allows scale to zero when idle")
    max_replicas: int = Field(8, ge=1, description="autoscaling ceiling")
    prompts_per_replica: float = Field(16.0, gt=0, description="autoscaling target: pending prompts one replica should own")
    upscale_delay_s: float = Field(30.0, ge=0, description="demand must persist this long before replicas are added")
    downscale_delay_s: float = Field(300.0, ge=0, description="idle this long before replicas are removed (longer than a model load)")
    downscale_to_zero_delay_s: float = Field(600.0, ge=0, description="idle this long before the last replica goes (min_replicas 0)")
    autoscale_poll_s: float = Field(5.0, gt=0, description="how often the autoscaling policy reads the queue depth")
    max_batch_size: int = Field(4, ge=1, description="@serve.batch: most samples in one generator call")
    batch_wait_timeout_s: float = Field(0.1, ge=0, description="@serve.batch: wait this long for a batch to fill")
    max_ongoing_requests: int = Field(0, ge=0, description="per replica; 0 = 4 x max_batch_size (queued work keeps batches full; must be >= max_batch_size)")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per generator replica")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per generator replica (1 on GPU nodes)")
    dispatcher_num_cpus: float = Field(0.5, ge=0, description="CPUs reserved for the dispatcher (commits; scoring and media too when score_on='dispatcher')")
    score_on: Literal["replica", "dispatcher"] = Field(
        "replica", description="where quality scores and media encoding run: in each generator replica after its batch, or in the one dispatcher"
    )
    stuck_timeout_s: float = Field(600.0, gt=0, description="a generation call running longer fails the replica's health check")
    request_timeout_s: float = Field(900.0, gt=0, description="the dispatcher gives up on one request after this")
    health_check_period_s: float = Field(10.0, gt=0, description="Serve health-check period for generator replicas")
    request_retries: int = Field(2, ge=0, description="dispatcher retries of a request that failed for system reasons (replica died, timeout)")
    lease_batch: int = Field(8, ge=1, description="prompts leased (and committed) together")
    max_in_flight: int = Field(16, ge=1, description="sample requests in flight to the fleet (backpressure)")
    quality_threshold: float = Field(0.5, ge=0, le=1, description="score_overall at or above = kept, below = rejected (both stored)")
    seed: int = Field(0, description="base seed; per-sample seeds derive from it, the prompt id and the sample index")
    num_views: int | None = Field(None, ge=1, description="views per sample; None = the checkpoint's default")
    steps: int | None = Field(None, ge=1, description="denoising steps; None = the checkpoint's default")
    guidance_scale: float | None = Field(None, ge=0, description="classifier-free guidance; None = the checkpoint's default")
    commit_retry_s: float = Field(300.0, ge=0, description="keep retrying a failed catalog commit this long before giving the leases back")
    poll_interval_s: float = Field(1.0, gt=0, description="dispatcher idle poll of an empty queue")
    app_name: str = Field("vf3d-fleet", description="Ray Serve application name of the fleet")


class QualitySettings(BaseModel):
    """Quality scoring of generated orbits (engine.quality)."""

    clip_model_path: str = Field(
        "", description="folder of a transformers CLIP model for CLIPScore; empty = no CLIP score (stored as NULL)"
    )
    weights: dict[str, float] = Field(
        default_factory=lambda: {"consistency": 0.35, "framing": 0.2, "sharpness": 0.2, "prompt_color": 0.15, "clip": 0.1},
        description="weights of the overall score (a weighted mean of the available scores)",
    )


class Settings(BaseSettings):
    """Effective vf3d settings. ``vf3d config`` prints them with secrets masked."""

    model_config = SettingsConfigDict(
        env_prefix="VF3D_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    root: Path = Field(Path(".vf3d"), description="home of every embedded-default file (objects, SQLite catalogs)")
    s3: S3Settings = Field(default_factory=S3Settings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    compute: ComputeSettings = Field(default_factory=ComputeSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("VF3D_CONFIG", "vf3d.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3.endpoint)

    def masked(self) -> dict[str, Any]:
        """Settings as plain data with every secret replaced by '***' (or '' when unset)."""
        data = self.model_dump(mode="python")

        def mask(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: mask(v) for k, v in value.items()}
            if isinstance(value, SecretStr):
                return "***" if value.get_secret_value() else ""
            if isinstance(value, Path):
                return str(value)
            return value

        masked = mask(data)
        for section in ("catalog", "queue"):
            masked[section] = {k: _mask_dsn(v) if k.endswith("dsn") else v for k, v in masked[section].items()}
        return masked


def settings_reference() -> list[tuple[str, str, str]]:
    """(env var, default, description) for every setting, in declaration order (for docs)."""
    rows = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub, sub_field in annotation.model_fields.items():
                default = sub_field.get_default(call_default_factory=True)
                if isinstance(default, SecretStr):
                    default = ""
                rows.append((f"VF3D_{name.upper()}__{sub.upper()}", repr(default), sub_field.description or ""))
        else:
            rows.append((f"VF3D_{name.upper()}", repr(str(field.get_default(call_default_factory=True))), field.description or ""))
    return rows


def _mask_dsn(dsn: str) -> str:
    """Hide a password inside a DSN such as postgresql://user:pw@host/db."""
    if "://" not in dsn or "@" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def load_settings(**overrides: Any) -> Settings:
    """Build the effective settings; raises ``SettingsError`` with the offending setting named."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        name = "VF3D_" + "__".join(str(p).upper() for p in first["loc"])
        raise SettingsError(f"setting {name}: {first['msg']} (got {first.get('input')!r})") from None
