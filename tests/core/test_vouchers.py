"""Claimed vouchers in the core: claim, pay with it, capture, void, expiry, restore after
a full refund; money conserved, replay and snapshot equal to the live ledger."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from lijian.core.claims import ClaimRequest, claim_reasons, decide_claim
from lijian.core.entries import encode
from lijian.core.errors import Conflict, IdempotencyKeyReused, InvalidRequest
from lijian.core.invariants import check_invariants
from lijian.core.ledger import Ledger
from lijian.core.order import Location, Order, Person
from lijian.core.replay import replay
from lijian.core.settings import SettingsError
from lijian.core.settlement import settlement
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.status import VoucherStatus
from lijian.geo import load_city
from tests.support import CID, TIANFU_SQUARE, Desk, order, settings

V = 3_000
DAY = "2025-02-12"
BUDGET = 17 * 3 * V  # three vouchers a day


def claim_settings(**over: dict[str, Any]) -> Any:
    sections: dict[str, dict[str, Any]] = {
        "campaign": {"budget_fen": BUDGET},
        "discount": {
            "kind": "threshold",
            "rate_bp": 0,
            "tiers": [
                {"min_payable_fen": 20_000, "off_fen": 3_000},
                {"min_payable_fen": 10_000, "off_fen": 2_000},
            ],
        },
        "refunds": {
            "full_refund_restores_quota": "immediately",
            "clawback_returns_to": "same_tranche",
        },
        "claims": {
            "mode": "claim",
            "voucher_value_fen": V,
            "valid_for": "day",
            "claim_open": "10:00",
            "claim_close": "22:00",
        },
    }
    for k, v in over.items():
        sections.setdefault(k, {}).update(v)
    return settings(**sections)


class ClaimDesk(Desk):
    def __init__(self, **over: dict[str, Any]) -> None:
        super().__init__(claim_settings(**over), start="2025-02-12 10:00")
        self.log: list[bytes] = []

    def claim(self, person: str = "p-1", key: str | None = None, **kw: Any) -> Any:
        self.keys += 1
        req = ClaimRequest(Person(person, True), Location(*TIANFU_SQUARE, "gcj02"), **kw)
        b = self.ledger.book(CID)
        stateless = claim_reasons(req, b, load_city("510100"))
        out = decide_claim(self.ledger, CID, req, stateless, self.now_ms, "unionpay",
                           key or f"ck-{self.keys}", f"cfp-{person}")  # fmt: skip
        return out

    def voucher(self, person: str = "p-1") -> str:
        out = self.claim(person)
        assert out.voucher is not None, out.reasons
        return str(out.voucher.id)

    def sound(self) -> None:
        assert check_invariants(self.ledger) == []
        self.log.extend(encode(e) for e in self.ledger.take_pending())


def conserved(d: Desk) -> int:
    """Every fen of the budget, summed from where it is."""
    b = d.ledger.book(CID)
    ts = b.tranches.values()
    return (sum(t.unreleased_fen + t.available_fen + t.held_fen + t.granted_fen + t.voucher_fen
                for t in ts) + b.lost_fen + b.withdrawn_fen)  # fmt: skip


def test_claim_takes_the_value_from_the_tranche_and_counts_against_the_cap() -> None:
    d = ClaimDesk()
    vid = d.voucher("p-1")
    t = d.tranche(DAY)
    assert (t.available_fen, t.voucher_fen) == (3 * V - V, V)
    assert d.person("p-1").held_fen == V
    v = d.ledger.vouchers.by_id[vid]
    assert v.status == VoucherStatus.CLAIMED and v.tranche_day == DAY
    assert v.valid_until_ms == t.closes_at_ms
    assert vid.startswith("vc_")
    d.sound()
    assert conserved(d) == BUDGET


def test_first_come_first_served_until_sold_out_then_limits_and_hours() -> None:
    d = ClaimDesk()
    for p in ("p-1", "p-2", "p-3"):
        d.voucher(p)
    assert [c for c, _ in d.claim("p-4").reasons] == ["claims_sold_out"]
    assert d.tranche(DAY).sold_out_at_ms is not None
    assert [c for c, _ in d.claim("p-1").reasons] == ["person_claim_limit", "claims_sold_out"]
    d.move("2025-02-13 09:59")
    assert [c for c, _ in d.claim("p-5").reasons] == ["claim_window_closed"]
    d.move("2025-02-13 22:00")
    assert [c for c, _ in d.claim("p-5").reasons] == ["claim_window_closed"]
    d.move("2025-02-13 21:59")  # time never goes back: still 22:00
    d.move("2025-02-14 10:00")
    d.voucher("p-1")  # a new day: a new claim
    d.sound()
    assert conserved(d) == BUDGET


def test_claim_reasons_stateless_and_idempotency() -> None:
    d = ClaimDesk()
    req = ClaimRequest(Person("p-9", False), None)
    assert [c for c, _ in claim_reasons(req, d.ledger.book(CID), load_city("510100"))] == [
        "not_real_name_verified",
        "location_missing",
    ]
    first = d.claim("p-1", key="same")
    again = d.claim("p-1", key="same")
    assert again.replayed and again.voucher.id == first.voucher.id
    with pytest.raises(IdempotencyKeyReused):
        d.claim("p-2", key="same")
    assert len(d.ledger.vouchers) == 1


def test_pay_with_the_voucher_capture_uses_it_and_the_rest_goes_back() -> None:
    d = ClaimDesk()
    vid = d.voucher()
    # payable 2 × 6,000 − 0 = 12,000: the 10,000 tier, 2,000 off; 1,000 of the voucher unused
    o = order(1, price_fen=6_000, platform_discount_fen=0, voucher_id=vid)
    rid = d.granted(o)
    t = d.tranche(DAY)
    assert (t.available_fen, t.held_fen, t.voucher_fen) == (2 * V, 2_000, 1_000)
    assert d.ledger.vouchers.by_id[vid].status == VoucherStatus.HELD
    assert d.person().held_fen == V
    d.sound()
    d.capture(rid)
    v = d.ledger.vouchers.by_id[vid]
    assert (v.status, v.discount_fen, v.returned_fen) == (VoucherStatus.USED, 2_000, 1_000)
    assert (t.available_fen, t.held_fen, t.voucher_fen, t.granted_fen) == (
        2 * V + 1_000,
        0,
        0,
        2_000,
    )
    assert (d.person().held_fen, d.person().used_fen) == (0, 2_000)
    d.sound()
    assert conserved(d) == BUDGET
    assert d.codes(order(2, voucher_id=vid)) == ["voucher_used"]


def test_void_gives_the_voucher_back_and_expiry_returns_its_value() -> None:
    d = ClaimDesk()
    vid = d.voucher()
    rid = d.granted(order(1, voucher_id=vid))  # 24,800 payable: 3,000 off
    assert d.codes(order(2, voucher_id=vid)) == ["voucher_used"]  # held by the first order
    d.void(rid)
    v = d.ledger.vouchers.by_id[vid]
    assert v.status == VoucherStatus.CLAIMED and d.tranche(DAY).voucher_fen == V
    d.sound()
    rid2 = d.granted(order(3, voucher_id=vid))
    d.move(seconds=901)  # the hold expires: the voucher is claimed again
    assert d.ledger.redemptions[rid2].status == "expired"
    assert v.status == VoucherStatus.CLAIMED
    d.sound()
    d.move("2025-02-13 00:00")  # valid for the day: expired at its close, value back
    assert v.status == VoucherStatus.EXPIRED and v.returned_fen == V
    assert d.tranche(DAY).voucher_fen == 0
    assert d.codes(order(4, voucher_id=vid)) == ["tranche_not_open", "voucher_expired"]
    d.sound()
    assert conserved(d) == BUDGET
    # same_tranche while it was open: back to the day, then rolled over at the close
    assert d.tranche("2025-02-13").inflow_pending_fen == 3 * V


def test_bad_vouchers() -> None:
    d = ClaimDesk()
    mine, other = d.voucher("p-1"), d.voucher("p-2")
    assert d.codes(order(1)) == ["voucher_required"]
    assert d.codes(order(2, voucher_id="vc_nope")) == ["voucher_not_found"]
    assert d.codes(order(3, voucher_id=other)) == ["voucher_not_yours"]
    assert d.codes(order(4, person="p-2", voucher_id=mine)) == ["voucher_not_yours"]
    assert d.codes(order(5, price_fen=1_000, voucher_id=mine)) == ["discount_zero"]
    d.sound()


def test_full_refund_restores_a_voucher_valid_from_the_restore() -> None:
    d = ClaimDesk(claims={"valid_for": "P3D"})
    vid = d.voucher()
    rid = d.granted(order(1, voucher_id=vid))
    d.capture(rid)
    d.move("2025-02-13 11:00")
    d.refund(rid, "rf-1", payable_fen=24_800)
    restored = [v for v in d.ledger.vouchers.by_id.values() if v.restored_from == vid]
    assert len(restored) == 1
    nv = restored[0]
    assert (nv.status, nv.value_fen, nv.person_id) == (VoucherStatus.CLAIMED, V, "p-1")
    assert nv.valid_until_ms == d.now_ms + 3 * 86_400_000
    assert d.person().used_fen == 0 and d.person().held_fen == V
    d.sound()
    assert conserved(d) == BUDGET
    rid2 = d.granted(order(2, voucher_id=nv.id))  # the restored voucher pays (money moves on)
    d.capture(rid2)
    d.sound()
    assert conserved(d) == BUDGET


def test_replay_and_snapshot_give_the_same_vouchers() -> None:
    d = ClaimDesk(claims={"valid_for": "P2D"})
    a, b_ = d.voucher("p-1"), d.voucher("p-2")
    r1 = d.granted(order(1, voucher_id=a))
    d.capture(r1)
    d.granted(order(2, person="p-2", voucher_id=b_))
    d.move("2025-02-13 10:00")
    d.voucher("p-3")
    d.sound()
    again = replay(d.settings, d.log)
    assert again.vouchers.by_id == d.ledger.vouchers.by_id
    assert check_invariants(again) == []
    blob = encode_snapshot(d.ledger, 1)
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, blob)
    assert fresh.vouchers.by_id == d.ledger.vouchers.by_id
    assert fresh.vouchers.by_redemption == d.ledger.vouchers.by_redemption
    assert check_invariants(fresh) == []
    d.move("2025-02-16 00:00")  # every claimed voucher expires, on both
    fresh.advance(d.now_ms)
    assert fresh.vouchers.by_id == d.ledger.vouchers.by_id
    d.sound()


def test_settings_problems_listed_with_their_fields() -> None:
    with pytest.raises(SettingsError) as e:
        claim_settings(
            claims={
                "voucher_value_fen": 0,
                "valid_for": "P0D",
                "claim_open": "09:00",
                "allocation": "lottery",
                "bogus": 1,
            },
            refunds={"full_refund_restores_quota": "next_day"},
        )
    paths = sorted(p.path for p in e.value.problems)
    assert paths == [
        "claims.bogus",
        "claims.claim_open",
        "claims.lottery_register_s",
        "claims.valid_for",
        "claims.voucher_value_fen",
        "refunds.full_refund_restores_quota",
    ]
    s = settings()  # the seed: no [claims], as before
    assert not s.claims.on and s.claims.mode == "instant"
    seed = Desk(s, start="2025-02-12 10:00")
    req = ClaimRequest(Person("p-1", True), Location(*TIANFU_SQUARE, "gcj02"))
    with pytest.raises(Conflict):
        claim_reasons(req, seed.ledger.book(CID), load_city("510100"))


def test_per_category_claims_and_the_voucher_category() -> None:
    from lijian.engine_claims import voucher_category

    d = ClaimDesk(claims={"per_category": True, "person_claims_per_day": 0})
    vid = d.claim("p-1", category="home_textiles").voucher.id  # JD-1's category
    again = d.claim("p-1", category="home_textiles")
    assert [c for c, _ in again.reasons] == ["person_category_limit"]
    assert d.claim("p-1", category="fresh_food").voucher is not None
    b = d.ledger.book(CID)

    def codes(o: Any) -> list[str]:
        ev = voucher_category(d.ledger, d.catalog, b, o, d.evaluate(o))
        return [c for c, _ in ev.reasons]

    assert codes(order(1, voucher_id=vid)) == []
    assert codes(order(2, sku="JD-3", voucher_id=vid)) == ["voucher_category_mismatch"]
    with pytest.raises(InvalidRequest):
        d.claim("p-2")  # a per-category campaign's claim names its category
    with pytest.raises(InvalidRequest):
        d.claim("p-2", category="weapons")
    d.sound()


def lottery_desk(per_day: int = 2) -> ClaimDesk:
    from lijian.core.draw import commitment, derive_seed
    from lijian.core.entries import DrawCommitted
    from lijian.core.keyed import key_id

    key = bytes(range(32))
    d = ClaimDesk(
        campaign={"budget_fen": 17 * per_day * V, "leftover": "expire"},
        claims={"allocation": "lottery", "lottery_register_s": 60},
    )
    # what the engine does before a day opens (lijian.release.seed_days): the commitment
    led = d.ledger
    led.seeds = lambda cid, day: derive_seed(key, cid, day)
    led.bind_key_id = key_id(key)
    led.bind_key()
    for day in ("2025-02-13", "2025-02-14"):
        led.emit(DrawCommitted(d.now_ms, CID, day, commitment(derive_seed(key, CID, day))))
    d.sound()
    d.move("2025-02-13 10:00")
    return d


def test_a_lottery_registers_then_draws_the_winners_the_audit_recomputes() -> None:
    d = lottery_desk(per_day=2)
    regs = [d.claim(f"p-{i}") for i in range(5)]
    assert [o.voucher.status for o in regs] == [VoucherStatus.REGISTERED] * 5
    t = d.tranche("2025-02-13")
    assert (t.available_fen, t.voucher_fen) == (2 * V, 0)  # no money moves yet
    assert [c for c, _ in d.claim("p-0").reasons] == ["person_claim_limit"]
    d.sound()
    fresh = Ledger(d.settings)  # a snapshot taken before the draw keeps the registrations
    restore_snapshot(fresh, encode_snapshot(d.ledger, 1))
    assert fresh.vouchers.registrations == d.ledger.vouchers.registrations
    d.move("2025-02-13 10:01")  # draw_at: the seed revealed, the registrations drawn
    vs = d.ledger.vouchers
    statuses = sorted(vs.by_id[o.voucher.id].status for o in regs)
    assert statuses == ["claimed", "claimed", "lost", "lost", "lost"]
    assert (t.available_fen, t.voucher_fen, t.vouchers_claimed) == (0, 2 * V, 2)
    assert t.sold_out_at_ms is not None
    d.sound()
    again = replay(d.settings, d.log)  # the audit's replay recomputes the winners
    assert again.vouchers.by_id == vs.by_id and again.vouchers.problems == []
    # the draw's figures (today.draw): the same live, replayed and from a snapshot
    assert vs.drawn == again.vouchers.drawn == {(CID, "2025-02-13"): (5, 2)}
    after = Ledger(d.settings)
    restore_snapshot(after, encode_snapshot(d.ledger, 1))
    assert after.vouchers.drawn == vs.drawn
    assert d.ledger.book(CID).daybook.days["2025-02-13"].vouchers_claimed == 2  # the winners
    assert check_invariants(again) == []
    # a tampered draw: other winners than the seed gives are a problem the audit lists
    from lijian.core.entries import LotteryDrawn, decode

    tampered = []
    for blob in d.log:
        e = decode(blob)
        if isinstance(e, LotteryDrawn):
            losers = [v.id for v in vs.by_id.values() if v.status == VoucherStatus.LOST]
            e = LotteryDrawn(e.ts_ms, e.campaign_id, e.day, losers[:2], e.valid_until_ms)
        tampered.append(encode(e))
    bad = replay(d.settings, tampered)
    assert any("winners are not the draw's" in p for p in check_invariants(bad))
    assert [c for c, _ in d.claim("p-9").reasons] == ["claims_sold_out"]  # first come now


def on_device(o: Order, device_id: str = "dev-1") -> Order:
    return msgspec.structs.replace(o, person=Person(o.person.id, True, device_id))


def test_accounts_linked_only_by_their_orders_stay_within_the_group_s_cap() -> None:
    """A claim sees no device, so three accounts on one device claim three vouchers under
    a cap of two; their orders link them: the third order finds the group over its cap
    and is declined (the engine used to stop here, on the hold's R7 assert)."""
    d = ClaimDesk(
        campaign={"budget_fen": 17 * 10 * V},
        limits={"person_savings_cap_fen": 2 * V},
        identity={"link_by": ["device_id"]},
    )
    vids = [d.voucher(f"acc-{i}") for i in range(3)]
    for i, vid in enumerate(vids[:2]):
        d.granted(on_device(order(i, person=f"acc-{i}", voucher_id=vid)))
    third = on_device(order(2, person="acc-2", voucher_id=vids[2]))
    assert d.codes(third) == ["person_cap_reached"]
    assert d.ledger.vouchers.by_id[vids[2]].status == VoucherStatus.CLAIMED
    d.sound()
    assert conserved(d) == 17 * 10 * V
    again = replay(d.settings, d.log)  # the hold's assert holds on replay too
    assert check_invariants(again) == []
    assert again.vouchers.by_id == d.ledger.vouchers.by_id


def test_settlement_counts_a_vouchers_discount_on_its_capture_day_and_nothing_unused() -> None:
    """R19 with vouchers: a voucher claimed on one day and paid with on another counts on
    the day its order is captured; an unused voucher that expires costs nothing."""
    d = ClaimDesk(claims={"valid_for": "P3D"})
    late, next_day, unused = d.voucher("p-1"), d.voucher("p-2"), d.voucher("p-3")
    d.move("2025-02-12 23:55")
    # payable 2 × 6,000: the 10,000 tier, 2,000 off; held on the 12th, captured on the 13th
    held_late = d.granted(order(1, price_fen=6_000, platform_discount_fen=0, voucher_id=late))
    d.move("2025-02-13 00:05")
    d.capture(held_late)
    d.move("2025-02-13 10:00")
    paid = d.granted(order(2, person="p-2", voucher_id=next_day))  # 24,800 payable: 3,000 off
    d.capture(paid)
    d.move("2025-02-16 00:00")  # the third voucher expired unused (valid three days)
    assert d.ledger.vouchers.by_id[unused].status == VoucherStatus.EXPIRED
    d.sound()
    s = settlement(d.ledger, CID, "2025-02-12")
    assert s["totals"] == {"count": 0, "gmv_fen": 0, "discount_fen": 0, "clawback_fen": 0,
                           "net_subsidy_fen": 0}  # fmt: skip
    s = settlement(d.ledger, CID, "2025-02-13")
    assert s["totals"] == {"count": 2, "gmv_fen": 12_000 + 24_800, "discount_fen": 5_000,
                           "clawback_fen": 0, "net_subsidy_fen": 5_000}  # fmt: skip
    assert [(r["platform"], r["discount_fen"]) for r in s["platforms"] if r["count"]] == [
        ("jd", 5_000)]  # fmt: skip
    for day in ("2025-02-14", "2025-02-15"):  # the unused voucher's expiry: nothing owed
        assert settlement(d.ledger, CID, day)["totals"]["discount_fen"] == 0
    b = d.ledger.book(CID)
    total = sum(r.net_subsidy_fen for r in b.daybook.totals_by_platform(["jd"]).values())
    assert total == sum(t.granted_fen for t in b.tranches.values()) == 5_000
    again = replay(d.settings, d.log)  # the replay's settlement is the same
    assert settlement(again, CID, "2025-02-13") == settlement(d.ledger, CID, "2025-02-13")
    assert conserved(d) == BUDGET
