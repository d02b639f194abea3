"""The forecast agrees with the full simulation on a small case, within a stated tolerance.

Tolerance: the forecast and the simulation agree on whether each day sells out, and
their sell-out times differ by at most 5% of the day's arrivals, measured on the arrival
curve: |F(t_forecast) − F(t_simulated)| ≤ 0.05, where F is the share of the day's
post-opening arrivals that came by then (docs/SIMULATOR.md, "Forecast").
"""

from __future__ import annotations

from lijian.sim.arrivals import post_open_cdf
from lijian.sim.config import SimConfig
from lijian.sim.forecast import forecast
from tests.sim.conftest import simulate, small_settings

TOLERANCE_ARRIVAL_SHARE = 0.05
WINDOW_S = 14 * 3_600


def test_forecast_sell_out_times_are_within_tolerance_of_the_simulation(tmp_path) -> None:
    cfg = SimConfig(persons=10_000, seed=11, days=3, catalog_skus=2_000, participation=0.2)
    settings = small_settings(budget_fen=3 * 6_000_000, days=3)
    done = simulate(tmp_path, cfg, settings)
    _, fc = forecast(settings, cfg, done.world, samples=5_000)
    for day, f in zip(done.summary["days"], fc, strict=True):
        sim_s, fc_s = day["sold_out_after_s"], f["sold_out_after_s"]
        assert (sim_s is None) == (fc_s is None), day["date"]
        if sim_s is None or fc_s is None:
            continue
        gap = abs(
            post_open_cdf(cfg.curve, sim_s, WINDOW_S) - post_open_cdf(cfg.curve, fc_s, WINDOW_S)
        )
        assert gap <= TOLERANCE_ARRIVAL_SHARE, (day["date"], sim_s, fc_s, gap)
