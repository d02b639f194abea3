"""The single writer with group commit (docs/ARCHITECTURE.md).

The writer is an asyncio task on the engine's event loop, and the ledger lives on that
loop too: every mutation *and every read* happens on one thread, so there is no lock and
no torn read. Callers put commands on a bounded queue; the task takes everything queued
(up to ``max_batch``), applies the commands to the in-memory ledger *in arrival order*
(that order is first come, first served), hands the batch's entries to one committer
thread that writes them in one transaction with one fsync, and only after that commit
answers every caller of the batch. While the committer waits on the disk, the loop keeps
parsing and evaluating new requests, which form the next batch. Throughput is batch size
÷ commit time, so it grows with load instead of collapsing under it.

The hand-off is one message each way per batch: the loop gives the committer thread a
whole batch, ready to write, and the thread wakes the loop once when that batch is
committed (one ``call_soon_threadsafe``, whose callback answers the batch's callers
directly). Up to ``MAX_BATCHES_IN_FLIGHT`` batches are handed over at a time, so when
one commit ends the next is already waiting in the thread: the disk never waits for
the loop to notice a commit, and a busy loop delays only the answers, not the next
fsync. Commits still reach the disk one after the other, in batch order; a batch's
callers are answered only after its own commit returned.

(A first version ran the whole writer in a thread. Measured: the event loop and the
writer then fight over the GIL, each switch waiting out the interpreter's switch interval,
and a grant took ~10 ms to be acknowledged. Keeping the CPU work on the loop and only
the fsync in a thread removed that.)

Failure model: fail-stop. If a commit fails or an invariant assertion fires, the
in-memory state may be ahead of the disk; the writer answers every waiting caller with
``EngineStopped`` and stops. Nothing unacknowledged was promised, and a restart rebuilds
the state from what was committed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

from lijian.clock import Clock
from lijian.core.entries import AnyEntry
from lijian.core.errors import EngineOverloaded, EngineStopped, LijianError
from lijian.core.invariants import touched_balances
from lijian.core.ledger import WRITER_TAG_ALPHABET, WRITER_TAG_LEN, WRITER_TAG_NONE, Ledger
from lijian.durable_nonces import NonceLog
from lijian.events.model import NewEvent
from lijian.events.outbox import Outbox
from lijian.snapshot_fork import fork_encoder, save_from_child
from lijian.store import Store

if TYPE_CHECKING:  # psycopg is imported only where PostgreSQL is served
    from lijian.store.pg_durability import DurabilityHealth, DurabilityWatch

log = logging.getLogger("lijian.writer")

MAX_QUEUE_DEFAULT = 100_000  # beyond this, shed load (503) instead of growing latency
MAX_BATCH_DEFAULT = 8_192  # one transaction; bounds commit time and memory
# Batches handed to the committer thread and not yet answered: one committing, one
# waiting behind it. Measured (bench/tail_bench.py, grants at 64 connections, load ~10):
# with one at a time, a batch waited ~4 ms for the thread to wake and ~10 ms (p99 80 ms)
# for the loop to resume after its commit, against ~8 ms of commit work.
MAX_BATCHES_IN_FLIGHT = 2
TICK_S_DEFAULT = 0.05  # when idle, timed events (expiries, releases) are applied this often
# The committer thread needs the GIL back after each SQLite call while the loop thread is
# busy evaluating requests; with CPython's default 5 ms switch interval each hand-over can
# stall a whole batch. Measured with bench/engine_bench.py (64 producers): 5 ms → 4.5k
# grants/s, 0.5 ms → 10.7k, 0.1 ms → 13.9k.
GIL_SWITCH_INTERVAL_S = 0.0001
# Snapshot when this many entries accumulated (between two batches, taken in the background:
# snapshot_fork.py), and always at a graceful stop: a restart then decodes one snapshot and
# replays only the tail.
SNAPSHOT_EVERY_ENTRIES = 200_000
# How long a stored nonce is kept: the memory's lifetime (http/auth.py: NONCE_TTL_S),
# which covers the ±300 s timestamp window.
NONCE_TTL_MS = 600_000


def draw_writer_tag() -> str:
    """A writer's tag, from the operating system's randomness (not from the ledger: a
    ledger that lost its tail is exactly a ledger seen before)."""
    for _ in range(8):  # bound: a draw equal to the no-writer tag is drawn again
        tag = "".join(secrets.choice(WRITER_TAG_ALPHABET) for _ in range(WRITER_TAG_LEN))
        if tag != WRITER_TAG_NONE:
            return tag
    raise AssertionError("the system's randomness gave the no-writer tag eight times")


@dataclass(slots=True)
class BatchContext:
    """What a command sees: the ledger, the batch's time, and extra rows to persist."""

    ledger: Ledger
    now_ms: int
    catalog_rows: list[tuple[str, str, str]] = field(default_factory=list)
    reference_prices: list[tuple[str, str, int]] = field(default_factory=list)


