"""The outbox on a real store: thresholds once per tranche with their resolution, sold
out, the budget, spikes of one decline reason, audit failures; rows committed with the
grant that caused them; a restart announces nothing twice. (PostgreSQL: the same cases in
tests/postgres/test_pg_events.py.)"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.order import Location
from lijian.engine import Engine
from tests.support import CHONGQING, CID, catalog, order, settings

ALERTS = {"tranche_remaining_pct": [50, 20], "budget_remaining_pct": [97]}
# 17 equal tranches of 10,000 fen; each grant is 3,720 fen.
SMALL = {"budget_fen": 170_000}


def engine(db: str | Path, start: str = "2025-02-12T10:00:00+08:00", **alerts: Any) -> Engine:
    s = settings(campaign=SMALL, alerts=alerts or ALERTS)
    e = Engine([s], db, parse_clock(f"manual:{start}"))
    Blocking(e).catalog_upsert(list(catalog().rows()))
    return e


def grant(e: Engine, n: int) -> str:
    out = Blocking(e).redeem(order(n, person=f"p-{n}"), "unionpay", f"K{n}", f"f{n}")
    assert out.status == 201, out.body
    return str(out.body["id"])


def events(e: Engine) -> list[dict[str, Any]]:
    page: dict[str, Any] = e.call(e.read_events, 0, 500)
    assert page["next_after"] is None
    return list(page["events"])


def summary(evs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for ev in evs:
        d = ev["data"]
        out.append((ev["type"], d.get("threshold_pct"), d.get("remaining_fen"), d.get("resolved")))
    return out


def run_thresholds(db: str | Path) -> None:
    e = engine(db)
    try:
        grant(e, 1)  # 6,280 left of 10,000: above 50 %
        assert events(e) == []
        second = grant(e, 2)  # 2,560 left: below 50 % (not 20 %); budget 162,560: below 97 %
        assert summary(events(e)) == [
            ("tranche.threshold", 50, 2_560, False),
            ("budget.threshold", 97, 162_560, False),
        ]
        assert Blocking(e).void(second).status == 200  # money back: both resolved
        grant(e, 3)  # below both again: each fires once (per tranche, per campaign)
        assert Blocking(e).redeem(order(4, person="p-4"), "unionpay", "K4", "f4").status == 200
        evs = events(e)
    finally:
        e.close()
    assert summary(evs) == [
        ("tranche.threshold", 50, 2_560, False),
        ("budget.threshold", 97, 162_560, False),
        ("tranche.threshold", 50, 6_280, True),
        ("budget.threshold", 97, 166_280, True),
        ("tranche.sold_out", None, None, None),  # the third grant left 2,560 < 3,720
    ]
    assert [ev["id"] for ev in evs] == [f"evt_{n:016d}" for n in range(1, 6)]
    assert evs[0] == {
        "id": "evt_0000000000000001",
        "type": "tranche.threshold",
        "campaign_id": CID,
        "occurred_at": "2025-02-12T10:00:00+08:00",
        "data": {"date": "2025-02-12", "threshold_pct": 50, "remaining_fen": 2_560,
                 "released_fen": 10_000, "resolved": False},
    }  # fmt: skip


def run_restart(db: str | Path) -> None:
    e = engine(db)
    try:
        grant(e, 1)
        second = grant(e, 2)
        before = events(e)
    finally:
        e.close()
    e = engine(db)
    try:
        assert events(e) == before  # nothing re-announced at start
        assert Blocking(e).void(second).status == 200
        grant(e, 3)
        after = events(e)
    finally:
        e.close()
    assert summary(after[len(before) :]) == [
        ("tranche.threshold", 50, 6_280, True),
        ("budget.threshold", 97, 166_280, True),
    ]


def test_thresholds_fire_once_per_tranche_and_resolve(tmp_path: Path) -> None:
    run_thresholds(tmp_path / "l.db")


def test_a_restart_announces_nothing_twice(tmp_path: Path) -> None:
    run_restart(tmp_path / "l.db")


def test_the_event_row_is_committed_with_the_grant(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    e = engine(db)
    try:
        grant(e, 1)
        grant(e, 2)  # acknowledged: its commit is on disk, and the event with it
        with sqlite3.connect(db) as c:
            rows = c.execute("SELECT seq, type, data FROM events ORDER BY seq").fetchall()
            (entries,) = c.execute("SELECT COUNT(*) FROM entries").fetchone()
    finally:
        e.close()
    assert [(s, t) for s, t, _ in rows] == [(1, "tranche.threshold"), (2, "budget.threshold")]
    assert json.loads(rows[0][2])["remaining_fen"] == 2_560
    assert entries >= 3  # the open and both holds


def test_a_decline_spike_and_its_end(tmp_path: Path) -> None:
    e = engine(tmp_path / "l.db", decline_spike_factor=10)
    n = 0

    def decline(count: int) -> None:
        nonlocal n
        for _ in range(count):
            n += 1
            o = order(1000 + n, person=f"q-{n}", device_location=Location(*CHONGQING, "gcj02"))
            out = Blocking(e).redeem(o, "unionpay", f"D{n}", f"fd{n}")
            assert out.status == 200
            assert "location_outside_city" in [r["code"] for r in out.body["reasons"]]

    try:
        for _ in range(15):  # a baseline of 2 a minute for 15 minutes: no spike
            decline(2)
            Blocking(e).set_clock(advance_ms=60_000)
        assert [ev["type"] for ev in events(e)] == []
        decline(25)  # 25 in a minute against 2 a minute: more than 10x, and at least 20
        Blocking(e).set_clock(advance_ms=10_000)
        spikes = [ev for ev in events(e) if ev["type"] == "declines.spike"]
        assert [ev["data"]["reason"] for ev in spikes] == ["location_outside_city"]
        assert spikes[0]["data"]["last_minute_declines"] == 25
        assert spikes[0]["data"]["resolved"] is False
        Blocking(e).set_clock(advance_ms=120_000)  # the wave passed
        Blocking(e).set_clock(advance_ms=10_000)
        spikes = [ev for ev in events(e) if ev["type"] == "declines.spike"]
    finally:
        e.close()
    assert [(ev["data"]["reason"], ev["data"]["resolved"]) for ev in spikes] == [
        ("location_outside_city", False),
        ("location_outside_city", True),
    ]


def test_a_failed_audit_is_an_event(tmp_path: Path) -> None:
    e = engine(tmp_path / "l.db")
    try:
        grant(e, 1)

        def break_it() -> None:  # what a bug in the engine would do: money from nowhere
            e.ledger.books[CID].tranches["2025-02-12"].available_fen += 7

        e.call(break_it)
        report = e.call(e.audit_report, CID)
        assert report["ok"] is False
        Blocking(e).set_clock(advance_ms=1_000)  # the writer's next commit records it
        evs = [ev for ev in events(e) if ev["type"] == "audit.failed"]
    finally:
        e.close()
    assert len(evs) == 1 and evs[0]["data"]["count"] >= 1
    assert any("tranche" in v or "money" in v for v in evs[0]["data"]["violations"])
