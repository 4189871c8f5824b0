"""4 real processes lease 2,000 prompts while the test SIGKILLs them mid-lease, on SQLite and Postgres.

Every lease, ack attempt and settled ack/nack is appended (unbuffered, O_APPEND) to a per-process
side log. At the end: every item is done or dead (none lost), a done item was acked successfully
at most once and by the holder of its *latest* lease, no lease of an item began while an earlier
lease of it was still live (none held by two consumers at once), and acks refused as stale
never changed state.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from engine.queue import PromptQueue, StaleLeaseError

N_ITEMS = 2000
TTL_S = 0.6
MAX_ATTEMPTS = 2


def _worker(dsn: str, log_dir: str, seed: int) -> None:
    rng = random.Random(seed)
    q = PromptQueue(dsn, max_attempts=MAX_ATTEMPTS, backoff_base_s=0.01, backoff_max_s=0.05)
    fd = os.open(os.path.join(log_dir, f"w{os.getpid()}-{seed}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def log(*parts: object) -> None:
        os.write(fd, (" ".join(str(p) for p in parts) + "\n").encode())

    idle = 0
    while True:
        leases = q.lease(rng.randint(1, 8), ttl_s=TTL_S, consumer=f"w{seed}")
        if not leases:
            s = q.stats()
            if s["pending"] == 0 and s["leased"] == 0:
                break
            idle += 1
            time.sleep(0.02)
            continue
        for lease in leases:
            log("LEASE", lease.prompt_id, lease.token, f"{time.time():.6f}", f"{lease.expires_at:.6f}")
        for lease in leases:
            r = rng.random()
            time.sleep(TTL_S + 0.2 if r < 0.01 else rng.uniform(0, 0.004))  # 1%: outlive the lease
            if r > 0.90:
                try:
                    state = q.nack(lease, "simulated failure")
                    log("NACK", lease.prompt_id, lease.token, f"{time.time():.6f}", state)
                except StaleLeaseError:
                    log("STALE", lease.prompt_id, lease.token)
                continue
            log("ACKTRY", lease.prompt_id, lease.token)
            try:
                q.ack(lease)
                log("ACK", lease.prompt_id, lease.token, f"{time.time():.6f}")
            except StaleLeaseError:
                log("STALE", lease.prompt_id, lease.token)
    os.close(fd)
    q.close()


def _run_contention(dsn: str, tmp_path: Path) -> None:
    q = PromptQueue(dsn, max_attempts=MAX_ATTEMPTS)
    assert q.enqueue([{"prompt_id": f"p{i:05d}", "text": f"prompt {i}", "category": "x"} for i in range(N_ITEMS)]) == N_ITEMS
    q.engine.dispose()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    ctx = mp.get_context("fork")
    rng = random.Random(7)
    seed = 0
    workers = []
    for _ in range(4):
        seed += 1
        p = ctx.Process(target=_worker, args=(dsn, str(log_dir), seed))
        p.start()
        workers.append(p)
    kills = 0
    deadline = time.time() + 240
    while any(p.is_alive() for p in workers) and time.time() < deadline:
        time.sleep(rng.uniform(0.2, 0.5))
        alive = [p for p in workers if p.is_alive()]
        if kills < 12 and alive:
            victim = rng.choice(alive)
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()
            kills += 1
            seed += 1
            p = ctx.Process(target=_worker, args=(dsn, str(log_dir), seed))
            p.start()
            workers.append(p)
    for p in workers:
        p.join(timeout=max(1.0, deadline - time.time()))
    assert not any(p.is_alive() for p in workers), "workers did not drain the queue in time"
    assert kills >= 5, f"only {kills} kills happened; the run was too short to test crashes"

    # ---- check the final state against the side logs
    stats = q.stats()
    assert stats["pending"] == 0 and stats["leased"] == 0, stats
    assert stats["done"] + stats["dead"] == N_ITEMS, stats
    with q.engine.begin() as conn:
        from sqlalchemy import text

        final = {r[0]: r[1] for r in conn.execute(text("SELECT prompt_id, state FROM prompt_queue"))}
    assert len(final) == N_ITEMS

    leases: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    acks: dict[str, list[str]] = defaultdict(list)
    ack_tries: dict[str, list[str]] = defaultdict(list)
    settled_at: dict[str, float] = {}
    stale = 0
    for f in log_dir.iterdir():
        for line in f.read_text().splitlines():
            parts = line.split()
            if not parts or len(parts) < 3:
                continue  # a line torn by SIGKILL
            kind, pid, token = parts[0], parts[1], parts[2]
            if kind == "LEASE" and len(parts) == 5:
                leases[pid].append((float(parts[3]), float(parts[4]), token))
            elif kind == "ACK" and len(parts) == 4:
                acks[pid].append(token)
                settled_at[token] = float(parts[3])
            elif kind == "NACK" and len(parts) >= 4:
                settled_at[token] = float(parts[3])
            elif kind == "ACKTRY":
                ack_tries[pid].append(token)
            elif kind == "STALE":
                stale += 1

    for pid, state in final.items():
        assert len(acks[pid]) <= 1, f"{pid} acked {len(acks[pid])} times"
        if state == "done":
            # acked exactly once: logged ACK, or its ack went through just before a SIGKILL
            assert len(acks[pid]) == 1 or ack_tries[pid], f"{pid} is done but nobody tried to ack it"
        else:
            assert not acks[pid], f"{pid} is dead but was acked"
        history = sorted(leases[pid])
        for (t0, exp0, tok0), (t1, _exp1, _tok1) in zip(history, history[1:]):
            live_until = min(exp0, settled_at.get(tok0, exp0))
            assert t1 >= live_until - 1e-3, f"{pid} leased again at {t1} while lease {tok0} was live until {live_until}"
        if acks[pid] and history:
            assert acks[pid][0] == history[-1][2], f"{pid} acked by a superseded lease"
    n_done = sum(1 for s in final.values() if s == "done")
    print(f"\n{dsn.split('://')[0]}: done={n_done} dead={N_ITEMS - n_done} kills={kills} stale_refused={stale}")
    q.close()


def test_queue_contention_sqlite(tmp_path):
    _run_contention(f"sqlite:///{tmp_path / 'queue.sqlite'}", tmp_path)


@pytest.mark.postgres
def test_queue_contention_postgres(pg_dsn, tmp_path):
    _run_contention(pg_dsn, tmp_path)