T = TypeVar("T")
# A command returns what its caller awaits (an Outcome, a count, ...); the queue holds
# commands of every kind, so inside the writer their results are plain objects.
Command = Callable[[BatchContext], T]
# One queued command's result or error, for the future its caller awaits.
Settled = tuple[asyncio.Future[object], object, BaseException | None]


@dataclass(slots=True)
class _InFlight:
    """A batch handed to the committer: what its commit answers once it returns."""

    results: list[Settled]  # each command's future with its result or error
    entries: int
    ledger_batch: bool  # entries, catalogue rows or prices: a batch of the ledger's
    nonces_upto: int  # the nonce mark this commit makes durable
    events: int  # outbox events written by this commit
    t0: float  # when it was handed over (perf_counter)
    done: asyncio.Future[None]  # resolved on the loop when answered (or failed)
    entries_kept: list[AnyEntry] | None = None  # for ``on_committed``, when set


@dataclass(slots=True)
class WriterStats:
    batches: int = 0
    commands: int = 0
    entries: int = 0
    last_batch_size: int = 0
    max_batch_size: int = 0
    commit_s_total: float = 0.0
    batch_sizes: collections.deque[int] = field(
        default_factory=lambda: collections.deque(maxlen=4096)
    )
    snapshots: int = 0
    last_snapshot_fork_ms: float = 0.0


