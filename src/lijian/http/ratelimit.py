"""Per-client token buckets: ``requests_per_s`` refill, ``burst`` capacity.

One bucket per configured client (their number is bounded by the clients file), checked
after the signature so that nobody can drain another client's bucket with forged
requests. A refused request gets 429 with ``Retry-After`` (whole seconds, at least 1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from lijian.http.clients import Client


@dataclass(slots=True)
class _Bucket:
    rate_per_s: float
    capacity: float
    tokens: float
    at_s: float


class RateLimiter:
    def __init__(self, clock_s: Callable[[], float] = time.monotonic) -> None:
        self.clock_s = clock_s
        self._buckets: dict[str, _Bucket] = {}

    def take(self, client: Client) -> float:
        """Take one token. Returns 0.0 if allowed, else seconds until one is available."""
        now_s = self.clock_s()
        b = self._buckets.get(client.key_id)
        if b is None:
            b = self._buckets[client.key_id] = _Bucket(
                client.requests_per_s, client.burst, client.burst, now_s
            )
        b.tokens = min(b.capacity, b.tokens + (now_s - b.at_s) * b.rate_per_s)
        b.at_s = now_s
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / b.rate_per_s


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
