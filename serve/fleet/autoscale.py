"""Autoscaling the generator on prompt-queue depth: a class-based Ray Serve policy.

Serve ≥ 2.50 calls ``QueueDepthPolicy(**policy_kwargs)`` once in the Serve controller and then
``policy(ctx)`` every control-loop tick; it wraps the result with the deployment's
``min_replicas``/``max_replicas``, ``upscale_delay_s``/``downscale_delay_s`` and
``downscale_to_zero_delay_s`` (see ``ray.serve.autoscaling_policy._apply_autoscaling_config``).

Desired replicas = ceil((pending + leased prompts) / prompts_per_replica): a backlog raises the
count, an empty queue lets it fall to ``min_replicas`` (0 = scale to zero). The queue is read
from a background thread every ``poll_interval_s`` so a slow database never blocks the
controller's event loop; the last reading is reused between polls.

Use it from a Serve config::

    autoscaling_config:
      min_replicas: 0
      max_replicas: 16
      policy:
        policy_function: serve.fleet.autoscale:QueueDepthPolicy
        policy_kwargs: {prompts_per_replica: 32, poll_interval_s: 10}
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

logger = logging.getLogger("ray.serve")


class QueueDepthPolicy:
    """Replicas proportional to the prompt queue's backlog (see the module docstring).

    ``queue_dsn`` empty = the queue named by the controller's vf3d settings (VF3D_QUEUE__DSN or
    the SQLite file under VF3D_ROOT).
    """

    def __init__(
        self,
        queue_dsn: str = "",
        prompts_per_replica: float = 16.0,
        poll_interval_s: float = 5.0,
        max_attempts: int = 3,
    ):
        if prompts_per_replica <= 0:
            raise ValueError(f"prompts_per_replica must be > 0, got {prompts_per_replica}")
        self.queue_dsn = queue_dsn
        self.prompts_per_replica = float(prompts_per_replica)
        self.poll_interval_s = float(poll_interval_s)
        self.max_attempts = int(max_attempts)
        self._queue = None
        self._backlog: int | None = None
        self._last_poll = 0.0
        self._poller: threading.Thread | None = None
        self._last_error = ""

    # --------------------------------------------------------------- polling
    def _open(self):
        if self._queue is None:
            from engine.queue import PromptQueue

            if self.queue_dsn:
                self._queue = PromptQueue(self.queue_dsn, max_attempts=self.max_attempts)
            else:
                from catalog.settings import load_settings

                self._queue = PromptQueue.from_settings(load_settings())
        return self._queue

    def _poll(self) -> None:
        try:
            queue = self._open()
            stats = queue.stats()
            self._backlog = int(queue.pending_count()) + int(stats.get("leased", 0)) - int(stats.get("expired", 0))
            self._last_error = ""
        except Exception as err:  # noqa: BLE001 - keep the last reading; never break the controller
            self._last_error = f"{type(err).__name__}: {err}"
            logger.warning("vf3d QueueDepthPolicy: cannot read the prompt queue: %s", self._last_error)

    def _maybe_poll(self) -> None:
        now = time.monotonic()
        if self._poller is not None and self._poller.is_alive():
            return
        if self._backlog is None or now - self._last_poll >= self.poll_interval_s:
            self._last_poll = now
            self._poller = threading.Thread(target=self._poll, name="vf3d-queue-poll", daemon=True)
            self._poller.start()

    def desired(self, backlog: int, min_replicas: int, max_replicas: int) -> int:
        """Replica count for a backlog of prompts, within [min_replicas, max_replicas]."""
        want = math.ceil(max(backlog, 0) / self.prompts_per_replica)
        return max(min_replicas, min(max_replicas, want))

    # --------------------------------------------------------------- Serve entry point
    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        self._maybe_poll()
        current = int(ctx.current_num_replicas)
        if self._backlog is None:  # no reading yet: hold the current target
            return int(ctx.target_num_replicas), {"queue_backlog": None}
        desired = self.desired(
            self._backlog, int(ctx.capacity_adjusted_min_replicas), int(ctx.capacity_adjusted_max_replicas)
        )
        if current == 0 and desired == 0 and ctx.total_num_requests > 0:
            desired = 1  # requests waiting at a handle: wake one replica
        return desired, {"queue_backlog": self._backlog, "queue_error": self._last_error}
