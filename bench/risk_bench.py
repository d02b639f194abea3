"""CPU per grant with ``[risk]`` on and off: ``evaluate_order`` (the stateless rules, on
the hot path) and the writer's ``Ledger.hold`` + ``capture`` (the decision, its entries
applied, and with [risk] on the detectors' indices and flags), measured with
``time.process_time`` in one run, interleaved, so the ratio holds on a busy machine.

    python -m bench.risk_bench [--grants N] [--rounds R]
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import time
from pathlib import Path

from lijian.core.keyed import keyed_order
from lijian.core.ledger import Ledger
from lijian.core.rules import evaluate_order
from lijian.core.settings import Settings, parse_settings
from lijian.geo import load_city
from lijian.inputs import load_settings_file
from lijian.sim.fraud import SIM_KEY, TUNED_RISK, Act, _catalog, _order

CAMPAIGN = Path(__file__).resolve().parent.parent / "campaigns" / "chengdu-2025-spring.toml"


ALONE = {  # each detector on its own: which one costs what
    "price only": ("max_price_over_reference_pct", "price_action"),
    "cluster only": ("cluster_persons_max",),
    "refund_rebuy only": ("refund_rebuy_days",),
    "velocity only": ("velocity_redemptions_max", "velocity_window_min"),
    "category_bulk only": ("category_bulk_factor", "category_bulk_min_persons"),
}


def with_risk(off: Settings, keys: tuple[str, ...]) -> Settings:
    doc = copy.deepcopy(dict(off.raw))
    doc["risk"] = {k: TUNED_RISK[k] for k in keys}
    return parse_settings(doc)


def settings_pair() -> tuple[Settings, Settings]:
    off = load_settings_file(CAMPAIGN)
    return off, with_risk(off, tuple(TUNED_RISK))  # every detector on


def run(s: Settings, grants: int, seed: int) -> tuple[float, float]:
    """(µs CPU per evaluate_order, µs CPU per hold + capture) over ``grants`` orders of
    ``grants // 3`` persons, each on its own device and address."""
    rng = random.Random(seed)
    catalog, prices = _catalog(rng)
    geo = load_city(s.campaign.city_adcode)
    led = Ledger([s])
    b = led.book(s.campaign.id)
    t0_ms = b.tranches[b.order_days[0]].opens_at_ms
    cats = sorted(prices)
    orders = []
    for n in range(grants):
        p = rng.randrange(max(1, grants // 3))
        sku, ref = rng.choice(prices[rng.choice(cats)])
        a = Act(t0_ms + n * 50, f"p-{p}", "order", sku, ref, 1, f"dev-{p}", f"addr-{p}")
        orders.append((a.at_ms, keyed_order(SIM_KEY, _order(s.campaign.id, n, a))))
    t = time.process_time()
    evs = [evaluate_order(o, s, catalog, geo) for _, o in orders]
    ev_s = time.process_time() - t
    t = time.process_time()
    for n, ((at, o), ev) in enumerate(zip(orders, evs, strict=True)):
        out = led.hold(o, ev, at, "bench", f"k-{n}", f"fp-{n}")
        if out.redemption is not None:
            led.capture(out.redemption.id, at)
        led.take_pending()
    hold_s = time.process_time() - t
    return ev_s / grants * 1e6, hold_s / grants * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grants", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    off, on = settings_pair()
    runs = [("off", off), ("on", on), *((n, with_risk(off, k)) for n, k in ALONE.items())]
    best: dict[str, list[float]] = {name: [9e9, 9e9] for name, _ in runs}
    for r in range(args.rounds):
        for name, s in runs:
            ev_us, hold_us = run(s, args.grants, seed=r)
            best[name] = [min(best[name][0], ev_us), min(best[name][1], hold_us)]
    print(f"load average {os.getloadavg()[0]:.2f}; {args.grants} grants, best of {args.rounds}")
    print(f"{'':24}{'[risk] off':>12}{'[risk] on':>12}{'ratio':>8}")
    for i, what in enumerate(("evaluate_order µs CPU", "hold+capture µs CPU")):
        a, b = best["off"][i], best["on"][i]
        print(f"{what:24}{a:12.1f}{b:12.1f}{b / a:8.2f}")
    tot_off, tot_on = sum(best["off"]), sum(best["on"])
    print(f"{'per grant µs CPU':24}{tot_off:12.1f}{tot_on:12.1f}{tot_on / tot_off:8.2f}")
    print("each detector alone, per grant µs CPU (rules + writer), ratio to [risk] off:")
    for name in ALONE:
        t = sum(best[name])
        print(f"  {name:22}{t:12.1f}{t / tot_off:8.2f}")


if __name__ == "__main__":
    main()
