"""What a refund returns: its payable value (R18), from an amount or from items.

A refund names either ``payable_fen`` or ``items``; by items, each line's value is
its share of the line's payable, exact in total (lijian.core.rules.returned_value_fen).
"""

from __future__ import annotations

from lijian.core.errors import InvalidRequest, RefundExceedsOrder
from lijian.core.order import RefundRequest
from lijian.core.redemption import Redemption
from lijian.core.rules import returned_value_fen


def returned_value(r: Redemption, req: RefundRequest) -> tuple[int, list[tuple[str, int]]]:
    if (req.items is None) == (req.payable_fen is None):
        raise InvalidRequest("give exactly one of items or payable_fen", ("items",))
    if req.payable_fen is not None:
        return req.payable_fen, []
    assert req.items is not None
    if not req.items:
        raise InvalidRequest("items must not be empty", ("items",))
    by_sku: dict[str, int] = {}
    for it in req.items:
        by_sku[it.sku] = by_sku.get(it.sku, 0) + it.quantity
    ordered = {sku: (q, lp) for sku, q, lp in r.lines}
    value = 0
    for sku, qty in by_sku.items():
        if sku not in ordered:
            raise InvalidRequest(f"sku {sku!r} is not in the order", ("items",))
        q, lp = ordered[sku]
        before = r.returned_of(sku)
        if before + qty > q:
            raise RefundExceedsOrder(f"sku {sku!r}: {before + qty} returned of {q} ordered")
        value += returned_value_fen(lp, q, before, qty)
    return value, sorted(by_sku.items())
