"""The dashboard's live figures, checked against the ledger they are derived from.

A real engine (manual clock, SQLite) goes through every kind of money movement: holds,
captures, voids, expiries, a sell-out, partial and full refunds, a close with rollover
and a late void after the close. After each phase the projection, fed from the
committed entries, must agree with the ledger: tranche balances (its self-check),
R19 settlement per day and platform (``core/settlement.py``), and category totals.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.order import RefundRequest
from lijian.core.settlement import settlement
from lijian.dashboard import live
from lijian.dashboard.live import EVENT_BYTES_MAX, LiveFeed
from lijian.dashboard.projection import split_by_lines
from lijian.engine import Engine
from tests.support import CID, at, catalog, order, settings

NO_GEO = {"require_device_in_city": False, "require_address_in_city": False}
DAY_FEN = 10_000  # a tranche of 100 CNY: small orders fit, a big one sells it out


def small(n: int, platform: str = "jd", price_fen: int = 1_000) -> Any:
    sku = f"{platform.upper()}-{n % 40}"
    return order(
        n, person=f"p-{n}", platform=platform, sku=sku, price_fen=price_fen, quantity=1,
        platform_discount_fen=0,
    )  # fmt: skip


class World:
    def __init__(self, tmp_path: Any, clawback: str) -> None:
        s = settings(
            campaign={"budget_fen": DAY_FEN * 17},
            eligibility=NO_GEO,
            limits={"hold_ttl_s": 60},
            refunds={"clawback_returns_to": clawback},
        )
        self.engine = Engine(
            [s], tmp_path / "l.db", parse_clock("manual:2025-02-12T10:00:00+08:00")
        )
        Blocking(self.engine).catalog_upsert(list(catalog().rows()))
        self.feed = LiveFeed(self.engine)
        self.keys = 0

    def hold(self, o: Any) -> Any:
        self.keys += 1
        return Blocking(self.engine).redeem(o, "unionpay", f"k-{self.keys}", f"fp-{self.keys}")

    def refund(self, rid: str, payable_fen: int) -> Any:
        self.keys += 1
        req = RefundRequest(f"f-{self.keys}", payable_fen=payable_fen)
        out = Blocking(self.engine).refund(
            rid, req, "unionpay", f"r-{self.keys}", f"fp-r{self.keys}"
        )
        assert out.status == 201, out.body
        return out

    def check(self) -> dict[str, Any]:
        """Catch the projection up, then compare it with the ledger (on the engine's loop)."""
        self.engine.call(self.feed.tick)
        return dict(self.engine.call(self._compare))

    def _compare(self) -> dict[str, Any]:
        feed, ledger = self.feed, self.engine.ledger
        assert feed.caught_up(), (feed.projection.applied, ledger.entries_applied)
        assert feed.projection.drift() == []
        c = feed.projection.campaigns[CID]
        for day in sorted({*ledger.books[CID].tranches, *c.days}):
            want = settlement(ledger, CID, day)
            got = {p: m.view() for p, m in (c.days[day].settled if day in c.days else {}).items()}
            for row in want["platforms"]:
                mine = got.get(
                    row["platform"],
                    {
                        "count": 0,
                        "gmv_fen": 0,
                        "discount_fen": 0,
                        "clawback_fen": 0,
                        "net_subsidy_fen": 0,
                    },
                )
                for k in ("count", "gmv_fen", "discount_fen", "clawback_fen", "net_subsidy_fen"):
                    assert mine[k] == row[k], (day, row["platform"], k, mine[k], row[k])
        net = sum(m.net_subsidy_fen for m in c.totals_by_platform().values())
        assert sum(c.by_category.values()) == net
        for day, t in ledger.books[CID].tranches.items():
            d = c.days.get(day)
            if t.state == "open" and d is not None and d.burn:
                assert d.burn[max(d.burn)] == t.available_fen
        return {"snapshot": feed.snapshot(CID), "history": feed.history(CID)}


@pytest.mark.parametrize("clawback", ["next_tranche", "same_tranche"])
def test_the_projection_follows_every_money_movement(tmp_path, clawback):
    w = World(tmp_path, clawback)
    e = w.engine
    try:
        # Day 1, 10:00: holds; captures; a void (back to the open tranche); an expiry.
        ids = [
            w.hold(small(n, "jd" if n % 2 else "vip", 1_000 + 100 * n)).body["id"] for n in range(6)
        ]
        for rid in ids[:4]:
            assert Blocking(e).capture(rid).status == 200
        Blocking(e).void(ids[4])
        first = w.check()
        today = first["snapshot"]["today"]
        assert (
            today["held_fen"] == 150 + 15 * 5
            and first["snapshot"]["grants_per_s"]["holds_today"] == 6
        )
        Blocking(e).set_clock(at("2025-02-12 10:02"))  # ids[5] expires
        w.check()
        # A big order cannot fit: declined sold out, and the SoldOut entry is recorded.
        assert w.hold(small(100, "jd", 100_000)).body["status"] == "declined"
        # Refunds on day 1: partial (clawback to the next tranche, or the same one).
        w.refund(ids[1], 300)
        snap = w.check()["snapshot"]
        assert snap["totals"]["clawback_fen"] > 0
        # A hold just before midnight, voided after the close: a late return.
        Blocking(e).set_clock(at("2025-02-12 23:59:30"))
        late = w.hold(small(7, "jd")).body["id"]
        Blocking(e).set_clock(at("2025-02-13 00:00:10"))
        Blocking(e).void(late)
        w.check()
        # Day 2: the release carries the rollover and inflows; a full refund of day 1.
        Blocking(e).set_clock(at("2025-02-13 10:00"))
        g = w.hold(small(8, "vip")).body["id"]
        Blocking(e).capture(g)
        w.refund(ids[2], 1_200)  # full refund of ids[2] (payable 1,200)
        w.refund(g, 500)
        out = w.check()
        hist = {row["date"]: row for row in out["history"]}
        assert hist["2025-02-12"]["state"] == "closed" and hist["2025-02-13"]["state"] == "open"
        assert hist["2025-02-12"]["first_sold_out_at"] is not None
        assert hist["2025-02-12"]["holds"] == 7 and hist["2025-02-13"]["holds"] == 1
        assert hist["2025-02-13"]["released_fen"] > DAY_FEN  # rollover + returns arrived
        snap = out["snapshot"]
        assert snap["feed"]["ok"] and snap["feed"]["behind"] == 0
        assert snap["burn"]["date"] == "2025-02-13" and snap["burn"]["points"][0][0] == 0
        assert len(msgspec.json.encode(snap)) < EVENT_BYTES_MAX
        # A fresh projection replays the same entries to the same figures.
        again = LiveFeed(e)
        e.call(again.tick)
        assert e.call(again.snapshot, CID) == e.call(w.feed.snapshot, CID)
        assert e.call(again.history, CID) == out["history"]
        e.call(again.aclose)
    finally:
        e.call(w.feed.aclose)
        e.close()


def test_settlement_from_the_feed_is_the_core_settlement_and_is_cached(tmp_path):
    w = World(tmp_path, "next_tranche")
    e = w.engine
    try:
        rid = w.hold(small(1)).body["id"]
        Blocking(e).capture(rid)
        w.check()
        rep = e.call(w.feed.settlement, CID, "2025-02-12")
        assert rep == e.call(settlement, e.ledger, CID, "2025-02-12")
        assert e.call(w.feed.settlement, CID, "2025-02-12") is rep  # no second scan
        w.hold(small(2))
        assert e.call(w.feed.settlement, CID, "2025-02-12") is not rep  # the ledger moved
    finally:
        e.call(w.feed.aclose)
        e.close()


def test_reports_wait_while_the_feed_is_catching_up(tmp_path, monkeypatch):
    """A restart on a big ledger reads it in steps: until the feed has read to the end,
    it says so and the projection's reports are refused (503), not an old prefix."""
    w = World(tmp_path, "next_tranche")
    e = w.engine
    try:
        Blocking(e).capture(w.hold(small(1)).body["id"])
        monkeypatch.setattr(live, "PAGES_PER_TICK_MAX", 0)  # a tick reads no page at all
        e.call(w.feed.tick)
        assert w.feed.catching_up and "catching up" in (e.call(w.feed.ready) or "")
        snap = e.call(w.feed.snapshot, CID)
        assert not snap["feed"]["ok"] and "catching up" in snap["feed"]["problems"][0]
        monkeypatch.setattr(live, "PAGES_PER_TICK_MAX", 40)
        e.call(w.feed.tick)
        assert e.call(w.feed.ready) is None and e.call(w.feed.snapshot, CID)["feed"]["ok"]
        w.check()
    finally:
        e.call(w.feed.aclose)
        e.close()


def test_a_discount_is_shared_among_lines_to_the_fen():
    r = SimpleNamespace(platform="jd", lines=[("JD-0", 1, 333), ("JD-1", 1, 333), ("JD-2", 1, 334)])
    cats = {"JD-0": "fresh_food", "JD-1": "fresh_food", "JD-2": "home_textiles"}
    got = split_by_lines(r, 100, lambda p, sku: cats[sku])  # type: ignore[arg-type]
    assert sum(got.values()) == 100 and got == {"fresh_food": 66, "home_textiles": 34}
    neg = split_by_lines(r, -7, lambda p, sku: None)  # type: ignore[arg-type]
    assert neg == {"unknown": -7}


def test_the_projection_follows_operators_changes(tmp_path):
    """Pauses, blocks, a top-up and a cut of the open day, and an early end: the shadow
    tranches still equal the ledger's (its self-check), and a fresh replay agrees."""
    w = World(tmp_path, "next_tranche")
    e = w.engine

    def op(name: str, body: dict[str, Any], by: str = "ops") -> Any:
        out = e.call(e.operate, name, CID, body, by)
        assert out.status in (200, 201), out.body
        return out.body

    try:
        rid = w.hold(small(1)).body["id"]
        op("pause", {"reason": "stop"})
        op("block", {"kind": "person", "person_id": "p-9", "reason": "bot"})
        for delta in (700, -500):
            am = op("propose", {"kind": "budget", "delta_fen": delta, "days": "remaining",
                                "reason": "r"})  # fmt: skip
            op("approve", {"amendment_id": am["id"], "reason": "ok"}, "ops2")
        end = op("propose", {"kind": "end", "last_date": "2025-02-13", "reason": "r"})
        op("approve", {"amendment_id": end["id"], "reason": "ok"}, "ops2")
        op("resume", {"reason": "go"})
        Blocking(e).capture(rid)
        out = w.check()  # drift() == [] inside
        today = out["snapshot"]["today"]
        assert today["remaining_fen"] == Blocking(e).status(CID)["today"]["remaining_fen"]
        assert today["remaining_fen"] == DAY_FEN - 150 + 700 // 17 * 1 - 500 // 17
        again = LiveFeed(e)
        e.call(again.tick)
        assert e.call(again.snapshot, CID) == e.call(w.feed.snapshot, CID)
        e.call(again.aclose)
    finally:
        e.call(w.feed.aclose)
        e.close()
