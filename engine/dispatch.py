"""The dispatcher: the engine's main loop from the prompt queue, through the fleet, into the catalog.

One dispatcher per fleet (DESIGN.md §6: one batched committer, not one per replica)::

    lease a batch of prompts ─► one request per sample ─► MultiViewGenerator replicas
        (bounded in flight = backpressure)            (Ray Serve handle, @serve.batch)
    all samples of the batch back ─► quality scores ─► media (npz, mp4, png)
        ─► catalog.commit_batch (one atomic, idempotent DuckLake commit) ─► ack the leases

Exactly-once by construction: sample ids are hashes of (prompt id, sample index, seed,
checkpoint id); before a commit the ids already in the catalog are dropped, and the batch id is
the hash of the remaining ids, so a crash anywhere (replica, dispatcher, object store, catalog)
only ever leads to a retry that writes nothing twice. Leases are acked only after their samples
are committed; a dispatcher that dies leaves leases that expire and are leased again.

Failures: a request that fails for system reasons (replica died, timeout) is retried up to
``fleet.request_retries`` times; then the prompt is nacked with the error (the queue
dead-letters it after ``queue.max_attempts``). A commit that fails (object store or catalog
down) is retried with backoff for ``fleet.commit_retry_s``, then its prompts are nacked.
The quality gate marks samples ``kept``/``rejected`` by ``fleet.quality_threshold``; both are stored.

Observability: Prometheus metrics through ``ray.util.metrics`` (``vf3d_fleet_*``), structured
log records (``extra={"run_id", "sample_id", "event"}``), and one ``runs`` row per fleet run
with its settings and totals.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue as queue_mod
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from catalog.errors import Vf3dError

logger = logging.getLogger("vf3d.dispatch")

SEED_MODULUS = 2**31 - 1


class DispatchError(Vf3dError):
    """The dispatcher cannot run; the message says which service or setting and the fix."""


# ----------------------------------------------------------------------------- ids and seeds
def sample_seed(base_seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one sample: a hash of (base seed, prompt id, sample index), in [0, 2^31-1)."""
    digest = hashlib.sha256(f"{int(base_seed)}\x1f{prompt_id}\x1f{int(sample_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_MODULUS


def batch_id_for(sample_ids: list[str]) -> str:
    """Deterministic batch id: the hash of the sorted sample ids it commits."""
    return "b-" + hashlib.sha256("\n".join(sorted(sample_ids)).encode()).hexdigest()[:32]


def new_run_id() -> str:
    return "fleet-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


# ----------------------------------------------------------------------------- totals
@dataclass
class RunTotals:
    """What one dispatcher has done so far (this process; the catalog holds the durable truth)."""

    prompts_leased: int = 0
    prompts_acked: int = 0
    prompts_nacked: int = 0
    prompts_released: int = 0
    samples_generated: int = 0
    samples_committed: int = 0
    samples_skipped_existing: int = 0
    samples_kept: int = 0
    samples_rejected: int = 0
    requests_failed: int = 0
    retries: int = 0
    commits: int = 0
    commit_failures: int = 0
    stale_leases: int = 0
    busy_replica_s: float = 0.0
    replica_s: float = 0.0
    per_replica: dict[str, int] = field(default_factory=dict)
    per_replica_busy_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Work:
    """One leased batch of prompts and the samples coming back for it."""

    leases: list[Any]
    requests: list[Any]
    results: dict[tuple[str, int], Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # prompt_id -> last error
    released: set[str] = field(default_factory=set)  # prompt ids given back (drain)
    pending: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Metrics:
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


# ----------------------------------------------------------------------------- the dispatcher
class Dispatcher:
    """Leases prompts, drives the fleet through ``submit``, scores, commits and acks.

    ``submit(request) -> result`` sends one :class:`serve.fleet.models.SampleRequest` to the fleet
    and blocks for its :class:`GeneratedSample` (raising on failure). :meth:`for_handle` builds it
    from a Ray Serve ``DeploymentHandle`` with the per-request timeout. ``replica_count`` (optional)
    returns the number of running replicas, to account replica-seconds.
    """

    def __init__(
        self,
        settings: Any,
        submit: Callable[[Any], Any],
        *,
        run_id: str | None = None,
        queue: Any = None,
        catalog: Any = None,
        replica_count: Callable[[], int] | None = None,
        consumer: str | None = None,
    ):
        from engine.queue import PromptQueue

        self.settings = settings
        self.fleet = settings.fleet
        self.submit = submit
        self.run_id = run_id or new_run_id()
        self.queue = queue or PromptQueue.from_settings(settings)
        self._catalog = catalog
        self.replica_count = replica_count
        self.consumer = consumer or f"{self.run_id}@{socket.gethostname()}:{os.getpid()}"
        self.totals = RunTotals()
        self.metrics = _Metrics(self.run_id)
        self.started_at = time.time()
        self.last_errors: deque[dict[str, Any]] = deque(maxlen=20)
        self._recent: deque[tuple[float, int, int]] = deque(maxlen=4096)  # (t, committed, kept)
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._in_flight = threading.BoundedSemaphore(self.fleet.max_in_flight)
        self._n_in_flight = 0
        self._outstanding: list[_Work] = []
        self._outstanding_lock = threading.Lock()
        self._commits: queue_mod.Queue[_Work | None] = queue_mod.Queue()
        self._pool = ThreadPoolExecutor(self.fleet.max_in_flight, thread_name_prefix="vf3d-req")
        self._committer: threading.Thread | None = None
        self._monitor: threading.Thread | None = None
        self.phase = "idle"
        self.finished = False
        self._last_run_write = 0.0
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- construction helpers
    @staticmethod
    def for_handle(handle: Any, timeout_s: float) -> Callable[[Any], Any]:
        """``submit`` over a Serve handle to ``MultiViewGenerator.generate`` with a per-request timeout."""

        def submit(request: Any) -> Any:
            response = handle.generate.remote(request)
            try:
                return response.result(timeout_s=timeout_s)
            except TimeoutError:
                response.cancel()
                raise
        return submit

    @property
    def catalog(self):
        if self._catalog is None:
            from catalog.ducklake import Catalog

            self._catalog = Catalog.open(self.settings)
        return self._catalog

    # ---------------------------------------------------------------- control
    def stop(self) -> None:
        """Stop now: in-flight requests are abandoned; leases not yet committed are released."""
        self._stop.set()

    def drain(self) -> None:
        """Stop leasing; in-flight work finishes and commits; then :meth:`run` returns."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def run(self, until_empty: bool = False, max_prompts: int | None = None) -> RunTotals:
        """The main loop. Returns after :meth:`drain`/:meth:`stop`, or when the queue is empty
        (``until_empty``), or after ``max_prompts`` prompts were leased."""
        self._committer = threading.Thread(target=self._commit_loop, name="vf3d-committer", daemon=True)
        self._committer.start()
        self._monitor = threading.Thread(target=self._monitor_loop, name="vf3d-monitor", daemon=True)
        self._monitor.start()
        self._log("run.start", settings=self.settings.fleet.model_dump())
        self._write_run("running")
        per_batch = max(1, self.fleet.lease_batch)
        try:
            while not self._stop.is_set() and not self._draining.is_set():
                if max_prompts is not None and self.totals.prompts_leased >= max_prompts:
                    break
                # Backpressure: lease only when the fleet can take the batch's samples soon.
                if self._n_in_flight >= self.fleet.max_in_flight or self._outstanding_count() > self._max_outstanding():
                    time.sleep(0.01)
                    continue
                n = per_batch if max_prompts is None else min(per_batch, max_prompts - self.totals.prompts_leased)
                self.phase = "lease"
                leases = self.queue.lease(n, ttl_s=self.settings.queue.lease_ttl_s, consumer=self.consumer)
                if not leases:
                    self.phase = "idle"
                    if until_empty and self._outstanding_count() == 0 and self._queue_settled():
                        break
                    self._stop.wait(self.fleet.poll_interval_s if not until_empty else min(0.2, self.fleet.poll_interval_s))
                    continue
                self.totals.prompts_leased += len(leases)
                self._dispatch(leases)
            self._finish()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
        return self.totals

    def _max_outstanding(self) -> int:
        per_batch = max(1, self.fleet.lease_batch) * 2
        return max(2, -(-self.fleet.max_in_flight // per_batch) + 1)

    def _outstanding_count(self) -> int:
        with self._outstanding_lock:
            return len(self._outstanding)

    def _queue_settled(self) -> bool:
        stats = self.queue.stats()
        return stats.get("pending", 0) == 0 and stats.get("leased", 0) == 0

    def _finish(self) -> None:
        if self._stop.is_set():
            self._release_outstanding()
        # wait for every outstanding batch to be committed (drain / until_empty)
        while self._outstanding_count() and not self._stop.is_set():
            time.sleep(0.02)
        self._commits.put(None)
        if self._committer is not None:
            self._committer.join(timeout=self.fleet.commit_retry_s + 60)
        self.finished = True
        self.phase = "stopped"
        self._write_run("stopped" if self._stop.is_set() else "finished")
        self._log("run.end", totals=self.totals.as_dict())

    def _release_outstanding(self) -> None:
        with self._outstanding_lock:
            works = list(self._outstanding)
        for work in works:
            for lease in work.leases:
                with work.lock:
                    if lease.prompt_id in work.released:
                        continue
                    work.released.add(lease.prompt_id)
                self._settle(lease, "release")

    # ---------------------------------------------------------------- requests
    def _dispatch(self, leases: list[Any]) -> None:
        from engine.render.cameras import draw_elevation
        from serve.fleet.models import SampleRequest

        requests = []
        for lease in leases:
            for index in range(max(1, int(lease.samples_per_prompt))):
                seed = sample_seed(self.fleet.seed, lease.prompt_id, index)
                requests.append(SampleRequest(lease.prompt_id, lease.text, index, seed, draw_elevation(seed)))
        work = _Work(leases=leases, requests=requests, pending=len(requests))
        with self._outstanding_lock:
            self._outstanding.append(work)
        self.phase = "dispatch"
        for req in requests:
            while not self._in_flight.acquire(timeout=0.1):
                if self._stop.is_set():
                    return
            with self._lock:
                self._n_in_flight += 1
            self.metrics.set("in_flight", self._n_in_flight)
            self._pool.submit(self._run_request, work, req)

    def _run_request(self, work: _Work, req: Any) -> None:
        result, error = None, ""
        try:
            for attempt in range(self.fleet.request_retries + 1):
                if self._stop.is_set():
                    error = "dispatcher stopped"
                    break
                try:
                    result = self.submit(req)
                    error = ""
                    break
                except Exception as err:  # noqa: BLE001 - every failure is recorded, retried or nacked
                    error = f"{type(err).__name__}: {_first_line(err)}"
                    self.totals.requests_failed += 1
                    if attempt < self.fleet.request_retries and _is_system_error(err):
                        self.totals.retries += 1
                        self.metrics.inc("retries")
                        self._log("request.retry", prompt_id=req.prompt_id, error=error, attempt=attempt + 1)
                        time.sleep(min(5.0, 0.5 * 2**attempt))
                        continue
                    break
        finally:
            with self._lock:
                self._n_in_flight -= 1
            self._in_flight.release()
        if result is not None:
            self.totals.samples_generated += 1
            self.totals.busy_replica_s += float(getattr(result, "gen_s", 0.0))
            replica = str(getattr(result, "replica", "") or "?")
            self.totals.per_replica[replica] = self.totals.per_replica.get(replica, 0) + 1
            self.totals.per_replica_busy_s[replica] = (
                self.totals.per_replica_busy_s.get(replica, 0.0) + float(getattr(result, "gen_s", 0.0))
            )
            self.metrics.inc("generated", replica=replica)
        with work.lock:
            if result is not None:
                work.results[(req.prompt_id, req.sample_index)] = result
            else:
                work.errors[req.prompt_id] = error
            work.pending -= 1
            done = work.pending == 0
        if done:
            self._commits.put(work)

    # ---------------------------------------------------------------- commits
    def _commit_loop(self) -> None:
        while True:
            work = self._commits.get()
            if work is None:
                return
            try:
                self._commit(work)
            except Exception as err:  # noqa: BLE001 - never let one batch kill the committer
                logger.exception("vf3d dispatcher: batch handling failed")
                self._remember_error("batch", f"{type(err).__name__}: {_first_line(err)}")
                for lease in work.leases:
                    self._settle(lease, "nack", f"dispatcher: {type(err).__name__}: {_first_line(err)}")
            finally:
                with self._outstanding_lock:
                    if work in self._outstanding:
                        self._outstanding.remove(work)

    def _commit(self, work: _Work) -> None:
        if self._stop.is_set():
            return  # stop(): _release_outstanding gives these leases back
        ok_leases, failed = [], []
        for lease in work.leases:
            n = max(1, int(lease.samples_per_prompt))
            if lease.prompt_id in work.released:
                continue
            if lease.prompt_id in work.errors or any((lease.prompt_id, i) not in work.results for i in range(n)):
                failed.append(lease)
            else:
                ok_leases.append(lease)
        for lease in failed:
            err = work.errors.get(lease.prompt_id, "missing sample")
            self._remember_error(lease.prompt_id, err)
            self.metrics.inc("failures")
            self._settle(lease, "nack", err)
        if not ok_leases:
            return
        self.phase = "score"
        samples = [work.results[(lease.prompt_id, i)] for lease in ok_leases for i in range(max(1, int(lease.samples_per_prompt)))]
        texts = {lease.prompt_id: lease for lease in ok_leases}
        records = self._records(samples, texts)
        self.phase = "commit"
        committed = self._commit_records(records)
        if committed is None:  # gave up: object store / catalog kept failing
            for lease in ok_leases:
                self._settle(lease, "nack", self.last_errors[-1]["error"] if self.last_errors else "commit failed")
            return
        self.phase = "ack"
        for lease in ok_leases:
            self._settle(lease, "ack")
        self._maybe_write_run()
        self.phase = "dispatch"

    def _records(self, samples: list[Any], leases: dict[str, Any]) -> list[Any]:
        from catalog.media import sample_media
        from catalog.records import SampleRecord, sample_id
        from engine.quality import score_batch

        records = []
        # score in groups of equal frame shape (one model, so normally one group)
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(samples):
            groups.setdefault(tuple(s.frames.shape), []).append(i)
        scores: list[Any] = [None] * len(samples)
        for idx in groups.values():
            frames = np.stack([samples[i].frames for i in idx])
            got = score_batch(frames, [leases[samples[i].prompt_id].text for i in idx], settings=self.settings)
            for i, sc in zip(idx, got):
                scores[i] = sc
        threshold = self.fleet.quality_threshold
        for s, sc in zip(samples, scores):
            lease = leases[s.prompt_id]
            sid = sample_id(s.prompt_id, s.sample_index, s.seed, s.checkpoint_id)
            meta = {
                "sample_id": sid, "prompt_id": s.prompt_id, "prompt": lease.text, "seed": s.seed,
                "sample_index": s.sample_index, "checkpoint_id": s.checkpoint_id, "elevation_deg": s.elevation_deg,
                "azimuths_deg": list(s.azimuths_deg), "radius": s.radius, "fov_deg": s.fov_deg, "run_id": self.run_id,
            }
            overall = float(sc.overall)
            records.append(
                SampleRecord(
                    sample_id=sid,
                    prompt_id=s.prompt_id,
                    prompt_text=lease.text,
                    category=lease.category or None,
                    n_views=int(s.frames.shape[0]),
                    resolution=int(s.frames.shape[1]),
                    elevation_deg=float(s.elevation_deg),
                    azimuths_deg=[float(a) for a in s.azimuths_deg],
                    radius=float(s.radius),
                    fov_deg=float(s.fov_deg),
                    extrinsics=np.asarray(s.extrinsics, dtype=np.float32),
                    intrinsics=np.asarray(s.intrinsics, dtype=np.float32),
                    checkpoint_id=s.checkpoint_id,
                    seed=int(s.seed),
                    sampler=s.sampler,
                    steps=int(s.steps),
                    guidance_scale=float(s.guidance_scale),
                    **{k: (None if v is None else (float(v) if k.startswith("score_") else v))
                       for k, v in sc.columns().items()},
                    status="kept" if overall >= threshold else "rejected",
                    run_id=self.run_id,
                    media=sample_media(s.frames, np.asarray(s.extrinsics), np.asarray(s.intrinsics), meta),
                )
            )
        return records

    def _existing(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        table = self.catalog.read(f"SELECT sample_id FROM samples WHERE sample_id IN ({marks})", ids)
        return set(table.column("sample_id").to_pylist())

    def _commit_records(self, records: list[Any]) -> int | None:
        """Commit (retrying with backoff); returns rows added, or None after ``commit_retry_s``."""
        deadline = time.monotonic() + self.fleet.commit_retry_s
        delay = 0.2
        attempt = 0
        while True:
            attempt += 1
            try:
                t0 = time.perf_counter()
                existing = self._existing([r.sample_id for r in records])
                todo = [r for r in records if r.sample_id not in existing]
                skipped = len(records) - len(todo)
                added = 0
                if todo:
                    bid = batch_id_for([r.sample_id for r in todo])
                    self._log("commit.start", batch_id=bid, samples=len(todo), attempt=attempt)
                    result = self.catalog.commit_batch(bid, todo, run_id=self.run_id)
                    added = int(result.added)
                    latency = time.perf_counter() - t0
                    self.metrics.observe("commit_latency", latency)
                    self._log("commit.done", batch_id=bid, added=added, latency_s=round(latency, 4))
                self.totals.commits += 1
                self.totals.samples_committed += added
                self.totals.samples_skipped_existing += skipped
                kept = sum(1 for r in todo if r.status == "kept") if added else 0
                rejected = added - kept if added else 0
                self.totals.samples_kept += kept
                self.totals.samples_rejected += rejected
                self.metrics.inc("kept", kept)
                self.metrics.inc("rejected", rejected)
                self._recent.append((time.time(), added, kept))
                for r in todo:
                    logger.debug("sample committed", extra={"run_id": self.run_id, "sample_id": r.sample_id, "event": "sample.committed"})
                return added
            except Exception as err:  # noqa: BLE001 - the store or catalog is down: retry
                self.totals.commit_failures += 1
                msg = f"commit failed: {type(err).__name__}: {_first_line(err)}"
                self._remember_error("commit", msg)
                self._log("commit.error", error=msg, attempt=attempt, level=logging.WARNING)
                self._reset_catalog()
                if time.monotonic() + delay > deadline or self._stop.is_set():
                    return None
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _reset_catalog(self) -> None:
        """After a failed commit, reopen the catalog lazily (its connection may be unusable)."""
        cat, self._catalog = self._catalog, None
        if cat is not None:
            try:
                cat.close()
            except Exception:  # noqa: BLE001
                pass

    def _settle(self, lease: Any, verb: str, error: str = "") -> None:
        from engine.queue import StaleLeaseError

        try:
            if verb == "ack":
                self.queue.ack(lease)
                self.totals.prompts_acked += 1
            elif verb == "nack":
                state = self.queue.nack(lease, error)
                self.totals.prompts_nacked += 1
                self._log("prompt.nack", prompt_id=lease.prompt_id, error=error, state=state, level=logging.WARNING)
            else:
                self.queue.release(lease)
                self.totals.prompts_released += 1
        except StaleLeaseError:
            # The lease expired and someone leased the prompt again: its samples (if committed)
            # are found by id on the retry, so nothing is lost or duplicated.
            self.totals.stale_leases += 1
            self.metrics.inc("expiries")
            self._log("lease.stale", prompt_id=lease.prompt_id, verb=verb, level=logging.WARNING)
        except Exception as err:  # noqa: BLE001 - the queue is down: the lease will expire and return
            self._remember_error(lease.prompt_id, f"{verb} failed: {type(err).__name__}: {_first_line(err)}")

    # ---------------------------------------------------------------- monitoring
    def _monitor_loop(self) -> None:
        last = time.monotonic()
        while not self.finished:
            time.sleep(1.0)
            now = time.monotonic()
            dt, last = now - last, now
            try:
                if self.replica_count is not None:
                    n = int(self.replica_count())
                    self.totals.replica_s += n * dt
                    self.metrics.set("replicas", n)
                stats = self.queue.stats()
                for state, count in stats.items():
                    self.metrics.set("queue_depth", count, state=state)
                if self.totals.samples_kept:
                    self.metrics.set("cost", self.totals.replica_s / self.totals.samples_kept)
                for rep, count in list(self.totals.per_replica.items()):
                    busy = self.totals.per_replica_busy_s.get(rep, 0.0)
                    if busy > 0:
                        self.metrics.set("throughput", count / busy, replica=rep)
            except Exception as err:  # noqa: BLE001
                logger.debug("monitor: %s", err)

    def status(self) -> dict[str, Any]:
        """Totals, rates over the last minute, in-flight work and the last errors."""
        now = time.time()
        window = [(t, c, k) for t, c, k in list(self._recent) if now - t <= 60.0]
        span = min(60.0, max(now - self.started_at, 1e-9))
        committed = self.totals.samples_committed
        return {
            "run_id": self.run_id,
            "phase": self.phase,
            "draining": self.draining,
            "finished": self.finished,
            "pid": os.getpid(),
            "uptime_s": round(now - self.started_at, 1),
            "in_flight": self._n_in_flight,
            "outstanding_batches": self._outstanding_count(),
            "samples_per_s_1m": sum(c for _, c, _ in window) / span,
            "accept_rate": (self.totals.samples_kept / committed) if committed else None,
            "cost_replica_s_per_kept": (self.totals.replica_s / self.totals.samples_kept) if self.totals.samples_kept else None,
            "totals": self.totals.as_dict(),
            "last_errors": list(self.last_errors),
        }

    def _remember_error(self, what: str, error: str) -> None:
        self.last_errors.append({"time": time.time(), "what": what, "error": error})

    def _log(self, event: str, level: int = logging.INFO, **fields: Any) -> None:
        payload = {"event": event, "run_id": self.run_id, **fields}
        logger.log(level, json.dumps(payload, default=str), extra={"run_id": self.run_id, "event": event})

    # ---------------------------------------------------------------- the runs row
    def _maybe_write_run(self) -> None:
        if time.monotonic() - self._last_run_write >= 10.0:
            self._write_run("running")

    def _write_run(self, status: str) -> None:
        self._last_run_write = time.monotonic()
        try:
            write_run_row(self.catalog, self.run_id, status, self.settings, self.totals.as_dict(), self.started_at,
                          finished=status in ("finished", "stopped"))
        except Exception as err:  # noqa: BLE001 - bookkeeping must not stop generation
            self._remember_error("runs", f"{type(err).__name__}: {_first_line(err)}")
            self._reset_catalog()


def write_run_row(catalog: Any, run_id: str, status: str, settings: Any, totals: dict, started_at: float,
                  finished: bool = False, attempts: int = 10) -> None:
    """Upsert the ``runs`` row of a fleet run (kind 'fleet', settings as config, totals as metrics).

    Totals recounted from the catalog (samples by status for this run) so a restarted
    dispatcher reports the run's true totals, not only its own.
    """
    from datetime import datetime, timezone

    from catalog import schema

    conn = catalog.conn
    counts = dict(
        conn.execute("SELECT status, count(*) FROM samples WHERE run_id = ? GROUP BY status", [run_id]).fetchall()
    )
    metrics = dict(totals)
    metrics["catalog_samples"] = int(sum(counts.values()))
    metrics["catalog_kept"] = int(counts.get("kept", 0))
    metrics["catalog_rejected"] = int(counts.get("rejected", 0))
    config = settings.masked() if hasattr(settings, "masked") else {}
    row = [
        run_id, "fleet", None, json.dumps({"fleet": config.get("fleet", {}), "queue": config.get("queue", {}),
                                           "catalog": config.get("catalog", {})}, default=str),
        status, socket.gethostname(), json.dumps(metrics, default=str),
        datetime.fromtimestamp(started_at, timezone.utc),
        datetime.now(timezone.utc) if finished else None,
    ]
    for attempt in range(attempts):
        try:
            conn.execute("BEGIN TRANSACTION")
            old = conn.execute("SELECT started_at FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if old and old[0] is not None:
                row[7] = old[0]  # a restarted dispatcher keeps the run's start
            conn.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
            conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            conn.execute("COMMIT")
            return
        except Exception as exc:
            schema._rollback(conn)
            if not schema.is_conflict(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _is_system_error(err: BaseException) -> bool:
    """Failures of the machinery (replica died, timeout, unavailable), not of the prompt."""
    if isinstance(err, (TimeoutError, ConnectionError)):
        return True
    name = type(err).__name__
    text = str(err)
    return any(
        key in name or key in text
        for key in ("ActorDied", "ActorUnavailable", "RayActorError", "Timeout", "Unavailable", "WorkerCrashed",
                    "RequestCancelled", "BackPressure", "ActorUnschedulable", "NodeDied", "ObjectLost",
                    "OwnerDied")
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:500] if text else type(err).__name__
