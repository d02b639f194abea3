"""The manual clock is part of the ledger: a move is a ``ClockMoved`` entry, in the hash
chain, replayed by every restart (snapshot or log) and by ``lijian audit``. A clock
given at start on a ledger whose clock was moved never takes it back: an earlier one or
``system`` loses to the ledger's; a later one is a move, recorded before serving."""

import logging
import sqlite3

import pytest

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import ManualClock, SystemClock, parse_clock
from lijian.core.entries import ClockMoved
from lijian.engine import Engine
from lijian.store.sqlite import SqliteStore
from tests.support import at, settings


def moved_ledger(db, snapshot: bool) -> None:
    e = Engine([settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    assert Blocking(e).set_clock(at("2025-02-12T10:10:00")) == at("2025-02-12T10:10:00")
    assert Blocking(e).set_clock(advance_ms=0) == at("2025-02-12T10:10:00")  # no move: no entry
    e.close()  # a graceful stop writes a snapshot: the clock is in it
    if not snapshot:  # the log alone (SIGKILL: tests/http/test_replay_after_restart.py)
        with sqlite3.connect(db) as c:
            c.execute("DELETE FROM snapshots")


@pytest.mark.parametrize("snapshot", [True, False])
def test_a_moved_clock_is_restored_and_wins_over_the_one_given(tmp_path, caplog, snapshot):
    db = tmp_path / "l.db"
    moved_ledger(db, snapshot)
    store = SqliteStore(db, read_only=True)
    moves = [e for _, e in store.iter_entries() if isinstance(e, ClockMoved)]
    store.close()
    assert moves == [ClockMoved(at("2025-02-12T10:10:00"))]
    for given in (ManualClock(at("2025-02-12T09:00:00")), SystemClock()):
        with caplog.at_level(logging.WARNING, logger="lijian.clock"):
            e = Engine([settings()], db, given)
        try:
            assert isinstance(e.clock, ManualClock)
            assert e.now_ms() == e.clock.now_ms() == at("2025-02-12T10:10:00")
            assert Blocking(e).status(settings().campaign.id)["now"] == "2025-02-12T10:10:00+08:00"
        finally:
            e.close()
        assert sum("clock_from_ledger" in r.getMessage() for r in caplog.records) == 1
        caplog.clear()
    # The same clock given again: no line. The audit replays the entry in the chain.
    with caplog.at_level(logging.WARNING, logger="lijian.clock"):
        Engine([settings()], db, ManualClock(at("2025-02-12T10:10:00"))).close()
    assert not caplog.records
    rep = audit_db(db)
    assert rep.ok, rep.violations


def test_a_later_clock_at_start_is_a_recorded_move(tmp_path):
    db = tmp_path / "l.db"
    moved_ledger(db, snapshot=True)
    Engine([settings()], db, ManualClock(at("2025-02-12T11:00:00"))).close()
    e = Engine([settings()], db, ManualClock(at("2025-02-12T09:00:00")))
    try:
        assert e.now_ms() == at("2025-02-12T11:00:00")
    finally:
        e.close()
    store = SqliteStore(db, read_only=True)
    moves = [e.ts_ms for _, e in store.iter_entries() if isinstance(e, ClockMoved)]
    store.close()
    assert moves == [at("2025-02-12T10:10:00"), at("2025-02-12T11:00:00")]
