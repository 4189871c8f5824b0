"""The fleet's Prometheus metrics (``vf3d_fleet_*``), exported through Ray's metrics agent."""

from __future__ import annotations

import logging

logger = logging.getLogger("vf3d.dispatch")


class FleetMetrics:
    """Ray Prometheus metrics when Ray is up; silently nothing otherwise (plain library use)."""

    def __init__(self, run_id: str):
        self.ok = False
        try:
            import ray

            if not ray.is_initialized():
                return
            from ray.util.metrics import Counter, Gauge, Histogram

            tags = ("run_id",)
            self.generated = Counter("vf3d_fleet_samples_generated", "samples returned by the fleet", tags + ("replica",))
            self.kept = Counter("vf3d_fleet_samples_kept", "committed samples at or above the quality threshold", tags)
            self.rejected = Counter("vf3d_fleet_samples_rejected", "committed samples below the quality threshold", tags)
            self.retries = Counter("vf3d_fleet_retries", "requests retried after a system failure", tags)
            self.failures = Counter("vf3d_fleet_prompt_failures", "prompts nacked with an error", tags)
            self.expiries = Counter("vf3d_fleet_lease_expiries", "acks refused because the lease had expired", tags)
            self.queue_depth = Gauge("vf3d_fleet_queue_depth", "prompt-queue items by state", tags + ("state",))
            self.in_flight = Gauge("vf3d_fleet_in_flight", "sample requests in flight", tags)
            self.replicas = Gauge("vf3d_fleet_replicas", "running generator replicas", tags)
            self.cost = Gauge(
                "vf3d_fleet_replica_seconds_per_kept_sample", "replica-seconds paid per kept sample", tags
            )
            self.throughput = Gauge(
                "vf3d_fleet_replica_samples_per_s", "samples per busy second of one replica", tags + ("replica",)
            )
            self.commit_latency = Histogram(
                "vf3d_fleet_commit_latency_s", "catalog batch commit latency", [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], tags
            )
            self.tags = {"run_id": run_id}
            self.ok = True
        except Exception as err:  # noqa: BLE001 - metrics must never stop the engine
            logger.warning("fleet metrics disabled: %s", err)

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        if self.ok and value:
            getattr(self, name).inc(value, tags={**self.tags, **tags})

    def set(self, name: str, value: float, **tags: str) -> None:
        if self.ok:
            getattr(self, name).set(float(value), tags={**self.tags, **tags})

    def observe(self, name: str, value: float) -> None:
        if self.ok:
            getattr(self, name).observe(float(value), tags=self.tags)


