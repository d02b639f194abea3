"""Synthetic orders: what one arriving person pays for.

An order's value is lognormal (median per category, ``CATEGORY_PROFILE``, sigma
``order_sigma``) and is split over 1-3 lines of distinct SKUs of one category and one
platform; a line may hold 2-3 units. Some orders carry a platform coupon (stacks, R15),
a non-campaign SKU (R13) or another government subsidy (R15), at the configured rates.
Money is integer fen throughout; values are clamped to a sane range.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass

from lijian.core.order import Item, Order
from lijian.sim.config import CATEGORY_PROFILE, SimConfig
from lijian.sim.population import Profile, SyntheticCatalog, location_for

MIN_ORDER_FEN = 100
MAX_ORDER_FEN = 5_000_000  # 50,000 CNY: a larger basket is not a consumer's
LINES_WEIGHTS = (0.65, 0.25, 0.10)  # 1, 2 or 3 lines
QTY_WEIGHTS = (0.8, 0.15, 0.05)  # 1, 2 or 3 units on a line
CHANNEL = "unionpay"
MAX_PICK_TRIES = 32


@dataclass(frozen=True, slots=True)
class OrderMeta:
    """What the simulator keeps about a granted order to act on it later."""

    category: str
    payable_fen: int


class OrderFactory:
    """Draws orders. Hot path of the simulator (one call per arrival): draws use
    ``rng.random()`` with precomputed cumulative weights instead of ``rng.choices``,
    which rebuilds its tables on every call."""

    def __init__(self, campaign_id: str, cfg: SimConfig, catalog: SyntheticCatalog) -> None:
        self.campaign_id = campaign_id
        self.cfg = cfg
        self.catalog = catalog
        self.categories = list(CATEGORY_PROFILE)
        self.cat_cum = list(itertools.accumulate(CATEGORY_PROFILE[c][0] for c in self.categories))
        self.mu = [
            math.log(CATEGORY_PROFILE[c][1] * cfg.order_value_scale) for c in self.categories
        ]
        self.shelves = {
            p: [catalog.by_shelf[(p, c)] for c in self.categories] for p in ("jd", "vip")
        }
        self.lines_cum = list(itertools.accumulate(LINES_WEIGHTS))
        self.qty_cum = list(itertools.accumulate(QTY_WEIGHTS))
        self.seq = 0
        # The knobs the hot path reads, bound once (the same values as cfg's).
        self.cat_top, self.n_cats = self.cat_cum[-1], len(self.cat_cum)
        self.lines_top, self.qty_top = self.lines_cum[-1], self.qty_cum[-1]
        self.jd_shelves, self.vip_shelves = self.shelves["jd"], self.shelves["vip"]
        self.jd_share, self.order_sigma = cfg.jd_share, cfg.order_sigma
        self.non_campaign_rate = cfg.non_campaign_goods_rate
        self.coupon_rate = cfg.platform_discount_rate
        self.other_subsidy_rate = cfg.other_subsidy_rate

    def make(self, rng: random.Random, p: Profile, day_tag: str) -> tuple[Order, OrderMeta]:
        order, ci, payable = self._draw(rng, p, day_tag)
        return order, OrderMeta(self.categories[ci], payable)

    def make_order(self, rng: random.Random, p: Profile, day_tag: str) -> Order:
        """``make`` without its ``OrderMeta`` (the same draws): the simulator's hot path."""
        return self._draw(rng, p, day_tag)[0]

    def _draw(self, rng: random.Random, p: Profile, day_tag: str) -> tuple[Order, int, int]:
        """One order, its category index and its payable. The draws are consumed in a
        fixed order (a seed's orders depend on it): platform, category, value, lines,
        SKUs, non-campaign SKU, shares, then per line quantity and coupon, the location
        (``location_for``) and the other subsidy. One call per arrival at city scale, so
        the knobs are read once in ``__init__`` and the common cases (one line, no
        coupon) take the short way; the draws and the arithmetic are the same."""
        r = rng.random
        bisect_right = bisect.bisect_right
        self.seq += 1
        jd = r() < self.jd_share
        platform = "jd" if jd else "vip"
        cat_cum = self.cat_cum
        ci = bisect_right(cat_cum, r() * self.cat_top)
        ci = ci if ci < self.n_cats else self.n_cats - 1  # r() * total may round to total
        value = int(math.exp(self.mu[ci] + self.order_sigma * rng.gauss(0.0, 1.0)))
        value = MIN_ORDER_FEN if value < MIN_ORDER_FEN else min(value, MAX_ORDER_FEN)
        shelf = (self.jd_shelves if jd else self.vip_shelves)[ci]
        n_shelf = len(shelf)
        n_lines = 1 + bisect_right(self.lines_cum, r() * self.lines_top)
        n_lines = n_lines if n_lines <= n_shelf else n_shelf
        picks = [int(r() * n_shelf)]
        if n_lines > 1:
            for _ in range(MAX_PICK_TRIES):  # distinct SKUs: the engine refuses a repeat
                if len(picks) >= n_lines:
                    break
                k = int(r() * n_shelf)
                if k not in picks:
                    picks.append(k)
            skus = [shelf[k] for k in picks]
        else:
            skus = [shelf[picks[0]]]
        if r() < self.non_campaign_rate:
            skus[-1] = f"{platform.upper()}-NC-{self.seq:08d}"  # not in the catalogue
        qty_cum, qty_top = self.qty_cum, self.qty_top
        if len(skus) == 1:  # the common order: one line, the whole value
            line_fen = value
            qty = 1 + bisect_right(qty_cum, r() * qty_top)
            unit_fen = line_fen // qty or 1
            coupon_fen = 0
            if r() < self.coupon_rate:
                coupon_fen = int(unit_fen * qty * (0.05 + 0.1 * r()))
            items = [Item(skus[0], qty, unit_fen, coupon_fen)]
            payable = unit_fen * qty - coupon_fen
        else:
            shares = [r() + 0.2 for _ in skus]
            total = sum(shares)
            shares = [x / total for x in shares]
            items = []
            payable = 0
            for i, sku in enumerate(skus):
                line_fen = int(value * shares[i]) or 1
                qty = 1 + bisect_right(qty_cum, r() * qty_top)
                unit_fen = line_fen // qty or 1
                coupon_fen = 0
                if i == 0 and r() < self.coupon_rate:
                    coupon_fen = int(unit_fen * qty * (0.05 + 0.1 * r()))
                items.append(Item(sku, qty, unit_fen, coupon_fen))
                payable += unit_fen * qty - coupon_fen
        order = Order(
            self.campaign_id,
            platform,
            f"{'JD' if jd else 'VIP'}-{day_tag}-{self.seq:08d}",
            CHANNEL,
            p.person,
            items,
            location_for(p, self.cfg, rng),
            p.address,
            r() < self.other_subsidy_rate,
        )
        return order, ci, payable
