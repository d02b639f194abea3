"""A live campaign's operator changes on the pure ledger: pause, amendments, blocks."""

import pytest

from lijian.core import steering
from lijian.core.entries import decode, encode
from lijian.core.errors import AmendmentNotFound, BlockNotFound, Conflict, Forbidden, InvalidRequest
from lijian.core.invariants import check_invariants
from lijian.core.ledger import Ledger
from lijian.core.replay import replay
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from tests.support import CID, Desk, order, settings

DAY1, DAY2 = "2025-02-12", "2025-02-13"
TRANCHE_FEN = 176_470_588  # the seed campaign: 3,000,000,000 fen over 17 days


@pytest.fixture
def desk():
    d = Desk()
    d.move("2025-02-12 10:00")
    return d


def sound(d):
    assert check_invariants(d.ledger) == []


def replayed(d) -> Ledger:
    """The one replay from zero over every entry the desk's ledger emitted (nothing took
    them for a commit), encoded as the store keeps them."""
    bodies = [encode(e) for e in d.ledger.take_pending()]
    assert all(decode(x) is not None for x in bodies)
    return replay(d.settings, bodies)


def test_pause_declines_with_every_reason_and_resume_grants_again(desk):
    ch = steering.pause(desk.ledger, CID, "op-a", "fraud wave", desk.now_ms)
    assert ch.id == "ch_00000001" and ch.kind == "pause"
    assert desk.codes(order(1)) == ["campaign_paused"]
    with pytest.raises(Conflict) as e:
        steering.pause(desk.ledger, CID, "op-a", "again", desk.now_ms)
    assert e.value.code == "campaign_already_paused"
    steering.resume(desk.ledger, CID, "op-b", "fixed", desk.now_ms)
    with pytest.raises(Conflict) as e:
        steering.resume(desk.ledger, CID, "op-b", "again", desk.now_ms)
    assert e.value.code == "campaign_not_paused"
    assert desk.redeem(order(3)).redemption is not None
    sound(desk)


def test_a_paused_campaign_still_captures_and_releases(desk):
    rid = desk.granted(order(1))
    steering.pause(desk.ledger, CID, "op-a", "stop", desk.now_ms)
    desk.capture(rid)
    desk.move("2025-02-13 10:00")
    assert desk.tranche(DAY2).state == "open"
    assert desk.codes(order(2)) == ["campaign_paused"]
    sound(desk)


@pytest.mark.parametrize("bad", ["", "   ", "x" * 501, "bad\x00reason", "tab\there", 5])
def test_reasons_are_required_and_clean(desk, bad):
    with pytest.raises(InvalidRequest):
        steering.pause(desk.ledger, CID, "op-a", bad, desk.now_ms)
    assert desk.ledger.changes.log == [] and not desk.ledger.book(CID).paused


def test_budget_top_up_over_remaining_days_changes_today_at_once(desk):
    led = desk.ledger
    a = steering.propose(led, CID, "op-a", "top up", "budget", 1_700, "remaining", None, 0)
    assert a.id == "am_000001" and a.status == "proposed" and a.days is None
    assert desk.tranche(DAY1).released_fen == TRANCHE_FEN  # nothing before the approval
    with pytest.raises(Forbidden) as e:
        steering.approve(desk.ledger, CID, a.id, "op-a", "mine", desk.now_ms)
    assert e.value.code == "four_eyes_required"
    steering.approve(desk.ledger, CID, a.id, "op-b", "ok", desk.now_ms)
    assert a.status == "applied" and a.decided_by == "op-b"
    # 17 days left: 100 fen each, the remainder 0 on the last day.
    assert a.split[0] == (DAY1, 100) and len(a.split) == 17 and sum(f for _, f in a.split) == 1_700
    assert desk.tranche(DAY1).released_fen == TRANCHE_FEN + 100
    assert desk.tranche(DAY1).available_fen == TRANCHE_FEN + 100
    assert desk.tranche(DAY2).base_fen == TRANCHE_FEN + 100
    assert desk.ledger.book(CID).budget_fen == 3_000_000_000 + 1_700
    with pytest.raises(Conflict) as e2:
        steering.approve(desk.ledger, CID, a.id, "op-c", "twice", desk.now_ms)
    assert e2.value.code == "amendment_not_pending"
    sound(desk)


