"""A durable, lease-based prompt queue on SQLModel (SQLite by default, Postgres by DSN).

States: ``pending`` → (lease) → ``leased`` → (ack) → ``done``
                                       ↘ (nack / lease expiry) → ``pending`` after a backoff
                                       ↘ (attempts ≥ max_attempts) → ``dead``

* Every lease counts one attempt (a consumer that dies mid-lease used one).
* Each lease carries a fresh random ``token``; ``ack``/``nack``/``release`` only succeed while
  the row still holds that token, so a consumer whose lease expired and was re-leased by
  someone else is refused (``StaleLeaseError``) — no item is ever held by two consumers.
* Leasing is one atomic statement: Postgres ``SELECT … FOR UPDATE SKIP LOCKED`` inside an
  ``UPDATE … RETURNING``; SQLite ``UPDATE … WHERE prompt_id IN (SELECT … LIMIT n) RETURNING``
  inside ``BEGIN IMMEDIATE`` (one writer at a time, WAL journal).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from sqlalchemy import Index, event, text
from sqlmodel import Field, SQLModel, create_engine

from catalog.errors import Vf3dError

STATES = ("pending", "leased", "done", "dead")


class QueueError(Vf3dError):
    """The queue cannot be reached or used; the message names the DSN problem and the fix."""


class StaleLeaseError(QueueError):
    """An ack/nack/release for a lease this consumer no longer holds (expired and re-leased, or already settled)."""


class QueueItem(SQLModel, table=True):
    """One prompt waiting for (or done with) generation."""

    __tablename__ = "prompt_queue"
    __table_args__ = (Index("ix_prompt_queue_ready", "state", "priority", "available_at"),)

    prompt_id: str = Field(primary_key=True, max_length=64)
    text: str
    category: str = Field(default="")
    priority: int = Field(default=0)
    samples_per_prompt: int = Field(default=1)
    state: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    token: str | None = Field(default=None, max_length=64)
    consumer: str = Field(default="", max_length=200)
    lease_expires_at: float | None = Field(default=None)
    available_at: float = Field(default=0.0)
    last_error: str | None = Field(default=None)
    created_at: float = Field(default=0.0)
    updated_at: float = Field(default=0.0)


@dataclass(frozen=True)
class Lease:
    """A prompt handed to one consumer until ``expires_at`` (epoch seconds)."""

    prompt_id: str
    text: str
    category: str
    samples_per_prompt: int
    attempts: int
    token: str
    expires_at: float
    priority: int = 0


_COLS = "prompt_id, text, category, samples_per_prompt, attempts, token, lease_expires_at, priority"


class PromptQueue:
    """The prompt queue behind one DSN (``sqlite:///path`` or ``postgresql://…``)."""

    def __init__(
        self,
        dsn: str,
        *,
        max_attempts: int = 3,
        lease_ttl_s: float = 600.0,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self.dsn = _sqlalchemy_url(dsn)
        self.max_attempts = max_attempts
        self.lease_ttl_s = lease_ttl_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.is_sqlite = self.dsn.startswith("sqlite")
        if self.is_sqlite:
            path = self.dsn.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.dsn, connect_args={"timeout": 60, "check_same_thread": False})
            _sqlite_immediate_transactions(self.engine)
        else:
            self.engine = create_engine(self.dsn, pool_pre_ping=True)
        try:
            SQLModel.metadata.create_all(self.engine, tables=[QueueItem.__table__])
        except Exception as err:  # noqa: BLE001 - any driver error means the DSN is unusable
            raise QueueError(
                f"cannot open the prompt queue at {_masked(self.dsn)}: {type(err).__name__}: {err}. "
                "Check VF3D_QUEUE__DSN (empty = a SQLite file under VF3D_ROOT) and that the server is running."
            ) from None

    @classmethod
    def from_settings(cls, settings: Any) -> "PromptQueue":
        dsn = settings.queue.dsn or f"sqlite:///{Path(settings.root).resolve() / 'queue.sqlite'}"
        return cls(dsn, max_attempts=settings.queue.max_attempts, lease_ttl_s=settings.queue.lease_ttl_s)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writes
    def enqueue(self, items: Iterable[Any], *, priority: int = 0, samples_per_prompt: int = 1) -> int:
        """Add prompts (dicts or objects with prompt_id, text, category); returns how many were new.

        Idempotent by prompt_id: an id already queued (in any state) is left untouched.
        """
        if samples_per_prompt < 1:
            raise QueueError(f"samples_per_prompt must be ≥ 1 (got {samples_per_prompt})")
        now = time.time()
        rows: list[dict[str, Any]] = []
        new = 0
        for item in items:
            get = item.get if isinstance(item, Mapping) else (lambda k, d=None, _i=item: getattr(_i, k, d))
            pid = get("prompt_id")
            if not pid:
                raise QueueError("every queued item needs a prompt_id (the hash of its normalised text)")
            rows.append(
                {
                    "prompt_id": str(pid),
                    "text": str(get("text", "")),
                    "category": str(get("category", "") or ""),
                    "priority": int(get("priority", None) if get("priority", None) is not None else priority),
                    "samples_per_prompt": int(get("samples_per_prompt", None) or samples_per_prompt),
                    "state": "pending",
                    "attempts": 0,
                    "available_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "consumer": "",
                }
            )
            if len(rows) >= 500:
                new += self._insert(rows)
                rows = []
        if rows:
            new += self._insert(rows)
        return new

    def _insert(self, rows: list[dict[str, Any]]) -> int:
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        # de-duplicate within the chunk too (ON CONFLICT cannot see rows of the same statement on PG)
        uniq = list({r["prompt_id"]: r for r in reversed(rows)}.values())[::-1]
        stmt = insert(QueueItem.__table__).values(uniq).on_conflict_do_nothing(index_elements=["prompt_id"])
        stmt = stmt.returning(QueueItem.__table__.c.prompt_id)
        with self.engine.begin() as conn:
            return len(conn.execute(stmt).fetchall())

    def lease(self, n: int = 1, ttl_s: float | None = None, consumer: str = "") -> list[Lease]:
        """Hand up to ``n`` ready prompts to ``consumer`` for ``ttl_s`` seconds (highest priority first)."""
        if n < 1:
            return []
        ttl = float(ttl_s if ttl_s is not None else self.lease_ttl_s)
        now = time.time()
        token = secrets.token_hex(12)
        params = {"now": now, "n": int(n), "exp": now + ttl, "tok": token, "consumer": consumer[:200], "max": self.max_attempts}
        ready = (
            "((state = 'pending' AND available_at <= :now) "
            "OR (state = 'leased' AND lease_expires_at <= :now AND attempts < :max))"
        )
        # token per item: batch token + ':' + prompt_id keeps tokens unique per (lease, item)
        if self.is_sqlite:
            lease_sql = (
                "UPDATE prompt_queue SET state = 'leased', attempts = attempts + 1, "
                "token = :tok || ':' || prompt_id, consumer = :consumer, lease_expires_at = :exp, updated_at = :now "
                f"WHERE prompt_id IN (SELECT prompt_id FROM prompt_queue WHERE {ready} "
                "ORDER BY priority DESC, created_at, prompt_id LIMIT :n) "
                f"RETURNING {_COLS}"
            )
        else:
            lease_sql = (
                "WITH picked AS (SELECT prompt_id FROM prompt_queue "
                f"WHERE {ready} ORDER BY priority DESC, created_at, prompt_id LIMIT :n FOR UPDATE SKIP LOCKED) "
                "UPDATE prompt_queue q SET state = 'leased', attempts = q.attempts + 1, "
                "token = CAST(:tok AS TEXT) || ':' || q.prompt_id, consumer = :consumer, lease_expires_at = :exp, updated_at = :now "
                "FROM picked WHERE q.prompt_id = picked.prompt_id "
                "RETURNING " + ", ".join("q." + c.strip() for c in _COLS.split(","))
            )
        with self.engine.begin() as conn:
            self._sweep_expired(conn, now)
            rows = conn.execute(text(lease_sql), params).fetchall()
        leases = [
            Lease(
                prompt_id=r[0], text=r[1], category=r[2], samples_per_prompt=r[3], attempts=r[4],
                token=r[5], expires_at=r[6], priority=r[7],
            )
            for r in rows
        ]
        leases.sort(key=lambda lease: (-lease.priority, lease.prompt_id))
        return leases

    def _sweep_expired(self, conn: Any, now: float) -> None:
        """Leases that expired on their last allowed attempt go to the dead letter."""
        lock = "" if self.is_sqlite else " FOR UPDATE SKIP LOCKED"
        conn.execute(
            text(
                "UPDATE prompt_queue SET state = 'dead', token = NULL, updated_at = :now, "
                "last_error = COALESCE(last_error, 'lease expired on the last attempt') "
                "WHERE prompt_id IN (SELECT prompt_id FROM prompt_queue WHERE state = 'leased' "
                f"AND lease_expires_at <= :now AND attempts >= :max{lock})"
            ),
            {"now": now, "max": self.max_attempts},
        )

    def ack(self, lease: Lease) -> None:
        """Mark the leased prompt done; refused (``StaleLeaseError``) unless this lease still holds it."""
        self._settle(lease, "UPDATE prompt_queue SET state = 'done', token = NULL, updated_at = :now, last_error = NULL", {}, "ack")

    def nack(self, lease: Lease, error: str = "") -> str:
        """Give the prompt back after a failure: retried after a backoff, or dead after max_attempts.

        Returns the new state ('pending' or 'dead').
        """
        now = time.time()
        if lease.attempts >= self.max_attempts:
            sql = "UPDATE prompt_queue SET state = 'dead', token = NULL, updated_at = :now, last_error = :err"
            state = "dead"
            extra = {"err": str(error)[:2000]}
        else:
            delay = min(self.backoff_base_s * 2 ** max(lease.attempts - 1, 0), self.backoff_max_s)
            sql = (
                "UPDATE prompt_queue SET state = 'pending', token = NULL, updated_at = :now, "
                "last_error = :err, available_at = :avail, lease_expires_at = NULL"
            )
            state = "pending"
            extra = {"err": str(error)[:2000], "avail": now + delay}
        self._settle(lease, sql, extra, "nack")
        return state

    def release(self, lease: Lease) -> None:
        """Give the prompt back untouched (e.g. on shutdown): no attempt counted, ready at once."""
        self._settle(
            lease,
            "UPDATE prompt_queue SET state = 'pending', token = NULL, attempts = attempts - 1, "
            "lease_expires_at = NULL, available_at = :now, updated_at = :now",
            {},
            "release",
        )

    def _settle(self, lease: Lease, set_sql: str, extra: dict[str, Any], verb: str) -> None:
        params = {"now": time.time(), "pid": lease.prompt_id, "tok": lease.token, **extra}
        with self.engine.begin() as conn:
            res = conn.execute(text(f"{set_sql} WHERE prompt_id = :pid AND token = :tok AND state = 'leased'"), params)
            if res.rowcount != 1:
                raise StaleLeaseError(
                    f"{verb} refused for prompt {lease.prompt_id}: this lease no longer holds it "
                    "(it expired and was leased again, or was already settled); lease with a longer ttl_s"
                )

    # ------------------------------------------------------------------ reads / admin
    def stats(self) -> dict[str, int]:
        """Count of items per state (every state listed, zeros included), plus 'expired' leases."""
        out = {s: 0 for s in STATES}
        with self.engine.begin() as conn:
            for state, count in conn.execute(text("SELECT state, COUNT(*) FROM prompt_queue GROUP BY state")):
                out[state] = int(count)
            out["expired"] = int(
                conn.execute(
                    text("SELECT COUNT(*) FROM prompt_queue WHERE state = 'leased' AND lease_expires_at <= :now"),
                    {"now": time.time()},
                ).scalar()
            )
        return out

    def pending_count(self) -> int:
        """Items a consumer could lease now or soon (pending + expired leases with attempts left)."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT COUNT(*) FROM prompt_queue WHERE state = 'pending' "
                        "OR (state = 'leased' AND lease_expires_at <= :now AND attempts < :max)"
                    ),
                    {"now": time.time(), "max": self.max_attempts},
                ).scalar()
            )

    def peek(self, n: int = 10, state: str | None = "pending") -> list[dict[str, Any]]:
        """The next ``n`` items in lease order (or of ``state``), read-only."""
        where = "" if state is None else "WHERE state = :state"
        with self.engine.begin() as conn:
            rows = conn.execute(
                text(
                    "SELECT prompt_id, text, category, priority, samples_per_prompt, state, attempts, last_error "
                    f"FROM prompt_queue {where} ORDER BY priority DESC, created_at, prompt_id LIMIT :n"
                ),
                {"n": int(n), "state": state},
            ).mappings().fetchall()
        return [dict(r) for r in rows]

    def requeue_dead(self) -> int:
        """Move every dead-lettered item back to pending with its attempts reset; returns how many."""
        with self.engine.begin() as conn:
            res = conn.execute(
                text(
                    "UPDATE prompt_queue SET state = 'pending', attempts = 0, token = NULL, "
                    "available_at = :now, updated_at = :now WHERE state = 'dead'"
                ),
                {"now": time.time()},
            )
            return int(res.rowcount)

    def purge(self, state: str | None = None) -> int:
        """Delete every item (or only those in ``state``); returns how many."""
        if state is not None and state not in STATES:
            raise QueueError(f"unknown queue state {state!r}; use one of {', '.join(STATES)}")
        with self.engine.begin() as conn:
            if state is None:
                res = conn.execute(text("DELETE FROM prompt_queue"))
            else:
                res = conn.execute(text("DELETE FROM prompt_queue WHERE state = :s"), {"s": state})
            return int(res.rowcount)


def _sqlalchemy_url(dsn: str) -> str:
    if not dsn:
        raise QueueError("empty queue DSN; pass sqlite:///path or postgresql://user@host:port/db (VF3D_QUEUE__DSN)")
    if dsn.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + dsn.split("://", 1)[1]
    if dsn.startswith(("sqlite:", "postgresql+")):
        return dsn
    if "://" not in dsn:  # a bare path
        return f"sqlite:///{Path(dsn).resolve()}"
    raise QueueError(f"unsupported queue DSN scheme in {_masked(dsn)}; use sqlite:///path or postgresql://…")


def _masked(dsn: str) -> str:
    from catalog.settings import _mask_dsn

    return _mask_dsn(dsn)


def _sqlite_immediate_transactions(engine: Any) -> None:
    """WAL journal, a long busy timeout, and BEGIN IMMEDIATE so writers queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
