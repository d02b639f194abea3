"""Operators' changes in a stored ledger: replayed after a restart, and a forged cut below
what was granted plus held caught by ``lijian audit`` even with the chain recomputed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from lijian.audit import CHAIN_CHECK, audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.chain import GENESIS, link
from lijian.core.entries import AmendmentApplied, AmendmentProposed, decode
from lijian.engine import Engine
from tests.evidence.ledger_days import Tamper
from tests.support import CID, catalog, order, settings

SMALL = {"campaign": {"budget_fen": 20_000, "end_date": "2025-02-13"}}  # 10,000 fen a day
DAY1 = "2025-02-12"


def engine(db: Path) -> Engine:
    return Engine([settings(**SMALL)], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))


def operate(e: Engine, op: str, body: dict[str, Any], by: str) -> Any:
    return e.call(e.operate, op, CID, body, by)


def big_order(n: int, person: str) -> Any:
    return order(n, person=person, price_fen=40_000, quantity=1, platform_discount_fen=0)


def build(db: Path) -> None:
    """6,000 fen held from day 1's 10,000; a cut of 4,000 approved; a pause and a block."""
    e = engine(db)
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        assert Blocking(e).redeem(big_order(1, "a"), "unionpay", "k1", "f1").status == 201
        cut = {"kind": "budget", "delta_fen": -4_000, "days": [DAY1], "reason": "money short"}
        am = operate(e, "propose", cut, "ops")
        assert am.status == 201, am.body
        ok = operate(e, "approve", {"amendment_id": am.body["id"], "reason": "ok"}, "ops2")
        assert ok.status == 200 and ok.body["status"] == "applied", ok.body
        assert operate(e, "pause", {"reason": "stop"}, "ops").status == 200
        block = {"kind": "person", "person_id": "b", "reason": "bot"}
        assert operate(e, "block", block, "ops").status == 201
        st = Blocking(e).status(CID)
        assert st["budget_fen"] == 16_000 and st["today"]["remaining_fen"] == 0
    finally:
        e.close()


