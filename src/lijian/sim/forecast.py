"""Forecast each day's sell-out time from the settings and the arrival model, without
running the requests (``lijian simulate --forecast``). See docs/SIMULATOR.md.

Model, per day d (all money in fen; times in seconds after the opening):

- ``g``: the expected discount granted per arriving order, estimated once by drawing
  ``samples`` orders from the same generator the simulation uses and evaluating them
  with the engine's own pure rules (catalogue, geofence, discount). Declines for
  ineligibility are zeros in that mean. The per-person savings cap is then applied day
  by day (``CapModel``): persons are grouped by how often they shop; a person's savings
  so far are their expected number of granted arrivals (Poisson) times the mean grant,
  a new arrival gets E[min(D, cap − savings)], and a person at the cap stops coming
  (as in the simulation, someone else comes instead).
- ``A(t) = n × F(t)``: expected arrivals after the opening by time t, with n the day's
  post-opening arrivals and F the arrival curve's integral
  (:func:`lijian.sim.arrivals.post_open_cdf`).
- money out of the tranche by t: ``C(t) = g × (A(t) − f·A(t − δ) − a·A(t − ttl))``,
  where a share f of holds is voided after the mean payment delay δ and a share a is
  abandoned and expires after the hold TTL: both give their money back.
- release ``R_d = base_d + inflow_d``; inflow is the previous day's leftover (rollover,
  including holds that expire after the close) plus the expected clawbacks of refunds
  that land before this day's opening.
- sell-out time: the first t with ``C(t) ≥ R_d`` (60 s scan, then 1 s refinement);
  none if ``C(window) < R_d``, and then ``R_d − g·(1 − f − a)·n`` rolls over.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from lijian.catalog import Catalog
from lijian.core.rules import discount_fen, line_payable_fen, static_reasons
from lijian.core.schedule import TrancheWindow
from lijian.core.settings import Settings
from lijian.sim.arrivals import day_arrivals, post_open_cdf
from lijian.sim.config import SimConfig
from lijian.sim.orders import OrderFactory
from lijian.sim.population import PersonKind, load_fence
from lijian.sim.results import ForecastDay
from lijian.sim.runner import World, campaign_windows, stream

SAMPLES_DEFAULT = 20_000
MAX_SAMPLES = 1_000_000
SCAN_STEP_S = 60
REFUND_DELAY_POINTS = 200  # quadrature points over the refund delay distribution
CAP_BUCKETS_PER_KIND = 100
MAX_POISSON_K = 5_000


@dataclass(frozen=True, slots=True)
class PerArrival:
    samples: int
    eligible_share: float
    discount_fen_per_arrival: float  # g: zeros for declined orders included
    discount_fen_per_eligible: float


@dataclass(frozen=True, slots=True)
class CapModel:
    """How the per-person savings cap (R7) lowers the expected grant as savings grow.

    ``buckets``: (weight mass, mean weight, eligible share) of groups of persons of one
    kind with similar shopping weights (equal weight mass per group, so the heavy
    shoppers who reach the cap first get groups of their own). ``discounts``: the
    sampled discounts of eligible orders, sorted, for E[min(D, c)].
    """

    buckets: list[tuple[float, float, float]]
    total_weight: float
    discounts: list[int]
    prefix: list[int]  # prefix sums of ``discounts``
    cap_fen: int
    keep_share: float  # of granted discount that stays used (not voided, not expired)

    def mean_min(self, c_fen: float) -> float:
        """E[min(D, c)] over eligible orders."""
        n = len(self.discounts)
        if n == 0 or c_fen <= 0:
            return 0.0
        i = bisect.bisect_left(self.discounts, c_fen)
        return (self.prefix[i] + c_fen * (n - i)) / n

    def per_arrival(self, served_arrivals: float) -> float:
        """Expected grant per arrival after ``served_arrivals`` arrivals could be served."""
        mean_d = self.mean_min(self.cap_fen)
        num = den = 0.0
        for mass, mean_w, elig in self.buckets:
            lam = mean_w / self.total_weight * served_arrivals  # arrivals per person so far
            per_grant = elig * mean_d * self.keep_share
            active = grant = 0.0
            p = math.exp(-lam)
            k_max = min(MAX_POISSON_K, int(lam + 8 * math.sqrt(lam) + 10))
            for k in range(k_max + 1):
                left = self.cap_fen - k * per_grant
                if left > 0:  # at the cap: told person_cap_reached, stops coming
                    active += p
                    grant += p * elig * self.mean_min(left)
                p *= lam / (k + 1)
            num += mass * grant
            den += mass * active
        return num / den if den else 0.0


def per_arrival(
    settings: Settings, cfg: SimConfig, world: World, samples: int = SAMPLES_DEFAULT
) -> tuple[PerArrival, CapModel]:
    """Monte-Carlo estimate of g with the engine's pure rules (no ledger, no I/O)."""
    assert 0 < samples <= MAX_SAMPLES
    rng = stream(cfg, "forecast")
    catalog = Catalog()
    catalog.upsert(world.catalog.rows)
    geo = load_fence(settings.campaign.city_adcode)
    factory = OrderFactory(settings.id, cfg, world.catalog)  # its own order numbers
    cap = settings.limits.person_savings_cap_fen
    total = eligible = 0
    discounts: list[int] = []
    by_kind: dict[PersonKind, list[int]] = {}  # kind → [arrivals, eligible]
    for _ in range(samples):
        p = world.population.pick(rng)
        order, _ = factory.make(rng, p, "F")
        payable = sum(
            line_payable_fen(i.quantity, i.unit_price_fen, i.platform_discount_fen)
            for i in order.items
        )
        disc = discount_fen(payable, settings.discount)
        k = by_kind.setdefault(p.kind, [0, 0])
        k[0] += 1
        if not static_reasons(order, settings, catalog, geo, disc):
            eligible += 1
            k[1] += 1
            total += min(disc, cap)
            discounts.append(min(disc, cap))
    pa = PerArrival(
        samples,
        eligible / samples,
        total / samples,
        total / eligible if eligible else 0.0,
    )
    discounts.sort()
    elig = {kind: e / n for kind, (n, e) in by_kind.items()}
    buckets, total_w = _weight_buckets(world, elig)
    keep = 1 - cfg.pay_fail_rate - cfg.abandon_rate
    model = CapModel(buckets, total_w, discounts, [0, *itertools.accumulate(discounts)], cap, keep)
    return pa, model


