"""Bounded retries with exponential backoff and full jitter (AWS architecture blog style).

``Retry(attempts=5, base_s=0.2).call(fn, is_transient)`` runs ``fn`` up to ``attempts`` times,
sleeping ``uniform(0, min(cap_s, base_s * 2**i))`` between tries, and only when
``is_transient(exc)`` says the failure may go away (connection errors, 5xx, SlowDown). Other
errors — and the last transient one — propagate unchanged.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass
class Retry:
    attempts: int = 5
    base_s: float = 0.2
    cap_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, retry_index: int) -> float:
        """Sleep before retry number ``retry_index`` (0-based): full jitter under an exponential cap."""
        return self.rng.uniform(0.0, min(self.cap_s, self.base_s * (2**retry_index)))

    def call(
        self,
        fn: Callable[[], T],
        is_transient: Callable[[BaseException], bool],
        before_retry: Callable[[], None] | None = None,
    ) -> T:
        for attempt in range(self.attempts):
            try:
                return fn()
            except Exception as exc:
                if attempt + 1 >= self.attempts or not is_transient(exc):
                    raise
                self.sleep(self.delay(attempt))
                if before_retry is not None:
                    before_retry()
        raise AssertionError("unreachable")  # pragma: no cover
