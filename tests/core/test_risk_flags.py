"""Risk flags as ledger entries: a grant priced above its reference under
``price_action = "flag"`` raises one ``RiskFlagged`` in its batch, which the one replay
and a snapshot rebuild, and the audit checks."""

from __future__ import annotations

import msgspec

from lijian.core.entries import HoldPlaced, RiskFlagged, encode
from lijian.core.invariants import check_invariants
from lijian.core.ledger import Ledger
from lijian.core.replay import replay
from lijian.core.risk import flag_view
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.status import FlagCode
from tests.support import CID, Desk, order, settings

DAY = "2025-02-12"


def flagging_desk() -> Desk:
    s = settings(risk={"max_price_over_reference_pct": 20, "price_action": "flag"})
    d = Desk(s, start="2025-02-12 10:00")
    d.catalog.set_reference_prices([("jd", "JD-1", 10_000), ("jd", "JD-2", 500)])
    return d


def test_a_flagged_grant_raises_one_flag_in_its_batch() -> None:
    d = flagging_desk()
    d.ledger.take_pending()  # the tranche's open
    rid = d.granted(order(1, person="p-1", price_fen=12_001))
    entries = d.ledger.take_pending()
    assert [type(e) for e in entries] == [HoldPlaced, RiskFlagged]
    flag = entries[1]
    assert isinstance(flag, RiskFlagged)
    assert (flag.campaign_id, flag.flag_id, flag.day, flag.code) == (
        CID, "flag-1", DAY, FlagCode.PRICE_ABOVE_REFERENCE)  # fmt: skip
    assert (flag.person_ids, flag.redemption_ids) == (["p-1"], [rid])
    assert flag.figures == [("JD-1", "unit_price_fen", 12_001),
                            ("JD-1", "reference_price_fen", 10_000)]  # fmt: skip
    # Not above: granted, no flag.
    d.granted(order(2, person="p-2", price_fen=12_000))
    assert [type(e) for e in d.ledger.take_pending()] == [HoldPlaced]
    assert d.ledger.risk.count == 1


def test_flags_replay_snapshot_and_audit() -> None:
    d = flagging_desk()
    log = d.ledger.take_pending()
    for i in range(3):
        d.granted(order(i, person=f"p-{i}", price_fen=13_000))
        log += d.ledger.take_pending()
    led = replay(d.settings, [encode(e) for e in log])
    assert check_invariants(led) == []
    assert [f.flag_id for f in led.risk.page(CID, DAY, 0, 10)] == ["flag-1", "flag-2", "flag-3"]
    assert [f.flag_id for f in led.risk.page(CID, DAY, 1, 1)] == ["flag-2"]
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(led, len(log)))
    assert fresh.risk.all() == led.risk.all() == d.ledger.risk.all()
    assert fresh.risk.next_id() == "flag-4"
    assert flag_view(fresh.risk.all()[0]) == {
        "id": "flag-1", "code": "price_above_reference", "day": DAY, "person_ids": ["p-0"],
        "redemption_ids": [fresh.risk.all()[0].redemption_ids[0]],
        "figures": [{"subject": "JD-1", "figure": "unit_price_fen", "value": 13_000},
                    {"subject": "JD-1", "figure": "reference_price_fen", "value": 10_000}],
    }  # fmt: skip


def test_the_audit_names_a_flag_of_an_unknown_redemption() -> None:
    d = flagging_desk()
    d.granted(order(1, price_fen=13_000))
    led = replay(d.settings, [encode(e) for e in d.ledger.take_pending()])
    assert check_invariants(led) == []
    flags = led.risk.by_day[CID, DAY]
    flags[0] = msgspec.structs.replace(flags[0], redemption_ids=["R-nope"])
    assert check_invariants(led) == [f"flag-1: names redemption R-nope not of {CID}"]