class GroupCommitWriter:
    def __init__(
        self,
        ledger: Ledger,
        store: Store,
        clock: Clock,
        max_queue: int = MAX_QUEUE_DEFAULT,
        max_batch: int = MAX_BATCH_DEFAULT,
        tick_s: float = TICK_S_DEFAULT,
    ) -> None:
        assert max_queue > 0 and max_batch > 0
        # Every start of the one writer gets its own tag in the ids it decides (Ledger.
        # _new_id): what a lost tail had given is never given again.
        ledger.writer_tag = draw_writer_tag()
        self.ledger = ledger
        self.store = store
        self.clock = clock
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.tick_s = tick_s
        self.stats = WriterStats()
        self.failed: BaseException | None = None
        self.on_batch: Callable[[int, float], None] | None = None
        # A sharded sequencer's order registry (cluster/shard_guard.py): each committed
        # batch's entries, on the loop, once its commit returned.
        self.on_committed: Callable[[list[AnyEntry]], None] | None = None
        # Operator events (lijian.events): written in the commit of what caused them.
        self.outbox: Outbox | None = None
        # Accepted requests' nonces, written in each commit (durable_nonces.py).
        self.nonces = NonceLog(NONCE_TTL_MS)
        self.nonces.wake = self._wake_soon
        self.snapshot_seq = 0
        # What a commit survives on PostgreSQL (store/pg_durability.py), when watched; with
        # ``require_sync_standby`` no command is taken while no synchronous standby is
        # attached (503 no_sync_standby): nothing acknowledged that a failover could lose.
        self.durability: DurabilityWatch | None = None
        self.require_sync_standby = False
        self._queue: collections.deque[tuple[Command[object], asyncio.Future[object]]] = (
            collections.deque()
        )
        # Handed to the committer, oldest first (at most MAX_BATCHES_IN_FLIGHT).
        self._in_flight: collections.deque[_InFlight] = collections.deque()
        # Set by the committer thread when a commit failed: the batches behind it are
        # not written (their callers get EngineStopped), nothing after a gap reaches disk.
        self._commit_failed: BaseException | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # One committer thread: commits must reach the disk in batch order.
        self._committer = concurrent.futures.ThreadPoolExecutor(1, "lijian-commit")
        # One snapshot at a time, read from its child on a thread of its own.
        self._snapshotter = concurrent.futures.ThreadPoolExecutor(1, "lijian-snapshot")
        self._snapshot_running: asyncio.Future[int] | None = None
        self._snapshot_tried_seq = 0

    def start(self) -> None:
        """Start the writer task on the running loop."""
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lijian-writer")

    async def stop(self) -> None:
        """Drain the queue, commit, and stop (graceful shutdown)."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        self._snapshotter.shutdown(wait=True)
        self._committer.shutdown(wait=True)
        if self.nonces.failed is None:  # nothing noted from now on will be committed
            self.nonces.fail(EngineStopped("the engine stopped"))

    def _wake_soon(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def durability_health(self) -> dict[str, DurabilityHealth]:
        """For /readyz and /metrics: what is in force, and whether commands are refused."""
        if self.durability is None:
            return {}
        refusing = self.require_sync_standby and self.durability.refusal() is not None
        report = self.durability.report()
        return {"durability": {**report, "required": self.require_sync_standby,
                               "refusing": refusing}}  # fmt: skip

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def submit(self, cmd: Command[T]) -> asyncio.Future[T]:
        """Queue a command (on the engine's loop); the future resolves after its commit."""
        if self.failed is not None or self._stopping or self._wake is None:
            raise EngineStopped("the engine is not running")
        if len(self._queue) >= self.max_queue:
            raise EngineOverloaded("command queue full")
        if self.require_sync_standby:
            assert self.durability is not None, "the requirement needs the watch"
            refused = self.durability.refusal()
            if refused is not None:
                raise refused
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.append((cmd, fut))
        self._wake.set()
        # The future is resolved only with what ``cmd`` returned (``_batch``).
        return cast("asyncio.Future[T]", fut)

    # ------------------------------------------------------------------- task
    async def _run(self) -> None:
        assert self._wake is not None
        try:
            while True:
                if self._commit_failed is not None:
                    raise self._commit_failed
                if self._snapshot_due():  # between batches: forked, then saved aside
                    await self._drain()  # the ledger must be exactly what is committed
                    self._start_snapshot()
                if len(self._in_flight) < MAX_BATCHES_IN_FLIGHT:
                    if self._queue:
                        self._send_batch()
                        continue
                    if self.nonces.pending:  # answers wait for these (durable_nonces.py)
                        self._send_tick()
                        continue
                    if self._stopping and not self._in_flight:
                        self._send_tick()
                        await self._drain()
                        await self.snapshot()
                        return
                if len(self._in_flight) >= MAX_BATCHES_IN_FLIGHT:  # until the oldest returns
                    await asyncio.shield(self._in_flight[0].done)
                    continue
                self._wake.clear()
                if self._in_flight:  # a command, a nonce, or a commit's return
                    await self._wake.wait()
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), self.tick_s)
                except TimeoutError:
                    self._send_tick()
        except BaseException as exc:  # fail-stop: see module docstring
            self.failed = exc
            self.nonces.fail(exc)
            if self._commit_failed is None:  # what the thread still holds is not written
                self._commit_failed = EngineStopped(f"engine failed: {exc!r}")
            pending = list(self._queue)
            self._queue.clear()
            _settle([(f, None, EngineStopped(f"engine failed: {exc!r}")) for _, f in pending])
            if not isinstance(exc, Exception):
                raise
            # A batch already committing may still commit: its callers hear the truth.
            await self._drain()

    async def _drain(self) -> None:
        """Wait until every batch handed to the committer is answered."""
        while self._in_flight:
            await asyncio.shield(self._in_flight[-1].done)

    def _snapshot_due(self) -> bool:
        # After a failed attempt, the next waits for as many new entries as a success
        # would: a full disk or a failing fork is retried, never in a storm.
        since = max(self.snapshot_seq, self._snapshot_tried_seq)
        return (
            self._snapshot_running is None and self.store.last_seq - since >= SNAPSHOT_EVERY_ENTRIES
        )

    def _start_snapshot(self) -> asyncio.Future[int] | None:
        """Fork the snapshot's encoder now, between batches (the ledger is exactly what is
        committed up to ``last_seq``), and save what it sends in the background."""
        assert self._snapshot_running is None, "one snapshot at a time"
        assert not self.ledger._pending, "a snapshot only between batches"
        seq = self.store.last_seq
        if seq == self.snapshot_seq:
            return None
        self._snapshot_tried_seq = seq
        t0 = time.perf_counter()
        try:
            pid, read_fd = fork_encoder(self.ledger, seq)
        except OSError as exc:  # no memory or no process for the child: no snapshot now
            log.warning("snapshot_failed seq=%d error=%r", seq, exc)
            return None
        fork_ms = (time.perf_counter() - t0) * 1e3
        committer = self._committer

        def save_part(n: int, body: bytes) -> None:
            committer.submit(self.store.save_snapshot_part, seq, n, body).result()

        def finish(parts: int) -> None:
            committer.submit(self.store.finish_snapshot, seq, parts).result()

        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(
            self._snapshotter, save_from_child, pid, read_fd, save_part, finish
        )
        self._snapshot_running = running

        def done(f: asyncio.Future[int]) -> None:
            self._snapshot_running = None
            if f.cancelled() or f.exception() is not None:
                log.warning("snapshot_failed seq=%d error=%r", seq, f.exception())
                return
            self.snapshot_seq = max(self.snapshot_seq, seq)
            self.stats.snapshots += 1
            self.stats.last_snapshot_fork_ms = fork_ms
            log.info("snapshot seq=%d size_bytes=%d fork_ms=%.1f took_ms=%.0f", seq, f.result(),
                     fork_ms, (time.perf_counter() - t0) * 1e3)  # fmt: skip

        running.add_done_callback(done)
        return running

    async def snapshot(self) -> None:
        """Take a snapshot now and wait until it is stored (after one already running)."""
        for _ in range(8):  # bound: the task may start one while this waits
            if self._snapshot_running is not None:
                with contextlib.suppress(Exception):  # logged by its callback
                    await self._snapshot_running
            # No await between the drain's end and the fork: nothing is sent meanwhile.
            await self._drain()
            if self._snapshot_running is None:
                break
        else:
            return
        running = self._start_snapshot()
        if running is not None:
            with contextlib.suppress(Exception):
                await running

    def _send_tick(self) -> None:
        """Timed events (expiries, releases), spike events, receivers' cursors and waiting
        nonces: a batch without commands."""
        self.ledger.advance(self.clock.now_ms())
        self._send(self.ledger.take_pending(), BatchContext(self.ledger, self.ledger.now_ms), [])

    def _send_batch(self) -> None:
        n = min(len(self._queue), self.max_batch)
        batch = [self._queue.popleft() for _ in range(n)]
        results: list[Settled] = []
        ctx = BatchContext(self.ledger, self.clock.now_ms())
        try:
            self.ledger.advance(ctx.now_ms)
            for cmd, fut in batch:
                try:
                    results.append((fut, cmd(ctx), None))
                except LijianError as exc:
                    results.append((fut, None, exc))
            self._send(self.ledger.take_pending(), ctx, results)
        except BaseException as exc:
            _settle([(f, None, EngineStopped(f"engine failed: {exc!r}")) for _, f in batch])
            raise
        self.stats.commands += n

    def _send(self, entries: list[AnyEntry], ctx: BatchContext, results: list[Settled]) -> None:
        """Hand one batch to the committer; its callers are answered by ``_committed``,
        on the loop, once its commit returned."""
        assert len(self._in_flight) < MAX_BATCHES_IN_FLIGHT, "bounded hand-off"
        events: list[NewEvent] = []
        cursors: list[tuple[str, int]] = []
        if self.outbox is not None:
            events, cursors = self.outbox.for_commit(self.ledger, entries, self.ledger.now_ms)
        nonces, upto, nonces_before_ms = self.nonces.take()
        catalog_rows, prices = ctx.catalog_rows, ctx.reference_prices
        if not (entries or catalog_rows or prices or events or cursors or nonces):
            if self._in_flight:
                # Nothing of its own to write, but these answers were decided on what the
                # batches still committing wrote (an idempotent repeat of a hold, say):
                # they leave with the last of them, or not at all if its commit fails.
                self._in_flight[-1].results.extend(results)
            else:
                _settle(results)  # nothing to write, nothing uncommitted to wait for
            return
        # The rows are read from the ledger now, before the next batch changes it.
        flat, persons = touched_balances(self.ledger, entries)
        loop = asyncio.get_running_loop()
        item = _InFlight(
            results, len(entries), bool(entries or catalog_rows or prices), upto, len(events),
            time.perf_counter(), loop.create_future(),
        )  # fmt: skip
        if self.on_committed is not None and entries:
            item.entries_kept = entries
        self._in_flight.append(item)
        store = self.store

        def commit() -> None:  # on the committer thread, batches in the order sent
            if self._commit_failed is not None:
                raise EngineStopped(f"engine failed: {self._commit_failed!r}")
            try:
                store.commit_batch(
                    entries, flat, persons, catalog_rows, events, cursors, nonces,
                    nonces_before_ms, prices,
                )  # fmt: skip
            except BaseException as exc:
                self._commit_failed = exc
                raise

        def wake(f: concurrent.futures.Future[None]) -> None:  # the loop, once a batch
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._committed, item, f.exception())

        self._committer.submit(commit).add_done_callback(wake)

    def _committed(self, item: _InFlight, error: BaseException | None) -> None:
        """On the loop: the oldest batch's commit returned (or failed)."""
        assert self._in_flight and self._in_flight[0] is item, "commits return in order"
        self._in_flight.popleft()
        if error is not None:
            if self._commit_failed is None:
                self._commit_failed = error
            stopped = EngineStopped(f"engine failed: {error!r}")
            _settle([(f, None, stopped) for f, _, _ in item.results])
        else:
            self.nonces.committed(item.nonces_upto)
            if self.outbox is not None:
                self.outbox.committed(item.events)
            _settle(item.results)
            if item.ledger_batch:
                self._count(item.entries, time.perf_counter() - item.t0)
            if item.entries_kept is not None and self.on_committed is not None:
                self.on_committed(item.entries_kept)
        item.done.set_result(None)
        if self._wake is not None:
            self._wake.set()

    def _count(self, entries: int, dt_s: float) -> None:
        st = self.stats
        st.batches += 1
        st.entries += entries
        st.last_batch_size = entries
        st.max_batch_size = max(st.max_batch_size, entries)
        st.commit_s_total += dt_s
        st.batch_sizes.append(entries)
        if self.on_batch is not None:
            self.on_batch(entries, dt_s)


def _settle(items: list[Settled]) -> None:
    for fut, result, error in items:
        if fut.done():  # the caller went away (cancelled): the grant still stands
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
