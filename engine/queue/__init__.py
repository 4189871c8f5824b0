"""The durable prompt queue: SQLModel tables on SQLite (default) or Postgres (by DSN).

``PromptQueue.from_settings(settings)`` / ``PromptQueue(dsn)``; leases with tokens, acks,
nacks with backoff, dead-letter after ``settings.queue.max_attempts`` attempts.
"""

from engine.queue.queue import (
    Lease,
    PromptQueue,
    QueueError,
    QueueItem,
    StaleLeaseError,
)

__all__ = ["Lease", "PromptQueue", "QueueError", "QueueItem", "StaleLeaseError"]
