"""The fleet's two Ray Serve deployments.

``MultiViewGenerator`` — N replicas (fixed or autoscaled), each loading the generator ONCE and
serving ``generate(SampleRequest) -> GeneratedSample`` with ``@serve.batch`` dynamic batching.
Generation runs in a worker thread whose start time is recorded, so ``check_health`` fails a
replica whose call has run past ``fleet.stuck_timeout_s`` (a replica blocked in a long
synchronous call would otherwise keep answering health pings) and Serve replaces it.

``FleetDispatcher`` — one replica running :class:`engine.dispatch.Dispatcher` in a background
thread (lease → generate through the handle → score → commit → ack). Serve restarts it if it
dies; a restarted dispatcher continues the same run and exactly-once holds (sample ids are
deterministic). It answers ``status()``, ``drain()`` and HTTP GET (the status as JSON).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

logger = logging.getLogger("vf3d.fleet")

GENERATOR = "MultiViewGenerator"
DISPATCHER = "FleetDispatcher"


class StuckReplicaError(RuntimeError):
    """A generation call has run longer than fleet.stuck_timeout_s."""


def replica_threads(fleet: Any) -> int:
    """Torch / OpenMP threads of one generator replica: the CPUs it reserved, rounded, at least 1."""
    return max(1, round(fleet.num_cpus or 1))


def settings_from(args: Any):
    """Settings from a Settings object or a (JSON) dict of overrides layered on the environment."""
    from catalog.settings import Settings, load_settings

    if isinstance(args, Settings):
        return args
    return load_settings(**(args or {}))


@serve.deployment(name=GENERATOR, max_ongoing_requests=8, health_check_period_s=10, health_check_timeout_s=30)
class MultiViewGenerator:
    """Hosts one fleet model; see the module docstring."""

    def __init__(self, settings: Any = None):
        self.settings = settings_from(settings)
        self.fleet = self.settings.fleet
        self._apply_threads()
        from serve.fleet.models import load_model

        t0 = time.perf_counter()
        self.model = load_model(self.settings)
        self.load_s = time.perf_counter() - t0
        self.checkpoint_id = self.model.checkpoint_id
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vf3d-generate")
        self._calls = itertools.count()
        self._running: dict[int, float] = {}
        self.generate.set_max_batch_size(self.fleet.max_batch_size)
        self.generate.set_batch_wait_timeout_s(self.fleet.batch_wait_timeout_s)
        try:
            self.replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # noqa: BLE001 - outside Serve (direct use in tests)
            self.replica = f"local-{os.getpid()}"
        self.batches = 0
        self.samples = 0
        self.busy_s = 0.0

    def _apply_threads(self) -> None:
        """Torch intra-op threads = the CPUs this replica reserved (``OMP_NUM_THREADS`` matches: app.py)."""
        try:
            import torch

            torch.set_num_threads(replica_threads(self.fleet))
        except ImportError:  # torch is optional for stand-in models
            pass

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.1)
    async def generate(self, requests: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        call = next(self._calls)
        self._running[call] = time.monotonic()
        t0 = time.perf_counter()
        try:
            results = await asyncio.wait_for(
                loop.run_in_executor(self._executor, self._generate, list(requests)),
                timeout=self.fleet.request_timeout_s,
            )
        finally:
            self._running.pop(call, None)
        elapsed = time.perf_counter() - t0
        self.batches += 1
        self.samples += len(requests)
        self.busy_s += elapsed
        for r in results:
            r.replica = self.replica
            r.gen_s = elapsed / len(requests)
            r.batch_size = len(requests)
        return results

    def _generate(self, requests: list[Any]) -> list[Any]:
        """One batch: generate, then (``fleet.score_on='replica'``) scores and media, in this thread."""
        results = self.model.generate(requests)
        if self.fleet.score_on == "replica":
            from engine.dispatch import finish_samples

            finish_samples(results, [r.text for r in requests], self.settings, [r.run_id for r in requests])
        return results

    def check_health(self) -> None:
        """Fails while a generation call has run longer than ``fleet.stuck_timeout_s``."""
        if self._running:
            oldest = min(self._running.values())
            age = time.monotonic() - oldest
            if age > self.fleet.stuck_timeout_s:
                raise StuckReplicaError(
                    f"generation call running for {age:.0f}s > fleet.stuck_timeout_s={self.fleet.stuck_timeout_s:.0f}s"
                )

    def info(self) -> dict[str, Any]:
        running = list(self._running.values())
        return {
            "replica": self.replica,
            "pid": os.getpid(),
            "checkpoint_id": self.checkpoint_id,
            "load_s": self.load_s,
            "batches": self.batches,
            "samples": self.samples,
            "busy_s": self.busy_s,
            "running_for_s": (time.monotonic() - min(running)) if running else 0.0,
        }


@serve.deployment(name=DISPATCHER, num_replicas=1, max_ongoing_requests=16, health_check_period_s=10)
class FleetDispatcher:
    """Runs the dispatcher loop for one fleet run; see the module docstring."""

    def __init__(self, generator: Any, settings: Any = None, run_id: str = ""):
        from engine.dispatch import Dispatcher, new_run_id

        self.settings = settings_from(settings)
        self.fleet = self.settings.fleet
        self.generator = generator
        submit = Dispatcher.for_handle(generator, self.fleet.request_timeout_s)
        self.dispatcher = Dispatcher(
            self.settings, submit, run_id=run_id or new_run_id(), replica_count=self._replica_count
        )
        self._replicas = 0
        self._replicas_at = 0.0
        self.error = ""
        self.thread = threading.Thread(target=self._run, name="vf3d-dispatcher", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.dispatcher.run()
        except Exception as err:  # noqa: BLE001 - surfaced by check_health -> Serve restarts us
            logger.exception("vf3d dispatcher loop died")
            self.error = f"{type(err).__name__}: {err}"

    def _replica_count(self) -> int:
        now = time.monotonic()
        if now - self._replicas_at >= 5.0:
            self._replicas_at = now
            try:
                app = serve.status().applications.get(self.fleet.app_name)
                dep = app.deployments.get(GENERATOR) if app else None
                self._replicas = int(dep.replica_states.get("RUNNING", 0)) if dep else 0
            except Exception:  # noqa: BLE001
                pass
        return self._replicas

    def check_health(self) -> None:
        if self.error:
            raise RuntimeError(f"dispatcher loop died: {self.error}")
        if not self.thread.is_alive() and not self.dispatcher.finished:
            raise RuntimeError("dispatcher loop thread is gone")

    def status(self) -> dict[str, Any]:
        out = self.dispatcher.status()
        out["error"] = self.error
        out["replicas"] = self._replica_count()
        return out

    def drain(self) -> dict[str, Any]:
        """Stop leasing; in-flight samples finish and commit. Poll ``status()['finished']``."""
        self.dispatcher.drain()
        return self.status()

    def stop(self) -> dict[str, Any]:
        """Stop now: uncommitted leases are released back to the queue (no attempt counted)."""
        self.dispatcher.stop()
        return self.status()

    async def __call__(self, request: Any = None) -> dict[str, Any]:
        return self.status()

    def __del__(self) -> None:  # graceful shutdown: give leases back promptly
        try:
            if not self.dispatcher.finished:
                self.dispatcher.stop()
                self.thread.join(timeout=10)
        except Exception:  # noqa: BLE001
            pass
