"""Property test of claimed vouchers: random claims, payments with them (also with
another person's, or a used one), captures, voids, hold and voucher expiries, full and
partial refunds, the clock, and restarts. After every step the invariants hold (money
conserved to the fen, Σ open voucher value + granted + held ≤ released, a voucher used
at most once, status and money agree); a restart (replay of every entry) reproduces
every voucher and balance exactly."""

import contextlib

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from lijian.core.claims import ClaimRequest, claim_reasons, decide_claim
from lijian.core.entries import decode, encode
from lijian.core.errors import Conflict, RefundExceedsOrder
from lijian.core.invariants import balances, check_invariants
from lijian.core.ledger import Ledger
from lijian.core.order import Location, Person
from lijian.geo import load_city
from tests.support import CID, TIANFU_SQUARE, Desk, order
from tests.support import settings as campaign_settings

PERSONS = [f"p-{i}" for i in range(5)]
V = 3_000


class VoucherMachine(RuleBasedStateMachine):
    vouchers = Bundle("vouchers")
    holds = Bundle("holds")

    @initialize(
        claw=st.sampled_from(["next_tranche", "same_tranche", "forfeit"]),
        restore=st.sampled_from(["immediately", "never"]),
        valid=st.sampled_from(["day", "P2D"]),
        leftover=st.sampled_from(["rollover", "expire"]),
    )
    def setup(self, claw, restore, valid, leftover):
        s = campaign_settings(
            campaign={"budget_fen": 3 * 4 * V, "end_date": "2025-02-14", "leftover": leftover},
            limits={"person_savings_cap_fen": 3 * V, "hold_ttl_s": 600},
            refunds={"clawback_returns_to": claw, "full_refund_restores_quota": restore},
            claims={
                "mode": "claim",
                "voucher_value_fen": V,
                "valid_for": valid,
                "person_claims_per_day": 2,
            },
        )
        self.desk = Desk(s, start="2025-02-12 10:00")
        self.geo = load_city("510100")
        self.log: list[bytes] = []
        self.n = 0
        self._flush()  # the first tranche opened

    def _flush(self):
        self.log.extend(encode(e) for e in self.desk.ledger.take_pending())

    @rule(target=vouchers, person=st.sampled_from(PERSONS))
    def claim(self, person):
        self.n += 1
        led = self.desk.ledger
        req = ClaimRequest(Person(person, True), Location(*TIANFU_SQUARE, "gcj02"))
        why = claim_reasons(req, led.book(CID), self.geo)
        out = decide_claim(led, CID, req, why, self.desk.now_ms, "c", f"ck-{self.n}", "fp")
        self._flush()
        return out.voucher.id if out.voucher else "vc_none"

    @rule(target=holds, voucher=vouchers, person=st.sampled_from(PERSONS),
          price=st.integers(1_000, 40_000))  # fmt: skip
    def pay(self, voucher, person, price):
        self.n += 1
        v = self.desk.ledger.vouchers.by_id.get(voucher)
        who = v.person_id if v is not None and self.n % 3 else person  # sometimes another's
        o = order(self.n, person=who, price_fen=price, quantity=1, platform_discount_fen=0,
                  voucher_id=voucher)  # fmt: skip
        out = self.desk.redeem(o)
        self._flush()
        if out.redemption is None:
            return "none"
        assert out.redemption.discount_fen <= V
        return out.redemption.id

    def _try(self, fn, *args, **kw):
        with contextlib.suppress(Conflict, RefundExceedsOrder, KeyError):
            fn(*args, **kw)
        self._flush()

    @rule(rid=holds)
    def capture(self, rid):
        if rid != "none":
            self._try(self.desk.capture, rid)

    @rule(rid=holds)
    def void(self, rid):
        if rid != "none":
            self._try(self.desk.void, rid)

    @rule(rid=holds, full=st.booleans())
    def refund(self, rid, full):
        if rid == "none":
            return
        self.n += 1
        r = self.desk.ledger.redemptions[rid]
        amount = r.payable_fen - r.returned_payable_fen if full else 1
        if amount > 0:
            self._try(self.desk.refund, rid, f"rf-{self.n}", payable_fen=amount)

    @rule(rid=holds)
    def capture_then_return_all(self, rid):
        """A paid order returned whole: the voucher's use given back (a new voucher)."""
        if rid == "none":
            return
        self._try(self.desk.capture, rid)
        self.refund(rid, True)

    @rule(seconds=st.sampled_from([60, 700, 3_600, 6 * 3_600, 86_400]))
    def tick(self, seconds):
        self.desk.move(seconds=seconds)
        self._flush()

    @rule()
    def restart(self):
        fresh = Ledger(self.desk.settings)
        for blob in self.log:
            fresh.apply(decode(blob))
        old = self.desk.ledger
        assert balances(fresh) == balances(old)
        assert fresh.vouchers.by_id == old.vouchers.by_id
        assert fresh.vouchers.by_redemption == old.vouchers.by_redemption
        for pid, p in old.book(CID).persons.items():
            q = fresh.book(CID).persons[pid]
            assert (q.used_fen, q.held_fen) == (p.used_fen, p.held_fen)
        fresh.advance(old.now_ms)
        assert fresh.take_pending() == []
        self.desk.ledger = fresh

    @invariant()
    def sound(self):
        if hasattr(self, "desk"):
            led = self.desk.ledger
            assert check_invariants(led) == []
            used = [v.redemption_id for v in led.vouchers.by_id.values() if v.redemption_id]
            assert len(used) == len(set(used))


TestVoucherMachine = VoucherMachine.TestCase
TestVoucherMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
