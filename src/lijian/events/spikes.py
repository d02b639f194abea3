"""``declines.spike``: a decline reason's rate over the last minute against the 15 minutes
before it (``[alerts] decline_spike_factor``; 0 = off).

Declines are counted where they are decided (the engine, fast path and writer alike) in
10-second buckets per (campaign, reason); reasons come from the contract's fixed set, so
the keys are bounded. A spike starts when the last minute holds at least
``SPIKE_MIN_DECLINES`` and more than ``factor`` times the baseline's per-minute average
(a baseline of zero counts as any spike); it is announced once, and once more with
``resolved: true`` when the last minute falls back to ``factor`` × baseline or below.
"""

from __future__ import annotations

from collections.abc import Iterable

from lijian.core.settings import Settings
from lijian.events.model import EventType, NewEvent

BUCKET_MS = 10_000
WINDOW_BUCKETS = 6  # the last minute
BASELINE_BUCKETS = 90  # the 15 minutes before it
SPIKE_MIN_DECLINES = 20  # a handful of declines is no wave, whatever the baseline


class SpikeDetector:
    def __init__(self, settings: Iterable[Settings]) -> None:
        self.factor = {s.campaign.id: s.alerts.decline_spike_factor for s in settings}
        self.on = any(self.factor.values())
        # (campaign, reason) → {bucket index: count}; at most 96 buckets each
        self.buckets: dict[tuple[str, str], dict[int, int]] = {}
        self.spiking: set[tuple[str, str]] = set()
        self._checked_bucket = -1

    def declined(self, campaign_id: str, codes: Iterable[str], now_ms: int) -> None:
        """Count one declined request's reasons (on the engine's loop)."""
        if not self.factor.get(campaign_id):
            return
        at = now_ms // BUCKET_MS
        for code in codes:
            b = self.buckets.get((campaign_id, code))
            if b is None:
                b = self.buckets[(campaign_id, code)] = {}
            b[at] = b.get(at, 0) + 1

    def check(self, now_ms: int) -> list[NewEvent]:
        """Spikes that started or ended; evaluated at most once per bucket."""
        at = now_ms // BUCKET_MS
        if not self.on or at == self._checked_bucket:
            return []
        self._checked_bucket = at
        out: list[NewEvent] = []
        oldest = at - WINDOW_BUCKETS - BASELINE_BUCKETS
        for key, b in self.buckets.items():
            for old in [k for k in b if k <= oldest]:
                del b[old]
            last = sum(n for k, n in b.items() if k > at - WINDOW_BUCKETS)
            base = sum(n for k, n in b.items() if k <= at - WINDOW_BUCKETS)
            factor = self.factor[key[0]]
            # last / 1 min > factor × base / 15 min, in integers
            spike = last >= SPIKE_MIN_DECLINES and last * BASELINE_BUCKETS > (
                factor * base * WINDOW_BUCKETS
            )
            if spike == (key in self.spiking):
                continue
            if spike:
                self.spiking.add(key)
            else:
                self.spiking.discard(key)
            data = {"reason": key[1], "last_minute_declines": last,
                    "previous_15_minutes_declines": base, "factor": factor,
                    "resolved": not spike}  # fmt: skip
            out.append(NewEvent(key[0], EventType.DECLINES_SPIKE, now_ms, data))
        return out
