"""A standby's follower of the log (cluster/follower.py), in-process against PostgreSQL.

An active engine grants; a ``LogFollower`` builds the ledger read-only from the newest
snapshot and follows the entries after it, a bounded page per poll; then the takeover's
``recover(..., warm=follower)`` replays only what it had not seen, and the ledger is the
one a full recovery builds. What it cannot follow (an entry it cannot apply, a chain
that does not link) it drops, and the takeover rebuilds in full, said in the log.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

import lijian.core.replay
from lijian.blocking import Blocking
from lijian.catalog import Catalog
from lijian.cluster.follower import LogFollower
from lijian.core.chain import ChainHead
from lijian.core.snapshot import encode_snapshot
from lijian.engine import Engine
from lijian.engine_recovery import recover
from tests.postgres.test_pg_lease_recovery import SKUS, _doc
from tests.support import CID, TIANFU_SQUARE

pytestmark = pytest.mark.slow
WAIT_S = 60.0


def _engine(url: str) -> Engine:
    from lijian.clock import parse_clock
    from lijian.core.settings import parse_settings

    clock = parse_clock("manual:2025-02-12T10:00:00+08:00")
    return Engine([parse_settings(_doc())], url, clock, background=True, ledger_key=bytes(32))


def _grant(engine: Engine, start: int, n: int) -> list[str]:
    from lijian.core.order import Address, Item, Location, Order, Person

    calls = [
        (
            Order(CID, "jd", f"F-{i}", "unionpay", Person(f"pf-{i}", True),
                  [Item(SKUS[i % len(SKUS)], 1, 12_900)],
                  Location(TIANFU_SQUARE[0], TIANFU_SQUARE[1], "gcj02"), Address("510104")),
            "unionpay", f"f-{i}", "fp",
        )
        for i in range(start, start + n)
    ]  # fmt: skip
    outs = Blocking(engine).redeem_many(calls)
    assert [o.status for o in outs] == [201] * n, outs[0].body
    return [str(o.body["id"]) for o in outs]


def _wait(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


async def _snapshot(engine: Engine) -> int:
    running = engine.writer._start_snapshot()
    assert running is not None
    return await running


def _full_recovery_image(engine: Engine) -> bytes:
    """The ledger a start rebuilds from this store now: its snapshot image."""
    rec = recover(engine.store, engine._settings, "a", Catalog())
    return encode_snapshot(rec.ledger, engine.store.last_seq)


def test_follower_keeps_up_then_the_takeover_replays_only_the_tail(pg_url):
    active = _engine(pg_url)
    try:
        Blocking(active).catalog_upsert([("jd", sku, "home_textiles") for sku in SKUS])
        Blocking(active).set_clock(advance_ms=1)
        _grant(active, 0, 300)
        active.call(_snapshot, active)
        _grant(active, 300, 200)
        follower = LogFollower(pg_url, active._settings, page_max=64, poll_s=0.05)
        follower.start()
        try:
            _wait(lambda: follower.rec is not None, "the first load")
            assert follower.rec is not None
            snap_seq = follower.rec.snapshot_seq
            assert snap_seq > 0 and follower.rec.replayed == follower.reader.read_seq - snap_seq
            _grant(active, 500, 400)  # 400 grants: several bounded pages of 64
            last = active.store.last_seq
            _wait(lambda: follower.reader.read_seq == last, "the follower to catch up")
            assert follower.followed == last - snap_seq - follower.rec.replayed
            assert follower.broken is None
        finally:
            follower.stop()
        # Committed after its last poll: the tail the takeover reads.
        _grant(active, 900, 7)
        tail_from = follower.reader.read_seq
        rec = recover(active.store, active._settings, "a", Catalog(), follower)
        assert rec.replayed == active.store.last_seq - tail_from > 0
        assert rec.snapshot_seq == snap_seq
        assert encode_snapshot(rec.ledger, active.store.last_seq) == _full_recovery_image(active)
    finally:
        active.close()


def test_an_entry_it_cannot_apply_drops_its_ledger_and_the_takeover_rebuilds(
    pg_url, monkeypatch, capsys
):
    active = _engine(pg_url)
    try:
        Blocking(active).catalog_upsert([("jd", sku, "home_textiles") for sku in SKUS])
        Blocking(active).set_clock(advance_ms=1)
        _grant(active, 0, 50)
        follower = LogFollower(pg_url, active._settings, poll_s=0.05)
        follower.start()
        _wait(lambda: follower.rec is not None, "the first load")
        # The follower's thread meets an entry it cannot decode (as a newer sequencer's
        # entry type would be): the decode of the one replay fails there only.
        real = lijian.core.replay.decode

        def decode_unknown(body: bytes):  # type: ignore[no-untyped-def]
            if threading.current_thread().name == "lijian-follower":
                raise ValueError("unknown entry tag")
            return real(body)

        monkeypatch.setattr(lijian.core.replay, "decode", decode_unknown)
        _grant(active, 50, 5)
        _wait(lambda: follower.broken is not None, "the follower to give up")
        assert follower.rec is None  # half-applied: dropped, never served
        assert "unknown entry tag" in (follower.broken or "")
        monkeypatch.setattr(lijian.core.replay, "decode", real)
        rec = recover(active.store, active._settings, "a", Catalog(), follower)
        assert rec.replayed == active.store.last_seq  # no snapshot: every entry, in full
        assert encode_snapshot(rec.ledger, active.store.last_seq) == _full_recovery_image(active)
    finally:
        active.close()
    err = capsys.readouterr()
    text = err.out + err.err
    assert "standby_follow_failed" in text and "standby_full_recovery" in text


def test_an_entry_that_does_not_link_is_not_followed(pg_url, capsys):
    active = _engine(pg_url)
    try:
        Blocking(active).catalog_upsert([("jd", sku, "home_textiles") for sku in SKUS])
        Blocking(active).set_clock(advance_ms=1)
        _grant(active, 0, 20)
        # It loads, polls once, then would wait an hour: the takeover reads the rest.
        follower = LogFollower(pg_url, active._settings, poll_s=3600.0)
        follower.start()
        _wait(lambda: follower.rec is not None, "the first load")
        seen = follower.reader.read_seq
        # A hole in what it reads: the next entry's stored chain no longer links to the
        # one before it (as if an entry between them had been stepped over).
        _grant(active, 20, 1)
        last = active.store.last_seq
        assert last > seen
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute("UPDATE entries SET chain = %s WHERE seq = %s", (bytes(32), last))
        assert follower.caught_up(active.store) is None
    finally:
        active.close()
    err = capsys.readouterr()
    assert f"entry {last} does not link" in err.out + err.err
    assert "standby_full_recovery" in err.out + err.err


def test_a_log_that_differs_from_the_stores_own_is_not_served(pg_url, capsys):
    """The store the takeover writes through (the primary) must end where the followed
    log ends, with the same chain: a follower that read a lagging replica, or entries a
    promoted replica never received, is dropped and the takeover rebuilds."""
    active = _engine(pg_url)
    try:
        Blocking(active).catalog_upsert([("jd", sku, "home_textiles") for sku in SKUS])
        Blocking(active).set_clock(advance_ms=1)
        _grant(active, 0, 10)
        follower = LogFollower(pg_url, active._settings, poll_s=3600.0)
        follower.start()
        _wait(lambda: follower.rec is not None, "the first load")
        last = active.store.last_seq
        assert follower.reader.read_seq == last
        real = active.store.chain
        # The store's chain after its last entry, as another log would have it.
        active.store.chain = ChainHead(real.seq, bytes(32))
        assert follower.caught_up(active.store) is None
        active.store.chain = real
    finally:
        active.close()
    err = capsys.readouterr()
    assert f"the followed log ends at seq {last}" in err.out + err.err
    assert "standby_full_recovery" in err.out + err.err
