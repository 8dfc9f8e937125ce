"""The store's health as the shipper sees it: when to try again, and what the metrics report."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass
class StoreHealth:
    """Consecutive failures and the exponential back-off they call for (1, 2, 4 … s, capped, jittered)."""

    backoff_max_s: float
    failures: int = 0
    next_attempt: float = 0.0
    """time.monotonic() before which no remote work is tried."""
    up: bool | None = None
    """Whether the last attempt reached the store (None before the first)."""
    last_success: float | None = None
    """Unix time of the last attempt that went through without an error."""

    def due(self) -> bool:
        return time.monotonic() >= self.next_attempt

    def failed(self) -> float:
        """Record a failure; return the delay until the next attempt."""
        self.failures += 1
        self.up = False
        delay = min(self.backoff_max_s, 2.0 ** min(self.failures - 1, 30)) * random.uniform(0.8, 1.0)
        self.next_attempt = time.monotonic() + delay
        return delay

    def succeeded(self) -> int:
        """Record a success; return how many failures it ended."""
        ended, self.failures = self.failures, 0
        self.up = True
        self.last_success = time.time()
        return ended

    def wait_s(self, interval_s: float) -> float:
        """How long the loop sleeps before its next pass."""
        if not self.failures:
            return interval_s
        return max(0.05, min(interval_s, self.next_attempt - time.monotonic()))
