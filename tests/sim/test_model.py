"""The synthetic world and the arrival model, piece by piece (no engine)."""

from __future__ import annotations

import hashlib
import itertools
import json
import random

import msgspec
import pytest

from lijian.core.schedule import Schedule
from lijian.geo import load_city
from lijian.sim.arrivals import post_open_cdf, sample_offset_ms, tick_grid_ms
from lijian.sim.config import ArrivalCurve, SimConfig
from lijian.sim.metrics import gini
from lijian.sim.orders import OrderFactory
from lijian.sim.population import PersonKind, build_catalog, build_population
from tests.sim.conftest import small_settings

WINDOW_S = 14 * 3_600


def test_gini_of_equal_and_of_concentrated_savings() -> None:
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 100]) == pytest.approx(0.75)
    assert gini([]) == 0.0


def test_the_arrival_curve_integral_runs_from_zero_to_one() -> None:
    c = ArrivalCurve()
    values = [post_open_cdf(c, t, WINDOW_S) for t in range(0, WINDOW_S + 1, 600)]
    assert values[0] == 0.0 and values[-1] == 1.0
    assert values == sorted(values)
    # The rush: most of the burst share within three time constants.
    assert post_open_cdf(c, 3 * c.burst_tau_s, WINDOW_S) > 0.9 * c.burst_share


def test_sampled_arrivals_follow_the_curve() -> None:
    c = ArrivalCurve()
    rng = random.Random(1)
    offsets = [sample_offset_ms(c, rng, WINDOW_S) / 1000 for _ in range(20_000)]
    post = [o for o in offsets if o >= 0]
    assert abs(1 - len(post) / len(offsets) - c.preopen_share) < 0.005
    for t in (60, 300, 1_800, 7_200, 30_000):
        share = sum(1 for o in post if o <= t) / len(post)
        assert abs(share - post_open_cdf(c, t, WINDOW_S)) < 0.015, t


def test_the_tick_grid_is_fine_at_the_rush_and_coarse_later() -> None:
    w = Schedule(small_settings()).windows[0]
    ticks = list(tick_grid_ms(w.opens_at_ms, w.closes_at_ms, w.closes_at_ms, 120))
    assert ticks == sorted(set(ticks))
    assert ticks[0] == w.opens_at_ms - 120_000
    assert w.opens_at_ms in ticks and w.opens_at_ms + 1_000 in ticks
    steps = {b - a for a, b in itertools.pairwise(ticks)}
    assert steps == {1_000, 10_000, 60_000}


def test_residents_live_inside_the_city_and_outsiders_outside() -> None:
    fence = load_city("510100")
    cfg = SimConfig(persons=2_000, share_outsiders=0.1, share_spoofers=0.05)
    pop = build_population(cfg, fence, random.Random(3))
    kinds = {k: [p for p in pop.profiles if p.kind == k] for k in ("resident", "outsider")}
    assert len(kinds["outsider"]) == 200
    for p in kinds["resident"]:
        assert fence.device_in_city(p.lng, p.lat, p.crs), p
        assert fence.address_in_city(p.address.adcode)
    for p in kinds["outsider"]:
        assert not fence.device_in_city(p.lng, p.lat, p.crs), p
        assert not fence.address_in_city(p.address.adcode)
    assert {p.crs for p in pop.profiles} == {"gcj02", "wgs84", "bd09"}


def test_person_kinds_are_the_enum_and_print_as_before() -> None:
    cfg = SimConfig(persons=1_000, share_outsiders=0.1, share_spoofers=0.05)
    pop = build_population(cfg, load_city("510100"), random.Random(3))
    counts: dict[str, int] = {}
    for p in pop.profiles:
        assert type(p.kind) is PersonKind
        counts[p.kind] = counts.get(p.kind, 0) + 1
    assert counts == {"resident": 850, "outsider": 100, "spoofer": 50}
    # The figures' JSON and the report's text carry the bare names, as when they were strings.
    assert json.dumps(dict(sorted(counts.items()))) == (
        '{"outsider": 100, "resident": 850, "spoofer": 50}'
    )
    assert [f"{k}" for k in PersonKind] == ["resident", "outsider", "spoofer"]


def test_orders_hold_distinct_campaign_skus_of_one_platform() -> None:
    s = small_settings()
    cfg = SimConfig(persons=100, catalog_skus=500, non_campaign_goods_rate=0.0)
    cat = build_catalog(cfg, random.Random(4))
    known = {(p, sku) for p, sku, _ in cat.rows}
    pop = build_population(cfg, load_city("510100"), random.Random(5))
    f = OrderFactory(s.id, cfg, cat)
    rng = random.Random(6)
    ids = set()
    for _ in range(500):
        order, meta = f.make(rng, pop.pick(rng), "T")
        skus = [i.sku for i in order.items]
        assert len(skus) == len(set(skus))
        assert all((order.platform, sku) in known for sku in skus)
        assert meta.payable_fen == sum(
            i.quantity * i.unit_price_fen - i.platform_discount_fen for i in order.items
        )
        ids.add(order.order_id)
    assert len(ids) == 500


def test_the_order_stream_of_a_seed_is_pinned() -> None:
    """A seed's orders are the ledger's input: the order generator's hot path is tuned for
    speed, and this pins what it draws (3,000 orders, every field, and where the stream
    stands after them) to the values of the plain one-draw-at-a-time version."""
    cfg = SimConfig(persons=300, catalog_skus=500)
    cat = build_catalog(cfg, random.Random(4))
    pop = build_population(cfg, load_city("510100"), random.Random(5))
    f = OrderFactory("c", cfg, cat)
    rng = random.Random(6)
    digest, payable_fen = hashlib.sha256(), 0
    for _ in range(3_000):
        order, meta = f.make(rng, pop.pick(rng), "T")
        digest.update(msgspec.json.encode(order))
        payable_fen += meta.payable_fen
    assert payable_fen == 159_491_750
    assert digest.hexdigest() == (
        "d76d520b3e332491a6dc15390c5dab57551b984e6f810656a9ff54300592dc9e"
    )
    assert rng.random() == 0.3801791260420303


def test_bad_settings_are_refused_with_every_problem() -> None:
    cfg = SimConfig(persons=0, pay_fail_rate=0.9, abandon_rate=0.2, catalog_skus=1)
    problems = cfg.problems()
    assert any("persons" in p for p in problems)
    assert any("pay_fail_rate + abandon_rate" in p for p in problems)
    assert any("catalog_skus" in p for p in problems)
    with pytest.raises(ValueError):
        cfg.check()
