"""The dispatcher loop (see :mod:`engine.dispatch` for the flow and the exactly-once argument).

Threads: the caller's thread leases and dispatches; a pool of ``fleet.max_in_flight`` threads
each waits on one request; one committer thread commits whole leased batches in order of
completion; a monitor thread feeds the metrics and the replica-seconds account. The leasing
thread sleeps on a condition until a request or a commit frees room (no busy polling: on a
small machine every wake-up steals a core from the generator's threads).
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_mod
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from catalog.errors import Vf3dError
from engine.dispatch.ids import batch_id_for, new_run_id, sample_seed
from engine.dispatch.metrics import FleetMetrics
from engine.dispatch.runs import RunTotals, write_run_row
from engine.dispatch.samples import finish_samples, to_records

logger = logging.getLogger("vf3d.dispatch")

MONITOR_INTERVAL_S = 5.0  # metrics and replica-seconds; Prometheus scrapes every 15 s or so


class DispatchError(Vf3dError):
    """The dispatcher cannot run; the message says which service or setting and the fix."""


@dataclass
class _Work:
    """One leased batch of prompts and the samples coming back for it."""

    leases: list[Any]
    results: dict[tuple[str, int], Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # prompt_id -> last error
    released: set[str] = field(default_factory=set)  # prompt ids given back (drain)
    pending: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


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
        self.metrics = FleetMetrics(self.run_id)
        self.started_at = time.time()
        self.last_errors: deque[dict[str, Any]] = deque(maxlen=20)
        self._recent: deque[tuple[float, int, int]] = deque(maxlen=4096)  # (t, committed, kept)
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._done = threading.Event()  # set when run() has finished
        self._n_in_flight = 0
        self._outstanding: list[_Work] = []
        self._outstanding_lock = threading.Lock()
        self._commits: queue_mod.Queue[_Work | None] = queue_mod.Queue()
        self._pool = ThreadPoolExecutor(self.fleet.max_in_flight, thread_name_prefix="vf3d-req")
        self._committer: threading.Thread | None = None
        self._monitor: threading.Thread | None = None
        self.phase = "idle"
        self._last_run_write = 0.0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when a request or a batch completes

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
        self._wake()

    def drain(self) -> None:
        """Stop leasing; in-flight work finishes and commits; then :meth:`run` returns."""
        self._draining.set()
        self._wake()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    @property
    def finished(self) -> bool:
        """``run()`` has returned (or is about to: its last commit is done)."""
        return self._done.is_set()

    def run(self, until_empty: bool = False, max_prompts: int | None = None) -> RunTotals:
        """The main loop. Returns after :meth:`drain`/:meth:`stop`, or when the queue is empty
        (``until_empty``), or after ``max_prompts`` prompts were leased.

        Raises :class:`DispatchError` before leasing anything when the catalog cannot be opened
        (a wrong root or DSN, a data path that is not the catalog's, a service down): retrying
        commits would only burn the prompts' attempts. Under Serve the dispatcher's health check
        then fails and Serve restarts it, which retries a service that was down."""
        self._open_catalog()
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
                if not self._wait_for(self._has_room, timeout=1.0):
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

    def _open_catalog(self) -> None:
        try:
            self.catalog  # noqa: B018 - opens it
        except Exception as err:  # noqa: BLE001 - every reason stops the run the same way
            raise DispatchError(
                f"cannot open the catalog, so nothing was leased: {type(err).__name__}: {_first_line(err)}. "
                "Check VF3D_ROOT (the object store and the catalog's data path) and VF3D_CATALOG__METADATA_DSN; "
                "a catalog keeps the data path it was created with"
            ) from None

    def _wake(self) -> None:
        with self._room:
            self._room.notify_all()

    def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Sleep until ``predicate()`` holds, a stop/drain, or ``timeout``; returns ``predicate()``."""
        with self._room:
            return self._room.wait_for(
                lambda: predicate() or self._stop.is_set() or self._draining.is_set(), timeout=timeout
            ) and predicate()

    def _has_room(self) -> bool:
        return self._n_in_flight < self.fleet.max_in_flight and self._outstanding_count() <= self._max_outstanding()

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
            with self._room:
                self._room.wait(timeout=1.0)
        self._commits.put(None)
        if self._committer is not None:
            self._committer.join(timeout=self.fleet.commit_retry_s + 60)
        self._done.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
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
                requests.append(SampleRequest(lease.prompt_id, lease.text, index, seed, draw_elevation(seed),
                                              run_id=self.run_id))
        work = _Work(leases=leases, pending=len(requests))
        with self._outstanding_lock:
            self._outstanding.append(work)
        self.phase = "dispatch"
        for req in requests:
            with self._room:
                while self._n_in_flight >= self.fleet.max_in_flight:
                    if self._stop.is_set():
                        return
                    self._room.wait(timeout=1.0)
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
            with self._room:
                self._n_in_flight -= 1
                self._room.notify_all()
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
                self._wake()

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
        by_prompt = {lease.prompt_id: lease for lease in ok_leases}
        # a no-op for samples the replicas finished (fleet.score_on='replica')
        finish_samples(samples, [by_prompt[s.prompt_id].text for s in samples], self.settings, self.run_id)
        records = to_records(samples, by_prompt, self.run_id, self.fleet.quality_threshold)
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
        while not self._done.wait(MONITOR_INTERVAL_S):
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
