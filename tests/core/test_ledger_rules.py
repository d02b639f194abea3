"""Rules R1-R18 on the ledger, with the seed campaign's numbers."""

import pytest

from lijian.core.errors import Conflict, IdempotencyKeyReused, InvalidRequest, RefundExceedsOrder
from lijian.core.invariants import check_invariants
from lijian.core.order import Address, Item, Location, Person
from tests.support import CHONGQING, CID, Desk, order, settings


@pytest.fixture
def desk():
    d = Desk()
    d.move("2025-02-12 10:00")
    return d


def sound(desk):
    assert check_invariants(desk.ledger) == []


# --- R1 budget, R3 release, R4 first come first served -------------------------------


def test_r3_nothing_is_granted_before_ten():
    d = Desk(start="2025-02-12 09:59:59")
    assert d.codes(order()) == ["tranche_not_open"]
    d.move("2025-02-12 10:00")
    assert d.redeem(order()).redemption is not None


def test_r2_outside_the_campaign_window():
    d = Desk(start="2025-02-11 12:00")
    assert d.codes(order()) == ["campaign_not_started"]
    d.move("2025-03-01 00:00")
    assert d.codes(order(2)) == ["campaign_ended"]


def test_r4_a_tranche_sells_out_and_no_partial_grant_is_made():
    # 2 days of 10,000 fen; orders of 40,000 fen payable earn 6,000 each.
    s = settings(campaign={"budget_fen": 20_000, "end_date": "2025-02-13"})
    d = Desk(s, start="2025-02-12 10:00")
    d.granted(order(1, person="a", price_fen=40_000, quantity=1, platform_discount_fen=0))
    codes = d.codes(order(2, person="b", price_fen=40_000, quantity=1, platform_discount_fen=0))
    assert codes == ["sold_out"]
    assert d.tranche("2025-02-12").available_fen == 4_000  # untouched: no partial grant
    # a smaller order still fits (R4 decision)
    d.granted(order(3, person="c", price_fen=20_000, quantity=1, platform_discount_fen=0))
    assert d.tranche("2025-02-12").available_fen == 1_000
    assert d.tranche("2025-02-12").sold_out_at_ms is not None
    sound(d)


def test_r1_budget_exhausted_when_no_money_is_left_anywhere():
    s = settings(campaign={"budget_fen": 6_000, "end_date": "2025-02-12"})
    d = Desk(s, start="2025-02-12 10:00")
    d.granted(order(1, person="a", price_fen=40_000, quantity=1, platform_discount_fen=0))
    assert d.codes(order(2, person="b")) == ["sold_out", "budget_exhausted"]
    sound(d)


def test_r1_the_money_left_is_kept_by_apply_and_checked_against_the_tranches():
    # 3 days of 10,000 fen: day one opens with 10,000 out and 20,000 still unreleased.
    s = settings(campaign={"budget_fen": 30_000, "end_date": "2025-02-14"})
    d = Desk(s, start="2025-02-12 10:00")
    b = d.ledger.book(CID)
    assert (b.unreleased_fen, b.remaining_total_fen()) == (20_000, 30_000)
    d.capture(
        d.granted(order(1, person="a", price_fen=40_000, quantity=1, platform_discount_fen=0))
    )
    assert (b.unreleased_fen, b.remaining_total_fen()) == (20_000, 24_000)
    d.move("2025-02-13 10:00")  # 4,000 left over rolls into day two as it opens
    assert (b.unreleased_fen, b.remaining_total_fen()) == (10_000, 24_000)
    sound(d)
    b.unreleased_fen += 1  # a running figure that drifted from the tranches is named
    assert check_invariants(d.ledger) == [
        f"{CID}: unreleased 10001 kept, 10000 in the tranches",
        f"{CID}: remaining 24001 != 24000",
    ]


def test_r4_leftover_rolls_over_to_the_next_day():
    d = Desk(start="2025-02-12 10:00")
    d.capture(d.granted(order()))
    d.move("2025-02-13 10:00")
    day1, day2 = d.tranche("2025-02-12"), d.tranche("2025-02-13")
    assert day1.rolled_out_fen == 176_470_588 - 3_720
    assert day2.released_fen == 176_470_588 + 176_470_588 - 3_720
    sound(d)


