"""Per-client rate limiting: a token bucket per principal, in this process's memory.

Each client may make ``rate`` requests per second on average and ``burst`` at
once. With several worker processes each keeps its own buckets, so the
effective limit is ``workers x rate``; set the rate accordingly.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate = float(rate)
        self.burst = max(float(burst), 1.0)
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill]
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        """Spend one token for ``key``: 0 when allowed, else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [self.burst, now]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate
