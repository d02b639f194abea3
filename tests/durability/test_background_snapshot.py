"""Snapshots taken in a forked child (snapshot_fork.py) and stored in parts
(store/snapshot_parts.py): grants go on while one is written, what is stored is the
state at the seq it names (the audit replays to that seq and compares), a failed child is
a snapshot not taken, and a torn or unfinished snapshot is never read."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import lijian.snapshot_fork as snapshot_fork
import lijian.writer as writer_mod
from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.engine import Engine
from lijian.store.snapshot_parts import joined_snapshot
from lijian.store.sqlite import SqliteStore
from tests.support import catalog, order, settings

WAIT_S = 60.0


def _engine(db: Path) -> Engine:
    return Engine([settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))


def _grants(e: Engine, first: int, n: int) -> list[int]:
    outs = Blocking(e).redeem_many(
        [(order(i, person=f"p-{i}"), "unionpay", f"K{i}", f"f{i}") for i in range(first, first + n)]
    )
    return [o.status for o in outs]


def _stored_marks(db: Path) -> list[int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT seq FROM snapshots ORDER BY seq")]
    finally:
        con.close()


def _wait(cond: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_grants_are_committed_while_a_snapshot_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "l.db"
    monkeypatch.setattr(writer_mod, "SNAPSHOT_EVERY_ENTRIES", 50)
    gate, entered = threading.Event(), threading.Event()
    real = snapshot_fork.save_from_child

    def held_back(*args: Any) -> int:  # the snapshot's thread waits; the child is forked
        entered.set()
        assert gate.wait(WAIT_S)
        return real(*args)

    monkeypatch.setattr(writer_mod, "save_from_child", held_back)
    e = _engine(db)
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        assert _grants(e, 0, 60) == [201] * 60
        _wait(entered.is_set)  # a snapshot was forked after 50 entries ...
        # ... and while it is not stored, the writer goes on granting and committing.
        seq_before = e.store.last_seq
        assert _grants(e, 60, 100) == [201] * 100
        assert e.store.last_seq == seq_before + 100
        assert _stored_marks(db) == []
        gate.set()
        _wait(lambda: e.writer.stats.snapshots == 1)
        (mark,) = _stored_marks(db)
        assert 50 <= mark <= seq_before < e.store.last_seq
        # The audit replays the entries up to the snapshot's seq and finds the same state,
        # although 100 grants were applied in the parent while the child encoded it.
        rep = audit_db(db)
        assert rep.ok, rep.violations
    finally:
        gate.set()
        e.close()
    assert _stored_marks(db) == [e.store.last_seq]  # the graceful stop's snapshot


def test_a_failed_child_is_a_snapshot_not_taken_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "l.db"
    monkeypatch.setattr(writer_mod, "SNAPSHOT_EVERY_ENTRIES", 20)

    def broken(*_: Any) -> bytes:
        raise MemoryError("the child ran out of memory")

    monkeypatch.setattr(snapshot_fork, "encode_snapshot", broken)  # the child inherits it
    forks: list[int] = []
    real_fork = writer_mod.fork_encoder

    def counted(ledger: Any, seq: int) -> tuple[int, int]:
        forks.append(seq)
        return real_fork(ledger, seq)

    monkeypatch.setattr(writer_mod, "fork_encoder", counted)
    e = _engine(db)
    try:
        Blocking(e).catalog_upsert(list(catalog().rows()))
        assert _grants(e, 0, 30) == [201] * 30
        _wait(lambda: len(forks) == 1 and e.writer._snapshot_running is None)
        assert _grants(e, 30, 10) == [201] * 10  # fewer than 20 new entries: no retry yet
        time.sleep(0.3)  # idle ticks: still no retry
        assert len(forks) == 1
        assert _grants(e, 40, 20) == [201] * 20
        _wait(lambda: len(forks) == 2 and e.writer._snapshot_running is None)
        assert e.writer.stats.snapshots == 0 and e.writer.failed is None
    finally:
        e.close()
    assert _stored_marks(db) == []
    e = _engine(db)  # recovery replays every entry, as with no snapshot at all
    try:
        assert e.recovered_entries == e.store.last_seq and e.snapshot_seq == 0
        assert _grants(e, 60, 1) == [201]
    finally:
        e.close()
    assert audit_db(db).ok


def test_parts_are_read_whole_and_an_unfinished_or_torn_snapshot_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lijian.store.snapshot_parts as parts

    monkeypatch.setattr(parts, "PART_BYTES", 1_000)
    store = SqliteStore(tmp_path / "s.db")
    try:
        body = bytes(range(256)) * 39  # 9,984 bytes: 10 parts, the last one short
        store.save_snapshot(7, body)
        assert store.latest_snapshot() == (7, body)
        assert store.conn.execute("SELECT count(*) FROM snapshot_parts").fetchone() == (10,)
        store.save_snapshot_part(9, 0, b"newer, unfinished")  # a child killed mid-way
        assert store.latest_snapshot() == (7, body)
        store.save_snapshot(11, b"x" * 2_500)  # complete: the older ones are dropped
        assert store.latest_snapshot() == (11, b"x" * 2_500)
        assert store.conn.execute("SELECT seq, count(*) FROM snapshot_parts").fetchone() == (11, 3)
        store.conn.execute("DELETE FROM snapshot_parts WHERE part = 1")  # torn
        assert store.latest_snapshot() is None
    finally:
        store.close()
    assert joined_snapshot([(3, b"whole", None, None)]) == (3, b"whole")  # before parts