def test_a_cut_below_granted_plus_held_is_refused_and_changes_nothing():
    s = settings(campaign={"budget_fen": 20_000, "end_date": "2025-02-13"})
    d = Desk(s, start="2025-02-12 10:00")
    d.granted(order(1, person="a", price_fen=40_000, quantity=1, platform_discount_fen=0))
    assert d.tranche(DAY1).available_fen == 4_000  # 10,000 released, 6,000 held
    a = steering.propose(d.ledger, CID, "op-a", "cut", "budget", -4_001, [DAY1], None, d.now_ms)
    with pytest.raises(Conflict) as e:
        steering.approve(d.ledger, CID, a.id, "op-b", "ok", d.now_ms)
    assert e.value.code == "amendment_below_committed"
    assert a.status == "proposed" and d.tranche(DAY1).available_fen == 4_000
    b = steering.propose(d.ledger, CID, "op-a", "cut", "budget", -4_000, [DAY1], None, d.now_ms)
    steering.approve(d.ledger, CID, b.id, "op-b", "ok", d.now_ms)
    assert d.tranche(DAY1).released_fen == 6_000 and d.tranche(DAY1).available_fen == 0
    assert d.ledger.book(CID).budget_fen == 16_000
    sound(d)


def test_amendment_bodies_are_checked(desk):
    led, now = desk.ledger, desk.now_ms
    bad = [(0, "remaining"), (10**15 + 1, "remaining"), (1.5, "remaining"),
           (True, "remaining"), (5, []), (5, ["2025-02-14", "2025-02-13"]),
           (5, [DAY2, DAY2]), (5, ["2025-03-01"]), (5, ["2025-2-13"]), (5, "all")]  # fmt: skip
    for delta, days in bad:
        with pytest.raises(InvalidRequest):
            steering.propose(led, CID, "op-a", "r", "budget", delta, days, None, now)
    desk.move("2025-02-13 10:00")
    with pytest.raises(InvalidRequest):  # day 1's window has closed
        steering.propose(led, CID, "op-a", "r", "budget", 5, [DAY1], None, desk.now_ms)
    for last in ["2025-02-12", "2025-03-01", "x", None]:
        with pytest.raises(InvalidRequest):
            steering.propose(led, CID, "op-a", "r", "end", None, None, last, desk.now_ms)
    with pytest.raises(InvalidRequest):
        steering.propose(led, CID, "op-a", "r", "gift", 5, None, None, desk.now_ms)
    with pytest.raises(AmendmentNotFound):
        steering.approve(led, CID, "am_999999", "op-b", "r", desk.now_ms)
    assert led.changes.log == []


def test_end_early_withdraws_later_days_and_ends_the_campaign(desk):
    rid = desk.granted(order(1))
    led = desk.ledger
    a = steering.propose(led, CID, "op-a", "money short", "end", None, None, DAY2, desk.now_ms)
    steering.approve(desk.ledger, CID, a.id, "op-b", "agreed", desk.now_ms)
    b = desk.ledger.book(CID)
    assert b.last_day == DAY2 and b.order_days == [DAY1, DAY2]
    assert b.withdrawn_fen == 15 * TRANCHE_FEN + (3_000_000_000 - 17 * TRANCHE_FEN)
    desk.capture(rid)
    sound(desk)
    desk.move("2025-02-13 10:00")
    assert desk.redeem(order(2)).redemption is not None
    desk.move("2025-02-14 10:00")
    assert desk.codes(order(3)) == ["campaign_ended"]
    # The last day's leftover had nowhere to roll: lost, never sent to a cancelled day.
    assert desk.tranche("2025-02-14").state == "scheduled"
    assert desk.tranche("2025-02-14").unreleased_fen == 0
    sound(desk)


