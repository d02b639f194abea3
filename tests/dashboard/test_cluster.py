"""The pieces of the dashboard for several workers that need no database: the shared
session key, logout notices, the state from the schedule and the shared log, sold out as
"remaining reached zero", and reports refused while the feed is still catching up.
(The same against a real PostgreSQL: tests/postgres/test_pg_dashboard*.py.)"""

from __future__ import annotations

from lijian.clock import parse_clock
from lijian.core.entries import HoldPlaced, HoldReleased, TrancheOpened
from lijian.core.ledger import Ledger
from lijian.dashboard import cluster, live
from lijian.dashboard.accounts import Account
from lijian.dashboard.live import LiveFeed
from lijian.dashboard.projection import Projection
from lijian.dashboard.session import SessionSigner
from lijian.engine import Engine
from tests.support import CID, at, settings

OPS = Account("ops", "operator", "client", secret=b"operator-secret-1")
AUDIT = Account("audit", "auditor", "client", secret=b"auditor-secret-1")


def test_workers_of_one_run_share_a_session_key_and_nobody_else_does():
    k = cluster.session_key([OPS, AUDIT], "boot:100:555")
    assert k == cluster.session_key([AUDIT, OPS], "boot:100:555")  # any order
    assert k != cluster.session_key([OPS, AUDIT], "boot:101:555")  # a restart
    other = Account("ops", "operator", "client", secret=b"operator-secret-2")
    assert k != cluster.session_key([other, AUDIT], "boot:100:555")
    # A cookie issued by one worker reads on another of the same run.
    cookie, s = SessionSigner(k).issue("ops", "operator")
    assert SessionSigner(k).read(cookie) == s
    assert SessionSigner(cluster.session_key([OPS], "boot:100:555")).read(cookie) is None
    assert ":" in cluster.run_id()


def test_a_logout_notice_is_read_only_by_the_same_run():
    k = cluster.session_key([OPS], "r1")
    note = cluster.logout_notice(k, "sid-1", 1_900_000_000)
    assert cluster.read_logout(k, note) == ("sid-1", 1_900_000_000)
    assert cluster.read_logout(cluster.session_key([OPS], "r2"), note) is None
    for bad in ("", "logout", "logout x sid-1 1", note.replace("logout", "login"), note + " 1"):
        assert cluster.read_logout(k, bad) is None
    signer = SessionSigner(k)
    cookie, s = signer.issue("ops", "operator")
    got = cluster.read_logout(k, cluster.logout_notice(k, s.sid, s.expires_s))
    assert got is not None
    signer.revoke_id(*got)
    assert signer.read(cookie) is None


def test_the_state_follows_the_schedule_where_the_shared_log_lags():
    led = Ledger([settings(campaign={"budget_fen": 17 * 10_000})])
    b = led.books[CID]
    assert cluster.cluster_state(b, at("2025-02-11 12:00")) == "scheduled"
    assert cluster.cluster_state(b, at("2025-02-12 09:59")) == "scheduled"
    # 10:05 and nobody has drawn yet: the log has not opened the day, the window has.
    assert cluster.cluster_state(b, at("2025-02-12 10:05")) == "open"
    t = b.tranches["2025-02-12"]
    led.apply(TrancheOpened(t.opens_at_ms, CID, t.day, t.base_fen))
    assert cluster.cluster_state(b, at("2025-02-12 10:05")) == "open"
    led.apply(hold(t.opens_at_ms, "r1", t.base_fen))  # every fen held
    assert cluster.cluster_state(b, at("2025-02-12 10:05")) == "sold_out"
    # After the window the day is closed, whether or not its close is in the log yet.
    assert cluster.cluster_state(b, at("2025-02-13 09:00")) == "closed_for_day"
    assert cluster.cluster_state(b, at("2025-03-01 12:00")) == "ended"
    opens, closes = t.opens_at_ms, t.closes_at_ms
    assert cluster.day_state("scheduled", opens, closes, opens - 1) == "scheduled"
    assert cluster.day_state("scheduled", opens, closes, opens) == "open"
    assert cluster.day_state("open", opens, closes, closes) == "closed"
    assert cluster.day_state("closed", opens, closes, opens) == "closed"


def hold(ts_ms: int, rid: str, fen: int) -> HoldPlaced:
    pay = fen * 7
    return HoldPlaced(ts_ms, CID, rid, "2025-02-12", f"p-{rid}", "jd", f"O-{rid}", pay, fen,
                      False, ts_ms + 60_000, [("JD-1", 1, pay)], "c", rid, "f")  # fmt: skip


def test_sold_out_in_the_shared_log_is_remaining_zero():
    led = Ledger([settings(campaign={"budget_fen": 17 * 10_000})])
    proj = Projection(led, lambda p, sku: None, zero_is_sold_out=True)
    t = led.books[CID].tranches["2025-02-12"]
    seq = 0

    def apply(e):
        nonlocal seq
        seq += 1
        led.apply(e)
        proj.apply(seq, e)

    apply(TrancheOpened(t.opens_at_ms, CID, t.day, t.base_fen))
    apply(hold(t.opens_at_ms + 1_000, "r1", t.base_fen - 100))
    d = proj.campaigns[CID].days[t.day]
    assert d.sold_out_ms is None and d.first_sold_out_ms is None
    apply(hold(t.opens_at_ms + 2_000, "r2", 100))
    assert d.sold_out_ms == d.first_sold_out_ms == t.opens_at_ms + 2_000
    apply(HoldReleased(t.opens_at_ms + 3_000, "r2", "void", None))  # money back: open again
    assert d.sold_out_ms is None and d.first_sold_out_ms == t.opens_at_ms + 2_000
    assert proj.drift() == []


def test_reports_wait_while_the_feed_is_catching_up(tmp_path, monkeypatch):
    e = Engine([settings()], tmp_path / "l.db", parse_clock("manual:2025-02-12T10:00:00+08:00"))
    feed = LiveFeed(e)
    try:
        monkeypatch.setattr(live, "PAGES_PER_TICK_MAX", 0)  # a tick reads no page at all
        e.call(feed.tick)
        assert feed.catching_up and "catching up" in (e.call(feed.ready) or "")
        snap = e.call(feed.snapshot, CID)
        assert not snap["feed"]["ok"] and "catching up" in snap["feed"]["problems"][0]
        monkeypatch.setattr(live, "PAGES_PER_TICK_MAX", 40)
        e.call(feed.tick)
        assert e.call(feed.ready) is None and e.call(feed.snapshot, CID)["feed"]["ok"]
    finally:
        e.call(feed.aclose)
        e.close()
