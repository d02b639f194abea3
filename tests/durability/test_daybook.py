"""The daybook (``lijian.core.daybook``): the figures per day and platform that
``Ledger.apply`` keeps, checked against R19 computed the long way from the redemptions,
across a restart (snapshot), a replay from zero and a snapshot from before the daybook.
And the rules that keep the arithmetic in one place."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import msgspec

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.ledger import Ledger
from lijian.core.order import RefundRequest
from lijian.core.settlement import settlement
from lijian.core.snapshot import LedgerState, encode_snapshot, restore_snapshot
from lijian.engine import Engine
from lijian.ledger_file import open_ledger
from lijian.store.sqlite import SqliteStore
from lijian.stored_ledger import open_stored_ledger
from tests.support import CID, at, catalog, order, settings

SRC = Path(__file__).resolve().parents[2] / "src" / "lijian"
DAY1, DAY2 = "2025-02-12", "2025-02-13"
NO_GEO = {"require_device_in_city": False, "require_address_in_city": False}


def r19_the_long_way(ledger: Ledger, day: str) -> dict[str, dict[str, int]]:
    """R19 from its definition: a capture on the local day it happened, a clawback on
    the local day of its refund; only platforms with something on that day."""
    local = ledger.books[CID].schedule.local_date
    rows: dict[str, dict[str, int]] = {}

    def row(platform: str) -> dict[str, int]:
        return rows.setdefault(platform, dict.fromkeys(("count", "gmv", "disc", "claw"), 0))

    for r in ledger.redemptions.values():
        if r.captured_ms is not None and local(r.captured_ms).isoformat() == day:
            x = row(r.platform)
            x["count"], x["gmv"], x["disc"] = (
                x["count"] + 1, x["gmv"] + r.payable_fen, x["disc"] + r.discount_fen,
            )  # fmt: skip
        for f in r.refunds:
            if local(f.ts_ms).isoformat() == day:
                row(r.platform)["claw"] += f.clawback_fen
    return rows


def same_as_the_long_way(ledger: Ledger) -> None:
    for day in (DAY1, DAY2):
        want = r19_the_long_way(ledger, day)
        got = settlement(ledger, CID, day)
        assert {p["platform"] for p in got["platforms"]} == {"jd", "vip"}
        for p in got["platforms"]:
            w = want.get(p["platform"], {"count": 0, "gmv": 0, "disc": 0, "claw": 0})
            assert (p["count"], p["gmv_fen"], p["discount_fen"], p["clawback_fen"]) == (
                w["count"], w["gmv"], w["disc"], w["claw"],
            ), (day, p)  # fmt: skip
            assert p["net_subsidy_fen"] == w["disc"] - w["claw"]
        assert got["totals"]["count"] == sum(w["count"] for w in want.values())


def campaign(db: Path) -> dict[str, Any]:
    """Day 1: holds on two platforms, captures, a void; a hold captured after midnight
    (counts on day 2); day 2: a refund of a day-1 capture (its clawback on day 2)."""
    s = settings(eligibility=NO_GEO, limits={"hold_ttl_s": 3_600})
    e = Engine([s], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        ids = []
        for n in range(5):
            platform = "jd" if n % 2 else "vip"
            o = order(n, person=f"p-{n}", platform=platform, sku=f"{platform.upper()}-{n}")
            out = Blocking(e).redeem(o, "unionpay", f"K{n}", f"f{n}")
            assert out.status == 201, out.body
            ids.append(out.body["id"])
        for rid in ids[:3]:
            assert Blocking(e).capture(rid).status == 200
        assert Blocking(e).void(ids[3]).status == 200
        Blocking(e).set_clock(at("2025-02-12 23:59:50"))
        late = Blocking(e).redeem(order(9, person="p-9"), "unionpay", "K9", "f9").body["id"]
        Blocking(e).set_clock(at("2025-02-13 00:00:05"))
        assert Blocking(e).capture(late).status == 200
        Blocking(e).set_clock(at("2025-02-13 10:00"))
        req = RefundRequest("rf-1", payable_fen=5_000)
        assert Blocking(e).refund(ids[1], req, "unionpay", "KR", "fr").status == 201
        same_as_the_long_way(e.ledger)
        book = e.ledger.books[CID].daybook
        return {
            "days": msgspec.to_builtins(book.to_state()),
            "holds_day1": book.days[DAY1].holds,
            "day2_count": settlement(e.ledger, CID, DAY2)["totals"]["count"],
            "day2_claw": settlement(e.ledger, CID, DAY2)["totals"]["clawback_fen"],
        }
    finally:
        e.close()


def test_the_daybook_is_r19_and_survives_restart_replay_and_an_old_snapshot(tmp_path):
    db = tmp_path / "l.db"
    live = campaign(db)
    assert live["holds_day1"] == 6  # five at 10:00 and one at 23:59:50
    assert live["day2_count"] == 1 and live["day2_claw"] > 0
    store = open_ledger(db)
    try:
        restarted = open_stored_ledger(store, from_snapshot=True)
        zero = open_stored_ledger(store)
    finally:
        store.close()
    assert restarted.snapshot_seq > 0 and restarted.replayed == 0
    for rebuilt in (restarted.ledger, zero.ledger):
        assert msgspec.to_builtins(rebuilt.books[CID].daybook.to_state()) == live["days"]
    # A snapshot written before the daybook existed: settlement and holds per day are
    # rebuilt from the redemptions, equal to the replay's.
    blob = encode_snapshot(zero.ledger, 1)
    state = msgspec.msgpack.decode(blob, type=LedgerState)
    for b in state.books:
        b.daybook = None
    old = Ledger([settings(eligibility=NO_GEO, limits={"hold_ttl_s": 3_600})])
    restore_snapshot(old, msgspec.msgpack.encode(state))
    same_as_the_long_way(old)
    for day in (DAY1, DAY2):
        a, b = old.books[CID].daybook.days[day], zero.ledger.books[CID].daybook.days[day]
        assert (a.settled, a.holds, a.hold_fen) == (b.settled, b.holds, b.hold_fen)


def _modules(under: str) -> list[tuple[str, ast.AST]]:
    return [
        (str(p.relative_to(SRC)), ast.parse(p.read_text(encoding="utf-8")))
        for p in sorted((SRC / under).rglob("*.py"))
    ]


def _target_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    return ""


def _added_up(under: str, names: tuple[str, ...] | None) -> set[str]:
    """Modules under ``under`` (outside the core) with an ``x.f += …`` or ``x["f"] += …``
    whose ``f`` is one of ``names`` (None: any name ending in ``_fen``)."""
    out = set()
    for path, tree in _modules(under):
        if path.startswith("core/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.AugAssign):
                name = _target_name(node.target)
                if name in (names or ()) or (names is None and name.endswith("_fen")):
                    out.add(path)
    return out


def test_the_dashboard_moves_no_money():
    """Its figures are the daybook's: no shadow of a tranche, no settlement of its own."""
    assert len(_modules("dashboard")) >= 8
    assert _added_up("dashboard", None) == set()


