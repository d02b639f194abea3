"""Property test of the trade-in item rules: random redemptions (phones and air
conditioners, serials from a small pool so they collide, persons linked by a device),
captures, voids, expiries, full and partial refunds.

After every step: the audit is clean; no person or linked group has more units of a
category than allowed; the serials subsidised are exactly those of the redemptions that
are held or captured and not refunded in full, each once; and a replay of every entry so
far, and a snapshot of it, are the same ledger to the byte."""

import contextlib
from typing import Any

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from lijian.catalog import Catalog
from lijian.core.entries import decode, encode
from lijian.core.errors import Conflict
from lijian.core.invariants import check_invariants
from lijian.core.ledger import Ledger
from lijian.core.order import Item, Person, RefundItem
from lijian.core.replay import replay
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.status import RedemptionStatus
from tests.support import Desk, order
from tests.support import settings as campaign_settings

TI = "tradein-machine"
PERSONS = ["a", "b", "c"]
SERIALS = ["SN-1", "SN-2", "SN-3", "SN-4"]
ALLOWED = {"phone": 1, "air_conditioner": 3}
LIVE = {RedemptionStatus.HELD, RedemptionStatus.CAPTURED, RedemptionStatus.PARTIALLY_REFUNDED}


class TradeInMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    @initialize(linked=st.booleans())
    def setup(self, linked: bool) -> None:
        s = campaign_settings(
            campaign={"id": TI},
            eligibility={"categories": list(ALLOWED), "whole_order_campaign_goods": False},
            discount={
                "category_rate_bp": {"air_conditioner": 2000},
                "max_discount_fen_per_item": 50_000,
            },
            limits={
                "person_savings_cap_fen": 10_000_000,
                "hold_ttl_s": 600,
                "person_items_per_category": 1,
                "person_items_per_category_overrides": {"air_conditioner": 3},
            },
            identity={"link_by": ["device_id"] if linked else []},
        )
        self.desk = Desk(s, start="2025-02-12 10:00")
        c = Catalog()
        c.upsert([("jd", "PHONE", "phone"), ("jd", "AC", "air_conditioner")])
        self.desk.catalog = c
        self.log: list[bytes] = []
        self.serial_of: dict[str, str | None] = {}
        self.n = 0

    def _flush(self) -> None:
        self.log.extend(encode(e) for e in self.desk.ledger.take_pending())

    @rule(
        target=holds,
        person=st.sampled_from(PERSONS),
        device=st.sampled_from(["d-1", "d-2", None]),
        sku=st.sampled_from(["PHONE", "AC"]),
        qty=st.integers(1, 2),
        serial=st.sampled_from([*SERIALS, None]),
        price=st.integers(1, 500_000),
    )
    def redeem(self, person: str, device: Any, sku: str, qty: int, serial: Any, price: int) -> str:
        self.n += 1
        qty = 1 if serial is not None else qty
        o = msgspec.structs.replace(
            order(self.n, campaign_id=TI),
            person=Person(person, True, device_id=device),
            items=[Item(sku, qty, price, 0, serial)],
        )
        out = self.desk.redeem(o)
        self._flush()
        if out.redemption is None:
            return ""
        # A grant never takes a person, or the group the order joins, past a count (a
        # later link may join groups that were granted apart: then only new grants stop).
        led = self.desk.ledger
        b = led.book(TI)
        group = b.members(person) if b.settings.identity.link_by else [person]
        cat = "phone" if sku == "PHONE" else "air_conditioner"
        assert led.items.units_of(TI, group, cat) <= ALLOWED[cat]
        self.serial_of[out.redemption.id] = serial
        return out.redemption.id

    @rule(rid=holds)
    def capture(self, rid: str) -> None:
        if rid:
            with contextlib.suppress(Conflict):
                self.desk.capture(rid)
        self._flush()

    @rule(rid=holds)
    def void(self, rid: str) -> None:
        if rid:
            with contextlib.suppress(Conflict):
                self.desk.void(rid)
        self._flush()

    @rule(rid=holds, whole=st.booleans())
    def refund(self, rid: str, whole: bool) -> None:
        r = self.desk.ledger.redemptions.get(rid)
        if r is None or r.status not in (
            RedemptionStatus.CAPTURED,
            RedemptionStatus.PARTIALLY_REFUNDED,
        ):
            return
        sku, qty, _ = r.lines[0]
        left = qty - r.returned_of(sku)
        n = left if whole else 1
        if n <= 0:
            return
        self.n += 1
        self.desk.refund(rid, f"rf-{self.n}", items=[RefundItem(sku, n)])
        self._flush()

    @rule(seconds=st.sampled_from([1, 300, 700]))
    def wait(self, seconds: int) -> None:
        self.desk.move(seconds=seconds)
        self._flush()

    @invariant()
    def sound(self) -> None:
        if not hasattr(self, "desk"):
            return
        led = self.desk.ledger
        assert check_invariants(led) == []
        for p in PERSONS:
            for cat, allowed in ALLOWED.items():
                assert led.items.units_of(TI, [p], cat) <= allowed
        live = {
            s: rid
            for rid, s in self.serial_of.items()
            if s is not None and led.redemptions[rid].status in LIVE
        }
        assert {s: rid for (_, s), rid in led.items.serials.items()} == live

    def teardown(self) -> None:
        if not hasattr(self, "desk"):
            return
        self._flush()
        again = replay(self.desk.settings, self.log)
        again.advance(self.desk.ledger.now_ms)  # the clock moved past the last entry
        assert again.take_pending() == []
        assert encode_snapshot(again, 1) == encode_snapshot(self.desk.ledger, 1)
        fresh = Ledger(self.desk.settings)
        restore_snapshot(fresh, encode_snapshot(again, 1))
        assert encode_snapshot(fresh, 1) == encode_snapshot(again, 1)
        assert check_invariants(fresh) == []
        assert all(decode(x) is not None for x in self.log)


TradeInMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_trade_in_machine = TradeInMachine.TestCase