def test_r4_leftover_expires_with_expire_setting():
    d = Desk(settings(campaign={"leftover": "expire"}), start="2025-02-12 10:00")
    d.move("2025-02-13 10:00")
    assert d.tranche("2025-02-13").released_fen == 176_470_588
    assert d.ledger.book(CID).lost_fen == 176_470_588
    sound(d)


def test_r4_a_hold_keeps_its_tranche_and_a_late_void_goes_to_the_next_open_tranche(desk):
    desk.move("2025-02-12 23:50")
    rid = desk.granted(order())
    desk.move("2025-02-13 00:00:01")  # day 1 closed with the hold still held
    day1 = desk.tranche("2025-02-12")
    assert day1.held_fen == 3_720 and day1.rolled_out_fen == 176_470_588 - 3_720
    desk.void(rid)
    day2 = desk.tranche("2025-02-13")
    assert day2.inflow_pending_fen == 176_470_588 - 3_720 + 3_720
    desk.move("2025-02-13 10:00")
    assert day2.released_fen == 2 * 176_470_588
    sound(desk)


def test_r4_capture_after_midnight_stays_with_the_day_it_was_granted(desk):
    desk.move("2025-02-12 23:55")
    rid = desk.granted(order())
    desk.move("2025-02-13 00:05")
    r = desk.capture(rid)
    assert r.status == "captured" and r.day == "2025-02-12"
    assert desk.tranche("2025-02-12").captured_fen == 3_720
    sound(desk)


# --- R5 discount, R6 counts, R7 cap ------------------------------------------------


def test_r5_fifteen_percent_of_the_payable_after_platform_discounts(desk):
    out = desk.redeem(order())  # 2 × 129.00 − 10.00 = 248.00 → 37.20
    r = out.redemption
    assert (r.payable_fen, r.discount_fen, r.pay_fen) == (24_800, 3_720, 21_080)


def test_r5_a_zero_fen_discount_is_a_decline(desk):
    assert desk.codes(order(price_fen=6, quantity=1, platform_discount_fen=0)) == ["discount_zero"]


def test_r6_no_count_limit_by_default(desk):
    for i in range(30):
        desk.granted(order(i, price_fen=1_000, quantity=1, platform_discount_fen=0))


def test_r6_count_limits_when_set():
    s = settings(limits={"person_redemptions_per_day": 2, "person_redemptions_total": 3})
    d = Desk(s, start="2025-02-12 10:00")
    d.capture(d.granted(order(1)))
    d.capture(d.granted(order(2)))
    assert d.codes(order(3)) == ["person_count_limit"]
    d.move("2025-02-13 10:00")
    d.capture(d.granted(order(4)))
    assert d.codes(order(5)) == ["person_count_limit"]  # total of 3 reached


def test_r7_the_cap_grants_a_partial_discount_then_declines(desk):
    big = dict(price_fen=990_000, quantity=1, platform_discount_fen=0)  # 148,500 off
    desk.granted(order(1, **big))
    out = desk.redeem(order(2, **big))
    assert out.redemption.discount_fen == 1_500 and out.redemption.capped
    assert desk.codes(order(3, **big)) == ["person_cap_reached"]
    p = desk.person()
    assert p.held_fen == 150_000 and p.used_fen == 0
    sound(desk)


def test_r7_the_cap_is_across_platforms(desk):
    desk.granted(order(1, price_fen=1_000_000, quantity=1, platform_discount_fen=0))
    assert desk.codes(order(2, platform="vip", sku="VIP-1")) == ["person_cap_reached"]


# --- R8-R15 eligibility, all reasons at once ----------------------------------------


def test_every_applicable_reason_is_listed(desk):
    o = order(
        person="p-9",
        platform="taobao",
        payment_channel="alipay",
        sku="JD-TOY-GUN",
        other_government_subsidy=True,
        device_location=None,
        delivery_address=Address("500103"),
    )
    o = type(o)(
        **{**{f: getattr(o, f) for f in o.__struct_fields__}, "person": Person("p-9", False)}
    )
    assert desk.codes(o) == [
        "platform_not_participating",
        "payment_channel_not_supported",
        "not_real_name_verified",
        "location_missing",
        "address_outside_city",
        "not_campaign_goods",
        "other_government_subsidy",
    ]