def test_changes_survive_a_restart_and_the_audit_is_clean(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    build(db)
    rep = audit_db(db)
    assert rep.ok, rep.violations
    names = [c["name"] for c in rep.checks]
    assert "operator changes: four eyes; no cut below granted + held; blocks enforced" in names
    e = engine(db)  # recovery: the latest snapshot (written at the stop) and the log
    try:
        st = Blocking(e).status(CID)
        assert (st["state"], st["budget_fen"], st["today"]["released_fen"]) == (
            "paused", 16_000, 6_000
        )  # fmt: skip
        out = Blocking(e).redeem(big_order(2, "b"), "unionpay", "k2", "f2")
        codes = [r["code"] for r in out.body["reasons"]]
        assert codes == ["campaign_paused", "person_blocked", "sold_out"]  # day 2 still to come
        lists = e.call(e.read_operations, CID, "changes")
        assert [c["kind"] for c in lists["changes"]] == [
            "amendment.proposed", "amendment.applied", "pause", "block.added"
        ]  # fmt: skip
    finally:
        e.close()


def _forge(db: Path, change: Any) -> None:
    """Rewrite the applied amendment's entry, recompute every chain link after it (a
    careful insider) and drop the snapshot, so only the replay can tell."""
    t = Tamper(str(db))
    rows = t.rows()
    seq = next(s for s, b, _ in rows if isinstance(decode(b), AmendmentApplied))
    t.rewrite_body(seq, change)
    h = GENESIS
    for s, body, _ in t.rows():
        h = link(h, body)
        t.run("UPDATE entries SET chain = ? WHERE seq = ?", (h, s))
    t.run("DELETE FROM snapshots")


def test_a_forged_cut_below_granted_plus_held_fails_the_audit(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    build(db)
    # The cut was 4,000 of the 4,000 fen free; forged to 5,000 (1,000 of the 6,000 held).
    _forge(db, lambda e: msgspec.structs.replace(e, split=[(DAY1, -5_000)]))
    rep = audit_db(db)
    assert not rep.ok
    chain = next(c for c in rep.checks if c["name"] == CHAIN_CHECK)
    assert chain["ok"] is True  # the chain was recomputed: only the replay catches it
    replay = next(c for c in rep.checks if c["name"] == "replay from zero")
    assert replay["ok"] is False
    assert "a cut below what was granted plus held" in replay["problems"][0]


def test_a_forged_self_approval_fails_the_audit(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    build(db)
    t = Tamper(str(db))
    proposer = next(
        decode(b).by for _, b, _ in t.rows() if isinstance(decode(b), AmendmentProposed)
    )
    _forge(db, lambda e: msgspec.structs.replace(e, by=proposer))
    rep = audit_db(db)
    assert not rep.ok
    replay = next(c for c in rep.checks if c["name"] == "replay from zero")
    assert "four eyes" in replay["problems"][0]


@pytest.mark.parametrize("op", ["approve", "reject"])
def test_an_amendment_pending_over_a_restart_is_still_pending(tmp_path: Path, op: str) -> None:
    db = tmp_path / "l.db"
    e = engine(db)
    try:
        top = {"kind": "budget", "delta_fen": 2_000, "days": "remaining", "reason": "top-up"}
        am_id = operate(e, "propose", top, "ops").body["id"]
    finally:
        e.close()
    e = engine(db)
    try:
        listed = e.call(e.read_operations, CID, "amendments")["amendments"]
        assert [(a["id"], a["status"]) for a in listed] == [(am_id, "proposed")]
        out = operate(e, op, {"amendment_id": am_id, "reason": "after the restart"}, "ops2")
        assert out.status == 200 and out.body["status"] == ("applied" if op == "approve"
                                                             else "rejected")  # fmt: skip
        budget = Blocking(e).status(CID)["budget_fen"]
        assert budget == (22_000 if op == "approve" else 20_000)
    finally:
        e.close()
    assert audit_db(db).ok


def test_the_days_evidence_bundle_lists_who_changed_what_and_why(tmp_path: Path) -> None:
    from lijian.evidence.bundle import bundle_bytes, sign
    from lijian.evidence.commands import build_bundle_from_db
    from lijian.evidence.keys import load_private, load_public, new_key_pair
    from lijian.evidence.verify import verify_file

    db = tmp_path / "l.db"
    build(db)
    e = engine(db)
    try:
        Blocking(e).set_clock(e.now_ms() + 24 * 3600 * 1000)  # day 1 closes
    finally:
        e.close()
    payload = build_bundle_from_db(db, CID, DAY1)
    private, public = new_key_pair(tmp_path / "keys")
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_bytes(bundle_bytes(sign(payload, load_private(private))))
    assert verify_file(good, load_public(public)).ok
    # A key holder who drops a change and signs again is caught by the entries.
    dropped = {**payload, "changes": payload["changes"][:-1]}
    bad.write_bytes(bundle_bytes(sign(dropped, load_private(private))))
    verdict = verify_file(bad, load_public(public))
    assert not verdict.ok and any("ch_00000004" in f for f in verdict.failures), verdict
    rows = [{k: v for k, v in c.items() if k != "at"} for c in payload["changes"]]
    cut = {"kind": "budget", "proposed_by": "ops", "delta_fen": -4_000, "days": [DAY1]}
    assert rows == [
        {"id": "ch_00000001", "kind": "amendment.proposed", "campaign_id": CID, "by": "ops",
         "reason": "money short", "amendment_id": "am_000001", "amendment": cut},
        {"id": "ch_00000002", "kind": "amendment.applied", "campaign_id": CID, "by": "ops2",
         "reason": "ok", "amendment_id": "am_000001",
         "amendment": {**cut, "split": [{"date": DAY1, "fen": -4_000}]}},
        {"id": "ch_00000003", "kind": "pause", "campaign_id": CID, "by": "ops", "reason": "stop"},
        {"id": "ch_00000004", "kind": "block.added", "campaign_id": CID, "by": "ops",
         "reason": "bot", "block_id": "bl_000001",
         "block": {"kind": "person", "person_id": "b"}},
    ]  # fmt: skip
    assert all(c["at"].startswith(DAY1 + "T10:00:00") for c in payload["changes"])
