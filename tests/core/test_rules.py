"""Pure rules: discount arithmetic (R5), payable (R15), refund split (R17, R18)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lijian.core.errors import InvalidRequest
from lijian.core.rules import (
    discount_fen,
    line_payable_fen,
    refund_split_fen,
    returned_value_fen,
)
from lijian.core.settings import DiscountSection, ThresholdTier

PERCENT = DiscountSection("percent", 1500, (), 0)


def test_r5_fifteen_percent_is_floored_to_the_fen():
    assert discount_fen(24_800, PERCENT) == 3_720
    assert discount_fen(12_345, PERCENT) == 1_851  # 1851.75 → 1851
    assert discount_fen(6, PERCENT) == 0  # 0.9 fen: a discount of 0 is a decline
    assert discount_fen(7, PERCENT) == 1


def test_per_order_maximum_caps_the_discount():
    d = DiscountSection("percent", 1500, (), 5_000)
    assert discount_fen(1_000_000, d) == 5_000


def test_threshold_tiers_take_the_best_reachable_tier():
    d = DiscountSection(
        "threshold", 0, (ThresholdTier(10_000, 1_000), ThresholdTier(20_000, 3_000)), 0
    )
    assert discount_fen(9_999, d) == 0
    assert discount_fen(10_000, d) == 1_000
    assert discount_fen(25_000, d) == 3_000


@given(payable=st.integers(1, 10**10), rate=st.integers(0, 10_000))
def test_percent_discount_never_exceeds_the_exact_value(payable, rate):
    d = discount_fen(payable, DiscountSection("percent", rate, (), 0))
    assert d * 10_000 <= payable * rate < (d + 1) * 10_000


def test_r18_example_partial_then_rest():
    # P = 10000, D = 1500, C = 8500. Return 3333 then the rest.
    card1, claw1 = refund_split_fen(10_000, 1_500, 0, 3_333)
    assert (card1, claw1) == (2_833, 500)  # floor(3333 × 8500 / 10000) = 2833
    card2, claw2 = refund_split_fen(10_000, 1_500, 3_333, 6_667)
    assert card1 + card2 == 8_500 and claw1 + claw2 == 1_500


@given(
    payable=st.integers(1, 10**8),
    rate=st.integers(0, 10_000),
    cuts=st.lists(st.integers(1, 10**8), min_size=1, max_size=8),
)
def test_r18_cumulative_refunds_reach_exactly_paid_and_discount(payable, rate, cuts):
    disc = discount_fen(payable, DiscountSection("percent", rate, (), 0))
    returned, card_total, claw_total = 0, 0, 0
    for c in cuts:
        step = min(c, payable - returned)
        if step <= 0:
            break
        card, claw = refund_split_fen(payable, disc, returned, step)
        returned += step
        card_total += card
        claw_total += claw
        assert card_total == returned * (payable - disc) // payable
        assert card_total <= payable - disc and claw_total <= disc
    if returned < payable:
        card, claw = refund_split_fen(payable, disc, returned, payable - returned)
        card_total += card
        claw_total += claw
    assert card_total == payable - disc and claw_total == disc


def test_returned_value_of_a_whole_line_is_exact():
    assert returned_value_fen(1_000, 3, 0, 1) == 333
    assert returned_value_fen(1_000, 3, 1, 1) == 333
    assert returned_value_fen(1_000, 3, 2, 1) == 334
    assert returned_value_fen(1_000, 3, 0, 3) == 1_000


def test_a_platform_discount_larger_than_the_line_is_invalid():
    assert line_payable_fen(2, 12_900, 1_000) == 24_800
    with pytest.raises(InvalidRequest):
        line_payable_fen(1, 100, 101)
