"""Deterministic ids and seeds: what makes every retry write nothing twice."""

from __future__ import annotations

import hashlib
import os
import time

SEED_MODULUS = 2**31 - 1


def sample_seed(base_seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one sample: a hash of (base seed, prompt id, sample index), in [0, 2^31-1)."""
    digest = hashlib.sha256(f"{int(base_seed)}\x1f{prompt_id}\x1f{int(sample_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_MODULUS


def batch_id_for(sample_ids: list[str]) -> str:
    """Deterministic batch id: the hash of the sorted sample ids it commits."""
    return "b-" + hashlib.sha256("\n".join(sorted(sample_ids)).encode()).hexdigest()[:32]


def new_run_id() -> str:
    return "fleet-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()
