"""The arrival model: how many persons come each day, and when.

A day's expected arrivals are ``persons × participation × factor(day)``, where the
factor boosts the launch day and weekends and decays day by day. Arrival times follow
``ArrivalCurve``: a few before the opening, an exponential rush from 10:00 and a
background spread over the open window. ``post_open_cdf`` is the curve's integral, used
by both the sampler (so the simulation follows it) and the forecast (so the forecast
and the simulation share one definition of "the arrival curve").

Simulated time advances on a grid of ticks (``tick_grid_ms``): 1 s around the opening,
10 s for the rest of the first hour, 60 s afterwards and overnight. All arrivals of one
tick are submitted together in arrival order, at the tick's time.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import itertools
import math
import random
from collections.abc import Iterator

from lijian.sim.config import MAX_ARRIVALS_PER_DAY, ArrivalCurve, SimConfig
from lijian.sim.draws import peek, skip

FINE_TICK_S = 1
FINE_SPAN_S = 600  # the rush: per-second resolution for the first ten minutes
MEDIUM_TICK_S = 10
MEDIUM_SPAN_S = 3_600
COARSE_TICK_S = 60
SATURDAY = 5


def day_factor(cfg: SimConfig, index: int, date: dt.date) -> float:
    f = cfg.daily_decay**index
    if index == 0:
        f *= cfg.launch_boost
    if date.weekday() >= SATURDAY:
        f *= cfg.weekend_boost
    return f


def day_arrivals(cfg: SimConfig, index: int, date: dt.date) -> int:
    """Arrivals of one day (deterministic: the expected count, rounded)."""
    n = round(cfg.persons * cfg.participation * day_factor(cfg, index, date))
    return max(0, min(n, MAX_ARRIVALS_PER_DAY))


def _background_cdf(curve: ArrivalCurve, t_s: float, window_s: float) -> float:
    w = curve.background_weights
    total = sum(w)
    seg_s = window_s / len(w)
    full = min(len(w), int(t_s // seg_s))
    acc = sum(w[:full])
    if full < len(w):
        acc += w[full] * (t_s - full * seg_s) / seg_s
    return acc / total


def post_open_cdf(curve: ArrivalCurve, t_s: float, window_s: float) -> float:
    """Share of the post-opening arrivals that came within ``t_s`` of the opening."""
    if t_s <= 0:
        return 0.0
    if t_s >= window_s:
        return 1.0
    norm = -math.expm1(-window_s / curve.burst_tau_s)
    burst = -math.expm1(-t_s / curve.burst_tau_s) / norm
    return curve.burst_share * burst + (1 - curve.burst_share) * _background_cdf(
        curve, t_s, window_s
    )


@functools.lru_cache(maxsize=64)
def _cumulative(weights: tuple[float, ...]) -> list[float]:
    return list(itertools.accumulate(weights))


def sample_offset_ms(curve: ArrivalCurve, rng: random.Random, window_s: float) -> int:
    """One arrival's time relative to the opening, in ms (negative: before it)."""
    u = rng.random()
    if u < curve.preopen_share:
        return -int(rng.random() * curve.preopen_s * 1000) - 1
    if rng.random() < curve.burst_share:
        # Inverse CDF of the exponential truncated to the window.
        norm = -math.expm1(-window_s / curve.burst_tau_s)
        t_s = -curve.burst_tau_s * math.log1p(-rng.random() * norm)
    else:
        w = curve.background_weights
        seg_s = window_s / len(w)
        cum = _cumulative(w)
        i = min(len(w) - 1, bisect.bisect(cum, rng.random() * cum[-1]))
        t_s = (i + rng.random()) * seg_s
    return min(int(t_s * 1000), int(window_s * 1000) - 1)


DRAWS_PER_OFFSET_MAX = 4  # the background branch: choice, branch, segment, position


def sample_offsets_ms(
    curve: ArrivalCurve, rng: random.Random, window_s: float, n: int
) -> list[int]:
    """``[sample_offset_ms(curve, rng, window_s) for _ in range(n)]``, the same values
    and the same draws consumed, with the draws taken in one block (:mod:`.draws`): a
    day's arrivals at city scale are hundreds of thousands of calls otherwise."""
    u = peek(rng, n * DRAWS_PER_OFFSET_MAX)
    pre_share, pre_s = curve.preopen_share, curve.preopen_s
    burst_share, tau_s = curve.burst_share, curve.burst_tau_s
    norm = -math.expm1(-window_s / tau_s)
    w = curve.background_weights
    seg_s = window_s / len(w)
    cum = _cumulative(w)
    top, last = cum[-1], len(w) - 1
    end_ms = int(window_s * 1000) - 1
    log1p, bisect_right = math.log1p, bisect.bisect
    out: list[int] = []
    k = 0
    for _ in range(n):  # each step is sample_offset_ms, line for line
        if u[k] < pre_share:
            out.append(-int(u[k + 1] * pre_s * 1000) - 1)
            k += 2
            continue
        if u[k + 1] < burst_share:
            t_s = -tau_s * log1p(-u[k + 2] * norm)
            k += 3
        else:
            i = bisect_right(cum, u[k + 2] * top)
            t_s = ((i if i < last else last) + u[k + 3]) * seg_s
            k += 4
        ms = int(t_s * 1000)
        out.append(ms if ms < end_ms else end_ms)
    skip(rng, k)
    return out


def tick_grid_ms(open_ms: int, close_ms: int, until_ms: int, preopen_s: int) -> Iterator[int]:
    """Tick times from ``preopen_s`` before the opening up to (excluding) ``until_ms``."""
    assert open_ms < close_ms <= until_ms
    t = open_ms - preopen_s * 1000
    bounds = (
        (open_ms + FINE_SPAN_S * 1000, FINE_TICK_S),
        (open_ms + MEDIUM_SPAN_S * 1000, MEDIUM_TICK_S),
        (until_ms, COARSE_TICK_S),
    )
    for end_ms, step_s in bounds:
        while t < min(end_ms, until_ms):
            yield t
            t += step_s * 1000


def bucket_index(ticks: list[int], t_ms: int) -> int:
    """Index of the tick an arrival at ``t_ms`` is submitted on (the last tick ≤ t)."""
    return max(0, bisect.bisect_right(ticks, t_ms) - 1)
