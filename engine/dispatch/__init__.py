"""The dispatcher: the engine's main loop from the prompt queue, through the fleet, into the catalog.

One dispatcher per fleet (DESIGN.md §6: one batched committer, not one per replica)::

    lease a batch of prompts ─► one request per sample ─► MultiViewGenerator replicas
        (bounded in flight = backpressure)            (Ray Serve handle, @serve.batch;
                                                       quality scores + media, fleet.score_on)
    all samples of the batch back ─► quality gate ─► catalog.commit_batch
        (one atomic, idempotent DuckLake commit) ─► ack the leases

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

Modules: ``dispatcher`` (the loop), ``samples`` (scores, media, records), ``ids`` (seeds and
ids), ``metrics`` (Prometheus), ``runs`` (totals and the ``runs`` row).
"""

from engine.dispatch.dispatcher import Dispatcher, DispatchError
from engine.dispatch.ids import batch_id_for, new_run_id, sample_seed
from engine.dispatch.runs import RunTotals, write_run_row
from engine.dispatch.samples import finish_samples, to_records

__all__ = [
    "DispatchError", "Dispatcher", "RunTotals", "batch_id_for", "finish_samples", "new_run_id", "sample_seed",
    "to_records", "write_run_row",
]
