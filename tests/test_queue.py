"""The prompt queue's contract on SQLite and Postgres: idempotent enqueue, priorities, leases,
acks, nacks with backoff, dead letter, expiry, stale tokens refused, admin operations."""

from __future__ import annotations

import time

import pytest

from catalog.settings import load_settings
from engine.queue import PromptQueue, StaleLeaseError
from engine.queue.queue import QueueError


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def queue(request, tmp_path):
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path / 'q.sqlite'}"
    else:
        dsn = request.getfixturevalue("pg_dsn")
    q = PromptQueue(dsn, max_attempts=2, backoff_base_s=0.05, backoff_max_s=0.05)
    yield q
    q.close()


def items(n, start=0):
    return [{"prompt_id": f"p{i:03d}", "text": f"a thing {i}", "category": "thing"} for i in range(start, start + n)]


def test_enqueue_is_idempotent_and_priority_orders_leases(queue):
    assert queue.enqueue(items(5), priority=0, samples_per_prompt=2) == 5
    assert queue.enqueue(items(7), priority=9) == 2  # only p005, p006 are new
    assert queue.enqueue(items(3) + items(3)) == 0
    leases = queue.lease(3, ttl_s=30, consumer="c1")
    assert [lease.prompt_id for lease in leases] == ["p005", "p006", "p000"]
    assert leases[0].priority == 9 and leases[2].samples_per_prompt == 2
    assert all(lease.attempts == 1 and lease.token for lease in leases)
    assert len({lease.token for lease in leases}) == 3
    assert queue.stats() == {"pending": 4, "leased": 3, "done": 0, "dead": 0, "expired": 0}
    assert queue.pending_count() == 4
    assert queue.peek(2)[0]["prompt_id"] == "p001"


def test_ack_nack_backoff_dead_letter_and_requeue(queue):
    queue.enqueue(items(2))
    a, b = queue.lease(2, ttl_s=30)
    queue.ack(a)
    with pytest.raises(StaleLeaseError):
        queue.ack(a)  # already settled
    assert queue.nack(b, "oom") == "pending"
    assert queue.lease(5) == []  # still backing off
    time.sleep(0.08)
    (b2,) = queue.lease(5, ttl_s=30)
    assert b2.prompt_id == b.prompt_id and b2.attempts == 2
    assert queue.nack(b2, "oom again") == "dead"
    assert queue.stats()["dead"] == 1 and queue.stats()["done"] == 1
    assert queue.peek(5, state="dead")[0]["last_error"] == "oom again"
    assert queue.requeue_dead() == 1
    (b3,) = queue.lease(1)
    assert b3.attempts == 1
    queue.release(b3)
    (b4,) = queue.lease(1)
    assert b4.attempts == 1  # release does not count an attempt
    assert queue.purge("leased") == 1 and queue.purge() == 1


def test_expired_lease_returns_and_stale_token_is_refused(queue):
    queue.enqueue(items(1))
    (first,) = queue.lease(1, ttl_s=0.05, consumer="slow")
    time.sleep(0.1)
    assert queue.stats()["expired"] == 1
    (second,) = queue.lease(1, ttl_s=30, consumer="fast")
    assert second.prompt_id == first.prompt_id and second.token != first.token
    with pytest.raises(StaleLeaseError):
        queue.ack(first)
    with pytest.raises(StaleLeaseError):
        queue.nack(first, "late")
    queue.ack(second)
    assert queue.stats()["done"] == 1


def test_lease_expiring_on_last_attempt_is_dead_lettered(queue):
    queue.enqueue(items(1))
    queue.lease(1, ttl_s=0.02)
    time.sleep(0.05)
    queue.lease(1, ttl_s=0.02)  # attempt 2 of 2
    time.sleep(0.05)
    assert queue.lease(1) == []
    assert queue.stats()["dead"] == 1


def test_from_settings_defaults_to_sqlite_under_root(tmp_path):
    settings = load_settings(root=tmp_path / "root")
    q = PromptQueue.from_settings(settings)
    q.enqueue(items(1))
    assert (tmp_path / "root" / "queue.sqlite").exists()
    assert q.max_attempts == settings.queue.max_attempts
    q.close()


def test_bad_dsn_is_a_clear_error():
    with pytest.raises(QueueError, match="VF3D_QUEUE__DSN"):
        PromptQueue("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(QueueError, match="unsupported"):
        PromptQueue("mysql://x/y")
