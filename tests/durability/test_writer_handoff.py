"""The writer's hand-off to its committer thread (writer.py): up to two batches handed
over at a time, committed in the order they were decided, every caller answered only
after the commit that carries its grant returned; and when a commit fails, the batch
behind it is not written and only what was committed was acknowledged."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.entries import HoldPlaced
from lijian.core.errors import EngineStopped
from lijian.engine import Engine
from lijian.store.sqlite import SqliteStore
from lijian.writer import MAX_BATCHES_IN_FLIGHT
from tests.durability.test_crash import replay
from tests.support import catalog, order, settings

CLOCK = "manual:2025-02-12T10:00:00+08:00"
GRANTS = 120
ARRIVAL_S = 0.002  # one new grant every 2 ms: some arrive while a batch commits
SLOW_COMMIT_S = 0.02  # a slow disk: the next batch is decided during this commit


class SlowDisk:
    """The engine's real SQLite store, each commit delayed (and commit number ``fail_at``
    failed) on the committer thread; records what each commit wrote."""

    def __init__(self, engine: Engine, fail_at: int = 0) -> None:
        store = engine.store
        assert isinstance(store, SqliteStore)
        self.real = store.commit_batch
        self.writer = engine.writer
        self.fail_at = fail_at
        self.commits = 0
        self.durable: set[str] = set()  # redemption ids whose commit returned
        self.first_seqs: list[int] = []  # the first seq of each commit with entries
        self.in_flight_seen: list[int] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        store.commit_batch = self.commit_batch  # type: ignore[method-assign]

    def commit_batch(self, entries: list[Any], *args: Any, **kw: Any) -> int:
        self.threads.add(threading.current_thread().name)
        time.sleep(SLOW_COMMIT_S)
        # The loop decided the next batch meanwhile: read how many are handed over.
        self.in_flight_seen.append(len(self.writer._in_flight))
        with self.lock:
            self.commits += 1
            if self.commits == self.fail_at:
                raise OSError("disk failed")
        seq0 = self.real.__self__.last_seq  # type: ignore[attr-defined]
        last = self.real(entries, *args, **kw)
        if entries:
            self.first_seqs.append(seq0 + 1)
        self.durable.update(e.redemption_id for e in entries if isinstance(e, HoldPlaced))
        return last


def _warm(e: Engine) -> str:
    """Load the catalogue and make one grant: the first evaluation loads the geofence,
    which would otherwise hold the loop while the timed arrivals pile up."""
    Blocking(e).catalog_upsert(list(catalog().rows()))
    first = order("warm", person="p-warm", price_fen=1_000, quantity=1, platform_discount_fen=0)
    out = Blocking(e).redeem(first, "unionpay", "k-warm", "fp-warm")
    assert out.status == 201
    rid: str = out.body["id"]
    return rid


def _grant_over_time(e: Engine, disk: SlowDisk) -> list[tuple[str, Any]]:
    """GRANTS redemptions, one every ARRIVAL_S; each caller checks, when answered, that
    its grant's commit had returned."""

    async def one(i: int) -> tuple[str, Any]:
        await asyncio.sleep(i * ARRIVAL_S)
        o = order(i, person=f"p-{i}", price_fen=1_000, quantity=1, platform_discount_fen=0)
        try:
            out = await e.redeem(o, "unionpay", f"k-{i}", f"fp-{i}")
        except EngineStopped as exc:
            return "stopped", exc
        if out.status == 201:
            assert out.body["id"] in disk.durable, "answered before its commit returned"
        return "answered", out

    async def run() -> list[tuple[str, Any]]:
        return await asyncio.gather(*(one(i) for i in range(GRANTS)))

    out: list[tuple[str, Any]] = e.call(run)
    return out


def test_batches_overlap_commit_in_order_and_answer_after_their_commit(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    e = Engine([settings(campaign={"budget_fen": 10**12})], db, parse_clock(CLOCK))
    try:
        _warm(e)
        disk = SlowDisk(e)
        results = _grant_over_time(e, disk)
        granted = [out.body["id"] for kind, out in results if kind == "answered"]
        assert all(kind == "answered" and out.status == 201 for kind, out in results)
        assert len(granted) == GRANTS and set(granted) <= disk.durable
        # One committer thread, batches handed over two at a time, never more.
        assert disk.threads == {"lijian-commit_0"}
        assert max(disk.in_flight_seen) == MAX_BATCHES_IN_FLIGHT == 2
        assert disk.first_seqs == sorted(disk.first_seqs)
        assert len(disk.first_seqs) < GRANTS  # grouped: fewer commits than grants
    finally:
        e.close()
    assert set(granted) <= set(replay(db).redemptions)
    assert audit_db(db).ok


def test_a_failed_commit_stops_the_writer_and_nothing_behind_it_is_written(
    tmp_path: Path,
) -> None:
    db = tmp_path / "l.db"
    e = Engine([settings(campaign={"budget_fen": 10**12})], db, parse_clock(CLOCK))
    try:
        warm = _warm(e)
        disk = SlowDisk(e, fail_at=3)
        results = _grant_over_time(e, disk)
        acked = {out.body["id"] for kind, out in results if kind == "answered"}
        stopped = [out for kind, out in results if kind == "stopped"]
        assert acked and stopped and len(acked) + len(stopped) == GRANTS
        assert acked == disk.durable  # every acknowledged grant committed, and only those
        assert e.writer.failed is not None
        # The batch handed over behind the failed one never reached the store (it would
        # have been written: only the third commit fails).
        assert disk.commits == 3
    finally:
        e.close()
    # The failed batch rolled back, the one behind it was never written: after a restart
    # the ledger holds exactly the acknowledged grants.
    assert set(replay(db).redemptions) == acked | {warm}


def test_a_repeat_decided_on_an_uncommitted_grant_waits_for_that_commit(tmp_path: Path) -> None:
    """A repeat of a grant (same key, same body) writes nothing of its own, but its answer
    is read from the grant still committing: it must leave with that commit, or with the
    engine's stop when that commit fails, never before (a 201 for a grant never stored)."""
    db = tmp_path / "l.db"
    e = Engine([settings(campaign={"budget_fen": 10**12})], db, parse_clock(CLOCK))
    try:
        warm = _warm(e)
        disk = SlowDisk(e, fail_at=1)
        o = order("again", person="p-again", price_fen=1_000, quantity=1, platform_discount_fen=0)

        async def first_then_repeat() -> list[object]:
            first = asyncio.ensure_future(e.redeem(o, "unionpay", "k-again", "fp-again"))
            await asyncio.sleep(SLOW_COMMIT_S / 4)  # the first batch is committing now
            assert len(e.writer._in_flight) == 1
            repeat = asyncio.ensure_future(e.redeem(o, "unionpay", "k-again", "fp-again"))
            return list(await asyncio.gather(first, repeat, return_exceptions=True))

        answers: list[object] = e.call(first_then_repeat)
        assert [type(a) for a in answers] == [EngineStopped, EngineStopped]
        assert disk.commits == 1 and not disk.durable
    finally:
        e.close()
    assert set(replay(db).redemptions) == {warm}