def _weight_buckets(
    world: World, eligible_by_kind: dict[PersonKind, float]
) -> tuple[list[tuple[float, float, float]], float]:
    cum = world.population.cum_weights
    weights = [b - a for a, b in zip([0.0, *cum[:-1]], cum, strict=True)]
    total = cum[-1]
    out: list[tuple[float, float, float]] = []
    kinds: dict[PersonKind, list[float]] = {}
    for prof, w in zip(world.population.profiles, weights, strict=True):
        kinds.setdefault(prof.kind, []).append(w)
    for kind, ws in sorted(kinds.items()):
        ws.sort()
        step = sum(ws) / CAP_BUCKETS_PER_KIND
        mass = count = 0.0
        for w in ws:
            mass += w
            count += 1
            if mass >= step:
                out.append((mass, mass / count, eligible_by_kind.get(kind, 0.0)))
                mass = count = 0.0
        if count:
            out.append((mass, mass / count, eligible_by_kind.get(kind, 0.0)))
    return out, total


def _sold_out_after_s(
    consumed: Callable[[float], float], release: float, window_s: int
) -> int | None:
    """First whole second t with consumed(t) ≥ release, or None."""
    if consumed(window_s) < release:
        return None
    t = 0
    while t < window_s and consumed(min(window_s, t + SCAN_STEP_S)) < release:
        t += SCAN_STEP_S
    for s in range(t, min(window_s, t + SCAN_STEP_S) + 1):
        if consumed(s) >= release:
            return s
    return window_s  # pragma: no cover - consumed(window_s) >= release above


