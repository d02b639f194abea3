"""The dashboard's live feed on PostgreSQL, in process (real engines, real database).

One engine on PostgreSQL: the feed follows the ledger exactly as on SQLite.
Two escrow nodes on one schema: each node's feed shows the shared log's figures, equal
to a replay from zero (what ``lijian audit`` replays), not the node's own view; the
node-only parts are labelled; the escrow self-check passes, and catches a tampered
pool row.
"""

from __future__ import annotations

from typing import Any

import pytest

from lijian.audit import audit_db
from lijian.clock import parse_clock
from lijian.core.escrow import EscrowPolicy
from lijian.core.ledger import Ledger
from lijian.core.settlement import settlement
from lijian.core.views import status_view
from lijian.dashboard.live import ESCROW_CHECK, LiveFeed
from lijian.engine import Engine
from lijian.escrow.node import EscrowEngine
from tests.postgres.pgutil import (
    execute,
    replay,
)
from tests.support import CID, at, catalog, order, settings

pytestmark = pytest.mark.xdist_group("postgres")
DAY = "2025-02-12"
DAY_FEN = 100_000
POLICY = EscrowPolicy(min_slice_fen=5_000, max_slice_fen=30_000, lease_ttl_ms=2_000)
MONEY = ("budget_fen", "granted_fen", "held_fen", "clawed_back_fen")
TODAY = ("date", "released_fen", "held_fen", "granted_fen", "remaining_fen")


def watched(engine: Engine) -> LiveFeed:
    feed = LiveFeed(engine)
    feed.listeners = 1  # as if a page were open: audit and self-checks run on ticks
    return feed


def tick(engine: Engine, feed: LiveFeed) -> dict[str, Any]:
    engine.call(feed.tick)
    snap: dict[str, Any] = engine.call(feed.snapshot, CID)
    return snap


def same_figures(engine: Engine, feed: LiveFeed, truth: Ledger, now_ms: int) -> dict[str, Any]:
    snap = tick(engine, feed)
    want = status_view(truth, CID, now_ms)
    assert {k: snap["budget"][k] for k in MONEY} == {k: want[k] for k in MONEY}
    assert {k: snap["today"][k] for k in TODAY} == {k: want["today"][k] for k in TODAY}
    for day in truth.books[CID].tranches:
        assert engine.call(feed.settlement, CID, day) == settlement(truth, CID, day), day
    hist = {r["date"]: r for r in engine.call(feed.history, CID)}
    for day, t in truth.books[CID].tranches.items():
        if t.state != "scheduled":
            assert hist[day]["granted_fen"] == t.granted_fen
            assert hist[day]["released_fen"] == t.released_fen
    assert snap["feed"]["ok"], snap["feed"]
    assert snap["audit"]["ok"] and snap["audit"]["entries"] == truth.entries_applied
    return snap


