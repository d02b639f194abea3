"""The dashboard's live feed on PostgreSQL, in process (a real engine, a real database).

One engine holds the whole ledger (the one process, or the sequencer of ``lijian serve
--workers N``): the feed follows its PostgreSQL ledger exactly as on SQLite, and every
figure equals a replay from zero (what ``lijian audit`` replays), sold out included.
"""

from __future__ import annotations

from typing import Any

import pytest

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.ledger import Ledger
from lijian.core.settlement import settlement
from lijian.core.views import status_view
from lijian.dashboard.live import LiveFeed
from lijian.engine import Engine
from tests.postgres.pgutil import replay
from tests.support import CID, at, catalog, order, settings

pytestmark = pytest.mark.xdist_group("postgres")
DAY = "2025-02-12"
DAY_FEN = 100_000
MONEY = ("budget_fen", "granted_fen", "held_fen", "clawed_back_fen")
TODAY = ("date", "released_fen", "held_fen", "granted_fen", "remaining_fen", "sold_out_at")


def watched(engine: Engine) -> LiveFeed:
    feed = LiveFeed(engine)
    feed.listeners = 1  # as if a page were open: the audit and self-checks run on ticks
    return feed


def tick(engine: Engine, feed: LiveFeed) -> dict[str, Any]:
    engine.call(feed.tick)
    snap: dict[str, Any] = engine.call(feed.snapshot, CID)
    return snap


def same_figures(engine: Engine, feed: LiveFeed, truth: Ledger, now_ms: int) -> dict[str, Any]:
    snap = tick(engine, feed)
    want = status_view(truth, CID, now_ms)
    assert snap["state"] == want["state"]
    assert {k: snap["budget"][k] for k in MONEY} == {k: want[k] for k in MONEY}
    assert {k: snap["today"][k] for k in TODAY} == {k: want["today"][k] for k in TODAY}
    for day in truth.books[CID].tranches:
        assert engine.call(feed.settlement, CID, day) == settlement(truth, CID, day), day
    hist = {r["date"]: r for r in engine.call(feed.history, CID)}
    for day, t in truth.books[CID].tranches.items():
        assert hist[day]["state"] == t.state
        if t.state != "scheduled":
            assert hist[day]["granted_fen"] == t.granted_fen
            assert hist[day]["released_fen"] == t.released_fen
    assert snap["feed"]["ok"], snap["feed"]
    assert snap["audit"]["ok"] and snap["audit"]["entries"] == truth.entries_applied
    return snap


def engine(url: str, day_fen: int = DAY_FEN, hold_ttl_s: int = 60) -> Engine:
    s = settings(campaign={"budget_fen": day_fen * 17}, limits={"hold_ttl_s": hold_ttl_s})
    e = Engine([s], url, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    Blocking(e).catalog_upsert(list(catalog().rows()))
    return e


def test_one_engine_on_postgres_feeds_the_dashboard_like_sqlite(pg_url):
    e = engine(pg_url)
    feed = watched(e)
    try:
        ids = []
        for n in range(8):
            out = Blocking(e).redeem(order(n, person=f"p-{n}"), "unionpay", f"k{n}", f"f{n}")
            assert out.status == 201
            ids.append(out.body["id"])
        for rid in ids[:5]:
            assert Blocking(e).capture(rid).status == 200
        Blocking(e).void(ids[5])
        snap = tick(e, feed)
        assert feed.pg_tail is not None and "cluster" not in snap
        assert feed.caught_up() and snap["feed"]["ok"] and snap["feed"]["behind"] == 0
        assert e.call(feed.settlement, CID, DAY) == e.call(settlement, e.ledger, CID, DAY)
        assert snap["budget"]["granted_fen"] == Blocking(e).status(CID)["granted_fen"] > 0
        truth = replay(pg_url)
        same_figures(e, feed, truth, at("2025-02-12 10:00"))
        assert audit_db(pg_url).ok
    finally:
        e.call(feed.aclose)
        e.close()


def test_a_sold_out_tranche_on_postgres(pg_url):
    """90,000 fen a day: twenty discounts of 4,500 fen (15% of 30,000) spend it to the
    fen; the page shows the engine's sold-out, equal to the replay's."""
    e = engine(pg_url, 90_000, hold_ttl_s=600)
    feed = watched(e)
    try:
        granted = 0
        for i in range(30):
            o = order(f"o{i}", person=f"p-{i}", price_fen=30_000, quantity=1,
                      platform_discount_fen=0)  # fmt: skip
            out = Blocking(e).redeem(o, "unionpay", f"K{i}", f"f{i}")
            if out.status == 201:
                granted += out.body["discount_fen"]
        truth = replay(pg_url)
        t = truth.books[CID].tranches[DAY]
        assert t.available_fen == 0 and granted == t.held_fen == 90_000
        snap = same_figures(e, feed, truth, at("2025-02-12 10:00"))
        assert snap["state"] == "sold_out" and snap["today"]["sold_out_at"] is not None
        hist = {r["date"]: r for r in e.call(feed.history, CID)}
        assert hist[DAY]["first_sold_out_at"] is not None
        assert audit_db(pg_url).ok
    finally:
        e.call(feed.aclose)
        e.close()