def test_settlement_rows_are_added_up_in_the_daybook_only():
    """R19's fields are summed by ``core/daybook.py`` (apply); outside the core only the
    evidence verifier adds up a bundle's own rows, to check its settlement line without
    trusting the ledger that wrote it."""
    r19 = ("count", "gmv_fen", "discount_fen", "clawback_fen")
    assert _added_up(".", r19) == {"evidence/verify.py"}


def test_gini_is_defined_once():
    where = [
        path
        for path, tree in _modules(".")
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "gini"
    ]
    assert where == ["sim/metrics.py"]


def test_the_audit_names_a_snapshot_whose_daybook_differs_from_the_replay(tmp_path):
    db = tmp_path / "l.db"
    campaign(db)
    assert audit_db(db).ok
    store = SqliteStore(db)  # the engine is closed: this test is the one writer
    try:
        snap = store.latest_snapshot()
        assert snap is not None
        state = msgspec.msgpack.decode(snap[1], type=LedgerState)
        daybook = state.books[0].daybook
        assert daybook is not None
        next(d for d in daybook.days if d.day == DAY1).settled["jd"].count += 1
        store.save_snapshot(snap[0], msgspec.msgpack.encode(state))
    finally:
        store.close()
    rep = audit_db(db)
    assert not rep.ok
    assert rep.violations == [
        f"snapshot daybook of {CID} (settlement, holds) differs from the replay"
    ]
