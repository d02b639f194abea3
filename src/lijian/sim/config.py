"""What a simulation assumes: population mix, arrival curve, orders, payments, refunds.

Every behaviour the simulator draws at random is a field here, so a report says exactly
what produced it (``SimConfig.as_dict`` is copied into ``summary.json``). Rates are
probabilities per event (per person, per arrival, per grant, per capture); money is
integer fen; durations end in ``_s``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field

from lijian.jsonish import Json

# Category → (share of orders, median order value in fen). Medians are plausible for
# online shopping in 2025 (fresh food baskets small, sports gear and liquor larger); the
# shares follow what the Chengdu notice lists first. Only the nine R11 categories.
CATEGORY_PROFILE: dict[str, tuple[float, int]] = {
    "apparel_shoes_hats": (0.22, 35_000),
    "home_textiles": (0.08, 45_000),
    "beauty_skincare": (0.17, 40_000),
    "fresh_food": (0.14, 18_000),
    "alcohol_beverages": (0.10, 50_000),
    "sports_outdoor": (0.08, 55_000),
    "auto_supplies": (0.05, 40_000),
    "nutrition_health": (0.08, 45_000),
    "maternal_baby_toys": (0.08, 32_000),
}

# Limits (TIGER_STYLE): a simulation is a tool, not a soak test.
MAX_PERSONS = 5_000_000
MAX_CATALOG_SKUS = 2_000_000
MAX_ARRIVALS_PER_DAY = 2_000_000


@dataclass(frozen=True, slots=True)
class ArrivalCurve:
    """When a day's arrivals come, relative to the tranche opening (10:00).

    A share ``preopen_share`` of the day's arrivals comes in the ``preopen_s`` seconds
    before the opening (and is told ``tranche_not_open``). Of the rest, ``burst_share``
    follows an exponential decay from the opening with time constant ``burst_tau_s``
    (the rush) and the remainder spreads over the open window with piecewise-constant
    ``background_weights`` (equal slices of the window: an evening peak by default).
    """

    preopen_share: float = 0.01
    preopen_s: int = 120
    burst_share: float = 0.7
    burst_tau_s: float = 180.0
    background_weights: tuple[float, ...] = (
        1.0, 1.1, 1.3, 1.0, 0.8, 0.8, 0.9, 1.0, 1.2, 1.5, 1.7, 1.5, 1.0, 0.6,
    )  # fmt: skip

    def problems(self) -> list[str]:
        out: list[str] = []
        if not 0 <= self.preopen_share < 1:
            out.append("preopen_share must be in [0, 1)")
        if not 0 < self.preopen_s <= 3_600:
            out.append("preopen_s must be in (0, 3600]")
        if not 0 <= self.burst_share <= 1:
            out.append("burst_share must be in [0, 1]")
        if not 0 < self.burst_tau_s <= 86_400:
            out.append("burst_tau_s must be in (0, 86400]")
        w = self.background_weights
        if not w or len(w) > 1_440 or any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
            out.append("background_weights: 1-1440 finite non-negative weights, sum > 0")
        return out


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulation's knobs. Defaults give a plausible Chengdu-like run."""

    persons: int = 50_000
    seed: int = 2025
    days: int | None = None  # simulate only the first N days of the campaign
    catalog_skus: int = 20_000
    # Demand: expected arrivals per person per day, before the day's factors.
    participation: float = 0.15
    launch_boost: float = 1.5  # day one (元宵节 launch, press coverage)
    weekend_boost: float = 1.2
    daily_decay: float = 0.97  # novelty wears off
    activity_sigma: float = 1.2  # lognormal spread of how often a person shops
    # Who the persons are.
    share_outsiders: float = 0.05  # live outside Chengdu, phone says so
    share_spoofers: float = 0.02  # live outside, phone spoofed to a point in Chengdu
    share_unverified: float = 0.01  # no real-name verification (R10)
    crs_shares: tuple[float, float, float] = (0.75, 0.15, 0.10)  # gcj02, wgs84, bd09
    away_from_home_rate: float = 0.3  # a resident shops away from home this time
    away_jitter_deg: float = 0.05
    location_missing_rate: float = 0.003  # location permission denied
    # Orders.
    order_sigma: float = 0.8  # lognormal sigma of order value (medians: CATEGORY_PROFILE)
    order_value_scale: float = 1.0  # multiplies every category median
    jd_share: float = 0.6
    platform_discount_rate: float = 0.3  # share of orders with a platform coupon (R15)
    non_campaign_goods_rate: float = 0.02  # basket holds a non-campaign SKU (R13)
    other_subsidy_rate: float = 0.003  # order carries another government subsidy (R15)
    # Payment (R16) and after-sales (R17, R18).
    pay_fail_rate: float = 0.03  # payment fails: the channel voids
    abandon_rate: float = 0.02  # person walks away: the hold expires
    pay_delay_s: tuple[int, int] = (5, 90)
    full_refund_rate: float = 0.03
    partial_refund_rate: float = 0.02
    partial_refund_share: tuple[float, float] = (0.2, 0.6)  # of payable returned
    refund_delay_s: tuple[int, int] = (6 * 3_600, 5 * 86_400)
    curve: ArrivalCurve = field(default_factory=ArrivalCurve)
    # The simulator's database is a throwaway rehearsal file: NORMAL survives a process
    # crash (not power loss) and spares an fsync per batch. It is still a real SQLite
    # ledger that ``lijian audit`` replays.
    synchronous: str = "NORMAL"

    def problems(self) -> list[str]:
        out = [f"curve.{p}" for p in self.curve.problems()]
        if not 1 <= self.persons <= MAX_PERSONS:
            out.append(f"persons must be in [1, {MAX_PERSONS}]")
        if not 100 <= self.catalog_skus <= MAX_CATALOG_SKUS:
            out.append(f"catalog_skus must be in [100, {MAX_CATALOG_SKUS}]")
        if self.days is not None and self.days < 1:
            out.append("days must be >= 1")
        rates = [
            "share_outsiders",
            "share_spoofers",
            "share_unverified",
            "away_from_home_rate",
            "location_missing_rate",
            "jd_share",
            "platform_discount_rate",
            "non_campaign_goods_rate",
            "other_subsidy_rate",
            "pay_fail_rate",
            "abandon_rate",
            "full_refund_rate",
            "partial_refund_rate",
        ]
        for name in rates:
            v = getattr(self, name)
            if not 0 <= v <= 1:
                out.append(f"{name} must be in [0, 1]")
        if self.share_outsiders + self.share_spoofers > 1:
            out.append("share_outsiders + share_spoofers must be <= 1")
        if self.pay_fail_rate + self.abandon_rate > 1:
            out.append("pay_fail_rate + abandon_rate must be <= 1")
        if self.full_refund_rate + self.partial_refund_rate > 1:
            out.append("full_refund_rate + partial_refund_rate must be <= 1")
        if abs(sum(self.crs_shares) - 1) > 1e-9 or min(self.crs_shares) < 0:
            out.append("crs_shares must be non-negative and sum to 1")
        lo, hi = self.pay_delay_s
        if not 0 < lo <= hi < 600:
            out.append("pay_delay_s must satisfy 0 < lo <= hi < 600 (well inside the hold TTL)")
        lo, hi = self.refund_delay_s
        if not 0 < lo <= hi <= 60 * 86_400:
            out.append("refund_delay_s must satisfy 0 < lo <= hi <= 60 days")
        lo_f, hi_f = self.partial_refund_share
        if not 0 < lo_f <= hi_f < 1:
            out.append("partial_refund_share must satisfy 0 < lo <= hi < 1")
        for name in ("participation", "launch_boost", "weekend_boost", "daily_decay"):
            if not 0 <= getattr(self, name) <= 100:
                out.append(f"{name} must be in [0, 100]")
        if not 0 < self.order_value_scale <= 100 or not 0 < self.order_sigma <= 3:
            out.append("order_value_scale in (0, 100], order_sigma in (0, 3]")
        if not 0 <= self.activity_sigma <= 3:
            out.append("activity_sigma must be in [0, 3]")
        if self.synchronous.upper() not in ("FULL", "NORMAL", "OFF"):
            out.append("synchronous must be FULL, NORMAL or OFF")
        return out

    def check(self) -> SimConfig:
        problems = self.problems()
        if problems:
            raise ValueError("invalid simulation settings: " + "; ".join(problems))
        return self

    def as_dict(self) -> Json:
        d: Json = dataclasses.asdict(self)
        d["curve"] = {**dataclasses.asdict(self.curve),
                      "background_weights": list(self.curve.background_weights)}  # fmt: skip
        return d


def simulation_key(seed: int) -> bytes:
    """The ledger key of a simulated ledger, derived from the simulation seed: the same
    seed keys identifiers and derives draw seeds the same way, run after run (a real
    ledger's key is random and secret: lijian.ledger_key)."""
    return hashlib.sha256(f"lijian simulation ledger key\n{seed}".encode()).digest()