def test_r8_a_phone_in_chongqing_is_outside(desk):
    assert desk.codes(order(device_location=Location(*CHONGQING, "gcj02"))) == [
        "location_outside_city"
    ]


def test_r13_one_non_campaign_item_spoils_the_whole_order(desk):
    o = order(items=[Item("JD-1", 1, 10_000), Item("UNKNOWN", 1, 100)])
    assert desk.codes(o) == ["not_campaign_goods"]


def test_r13_a_sku_outside_the_nine_categories_is_not_campaign_goods(desk):
    assert desk.codes(order(sku="JD-TOY-GUN")) == ["not_campaign_goods"]


def test_r15_one_order_draws_on_one_campaign_only():
    s1 = settings()
    s2 = settings(campaign={"id": "chengdu-2025-dining"})
    d = Desk(s1, s2, start="2025-02-12 10:00")
    d.granted(order(7))
    assert d.codes(order(7, campaign_id="chengdu-2025-dining")) == ["other_government_subsidy"]


def test_unknown_campaign_is_an_error_for_the_caller(desk):
    from lijian.core.errors import CampaignNotFound

    with pytest.raises(CampaignNotFound):
        desk.redeem(order(campaign_id="nowhere"))


# --- R16 two phases -----------------------------------------------------------------


def test_r16_capture_and_void(desk):
    a, b = desk.granted(order(1)), desk.granted(order(2))
    assert desk.capture(a).status == "captured"
    assert desk.capture(a).status == "captured"  # idempotent
    assert desk.void(b).status == "voided"
    assert desk.void(b).status == "voided"  # idempotent
    with pytest.raises(Conflict) as e:
        desk.void(a)
    assert e.value.code == "already_captured"
    with pytest.raises(Conflict) as e:
        desk.capture(b)
    assert e.value.code == "hold_not_active"
    assert desk.person().used_fen == 3_720 and desk.person().held_fen == 0
    assert desk.tranche("2025-02-12").available_fen == 176_470_588 - 3_720
    sound(desk)


def test_r16_an_unconfirmed_hold_expires_after_fifteen_minutes(desk):
    rid = desk.granted(order())
    desk.move(seconds=899)
    assert desk.ledger.redemption(rid).status == "held"
    desk.move(seconds=1)
    assert desk.ledger.redemption(rid).status == "expired"
    assert desk.person().held_fen == 0
    assert desk.tranche("2025-02-12").available_fen == 176_470_588
    with pytest.raises(Conflict):
        desk.capture(rid)
    sound(desk)


def test_one_active_redemption_per_order(desk):
    rid = desk.granted(order(5))
    with pytest.raises(Conflict) as e:
        desk.redeem(order(5))
    assert e.value.code == "order_already_redeemed"
    desk.void(rid)
    assert desk.redeem(order(5)).redemption is not None  # a voided order may pay again


def test_idempotency_same_key_same_request_replays_other_request_refused(desk):
    first = desk.redeem(order(1), key="K")
    again = desk.redeem(order(1), key="K")
    assert again.replayed and again.redemption.id == first.redemption.id
    with pytest.raises(IdempotencyKeyReused):
        desk.redeem(order(2), key="K")


def test_declines_are_not_remembered_under_the_key():
    d = Desk(start="2025-02-12 09:00")
    assert d.redeem(order(1), key="K").redemption is None
    d.move("2025-02-12 10:00")
    assert d.redeem(order(1), key="K").redemption is not None


# --- R17 full refund, R18 partial refund --------------------------------------------


