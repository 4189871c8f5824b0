"""Run bookkeeping: the totals of one dispatcher and the ``runs`` row of a fleet run."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any


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
