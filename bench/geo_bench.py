"""Microbenchmark of `CityFence.device_in_city`, conversion included.

Prints µs per call for a point inside Chengdu, a point outside but inside Chengdu's bounding
box (full polygon test) and a point outside the box (early reject), in each crs. Each figure
is the best of several repeats, as wall-clock time and as this thread's CPU time; the CPU
figure is the one to trust on a busy machine. The budget is 20 µs per call.

    PYTHONPATH=src .venv/bin/python bench/geo_bench.py
"""

from __future__ import annotations

import argparse
import functools
import time
import timeit
from collections.abc import Callable

import prcoords

from lijian.geo import load_city

BUDGET_US_PER_CALL = 20.0

# GCJ-02 (lng, lat) of each case; converted to the other systems with prcoords below.
CASES_GCJ02: dict[str, tuple[float, float]] = {
    "inside (天府广场)": (104.0657, 30.6574),
    "outside, in bbox (德阳)": (104.398, 31.127),
    "outside, off bbox (解放碑)": (106.577, 29.557),
}


def from_gcj02(lng: float, lat: float, crs: str) -> tuple[float, float]:
    """The point's coordinates in ``crs`` (prcoords works in (lat, lon) order)."""
    if crs == "gcj02":
        return lng, lat
    if crs == "wgs84":
        lat_out, lng_out = prcoords.gcj_wgs_bored((lat, lng))
    else:
        lat_out, lng_out = prcoords.gcj_bd((lat, lng))
    return lng_out, lat_out


def us_per_call(
    fn: Callable[[], object], calls: int, repeats: int, timer: Callable[[], float]
) -> float:
    return min(timeit.repeat(fn, number=calls, repeat=repeats, timer=timer)) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    fence = load_city("510100")
    worst_us = 0.0
    print(f"{'crs':6} {'case':26} {'wall us/call':>12} {'cpu us/call':>12}")
    for crs in ("gcj02", "wgs84", "bd09"):
        for case, (lng_gcj, lat_gcj) in CASES_GCJ02.items():
            lng, lat = from_gcj02(lng_gcj, lat_gcj, crs)
            expected = case.startswith("inside")
            assert fence.device_in_city(lng, lat, crs) is expected, (crs, case)
            call = functools.partial(fence.device_in_city, lng, lat, crs)
            wall_us = us_per_call(call, args.calls, args.repeats, time.perf_counter)
            cpu_us = us_per_call(call, args.calls, args.repeats, time.thread_time)
            worst_us = max(worst_us, cpu_us)
            print(f"{crs:6} {case:26} {wall_us:12.2f} {cpu_us:12.2f}")
    verdict = "within" if worst_us <= BUDGET_US_PER_CALL else "OVER"
    print(f"worst {worst_us:.2f} us/call (cpu), {verdict} the {BUDGET_US_PER_CALL:.0f} us budget")
    return 0 if worst_us <= BUDGET_US_PER_CALL else 1


if __name__ == "__main__":
    raise SystemExit(main())
