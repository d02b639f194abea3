"""Property test: random redeem / capture / void / expire / refund / clock / restart, and
operators' changes: pauses, budget and end amendments (racing the grants), blocks, and a
second campaign created over the API (proposed, approved by the same or another key).

After every step the invariants of docs/ARCHITECTURE.md hold; a restart (replay of every entry so
far into a fresh ledger, through the same ``apply``) reproduces every balance exactly.
"""

import contextlib

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from lijian.core import launch, steering
from lijian.core.entries import decode, encode
from lijian.core.errors import Conflict, Forbidden, InvalidRequest, NotFound, RefundExceedsOrder
from lijian.core.invariants import balances, check_invariants
from lijian.core.ledger import Ledger
from lijian.core.order import RefundItem
from tests.http.harness import dump_toml
from tests.support import CID, Desk, order, seed_doc
from tests.support import settings as campaign_settings

PERSONS = [f"p-{i}" for i in range(6)]
WAVE = "chengdu-2025-wave-2"


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    @initialize(
        leftover=st.sampled_from(["rollover", "expire"]),
        claw=st.sampled_from(["next_tranche", "same_tranche", "forfeit"]),
        restore=st.sampled_from(["next_day", "immediately", "never"]),
    )
    def setup(self, leftover, claw, restore):
        sections = {
            "campaign": {"budget_fen": 60_000, "end_date": "2025-02-14", "leftover": leftover},
            "limits": {"person_savings_cap_fen": 30_000, "hold_ttl_s": 600},
            "refunds": {"clawback_returns_to": claw, "full_refund_restores_quota": restore},
        }
        s = campaign_settings(**sections)
        wave = seed_doc()
        for name, values in sections.items():
            wave[name].update(values)
        wave["campaign"].update(id=WAVE, budget_fen=40_000)
        self.wave_toml = dump_toml(wave)
        self.desk = Desk(s, start="2025-02-12 09:58")
        self.log: list[bytes] = []
        self.n = 0

    def _flush(self):
        self.log.extend(encode(e) for e in self.desk.ledger.take_pending())

    @rule(
        target=holds,
        person=st.sampled_from(PERSONS),
        price=st.integers(1, 200_000),
        qty=st.integers(1, 3),
        wave=st.booleans(),
    )
    def redeem(self, person, price, qty, wave):
        self.n += 1
        cid = WAVE if wave and WAVE in self.desk.ledger.books else CID
        out = self.desk.redeem(
            order(self.n, person=person, price_fen=price, quantity=qty, platform_discount_fen=0,
                  campaign_id=cid)
        )  # fmt: skip
        self._flush()
        if out.redemption is None:
            assert out.reasons
            return "none"
        assert out.redemption.discount_fen > 0
        return out.redemption.id

    def _try(self, fn, *args, **kw):
        # A refused command changes nothing: the invariants must still hold after it.
        with contextlib.suppress(Conflict, RefundExceedsOrder, InvalidRequest, Forbidden, NotFound):
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

    @rule(rid=holds, cut=st.integers(1, 400_000), full=st.booleans())
    def refund(self, rid, cut, full):
        if rid == "none":
            return
        self.n += 1
        r = self.desk.ledger.redemptions[rid]
        if full:
            qty = dict((s, q) for s, q, _ in r.lines)["JD-1"] - r.returned_of("JD-1")
            if qty > 0:
                self._try(self.desk.refund, rid, f"rf-{self.n}", items=[RefundItem("JD-1", qty)])
        else:
            self._try(self.desk.refund, rid, f"rf-{self.n}", payable_fen=cut)

    @rule(seconds=st.sampled_from([1, 1, 1, 59, 59, 300, 601, 3_600, 6 * 3_600, 86_400]))
    def tick(self, seconds):
        self.desk.move(seconds=seconds)
        self._flush()

    # -- operators' changes: a refused one changes nothing, an applied one keeps every
    # invariant (a cut never takes money granted or held).
    @rule(pause=st.booleans())
    def pause_or_resume(self, pause):
        d = self.desk
        fn = steering.pause if pause else steering.resume
        self._try(fn, d.ledger, CID, "op-a", "why", d.now_ms)

    @rule(
        delta=st.integers(-40_000, 40_000).filter(bool),
        which=st.sampled_from(["remaining", "day1", "day3", "end2", "end3"]),
        approver=st.sampled_from(["op-a", "op-b"]),
    )
    def amend(self, delta, which, approver):
        d = self.desk
        led = d.ledger
        if which.startswith("end"):
            args = ("end", None, None, f"2025-02-1{which[-1]}")
        else:
            days = "remaining" if which == "remaining" else [f"2025-02-1{1 + int(which[-1])}"]
            args = ("budget", delta, days, None)
        with contextlib.suppress(InvalidRequest):
            a = steering.propose(led, CID, "op-a", "why", *args, d.now_ms)
            self._flush()
            free_before = {t: steering.free_fen(led.book(CID), t) for t in led.book(CID).tranches}
            try:
                steering.approve(led, CID, a.id, approver, "ok", d.now_ms)
            except Forbidden:
                assert approver == "op-a"
            except Conflict as exc:
                assert exc.code in ("amendment_below_committed", "amendment_not_applicable")
                b = led.book(CID)
                assert {t: steering.free_fen(b, t) for t in b.tranches} == free_before
            else:
                assert approver == "op-b"
        self._flush()

    @rule(person=st.sampled_from(PERSONS), lift=st.booleans())
    def block(self, person, lift):
        d = self.desk
        led = d.ledger
        active = [b for b in led.changes.blocks.values() if b.active and b.person_id == person]
        if lift and active:
            self._try(steering.lift, led, CID, active[0].id, "op-b", "ok", d.now_ms)
        else:
            self._try(
                steering.add_block, led, CID, "op-a", "why", "person", person, None, None, d.now_ms
            )

    @rule(approver=st.sampled_from(["op-a", "op-b"]), reject=st.booleans())
    def new_campaign(self, approver, reject):
        """The next wave over the API: once created, its id is taken (409)."""
        d, led = self.desk, self.desk.ledger
        self._try(launch.propose_campaign, led, self.wave_toml, "op-a", "next wave", d.now_ms)
        pending = led.changes.proposed_campaign(WAVE)
        if pending is None:
            return
        fn = launch.reject_campaign if reject else launch.approve_campaign
        self._try(fn, led, WAVE, pending.id, approver, "decided", d.now_ms)
        applied = led.changes.amendments[pending.id].status == "applied"
        assert applied == (WAVE in led.books)
        assert not applied or approver == "op-b"  # four eyes

    @rule()
    def restart(self):
        """Replay every entry into a fresh ledger: same balances, same statuses."""
        fresh = Ledger(self.desk.settings)
        for blob in self.log:
            fresh.apply(decode(blob))
        old = self.desk.ledger
        assert balances(fresh) == balances(old)
        assert {k: v.status for k, v in fresh.redemptions.items()} == {
            k: v.status for k, v in old.redemptions.items()
        }
        for cid, b in old.books.items():
            for pid, p in b.persons.items():
                q = fresh.books[cid].persons[pid]
                assert (q.used_fen, q.held_fen, q.count_total) == (
                    p.used_fen,
                    p.held_fen,
                    p.count_total,
                )
        assert fresh.changes.log == old.changes.log
        assert fresh.changes.persons == old.changes.persons
        assert fresh.book(CID).budget_fen == old.book(CID).budget_fen
        assert fresh.book(CID).paused == old.book(CID).paused
        fresh.advance(old.now_ms)
        assert fresh.take_pending() == []  # nothing due that the old ledger had not done
        self.desk.ledger = fresh

    @invariant()
    def sound(self):
        if hasattr(self, "desk"):
            assert check_invariants(self.desk.ledger) == []


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
