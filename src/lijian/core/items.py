"""Trade-in item rules, the stateless half: the per-unit discount, the price ceiling, the
serials an order carries and the units it subsidises per category.

With per-item rules (``[discount] category_rate_bp``, a per-unit cap or a price
ceiling, lijian.core.settings_items) the discount is decided per unit: each unit of a
campaign item gets floor(unit payable × its category's rate), at most the per-unit cap,
and the order's discount is their sum (then ``max_discount_fen_per_order``, as
before). A line's payable is split over its units exactly as a refund by item values
them (lijian.core.rules.returned_value_fen): the units differ by at most one fen, and
their payables sum to the line's. Items outside the campaign's categories get nothing.

What depends on the ledger (units already subsidised, serials already used) is decided
by the writer: lijian.core.item_ledger.

Serials are kept as sent, not keyed like a person's identifiers (lijian.core.keyed): a
serial or IMEI names a device, it is printed on the box and the receipt, and the
subsidy's point is that an auditor, the regulator or the manufacturer can match the
ledger's serials against sales and activation records. A keyed value could not be
matched without the ledger key. It identifies no person without the channel's records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lijian.core.errors import InvalidRequest
from lijian.core.money import percent_off_fen
from lijian.core.order import Order
from lijian.core.settings import Settings
from lijian.core.status import DeclineCode


class Categories(Protocol):
    def category_of(self, platform: str, sku: str) -> str | None: ...


@dataclass(slots=True)
class ItemFacts:
    """What an order's items are under the per-item rules."""

    discount_fen: int | None  # per-unit discount (after the per-order maximum); None: R5
    reasons: list[DeclineCode] = field(default_factory=list)
    units: list[tuple[str, int]] = field(default_factory=list)  # (category, units), sorted
    serials: list[str] = field(default_factory=list)  # of campaign items, in item order


def unit_discount_fen(unit_payable_fen: int, rate_bp: int, cap_fen: int) -> int:
    """One unit's discount: floor(payable × rate), at most ``cap_fen`` (0 = no cap)."""
    off = percent_off_fen(unit_payable_fen, rate_bp)
    return min(off, cap_fen) if cap_fen else off


def line_discount_fen(line_payable_fen: int, quantity: int, rate_bp: int, cap_fen: int) -> int:
    """Σ of the units' discounts of one line, in O(1): ``rem`` units pay ``a + 1`` fen and
    the others ``a`` (line payable = quantity × a + rem), as returned_value_fen splits it."""
    a, rem = divmod(line_payable_fen, quantity)
    return rem * unit_discount_fen(a + 1, rate_bp, cap_fen) + (quantity - rem) * (
        unit_discount_fen(a, rate_bp, cap_fen)
    )


def item_facts(
    order: Order, lines: Sequence[tuple[str, int, int]], s: Settings, catalog: Categories
) -> ItemFacts | None:
    """The order's items under ``s.items``; None when no per-item rule applies and no
    item carries a serial (the campaign behaves exactly as without these rules)."""
    rules = s.items
    if not (rules.per_item or rules.counted or rules.require_serial):
        for i in order.items:  # (a loop, not ``any`` over a generator: the hot path)
            if i.serial is not None:
                break
        else:
            return None
    cats = s.eligibility.categories
    units: dict[str, int] = {}
    reasons: list[DeclineCode] = []
    serials: list[str] = []
    off = 0
    for item, (_, quantity, line_payable) in zip(order.items, lines, strict=True):
        if item.serial is not None and quantity != 1:  # a rule across fields: 422 on items
            raise InvalidRequest("an item with a serial is one device: its quantity must be 1",
                                 ("items",))  # fmt: skip
        cat = catalog.category_of(order.platform, item.sku)
        if cat is None or cat not in cats:
            continue  # not subsidised: no discount, not counted, its serial not recorded
        units[cat] = units.get(cat, 0) + quantity
        if rules.per_item:
            ceiling = rules.unit_ceiling_fen(cat)
            if ceiling and item.unit_price_fen > ceiling:
                reasons.append("item_price_above_limit")
            rate = rules.rate_bp(cat, s.discount.rate_bp)
            off += line_discount_fen(line_payable, quantity, rate, rules.unit_cap_fen(cat))
        if item.serial is not None:
            serials.append(item.serial)
        elif rules.require_serial:
            reasons.append("serial_required")  # also a line of several units: one serial each
    if len(set(serials)) != len(serials):
        raise InvalidRequest("each serial may appear once per order", ("items",))
    discount: int | None = None
    if rules.per_item:
        cap = s.discount.max_discount_fen_per_order
        discount = min(off, cap) if cap else off
        assert 0 <= discount <= sum(lp for _, _, lp in lines)
    return ItemFacts(discount, list(dict.fromkeys(reasons)), sorted(units.items()), serials)