def test_one_engine_on_postgres_feeds_the_dashboard_like_sqlite(pg_url):
    s = settings(campaign={"budget_fen": DAY_FEN * 17}, limits={"hold_ttl_s": 60})
    e = Engine([s], pg_url, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    feed = watched(e)
    try:
        e.catalog_upsert_sync(list(catalog().rows()))
        ids = []
        for n in range(8):
            out = e.redeem_sync(order(n, person=f"p-{n}"), "unionpay", f"k{n}", f"f{n}")
            assert out.status == 201
            ids.append(out.body["id"])
        for rid in ids[:5]:
            assert e.capture_sync(rid).status == 200
        e.void_sync(ids[5])
        snap = tick(e, feed)
        assert feed.pg_tail is not None and feed.node is None and snap["cluster"] is None
        assert feed.caught_up() and snap["feed"]["ok"] and snap["feed"]["behind"] == 0
        assert e.call(feed.settlement, CID, DAY) == e.call(settlement, e.ledger, CID, DAY)
        assert snap["budget"]["granted_fen"] == e.status_sync(CID)["granted_fen"] > 0
        truth = replay(pg_url)
        same_figures(e, feed, truth, at("2025-02-12 10:00"))
        assert audit_db(pg_url).ok
    finally:
        e.call(feed.aclose)
        e.close()


def node(url: str, name: str, day_fen: int = DAY_FEN) -> EscrowEngine:
    s = settings(campaign={"budget_fen": day_fen * 17}, limits={"hold_ttl_s": 600})
    e = EscrowEngine(
        [s],
        url,
        parse_clock("manual:2025-02-12T10:00:00+08:00"),
        node_id=name,
        nodes=2,
        policy=POLICY,
    )
    e.catalog_upsert_sync(list(catalog().rows()))
    return e


def test_each_escrow_node_shows_the_shared_log_not_its_view(pg_url):
    a, b = node(pg_url, "a"), node(pg_url, "b")
    fa, fb = watched(a), watched(b)
    try:
        held: list[tuple[EscrowEngine, str]] = []
        for i in range(24):
            e, name = (a, "a") if i % 3 else (b, "b")
            o = order(f"{name}{i}", person=f"p-{i}", platform="jd" if i % 2 else "vip",
                      sku="JD-3" if i % 2 else "VIP-4")  # fmt: skip
            out = e.redeem_sync(o, "unionpay", f"K{i}", f"f{i}")
            if out.status == 201:
                held.append((e, out.body["id"]))
        assert len(held) > 10
        # Captures on the node that granted, and across nodes; voids too.
        for n, (e, rid) in enumerate(held):
            other = b if e is a else a
            if n % 4 == 0:
                assert other.void_sync(rid).status == 200
            elif n % 4 != 3:
                assert (other if n % 2 else e).capture_sync(rid).status == 200
        truth = replay(pg_url)
        now_ms = at("2025-02-12 10:00")
        sa = same_figures(a, fa, truth, now_ms)
        sb = same_figures(b, fb, truth, now_ms)
        # Both nodes show the same campaign; each node's own view shows less.
        for k in ("budget", "today", "platforms", "totals", "categories"):
            assert sa[k] == sb[k], k
        # Node a's view: its own lease, what it saw happen.
        own = a.call(status_view, a.ledger, CID, now_ms)
        assert own["granted_fen"] < sa["budget"]["granted_fen"]
        assert sa["cluster"] == {
            "node": "a",
            "nodes": 2,
            "node_state": own["state"],
            "node_sold_out_at": own["today"]["sold_out_at"],
        }
        assert sa["state"] == "open"
        # The escrow self-check ran in a quiet moment and passed, on both nodes.
        for snap in (sa, sb):
            names = {c["name"]: c["ok"] for c in snap["audit"]["checks"]}
            esc = [n for n in names if n.startswith(ESCROW_CHECK)]
            assert esc and all(names[n] for n in esc), names
        rep = audit_db(pg_url)
        assert rep.ok and rep.entries == truth.entries_applied
        # Money moved in the pool row behind the ledger's back: the next check says so.
        execute(pg_url, "UPDATE pools SET remaining_fen = remaining_fen + 1 WHERE day = %s", (DAY,))
        fa._escrow = None  # re-check now rather than in ESCROW_RECHECK_S
        snap = tick(a, fa)
        assert not snap["audit"]["ok"]
        assert any("pool" in v for v in snap["audit"]["violations"]), snap["audit"]
        execute(pg_url, "UPDATE pools SET remaining_fen = remaining_fen - 1 WHERE day = %s", (DAY,))
        fa._escrow = None
        assert tick(a, fa)["audit"]["ok"]
        # The nodes' status rows (what GET …/status sums) are checked the same way.
        execute(pg_url, "UPDATE day_figures SET captured_fen = captured_fen + 1 WHERE day = %s",
                (DAY,))  # fmt: skip
        fa._escrow = None
        snap = tick(a, fa)
        assert any("day figures" in v for v in snap["audit"]["violations"]), snap["audit"]
    finally:
        for e, f in ((a, fa), (b, fb)):
            e.call(f.aclose)
            e.close()


def test_a_sold_out_tranche_across_nodes(pg_url):
    """Sold out in the shared log means: the remaining money reached zero. 90,000 fen a
    day: twenty discounts of 4,500 fen (15% of 30,000) can spend it to the fen."""
    a, b = node(pg_url, "a", 90_000), node(pg_url, "b", 90_000)
    fa = watched(a)
    try:
        granted = 0
        for i in range(60):
            e = a if i % 2 else b
            o = order(f"o{i}", person=f"p-{i}", price_fen=30_000, quantity=1,
                      platform_discount_fen=0)  # fmt: skip
            out = e.redeem_sync(o, "unionpay", f"K{i}", f"f{i}")
            if out.status == 201:
                granted += out.body["discount_fen"]
        truth = replay(pg_url)
        t = truth.books[CID].tranches[DAY]
        snap = same_figures(a, fa, truth, at("2025-02-12 10:00"))
        if t.available_fen == 0:
            assert snap["state"] == "sold_out" and snap["today"]["sold_out_at"] is not None
            hist = {r["date"]: r for r in a.call(fa.history, CID)}
            assert hist[DAY]["first_sold_out_at"] is not None
        else:  # crumbs too small for any order stay: open, remaining shown to the fen
            assert snap["state"] == "open" and snap["today"]["remaining_fen"] == t.available_fen
        assert granted == t.held_fen + t.granted_fen
    finally:
        a.call(fa.aclose)
        a.close()
        b.close()