def forecast(
    settings: Settings,
    cfg: SimConfig,
    world: World,
    samples: int = SAMPLES_DEFAULT,
    caps: bool = True,
) -> tuple[PerArrival, list[ForecastDay]]:
    """Per-day forecast: expected release, demand, sell-out time, grants and rollover.

    ``caps=False`` ignores the savings cap (the plain model: g constant)."""
    pa, model = per_arrival(settings, cfg, world, samples)
    served = 0.0  # expected arrivals so far that came while money was left
    windows = campaign_windows(settings, cfg)
    ttl_s = settings.limits.hold_ttl_s
    f, a = cfg.pay_fail_rate, cfg.abandon_rate
    delay_s = sum(cfg.pay_delay_s) / 2
    lo, hi = cfg.partial_refund_share
    claw_share = cfg.full_refund_rate + cfg.partial_refund_rate * (lo + hi) / 2
    if settings.refunds.clawback_returns_to == "forfeit":
        claw_share = 0.0
    rollover = settings.campaign.leftover == "rollover"
    end_ms = windows[-1].closes_at_ms + ttl_s * 1000
    inflow = [0.0] * len(windows)
    out: list[ForecastDay] = []
    for i, w in enumerate(windows):
        window_s = (w.closes_at_ms - w.opens_at_ms) // 1000
        n_all = day_arrivals(cfg, i, w.date)
        n = n_all * (1 - cfg.curve.preopen_share)
        g = model.per_arrival(served) if caps else pa.discount_fen_per_arrival

        def arrived(t: float, n: float = n, window_s: int = window_s) -> float:
            return n * post_open_cdf(cfg.curve, t, window_s)

        def consumed(t: float, arrived: Callable[[float], float] = arrived, g: float = g) -> float:
            return g * (arrived(t) - f * arrived(t - delay_s) - a * arrived(t - ttl_s))

        release = w.base_fen + inflow[i]
        sold = _sold_out_after_s(consumed, release, window_s)
        kept = g * (1 - f - a) * n  # what captures would keep if the tranche were endless
        served += n * (post_open_cdf(cfg.curve, sold, window_s) if sold is not None else 1.0)
        captured = release if sold is not None else kept
        leftover = release - captured
        if i + 1 < len(windows) and rollover:
            inflow[i + 1] += leftover
        # Clawbacks go to the first tranche opening after the refund (R17 next_tranche);
        # captures are placed at the day's median grant time.
        half = sold / 2 if sold is not None else _median_s(arrived, n, window_s)
        capture_ms = w.opens_at_ms + int(half * 1000) + int(delay_s * 1000)
        _spread_clawbacks(inflow, windows, i, captured * claw_share, capture_ms, cfg, end_ms)
        out.append(
            {
                "date": w.date.isoformat(),
                "arrivals": n_all,
                "discount_fen_per_arrival": round(g),
                "expected_release_fen": round(release),
                "expected_demand_fen": round(kept),
                "sold_out_after_s": sold,
                "expected_captured_fen": round(captured),
                "expected_rollover_fen": round(leftover) if rollover else 0,
            }
        )
    return pa, out


def _median_s(arrived: Callable[[float], float], n: float, window_s: int) -> float:
    lo, hi = 0.0, float(window_s)
    for _ in range(40):  # bisection to well under a second
        mid = (lo + hi) / 2
        if arrived(mid) < n / 2:
            lo = mid
        else:
            hi = mid
    return hi


def _spread_clawbacks(
    inflow: list[float],
    windows: list[TrancheWindow],
    day: int,
    amount: float,
    capture_ms: int,
    cfg: SimConfig,
    end_ms: int,
) -> None:
    if amount <= 0:
        return
    lo_s, hi_s = cfg.refund_delay_s
    share = amount / REFUND_DELAY_POINTS
    for k in range(REFUND_DELAY_POINTS):
        at_ms = capture_ms + int((lo_s + (hi_s - lo_s) * (k + 0.5) / REFUND_DELAY_POINTS) * 1000)
        if at_ms >= end_ms:
            continue  # the simulation sends no refund after its end
        for j in range(day + 1, len(windows)):
            if windows[j].opens_at_ms > at_ms:
                inflow[j] += share
                break