def test_blocks_of_persons_and_skus_and_their_lifts(desk):
    held = desk.granted(order(1, person="p-9"))
    led, now = desk.ledger, desk.now_ms
    bl = steering.add_block(led, CID, "op-a", "borrowed ids", "person", "p-9", None, None, now)
    assert bl.id == "bl_000001" and bl.active
    assert desk.codes(order(2, person="p-9")) == ["person_blocked"]
    desk.capture(held)  # a hold made before the block stays valid
    sku = order(3).items[0].sku
    bs = steering.add_block(led, CID, "op-a", "price raised", "sku", None, "jd", sku, now)
    assert desk.codes(order(4, person="p-2")) == ["sku_blocked"]
    assert desk.codes(order(5, person="p-9")) == ["person_blocked", "sku_blocked"]
    steering.lift(desk.ledger, CID, bl.id, "op-b", "cleared", desk.now_ms)
    with pytest.raises(Conflict) as e:
        steering.lift(desk.ledger, CID, bl.id, "op-b", "again", desk.now_ms)
    assert e.value.code == "block_not_active"
    with pytest.raises(BlockNotFound):
        steering.lift(desk.ledger, CID, "bl_424242", "op-b", "x", desk.now_ms)
    steering.lift(desk.ledger, CID, bs.id, "op-b", "fixed", desk.now_ms)
    assert desk.redeem(order(6, person="p-9")).redemption is not None
    assert [c.kind for c in desk.ledger.changes.log] == [
        "block.added", "block.added", "block.lifted", "block.lifted"
    ]  # fmt: skip
    sound(desk)


def test_replay_and_snapshot_rebuild_every_change():
    d = Desk(start="2025-02-12 10:00")
    led = d.ledger
    d.granted(order(1))
    steering.pause(led, CID, "op-a", "stop", d.now_ms)
    steering.resume(led, CID, "op-b", "go", d.now_ms)
    a = steering.propose(led, CID, "op-a", "top up", "budget", 1_000, [DAY2], None, d.now_ms)
    steering.approve(led, CID, a.id, "op-b", "ok", d.now_ms)
    r = steering.propose(led, CID, "op-a", "cut", "budget", -5, "remaining", None, d.now_ms)
    steering.reject(led, CID, r.id, "op-b", "no", d.now_ms)
    e = steering.propose(led, CID, "op-a", "end", "end", None, None, "2025-02-20", d.now_ms)
    steering.approve(led, CID, e.id, "op-b", "ok", d.now_ms)
    steering.add_block(led, CID, "op-a", "bot", "person", "p-7", None, None, d.now_ms)
    steering.pause(led, CID, "op-a", "again", d.now_ms)
    again = replayed(d)
    assert again.changes.log == led.changes.log
    assert again.changes.amendments == led.changes.amendments
    assert again.changes.blocks == led.changes.blocks
    assert again.changes.persons == {(CID, "p-7"): ["bl_000001"]}
    b0, b1 = led.book(CID), again.book(CID)
    assert (b1.paused, b1.budget_delta_fen, b1.withdrawn_fen, b1.last_day, b1.order_days) == (
        b0.paused, b0.budget_delta_fen, b0.withdrawn_fen, b0.last_day, b0.order_days
    )  # fmt: skip
    assert b1.tranches == b0.tranches
    assert check_invariants(again) == []
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(led, 42))
    assert fresh.changes.log == led.changes.log and fresh.changes.persons == led.changes.persons
    fb = fresh.book(CID)
    assert (fb.paused, fb.last_day, fb.order_days, fb.budget_fen) == (
        True, "2025-02-20", b0.order_days, b0.budget_fen
    )  # fmt: skip
    assert check_invariants(fresh) == []


def test_the_invariants_see_a_self_approval_and_an_unenforced_block(desk):
    led, now = desk.ledger, desk.now_ms
    a = steering.propose(led, CID, "op-a", "top up", "budget", 170, "remaining", None, now)
    steering.approve(led, CID, a.id, "op-b", "ok", now)
    steering.add_block(led, CID, "op-a", "bot", "person", "p-5", None, None, now)
    sound(desk)
    a.decided_by = "op-a"  # as a forged record would say
    led.changes.persons.clear()  # and a block nobody enforces
    assert check_invariants(led) == [
        f"{CID} amendment am_000001: approved by its proposer",
        f"{CID} changes: 1 active blocks but 0 enforced",
    ]
