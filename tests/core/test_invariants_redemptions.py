"""The invariant check of redemptions looks one by one only at those that can fail it
(refunded, or a discount outside 0..payable): every other one is skipped, and each
kind of fault is still named."""

from __future__ import annotations

import pytest

from lijian.core.invariants import check_invariants, redemption_problems
from lijian.core.ledger import Ledger
from lijian.core.redemption import Redemption
from lijian.core.status import RedemptionStatus
from tests.support import settings


def _record(**fields: object) -> Redemption:
    # A packed record (lijian.core.redemption): the discount is given to ``new``, the
    # other figures set through the record's accessors, as apply sets them.
    r = Redemption.new(
        "rd_1", "c", "2025-02-12", "p", "jd", "o-1", 12_900, fields.pop("discount_fen", 3_000),
        False, 0, 1, (("SKU-1", 1, 12_900),), b"\x00" * 32, "unionpay", "k-1",
    )  # fmt: skip
    for name, value in fields.items():
        setattr(r, name, value)
    return r


@pytest.mark.parametrize(
    ("fields", "problems"),
    [
        ({}, []),
        ({"status": RedemptionStatus.CAPTURED, "captured_ms": 5}, []),
        ({"discount_fen": 13_000}, ["card refunds 0 > paid -100"]),
        ({"discount_fen": -1}, ["clawbacks exceed the discount"]),
        ({"status": RedemptionStatus.REFUNDED}, ["fully refunded but card refunds != paid"]),
        ({"card_refunded_fen": 5}, ["card refund + clawback != returned value"]),
        ({"clawed_back_fen": 5}, ["card refund + clawback != returned value"]),
        ({"returned_payable_fen": 5}, ["card refund + clawback != returned value"]),
    ],
)
def test_each_fault_is_named_and_a_sound_record_is_not(fields, problems):
    r = _record(**fields)
    assert [p.removeprefix("redemption rd_1: ") for p in redemption_problems(r)] == problems
    led = Ledger([settings()])
    led.redemptions[r.id] = r
    assert [p for p in check_invariants(led) if p.startswith("redemption rd_1")] == [
        f"redemption rd_1: {p}" for p in problems
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"discount_fen": 13_000},
        {"discount_fen": -1},
        {"status": RedemptionStatus.REFUNDED},
        {"card_refunded_fen": 5},
    ],
)
def test_one_faulty_record_among_sound_ones_is_found(fields):
    """The check asks all records at once whether any can fail, then looks one by one:
    a fault anywhere among them is still named, and only that record."""
    led = Ledger([settings()])
    for i in range(7):
        r = _record(**(fields if i == 4 else {}))
        r.id = f"rd_{i}"
        led.redemptions[r.id] = r
    named = {p.split(":")[0] for p in check_invariants(led) if p.startswith("redemption ")}
    assert named == {"redemption rd_4"}