def test_r17_full_refund_restores_quota_next_day_and_claws_back_to_next_tranche(desk):
    rid = desk.granted(order())
    desk.capture(rid)
    desk.move("2025-02-12 15:00")
    f = desk.refund(rid, "rf-1", payable_fen=24_800)
    assert (f.kind, f.card_refund_fen, f.clawback_fen, f.quota_restore_fen) == (
        "full",
        21_080,
        3_720,
        3_720,
    )
    assert desk.person().used_fen == 3_720  # not yet: "次日返还"
    assert desk.tranche("2025-02-13").inflow_pending_fen == 3_720
    desk.move("2025-02-12 23:59:59")
    assert desk.person().used_fen == 3_720
    desk.move("2025-02-13 00:00")
    assert desk.person().used_fen == 0
    assert desk.ledger.redemption(rid).status == "refunded"
    sound(desk)


def test_r17_refund_by_items_of_the_whole_order_is_full(desk):
    rid = desk.granted(order())
    desk.capture(rid)
    from lijian.core.order import RefundItem

    f = desk.refund(rid, "rf-1", items=[RefundItem("JD-1", 2)])
    assert f.kind == "full" and f.card_refund_fen == 21_080


def test_r18_partial_refunds_follow_the_cumulative_floor_and_restore_no_quota(desk):
    from lijian.core.order import RefundItem

    rid = desk.granted(order(quantity=3, price_fen=10_000, platform_discount_fen=0))
    desk.capture(rid)  # P = 30000, D = 4500, C = 25500
    f1 = desk.refund(rid, "rf-1", items=[RefundItem("JD-1", 1)])
    assert (f1.kind, f1.card_refund_fen, f1.clawback_fen, f1.quota_restore_fen) == (
        "partial",
        8_500,
        1_500,
        0,
    )
    f2 = desk.refund(rid, "rf-2", items=[RefundItem("JD-1", 2)])
    assert f2.kind == "partial" and f2.quota_restore_fen == 0  # R18 decision
    r = desk.ledger.redemption(rid)
    assert r.card_refunded_fen == 25_500 and r.clawed_back_fen == 4_500
    assert r.status == "refunded"
    desk.move("2025-02-14 00:00")
    assert desk.person().used_fen == 4_500  # partial returns never restore quota
    with pytest.raises(Conflict):
        desk.refund(rid, "rf-3", payable_fen=1)
    sound(desk)


def test_refund_limits(desk):
    rid = desk.granted(order())
    with pytest.raises(Conflict) as e:
        desk.refund(rid, "rf-0", payable_fen=100)
    assert e.value.code == "not_captured"
    desk.capture(rid)
    with pytest.raises(RefundExceedsOrder):
        desk.refund(rid, "rf-1", payable_fen=24_801)
    with pytest.raises(InvalidRequest):
        desk.refund(rid, "rf-2")  # neither items nor payable
    desk.refund(rid, "rf-3", payable_fen=100)
    with pytest.raises(Conflict) as e:
        desk.refund(rid, "rf-3", payable_fen=100)
    assert e.value.code == "refund_id_reused"
    sound(desk)


@pytest.mark.parametrize("policy,restored", [("immediately", 0), ("never", 3_720)])
def test_r17_restore_policies(policy, restored):
    d = Desk(settings(refunds={"full_refund_restores_quota": policy}), start="2025-02-12 10:00")
    rid = d.granted(order())
    d.capture(rid)
    d.refund(rid, "rf", payable_fen=24_800)
    assert d.person().used_fen == restored


@pytest.mark.parametrize(
    "policy,day1_available,day2_pending,lost",
    [
        ("same_tranche", 176_470_588, 0, 0),
        ("next_tranche", 176_470_588 - 3_720, 3_720, 0),
        ("forfeit", 176_470_588 - 3_720, 0, 3_720),
    ],
)
def test_r17_clawback_destinations(policy, day1_available, day2_pending, lost):
    d = Desk(settings(refunds={"clawback_returns_to": policy}), start="2025-02-12 10:00")
    rid = d.granted(order())
    d.capture(rid)
    d.refund(rid, "rf", payable_fen=24_800)
    assert d.tranche("2025-02-12").available_fen == day1_available
    assert d.tranche("2025-02-13").inflow_pending_fen == day2_pending
    assert d.ledger.book(CID).lost_fen == lost
    sound(d)
