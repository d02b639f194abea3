"""The dashboard's snapshot shows the admission window and its draw: the commitment and
the number of waiting requests during the window, then the seed and granted/arrivals."""

from __future__ import annotations

import hashlib

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.dashboard.live import LiveFeed
from lijian.engine import Engine
from tests.support import CID, at, catalog, order, settings


def test_the_snapshot_shows_the_commitment_then_the_seed(tmp_path):
    s = settings(release={"admission_window_s": 2})
    e = Engine([s], tmp_path / "l.db", parse_clock("manual:2025-02-12T09:59:00+08:00"))
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        feed = LiveFeed(e)
        e.call(feed.tick)
        before = e.call(feed.snapshot, CID)
        assert before["draw"]["seed"] is None and before["draw"]["window_s"] == 2
        assert before["window_waiting"] == 0
        Blocking(e).set_clock(at("2025-02-12 10:00"))
        waiting = e.call(lambda: e.redeem_submit(order(1), "unionpay", "k-1", "fp-1"))
        e.call(feed.tick)
        assert e.call(feed.snapshot, CID)["window_waiting"] == 1
        Blocking(e).set_clock(at("2025-02-12 10:00") + 2_000)

        async def answer():
            return await waiting

        assert e.call(answer).status == 201
        e.call(feed.tick)
        after = e.call(feed.snapshot, CID)["draw"]
        assert hashlib.sha256(after["seed"].encode()).hexdigest() == before["draw"]["commitment"]
        assert (after["arrivals"], after["granted"]) == (1, 1)
        e.call(feed.aclose)
    finally:
        e.close()
