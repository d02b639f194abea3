"""One engine process ("node") of several sharing one PostgreSQL database.

Model
-----
Every node runs the unchanged core (`Ledger.hold`, `capture`, `void`, timed expiries) on
its own in-memory ledger, its **node view**, and writes the entries it decides into the
one global ``entries`` log. What the node view cannot know by itself comes from the
database *inside the batch's transaction, before deciding*:

1. **Tranche money** is the node's escrow lease (:mod:`lijian.core.escrow`). Before a
   batch, the node tops its lease up in a small separate transaction if the batch's
   demand exceeds it (``take_slice``), then sets its view's ``available_fen`` of the open
   tranche to the lease's unspent. The core's own sold-out check and its apply assertion
   ("a hold fits the tranche") therefore check the lease: a node never grants what it
   did not take. Once the pool is seen short, sold-out is answered from memory.
2. **Persons**: every person the batch touches is inserted-or-locked in key order
   (``INSERT … ON CONFLICT DO UPDATE … RETURNING``, i.e. ``SELECT … FOR UPDATE`` that
   also creates), and the view's figures are replaced by the row's before deciding; the
   new figures are written back in the same transaction. Caps hold across nodes.
3. **Orders, idempotency keys, redemptions**: transaction-level advisory locks on their
   keys serialise nodes on the same order/key/redemption; the rows found are imported
   into the view (a retry of another node's grant replays it; a second redemption of
   an order is a 409; a capture or void of another node's hold goes through its row).
   Unique indexes on the rows are the backstop.

Timed expiries go through the same path (their rows are locked and refreshed first), and
any node sweeps the database for due holds of other nodes, so a dead node's holds still
expire. The opening of a day's pool and its close are written once, by whichever node
flips the pool row (``TrancheOpened``/``TrancheClosed`` of the global log); the view's
own open/close/sold-out entries stay in memory. A batch that fails after its decisions
(fenced lease, database error) stops the node (fail-stop, as with SQLite): its memory
may be ahead of the database; a restart rebuilds the view by replaying the global log
and adopts the node's live leases under a new incarnation.

What differs from the single-node path is only this module: the writer's batch gains a
lock-and-refresh phase before the unchanged decisions and an escrow-aware write phase.
Refunds import the redemption's refund history from its rows first; quota restores
are rows applied once by whichever node runs when they are due; a short node drains the
other nodes' slices before it declines sold-out; a manual clock is one shared row.
Still per node: status figures (``status()`` shows the node's view; the audit of the
global log is the truth). See docs/SCALE-OUT.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg

from lijian.clock import ManualClock
from lijian.core import views
from lijian.core.entries import (
    AnyEntry,
    HoldCaptured,
    HoldPlaced,
    HoldReleased,
    QuotaRestored,
    RefundRecorded,
    SoldOut,
    TrancheClosed,
    decode,
    encode,
)
from lijian.core.errors import Conflict, InvalidRequest, LijianError, NotFound
from lijian.core.escrow import EscrowPolicy, Fenced, NodeEscrow
from lijian.core.invariants import check_invariants
from lijian.core.ledger import CLOSED, OPEN, Book, Ledger, PendingRestore, Person, Redemption
from lijian.core.order import Order, RefundRequest
from lijian.core.rules import Evaluation
from lijian.core.settings import Settings
from lijian.engine import Engine, Outcome
from lijian.escrow import pg
from lijian.store import is_postgres_url
from lijian.store.postgres import PostgresStore
from lijian.writer import BatchContext, GroupCommitWriter, _settle

INFLOW = "+"  # in a batch's pool moves: new money into that day's pool (a clawback)
HOUSEKEEPING_S = 1.0  # renew leases, reclaim dead ones, sweep due holds, close days
MAX_CATALOG_PAGES = 20  # catalogue pages (of READ_PAGE_ROWS) followed per housekeeping
PUBLIC_STATUS_TTL_S = 0.25  # the public status reads its rows at most this often
MAX_SWEEP_ROWS = 2_000  # foreign due holds imported per sweep
MAX_LOCK_RETRIES = 5  # a pre-phase aborted by a deadlock is retried this often
TAKE_WAIT_S = 0.02  # a take waiting for a drain or for the day before looks again after
MAX_TAKE_WAITS = 50  # ... at most this often per batch (1 s; see EscrowWriter._top_up)


# The entries a node writes to the global log; its view's own open/close/sold-out stay
# in memory (the global ones are written by the pool transactions).
GLOBAL_ENTRIES = (HoldPlaced, HoldCaptured, HoldReleased, RefundRecorded, QuotaRestored)


def holds_of(entries: list[AnyEntry]) -> list[HoldPlaced | HoldCaptured | HoldReleased]:
    return [e for e in entries if isinstance(e, (HoldPlaced, HoldCaptured, HoldReleased))]


def tkey(cid: str, day: str) -> str:
    """The escrow key of a tranche (NodeEscrow is keyed by one string)."""
    return f"{cid}\x1f{day}"


@dataclass(slots=True)
class Touch:
    """What one command will read or change, declared before the batch decides."""

    holds: list[tuple[str, str, int]] = field(default_factory=list)  # (cid, person, disc)
    orders: list[tuple[str, str]] = field(default_factory=list)  # (platform, order id)
    keys: list[tuple[str, str]] = field(default_factory=list)  # (client id, idem key)
    redemptions: list[str] = field(default_factory=list)
    restores: list[tuple[str, str, str, str]] = field(default_factory=list)  # see _due_restores


class TouchingCommand:
    """A writer command that says what it touches (the node locks that first)."""

    def __init__(self, run: Callable[[BatchContext], Any], touch: Touch) -> None:
        self.run = run
        self.touch = touch

    def __call__(self, ctx: BatchContext) -> Any:
        return self.run(ctx)


@dataclass(slots=True)
class Prepared:
    """The batch transaction after its lock-and-read phase."""

    conn: psycopg.Connection[Any]
    rows: list[tuple[Any, ...]]  # redemption rows (id, status, captured, ended, body)
    persons: list[tuple[str, str, int, int, int, Any]]
    refunds: list[tuple[str, int, bytes]] = field(default_factory=list)  # (id, n, body)
    restores_done: list[tuple[str, str, str, str]] = field(default_factory=list)


class EscrowEngine(Engine):
    """An :class:`Engine` that is one of ``nodes`` processes sharing a PostgreSQL database."""

    def __init__(
        self,
        settings: Iterable[Settings],
        db_url: str,
        clock: Any = None,
        *,
        node_id: str,
        nodes: int,
        policy: EscrowPolicy | None = None,
        background: bool = True,
        **kw: Any,
    ) -> None:
        if not is_postgres_url(db_url):
            raise InvalidRequest("several nodes need a postgresql:// database")
        if not node_id or "\x1f" in node_id or nodes < 1:
            raise InvalidRequest("node_id must be a plain non-empty string and nodes >= 1")
        self.db_url = db_url
        self.node_name = node_id
        self.nodes = nodes
        self.policy = policy or EscrowPolicy()
        self.holder = f"{node_id}:{uuid.uuid4().hex[:12]}"  # this incarnation (fencing)
        super().__init__(settings, db_url, clock, node_id=node_id, background=False, **kw)
        self.esc = NodeEscrow(node_id, self.policy)
        self._public_cache: dict[str, tuple[float, Book]] = {}
        assert isinstance(self.store, PostgresStore)
        self.pg: PostgresStore = self.store
        with self.pg.pool.connection() as conn, conn.transaction():
            for lid, cid, day, unspent in pg.adopt_leases(conn, node_id, self.holder):
                self.esc.adopted(tkey(cid, day), lid, unspent)
        # A manual clock is shared by the nodes through one row: the first node to start
        # sets it, later ones (and restarts) follow it; every batch reads it first.
        self.shared_clock = isinstance(self.clock, ManualClock) and nodes > 1
        if self.shared_clock:
            with self.pg.pool.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO shared_clock (id, now_ms) VALUES (1, %s) ON CONFLICT DO NOTHING",
                    (self.clock.now_ms(),),
                )
            self.follow_shared_clock()
        old = self.writer
        self.writer = EscrowWriter(self, max_queue=old.max_queue, max_batch=old.max_batch)
        if background:
            self._start_background()

    async def aclose(self) -> None:
        """Graceful stop: drain and commit, then give every lease back to its pool."""
        await self.writer.stop()
        with self.pg.pool.connection() as conn:
            for k in list(self.esc.leases):
                lid = self.esc.lease_id(k)
                assert lid is not None
                pg.give_back_unless_fenced(conn, self.holder, lid)
                self.esc.end(k)
        self.store.close()

    # ------------------------------------------------------------- recovery
    def _recover(self) -> int:
        """The node view starts as the global state: replay the whole global log (a node's
        snapshot would hold only its own view, so none is read or written)."""
        self.snapshot_seq = 0
        n = 0
        apply = self.ledger.apply
        assert isinstance(self.store, PostgresStore)
        with self.store.consistent_reads():  # other nodes write meanwhile: one snapshot
            for body in self.store.iter_bodies():
                apply(decode(body))
                n += 1
        problems = check_invariants(self.ledger)
        if problems:
            raise AssertionError("global log invariants fail at start: " + "; ".join(problems))
        # Rows written from here on (by any node's upload) are polled by housekeeping.
        assert isinstance(self.store, PostgresStore)
        self.catalog_txid = self.store.catalog_horizon()
        self.catalog_after: tuple[str, str] = ("", "")
        self.catalog.upsert(self.store.catalog_rows())
        return n

    def follow_shared_clock(self) -> None:
        """Bring the local manual clock up to the shared row (it only moves forward)."""
        if not self.shared_clock:
            return
        with self.pg.pool.connection() as conn:
            row = conn.execute("SELECT now_ms FROM shared_clock WHERE id = 1").fetchone()
        assert row is not None and isinstance(self.clock, ManualClock)
        if int(row[0]) > self.clock.now_ms():
            self.clock.set_ms(int(row[0]))

    # -------------------------------------------------------------- commands
    def _fast_decline(
        self, b: Book, order: Order, ev: Evaluation, client_id: str, key: str
    ) -> Outcome | None:
        """Only stateless declines are answered before the writer: a sold-out node may not
        know a key granted by another node, whose retry must replay the grant. Sold-out is
        still decided without a pool round trip (the escrow knows the pool is short)."""
        led = self.ledger
        if self.shared_clock or not ev.reasons or (client_id, key) in led.idempotency:
            return None  # (a shared manual clock is read by the writer, before deciding)
        reasons, _, _, _ = led.evaluate_state(b, order, ev, self.now_ms())
        return Outcome(200, views.declined_view(reasons)) if reasons else None

    def _hold_command(
        self, order: Order, ev: Evaluation, client_id: str, key: str, fingerprint: str
    ) -> Callable[[BatchContext], Outcome]:
        run = super()._hold_command(order, ev, client_id, key, fingerprint)
        touch = Touch(
            holds=[(order.campaign_id, order.person.id, ev.discount_fen)],
            orders=[(order.platform, order.order_id)],
            keys=[(client_id, key)],
        )
        return TouchingCommand(run, touch)

    def _redemption_command(self, fn: str, redemption_id: str) -> Callable[[BatchContext], Outcome]:
        return TouchingCommand(
            super()._redemption_command(fn, redemption_id), Touch(redemptions=[redemption_id])
        )

    def _refund_command(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Callable[[BatchContext], Outcome]:
        return TouchingCommand(
            super()._refund_command(redemption_id, req, client_id, key, fp),
            Touch(keys=[(client_id, key)], redemptions=[redemption_id]),
        )

    def _clock_command(
        self, target_ms: int | None, advance_ms: int | None
    ) -> Callable[[BatchContext], int]:
        """Move the manual clock only. The core's own version also advances the ledger
        inside the command, which would expire holds whose rows the batch did not lock;
        here the next batch advances it, through the lock-and-refresh phase."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise NotFound("the clock is not manual")

        def run(ctx: BatchContext) -> int:
            try:
                if self.shared_clock:
                    return clock.set_ms(
                        max(clock.now_ms(), self._move_shared_clock(target_ms, advance_ms))
                    )
                if target_ms is not None:
                    return clock.set_ms(target_ms)
                return clock.advance_ms(advance_ms or 0)
            except ValueError as exc:
                raise InvalidRequest(str(exc), ("now",)) from exc

        return run

    def _move_shared_clock(self, target_ms: int | None, advance_ms: int | None) -> int:
        """Move the shared row in one statement (two workers moving it at once both
        count), forward only; the caller's local clock follows."""
        with self.pg.pool.connection() as conn:
            if target_ms is not None:
                row = conn.execute(
                    "UPDATE shared_clock SET now_ms = %s WHERE id = 1 AND now_ms <= %s"
                    " RETURNING now_ms",
                    (target_ms, target_ms),
                ).fetchone()
            elif (advance_ms or 0) >= 0:
                row = conn.execute(
                    "UPDATE shared_clock SET now_ms = now_ms + %s WHERE id = 1 RETURNING now_ms",
                    (advance_ms or 0,),
                ).fetchone()
            else:
                row = None
        if row is None and target_ms is not None:
            # The HTTP layer checks this against the local clock, which may lag the row.
            raise Conflict("clock_backwards", "the manual clock only moves forward")
        if row is None:
            raise ValueError("the manual clock only moves forward")
        return int(row[0])

    async def set_clock(self, target_ms: int | None = None, advance_ms: int | None = None) -> int:
        """Move a manual clock, then run everything due (a batch of its own)."""
        now: int = await self.writer.submit(self._clock_command(target_ms, advance_ms))
        await self.writer.submit(lambda ctx: None)
        return now

    def status(self, campaign_id: str) -> dict[str, Any]:
        """The campaign's figures across every node, from the rows (see global_book)."""
        return views.status_body(self.global_book(campaign_id), self.now_ms())

    def public_status(self, campaign_id: str) -> dict[str, Any]:
        """Polled by consumer apps (served with max-age=1): read the rows at most every
        PUBLIC_STATUS_TTL_S per node, whatever the polling rate."""
        now = time.monotonic()
        hit = self._public_cache.get(campaign_id)
        if hit is None or now - hit[0] >= PUBLIC_STATUS_TTL_S:
            hit = self._public_cache[campaign_id] = (now, self.global_book(campaign_id))
        return views.public_body(hit[1], self.now_ms())

    def global_book(self, campaign_id: str) -> Book:
        """The view's book with each day's money figures replaced by the global ones: the
        pool row (released, sold-out moment), the pool plus every live lease (remaining),
        and the nodes' day_figures rows (held, captured, clawed back). A shallow copy:
        the view itself is not changed."""
        b = self.ledger.book(campaign_id)  # NotFound for an unknown campaign
        with self.pg.pool.connection() as conn:
            pools = {
                str(d): (str(st), int(rel), int(rem), int(pend), so)
                for d, st, rel, rem, pend, so in conn.execute(
                    "SELECT day, state, released_fen, remaining_fen, pending_fen, sold_out_at_ms"
                    " FROM pools WHERE campaign_id = %s",
                    (campaign_id,),
                ).fetchall()
            }
            leases = dict(
                conn.execute(
                    "SELECT day, sum(taken_fen + credited_fen - charged_fen - returned_fen)"
                    " FROM leases WHERE campaign_id = %s AND state = 'live' GROUP BY day",
                    (campaign_id,),
                ).fetchall()
            )
            figures = {
                str(d): (int(h), int(c), int(w))
                for d, h, c, w in conn.execute(
                    "SELECT day, sum(held_fen), sum(captured_fen), sum(clawed_back_fen)"
                    " FROM day_figures WHERE campaign_id = %s GROUP BY day",
                    (campaign_id,),
                ).fetchall()
            }
        tranches = {}
        for day, t in b.tranches.items():
            held, captured, clawed = figures.get(day, (0, 0, 0))
            changes: dict[str, Any] = {
                "held_fen": held, "captured_fen": captured, "clawed_back_fen": clawed,
            }  # fmt: skip
            row = pools.get(day)
            if row is None or row[0] == "scheduled":
                pending = row[3] if row is not None else 0  # (a rollover creates the row)
                if t.state == OPEN:  # open by the clock; no node has taken from it yet
                    changes["released_fen"] = changes["available_fen"] = t.base_fen + pending
                else:
                    changes["inflow_pending_fen"] = pending
            else:
                changes["released_fen"] = row[1]
                changes["available_fen"] = row[2] + int(leases.get(day) or 0)
                changes["sold_out_at_ms"] = None if row[4] is None else int(row[4])
            tranches[day] = msgspec.structs.replace(t, **changes)
        return dataclasses.replace(b, tranches=tranches)

    async def settlement_report(self, campaign_id: str, day: str) -> dict[str, Any]:
        """A node's view lacks other nodes' redemptions: settle from a replay of the global
        log (off the loop: a report's cost is O(entries), paid by its caller only)."""
        from lijian.core.settlement import settlement

        self.settings(campaign_id)
        settings = [b.settings for b in self.ledger.books.values()]

        def run() -> dict[str, Any]:
            return settlement(replay_global_log(self.pg, settings), campaign_id, day)

        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def audit_report(self, campaign_id: str) -> dict[str, Any]:
        """The full audit of the global log and the rows (``lijian audit``), off the loop."""
        from lijian.audit import audit_db

        self.settings(campaign_id)
        rep = await asyncio.get_running_loop().run_in_executor(None, audit_db, self.db_url)
        return {"campaign_id": campaign_id, "ok": rep.ok, "entries": rep.entries,
                "checks": rep.checks}  # fmt: skip

    def person(self, campaign_id: str, person_id: str) -> dict[str, Any]:
        """Read through the row: the person may have been served by other nodes."""
        b = self.ledger.book(campaign_id)  # NotFound for an unknown campaign
        with self.pg.pool.connection() as conn:
            row = conn.execute(
                "SELECT used_fen, held_fen, count_total, counts_by_day FROM persons"
                " WHERE campaign_id = %s AND person_id = %s",
                (campaign_id, person_id),
            ).fetchone()
            restores = conn.execute(
                "SELECT redemption_id, refund_id, amount_fen, at_ms FROM restores"
                " WHERE campaign_id = %s AND person_id = %s AND state = 'pending'"
                " ORDER BY at_ms LIMIT %s",
                (campaign_id, person_id, MAX_SWEEP_ROWS),
            ).fetchall()
        p = Person(person_id)
        if row is not None:
            p.used_fen, p.held_fen, p.count_total = int(row[0]), int(row[1]), int(row[2])
            p.count_by_day = dict(row[3] or {})
        p.restores = [PendingRestore(int(at), str(r), str(f), int(a)) for r, f, a, at in restores]
        return views.person_body(b, p)

    def redemption(self, redemption_id: str) -> dict[str, Any]:
        """Read through the row: another node may have captured or voided it."""
        with self.pg.pool.connection() as conn:
            rows = _read_redemptions(conn, [redemption_id], [], [])
            refunds = _read_refunds(conn, [redemption_id], [])
        refresh_view(self.ledger, rows)
        refresh_refunds(self.ledger, refunds)
        return super().redemption(redemption_id)


# --------------------------------------------------------------------- the writer
class EscrowWriter(GroupCommitWriter):
    """The group-commit writer with a lock-and-refresh phase before the decisions."""

    def __init__(self, engine: EscrowEngine, max_queue: int, max_batch: int) -> None:
        super().__init__(
            engine.ledger, engine.store, engine.clock, max_queue=max_queue, max_batch=max_batch
        )
        self.engine = engine
        self._next_housekeeping = 0.0
        self._closed_done: dict[str, set[str]] = {}  # day -> campaigns whose pool is closed
        # Wall time per batch phase (bench/pg_bench.py prints it): where a batch waits.
        self.phase_s = dict.fromkeys(
            ("take", "lock_and_read", "wait_for_previous", "decide", "write_and_commit"), 0.0
        )
        # The batch whose write and commit are in flight (one at most), and the leases of
        # draining pools its write found (given back at the next barrier).
        self._inflight: asyncio.Future[None] | None = None
        self._drains: list[tuple[int, str, str]] = []
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "lijian-read")

    async def _snapshot(self) -> None:
        # A node's view is not the global state: never snapshot it. Mark the entries as
        # covered all the same: the writer's loop asks again until snapshot_seq catches
        # up, and an answer that never moved it made the loop spin without yielding once
        # a node had written SNAPSHOT_EVERY_ENTRIES entries (the node hung).
        self.snapshot_seq = self.store.last_seq

    async def _tick(self) -> None:
        await self._barrier()
        await self._run_batch([])
        await self._barrier()
        if self.engine.esc.leases:  # an idle node holding slices: is another node short?
            drains = await self._io(self._draining_io)
            if drains:
                await self._give_back(drains)
        closed = self._closed_days()
        # A lease of a closed day goes back at once, not at the next period: a node that
        # wants the next day's pool waits for every lease of the day before to be back.
        if time.monotonic() >= self._next_housekeeping or any(lid for _, _, lid in closed):
            self._next_housekeeping = time.monotonic() + HOUSEKEEPING_S
            rows, restores = await self._io(self._housekeeping, closed, self.clock.now_ms())
            refresh_view(self.ledger, rows)  # due holds of other nodes: expired next tick
            import_restores(self.ledger, restores)  # due restores of other nodes' refunds
            await self._follow_catalog()
            for b, day, lid in closed:
                if lid is not None:
                    self.engine.esc.end(tkey(b.id, day))

    def _closed_days(self) -> list[tuple[Book, str, int | None]]:
        """Days closed in the view whose pools may still be open: our lease goes back."""
        esc = self.engine.esc
        out = []
        for b in self.ledger.books.values():
            for t in b.tranches.values():
                if t.state == CLOSED and b.id not in self._closed_done.get(t.day, ()):
                    out.append((b, t.day, esc.lease_id(tkey(b.id, t.day))))
        return out

    async def _batch(self) -> None:
        n = min(len(self._queue), self.max_batch)
        await self._run_batch([self._queue.popleft() for _ in range(n)])
        self.stats.commands += n

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._committer, fn, *args)

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        eng, led = self.engine, self.ledger
        if eng.shared_clock:
            await self._read(eng.follow_shared_clock)
        # The view's time: entries of other nodes replayed at start may be ahead of this
        # node's clock, and the core never goes back (Ledger.advance takes the max). The
        # due expiries must be computed at the time the core will use, or it would expire
        # holds whose rows were not locked.
        now = max(self.clock.now_ms(), led.now_ms)
        touch = Touch()
        for cmd, _ in batch:
            if isinstance(cmd, TouchingCommand):
                t = cmd.touch
                touch.holds += t.holds
                touch.orders += t.orders
                touch.keys += t.keys
                touch.redemptions += t.redemptions
        touch.redemptions += _due(led, now)
        touch.restores += _due_restores(led, now)
        if not batch and not touch.redemptions and not touch.restores:
            # Nothing to lock: only the view's own transitions (open, close) are due;
            # they stay in memory (the global ones are written by close_pool/open_pool).
            await self._barrier()
            led.advance(now)
            led.take_pending()
            self._sync_available()
            return
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            t0 = time.perf_counter()
            await self._top_up(touch, now)
            t1 = time.perf_counter()
            # Pipelined: this batch locks and reads on the reader thread while the batch
            # before commits on the committer thread; it decides only once that one has
            # committed (its rows and the escrow are then as durable as in memory).
            prep: Prepared = await self._read(self._prepare, touch)
            t2 = time.perf_counter()
            try:
                await self._barrier()
                t3 = time.perf_counter()
                refresh_view(led, prep.rows)
                refresh_refunds(led, prep.refunds)
                for cid, pid, _, fid in prep.restores_done:  # applied by another node
                    led.drop_restore(cid, pid, fid)
                refresh_persons(led, prep.persons)
                ctx = BatchContext(led, now)
                led.advance(now)  # may open the day in the view: sync the lease after it
                self._sync_available()
                for cmd, fut in batch:
                    try:
                        results.append((fut, cmd(ctx), None))
                    except LijianError as exc:
                        results.append((fut, None, exc))
                entries = led.take_pending()
                persons = [(c, p) for c, p, *_ in prep.persons]
                _assert_locked(led, entries, set(persons), prep.rows)
                to_pool = self._account(entries)
            except BaseException:
                await self._io(_release, prep.conn, self.engine.pg)
                raise
            t4 = time.perf_counter()
            ph = self.phase_s
            ph["take"] += t1 - t0
            ph["lock_and_read"] += t2 - t1
            ph["wait_for_previous"] += t3 - t2
            ph["decide"] += t4 - t3
            self._inflight = asyncio.ensure_future(
                self._commit_batch(
                    batch, results, prep, entries, persons, to_pool, ctx.catalog_rows
                )
            )
        except BaseException as exc:
            _settle([(f, None, _stopped(exc)) for _, f in batch])
            raise

    async def _commit_batch(
        self,
        batch: list[tuple[Any, asyncio.Future[Any]]],
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
        prep: Prepared,
        entries: list[AnyEntry],
        persons: list[tuple[str, str]],
        to_pool: list[tuple[str, str, str | None, int]],
        catalog_rows: list[tuple[str, str, str]],
    ) -> None:
        """The batch's write and commit (committer thread), then its acknowledgements."""
        t0 = time.perf_counter()
        try:
            try:
                drains = await self._io(self._write, prep, entries, persons, to_pool, catalog_rows)
            finally:
                await self._io(_release, prep.conn, self.engine.pg)
        except BaseException as exc:
            _settle([(f, None, _stopped(exc)) for _, f in batch])
            raise
        dt = time.perf_counter() - t0
        self.stats.commit_s_total += dt
        self.phase_s["write_and_commit"] += dt
        self.stats.batches += 1
        self.stats.entries += len(entries)
        self.engine.esc.committed()
        self._sync_available()
        self._drains += drains
        _settle(results)

    async def _barrier(self) -> None:
        """Wait for the batch in flight to commit (raise if it failed: fail-stop), then
        give back what draining pools asked for. Everything that touches leases, days or
        the pool outside a batch's decisions runs after a barrier."""
        t, self._inflight = self._inflight, None
        if t is not None:
            await t
        if self._drains:
            drains, self._drains = self._drains, []
            await self._give_back(drains)

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def stop(self) -> None:
        """Drain the queue and commit (the batch in flight too), then stop."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
        self._committer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    async def _follow_catalog(self) -> None:
        """Catalogue rows other nodes stored since the last look (a PUT reaches the worker
        that received it; the others learn it here, within a housekeeping period)."""
        eng = self.engine
        horizon = await self._io(eng.pg.catalog_horizon)
        for _ in range(MAX_CATALOG_PAGES):
            page = await self._io(
                eng.pg.catalog_changes, eng.catalog_txid, horizon, eng.catalog_after
            )
            if not page:
                eng.catalog_txid, eng.catalog_after = horizon, ("", "")
                return
            eng.catalog.upsert(page)
            eng.catalog_after = page[-1][:2]
        # more than the bound: the rest next period, from the same key

    async def _give_back(self, leases: list[tuple[int, str, str]]) -> None:
        """Give back leases of draining pools: another node is short of what we hold."""
        esc = self.engine.esc
        for cid, day in await self._io(self._give_back_io, leases):
            esc.end(tkey(cid, day))
            esc.pool_seen.pop(tkey(cid, day), None)  # our money is in the pool now
        self._sync_available()

    def _give_back_io(self, leases: list[tuple[int, str, str]]) -> list[tuple[str, str]]:
        eng, out = self.engine, []
        with eng.pg.pool.connection() as conn:
            for lid, cid, day in leases:
                if eng.esc.lease_id(tkey(cid, day)) != lid:
                    continue  # ended meanwhile (a day's close)
                pg.give_back_unless_fenced(conn, eng.holder, lid)
                out.append((cid, day))
        return out

    def _draining_io(self) -> list[tuple[int, str, str]]:
        with self.engine.pg.pool.connection() as conn:
            return pg.draining_leases(conn, self.engine.holder)

    # ---------------------------------------------------------------- phases
    async def _top_up(self, touch: Touch, now: int) -> None:
        """Take a slice before deciding when the batch's demand exceeds the lease."""
        demand: dict[tuple[str, str], int] = {}
        smallest: dict[tuple[str, str], int] = {}
        for cid, _, disc in touch.holds:
            # By the schedule, not the view's state: the view opens the day only in this
            # batch's advance, after the slice must already be there.
            t = self.ledger.books[cid].tranche_at(now) if cid in self.ledger.books else None
            if t is not None and t.state != CLOSED and t.opens_at_ms <= now < t.closes_at_ms:
                demand[(cid, t.day)] = demand.get((cid, t.day), 0) + disc
                smallest[(cid, t.day)] = min(smallest.get((cid, t.day), disc), disc)
        esc = self.engine.esc
        for (cid, day), fen in demand.items():
            k = tkey(cid, day)
            need = esc.need_fen(k, fen, now, smallest[(cid, day)])
            for attempt in range(MAX_TAKE_WAITS):
                if need <= 0:
                    break
                # A take may give back leases (of earlier days): never under a commit in
                # flight that charges them. Takes are per slice, so the wait is rare.
                await self._barrier()
                ready, others_fen = await self._io(self._take, cid, day, need, now)
                need = fen - esc.unspent_fen(k)
                if (ready and (need <= 0 or not others_fen)) or attempt == MAX_TAKE_WAITS - 1:
                    break
                # Wait a little, bounded, and look again: either the day before is not
                # closed yet (another node gives its lease back within a tick, or it died
                # and the lease is reclaimed after lease_ttl_ms; today cannot open
                # before), or the pool is short while other nodes hold unspent slices
                # (the take marked the pool draining: they give back at their next batch
                # or tick). Without this wait the last grants of a tranche would not be
                # first come, first served across nodes. A node that waits gives its own
                # slice back first: two short nodes never wait for each other's money.
                lid = esc.lease_id(k)
                if ready and lid is not None and esc.unspent_fen(k) > 0:
                    await self._give_back([(lid, cid, day)])
                    need = fen - esc.unspent_fen(k)  # all of it, from the pool
                await asyncio.sleep(TAKE_WAIT_S)

    def _settle_days(self, conn: psycopg.Connection[Any], b: Book, before: str | None) -> list[str]:
        """Open and close, in schedule order, every day before ``before`` (or, when None,
        every day closed in the view) whose pool the global log has not closed yet: days
        nobody drew on, or that passed while no node ran. The log then replays as the
        schedule: open(D-1), close(D-1) with its rollover, open(D). Stops at the first day
        that cannot close yet (a live lease of a dead node awaits its reclaim): a later
        day must not open before it. Returns the days closed (marked after the commit)."""
        done = self._closed_done
        out: list[str] = []
        for day in b.order_days:
            t = b.tranches[day]
            if day == before or (before is None and t.state != CLOSED):
                break
            if b.id in done.get(day, ()):
                continue
            pg.open_pool(conn, self.engine.node_name, b.id, day, t.opens_at_ms, t.base_fen)
            close_pool(conn, self.engine.node_name, b, day)
            if not _pool_closed(conn, b.id, day):
                break
            out.append(day)
        return out

    def _mark_closed(self, cid: str, days: list[str]) -> None:
        for day in days:
            self._closed_done.setdefault(day, set()).add(cid)

    def _take(self, cid: str, day: str, need_fen: int, now: int) -> tuple[bool, int]:
        """Top up the lease of ``day``: (ready, other nodes' unspent when the pool was
        short). Not ready when an earlier day's pool is not closed yet (today cannot open
        before it: the caller waits and tries again)."""
        eng = self.engine
        b = self.ledger.books[cid]
        t = b.tranches[day]
        k = tkey(cid, day)
        lid: int | None = eng.esc.lease_id(k)
        taken = left = others = 0
        earlier = b.order_days[: b.order_days.index(day)]
        ours = {d: x for d in earlier if (x := eng.esc.lease_id(tkey(cid, d))) is not None}
        with eng.pg.pool.connection() as conn, conn.transaction():
            # Our own leases of earlier days first (this batch closes those days in the
            # view before it decides, so nothing will charge them again).
            for old in ours.values():
                pg.give_back_unless_fenced(conn, eng.holder, old)
            settled = self._settle_days(conn, b, day)
            ready = all(cid in self._closed_done.get(d, ()) or d in settled for d in earlier)
            if ready:
                pg.open_pool(conn, eng.node_name, cid, day, t.opens_at_ms, t.base_fen)
                lid, taken, left, others = pg.take_slice(
                    conn,
                    node_id=eng.node_name,
                    holder=eng.holder,
                    cid=cid,
                    day=day,
                    lease_id=lid,
                    need_fen=need_fen,
                    nodes=eng.nodes,
                    policy=eng.policy,
                )
        for d in ours:
            eng.esc.end(tkey(cid, d))
        self._mark_closed(cid, settled)
        if ready:
            # Money elsewhere (other nodes' slices) is not sold out: it drains to us.
            eng.esc.took(k, lid, taken, left + others, now)
        return ready, others

    def _prepare(self, touch: Touch) -> Prepared:
        """Begin the batch transaction: lock keys, read rows, lock persons (retried on a
        deadlock: nothing has been decided yet)."""
        last: Exception | None = None
        for _ in range(MAX_LOCK_RETRIES):
            conn = self.engine.pg.pool.getconn()
            try:  # psycopg opens the transaction with the first statement
                return self._prepare_in(conn, touch)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                last = exc
                _release(conn, self.engine.pg)
            except BaseException:
                _release(conn, self.engine.pg)
                raise
        raise RuntimeError(f"batch could not take its locks: {last!r}")

    def _prepare_in(self, conn: psycopg.Connection[Any], touch: Touch) -> Prepared:
        """Lock and read in one round trip for the common case (a pipeline: the advisory
        keys, the redemption rows, refunds, and the person rows already known), then, in
        the rare case the rows reveal more (another node's redemption, a refunded one),
        a second round for those. On a busy machine each round trip costs a scheduling
        delay, and this phase is what paces a node's pipeline of batches."""
        led = self.ledger
        keys = [pg.lock_key("o", p, o) for p, o in touch.orders]
        keys += [pg.lock_key("k", c, k) for c, k in touch.keys]
        keys += [pg.lock_key("r", r) for r in touch.redemptions]
        want = {(cid, p) for cid, p, _ in touch.holds}
        want |= {(cid, p) for cid, p, _, _ in touch.restores}
        for rid in touch.redemptions:
            r = led.redemptions.get(rid)
            if r is not None:
                want.add((r.campaign_id, r.person_id))
        with conn.pipeline():
            pg.lock_keys(conn, keys)
            cur_rows = _read_redemptions_cursor(conn, touch.redemptions, touch.keys, touch.orders)
            cur_refunds = _read_refunds_cursor(conn, touch.redemptions, touch.keys)
            cur_persons = _lock_persons_cursor(conn, sorted(want))
        rows = _unique_rows(cur_rows.fetchall()) if cur_rows else []
        refunds = _refund_rows(cur_refunds.fetchall()) if cur_refunds else []
        persons = _person_rows(cur_persons.fetchall()) if cur_persons else []
        # A redemption's refunds are imported whole (refresh_refunds needs them in order):
        # those of redemptions met through a key, or refunded ones the command did not name.
        named = set(touch.redemptions)
        whole = {rid for rid, _, _ in refunds if rid not in named}
        whole |= {
            str(r[0])
            for r in rows
            if r[1] in ("partially_refunded", "refunded") and str(r[0]) not in named
        }
        if whole:
            refunds = [x for x in refunds if x[0] not in whole]
            refunds += _read_refunds(conn, sorted(whole), [])
            refunds.sort(key=lambda x: (x[0], x[1]))
        missing = sorted(whole - {str(r[0]) for r in rows})
        if missing:  # a key reused on a refund of another redemption: import that one too
            rows += _read_redemptions(conn, missing, [], [])
        more = set()
        for row in rows:
            e = decode(bytes(row[4]))
            assert isinstance(e, HoldPlaced)
            more.add((e.campaign_id, e.person_id))
        more -= want
        if more:  # (after the others: PostgreSQL's deadlock detector guards the order)
            persons += _lock_persons(conn, sorted(more))
        done = _lock_restores(conn, touch.restores)  # after persons: the lock order
        return Prepared(conn, rows, persons, refunds, done)

    def _account(self, entries: list[AnyEntry]) -> list[tuple[str, str, str | None, int]]:
        """Charge the lease for each hold; credit it for holds ended while their tranche
        is open here; the rest goes to the pool (returned for the write phase). A refund's
        clawback is new money (released again, R17): it goes to its day's pool, where
        the replay credits it (``Ledger._apply_refund``), marked by ``to_day`` = "+"."""
        esc, led = self.engine.esc, self.ledger
        to_pool: list[tuple[str, str, str | None, int]] = []
        for e in entries:
            if isinstance(e, RefundRecorded) and e.clawback_fen:
                r = led.redemptions[e.redemption_id]
                if e.clawback_to_same:
                    to_pool.append((r.campaign_id, r.day, INFLOW, e.clawback_fen))
                elif e.clawback_to_day is not None:
                    to_pool.append((r.campaign_id, e.clawback_to_day, INFLOW, e.clawback_fen))
                continue  # else forfeit: the replay counts it lost, no pool holds it
            if isinstance(e, HoldPlaced):
                lid = esc.charge(tkey(e.campaign_id, e.day), e.discount_fen)
                assert lid is not None, "the core granted beyond the lease"
            elif isinstance(e, HoldReleased):
                r = led.redemptions[e.redemption_id]
                t = led.books[r.campaign_id].tranches[r.day]
                credited = (
                    esc.credit(tkey(r.campaign_id, r.day), r.discount_fen)
                    if t.state == OPEN
                    else None
                )
                if credited is None:
                    to_pool.append((r.campaign_id, r.day, e.to_day, r.discount_fen))
        return to_pool

    def _write(
        self,
        prep: Prepared,
        entries: list[AnyEntry],
        persons: list[tuple[str, str]],
        to_pool: list[tuple[str, str, str | None, int]],
        catalog_rows: list[tuple[str, str, str]],
    ) -> list[tuple[int, str, str]]:
        """The batch's writes in one pipeline (one round trip, then the commit): on a busy
        machine every round trip costs a scheduling delay, and the batch waits for it.
        Returns our leases of draining pools (given back after the batch)."""
        conn, eng, led = prep.conn, self.engine, self.ledger
        kept: list[AnyEntry] = [e for e in entries if isinstance(e, GLOBAL_ENTRIES)]
        store = eng.pg
        store._upsert_catalog(conn, catalog_rows)  # COPY: not in the pipeline (rare)
        charges, credits = eng.esc.pending()
        with conn.pipeline():
            cur_seq = conn.cursor()
            if kept:
                cur_seq.execute(
                    "WITH ins AS (INSERT INTO entries (node_id, body)"
                    " SELECT %s, b FROM unnest(%s::bytea[]) WITH ORDINALITY AS u(b, n)"
                    " ORDER BY n RETURNING seq) SELECT max(seq) FROM ins",
                    (eng.node_name, [encode(e) for e in kept]),
                )
            cur_status = _write_redemptions(conn, eng.node_name, holds_of(kept))
            _write_persons(conn, led, persons)
            cur_inflows = []
            for cid, day, to_day, fen in to_pool:  # pool rows before lease rows: lock order
                if to_day == INFLOW:
                    cur_inflows.append(pg.inflow_to_pool(conn, cid, day, fen))
                else:
                    pg.money_to_pool(conn, cid, day, to_day, fen)
            for cid, day, sold_out_ms in _sold_out_changes(led, entries):
                conn.execute(
                    "UPDATE pools SET sold_out_at_ms = %s"
                    " WHERE campaign_id = %s AND day = %s AND state = 'open'",
                    (sold_out_ms, cid, day),
                )
            cur_refunds = _write_refunds(conn, led, entries)
            _write_day_figures(conn, eng.node_name, led, kept)
            cur_leases = pg.charge_leases_pipelined(conn, eng.holder, charges, credits)
            cur_drain = None
            if eng.esc.leases:  # in the same round trip: is another node short?
                cur_drain = conn.cursor()
                cur_drain.execute(pg.DRAINING_LEASES_SQL, (eng.holder,))
        changed = sum(1 for e in kept if isinstance(e, (HoldCaptured, HoldReleased)))
        if cur_status is not None:
            # Every change was decided on a row locked and refreshed by this batch.
            assert len(cur_status.fetchall()) == changed, "a redemption changed under its lock"
        for lid, cur in cur_leases:
            if cur.fetchone() is None:
                raise Fenced(f"lease {lid} is no longer held by {eng.holder}")
        for cur in cur_inflows:
            row = cur.fetchone()
            assert row is not None and row[0] != "closed", "a clawback into a closed pool"
        for cur, expected in cur_refunds:
            assert len(cur.fetchall()) == expected, "a refund or restore changed under its lock"
        last = cur_seq.fetchone() if kept else None
        drains = [] if cur_drain is None else pg.draining_rows(cur_drain.fetchall())
        conn.commit()
        if last is not None and last[0] is not None:
            store.last_seq = max(store.last_seq, int(last[0]))
        return drains

    def _sync_available(self) -> None:
        """The view's open tranches hold exactly this node's lease."""
        esc = self.engine.esc
        for b in self.ledger.books.values():
            t = b.open_tranche()
            if t is not None:
                t.available_fen = esc.unspent_fen(tkey(b.id, t.day))

    def _housekeeping(
        self, closed: list[tuple[Book, str, int | None]], now_ms: int
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Renew our leases, reclaim dead ones, give back leases of days closed here and
        close those days' pools once every lease is back; return due holds and due quota
        restores of any node (a dead node's are applied too)."""
        eng = self.engine
        with eng.pg.pool.connection() as conn:
            with conn.transaction():
                pg.renew(conn, eng.node_name, eng.holder)
            with conn.transaction():
                pg.reclaim_expired(conn, eng.policy.lease_ttl_ms)
            for _, _, lid in closed:
                if lid is not None:
                    pg.give_back_unless_fenced(conn, eng.holder, lid)
            for b in {id(b): b for b, _, _ in closed}.values():
                with conn.transaction():
                    settled = self._settle_days(conn, b, None)
                self._mark_closed(b.id, settled)
            holds = conn.execute(
                "SELECT id, status, captured_ms, ended_ms, hold_body FROM redemptions"
                " WHERE status = 'held' AND expires_at_ms <= %s ORDER BY expires_at_ms LIMIT %s",
                (now_ms, MAX_SWEEP_ROWS),
            ).fetchall()
            restores = conn.execute(
                "SELECT s.redemption_id, s.refund_id, s.amount_fen, s.at_ms, r.id, r.status,"
                " r.captured_ms, r.ended_ms, r.hold_body FROM restores s"
                " JOIN redemptions r ON r.id = s.redemption_id"
                " WHERE s.state = 'pending' AND s.at_ms <= %s ORDER BY s.at_ms LIMIT %s",
                (now_ms, MAX_SWEEP_ROWS),
            ).fetchall()
            return holds, restores


def _pool_closed(conn: psycopg.Connection[Any], cid: str, day: str) -> bool:
    row = conn.execute(
        "SELECT state FROM pools WHERE campaign_id = %s AND day = %s", (cid, day)
    ).fetchone()
    return row is not None and row[0] == "closed"


def _stopped(exc: BaseException) -> BaseException:
    from lijian.core.errors import EngineStopped

    return EngineStopped(f"engine failed: {exc!r}")


def _release(conn: psycopg.Connection[Any], store: PostgresStore) -> None:
    """Roll back whatever is still open and give the connection back to the pool."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
    except psycopg.Error:
        pass  # a broken connection: the pool checks and replaces it
    store.pool.putconn(conn)


# ------------------------------------------------------------------------ rows
# Three index lookups, not one OR (which PostgreSQL runs as a scan of every redemption:
# 170 ms per batch at 500k rows). A row found twice is deduplicated by the caller.
_RCOLS = "r.id, r.status, r.captured_ms, r.ended_ms, r.hold_body"
READ_REDEMPTIONS_SQL = (
    f"SELECT {_RCOLS} FROM redemptions r WHERE r.id = ANY(%s)"
    f" UNION ALL SELECT {_RCOLS} FROM unnest(%s::text[], %s::text[]) AS u(c, k)"
    " JOIN redemptions r ON r.client_id = u.c AND r.idem_key = u.k"
    f" UNION ALL SELECT {_RCOLS} FROM unnest(%s::text[], %s::text[]) AS u(p, o)"
    " JOIN redemptions r ON r.platform = u.p AND r.order_id = u.o"
    " AND r.status NOT IN ('voided', 'expired')"
)


def _read_redemptions_cursor(
    conn: psycopg.Connection[Any],
    ids: list[str],
    keys: list[tuple[str, str]],
    orders: list[tuple[str, str]],
) -> psycopg.Cursor[Any] | None:
    if not ids and not keys and not orders:
        return None
    cur = conn.cursor()
    cur.execute(
        READ_REDEMPTIONS_SQL,
        (
            ids,
            [c for c, _ in keys],
            [k for _, k in keys],
            [p for p, _ in orders],
            [o for _, o in orders],
        ),
    )
    return cur


def _read_redemptions(
    conn: psycopg.Connection[Any],
    ids: list[str],
    keys: list[tuple[str, str]],
    orders: list[tuple[str, str]],
) -> list[tuple[Any, ...]]:
    cur = _read_redemptions_cursor(conn, ids, keys, orders)
    return _unique_rows(cur.fetchall()) if cur else []


def _unique_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Redemption rows once each (the three lookups may find one row twice)."""
    return list({str(r[0]): r for r in rows}.values())


def _read_refunds_cursor(
    conn: psycopg.Connection[Any], ids: list[str], keys: list[tuple[str, str]]
) -> psycopg.Cursor[Any] | None:
    """Recorded refunds of these redemptions, or under these idempotency keys, in order."""
    if not ids and not keys:
        return None
    cur = conn.cursor()
    cur.execute(  # two index lookups (an OR would scan every refund); UNION dedupes
        "SELECT redemption_id, n, body FROM refunds WHERE redemption_id = ANY(%s)"
        " UNION SELECT f.redemption_id, f.n, f.body FROM unnest(%s::text[], %s::text[])"
        " AS u(c, k) JOIN refunds f ON f.client_id = u.c AND f.idem_key = u.k"
        " ORDER BY 1, 2",
        (ids, [c for c, _ in keys], [k for _, k in keys]),
    )
    return cur


def _refund_rows(rows: list[tuple[Any, ...]]) -> list[tuple[str, int, bytes]]:
    return [(str(r), int(n), bytes(b)) for r, n, b in rows]


def _read_refunds(
    conn: psycopg.Connection[Any], ids: list[str], keys: list[tuple[str, str]]
) -> list[tuple[str, int, bytes]]:
    cur = _read_refunds_cursor(conn, ids, keys)
    return _refund_rows(cur.fetchall()) if cur else []


def _lock_restores(
    conn: psycopg.Connection[Any], due: list[tuple[str, str, str, str]]
) -> list[tuple[str, str, str, str]]:
    """Lock the rows of the restores this batch may apply; return those another node has
    applied already (the view drops them before deciding)."""
    if not due:
        return []
    rows = conn.execute(
        "SELECT s.redemption_id, s.refund_id, s.state FROM unnest(%s::text[], %s::text[])"
        " AS u(r, f) JOIN restores s ON s.redemption_id = u.r AND s.refund_id = u.f"
        " ORDER BY 1, 2 FOR UPDATE OF s",
        ([r for _, _, r, _ in due], [f for _, _, _, f in due]),
    ).fetchall()
    done = {(str(r), str(f)) for r, f, state in rows if state == "done"}
    return [x for x in due if (x[2], x[3]) in done]


def _sold_out_changes(led: Ledger, entries: list[AnyEntry]) -> list[tuple[str, str, int | None]]:
    """Days whose sold-out moment this batch may have changed (a SoldOut, or money back
    into an open tranche), with the view's value after the batch: the pool row keeps it
    for the status of every node."""
    days: set[tuple[str, str]] = set()
    for e in entries:
        if isinstance(e, SoldOut):
            days.add((e.campaign_id, e.day))
        elif isinstance(e, HoldReleased):
            r = led.redemptions[e.redemption_id]
            days.add((r.campaign_id, r.day))
    out = []
    for cid, day in sorted(days):
        t = led.books[cid].tranches[day]
        if t.state == OPEN:
            out.append((cid, day, t.sold_out_at_ms))
    return out


def _write_day_figures(
    conn: psycopg.Connection[Any], node_id: str, led: Ledger, kept: list[AnyEntry]
) -> None:
    """This node's share of each day's held, captured and clawed-back discounts: the
    same movements ``Ledger.apply`` makes on the tranche, summed per batch."""
    fig: dict[tuple[str, str], list[int]] = {}
    for e in kept:
        if isinstance(e, HoldPlaced):
            fig.setdefault((e.campaign_id, e.day), [0, 0, 0])[0] += e.discount_fen
            continue
        if not isinstance(e, (HoldCaptured, HoldReleased, RefundRecorded)):
            continue
        r = led.redemptions[e.redemption_id]
        f = fig.setdefault((r.campaign_id, r.day), [0, 0, 0])
        if isinstance(e, HoldCaptured):
            f[0] -= r.discount_fen
            f[1] += r.discount_fen
        elif isinstance(e, HoldReleased):
            f[0] -= r.discount_fen
        else:
            f[2] += e.clawback_fen
    if not fig:
        return
    rows = [(c, d, node_id, h, cap, claw) for (c, d), (h, cap, claw) in sorted(fig.items())]
    conn.execute(
        "INSERT INTO day_figures AS f (campaign_id, day, node_id, held_fen, captured_fen,"
        " clawed_back_fen) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[],"
        " %s::bigint[], %s::bigint[], %s::bigint[])"
        " ON CONFLICT (campaign_id, day, node_id) DO UPDATE SET"
        " held_fen = f.held_fen + excluded.held_fen,"
        " captured_fen = f.captured_fen + excluded.captured_fen,"
        " clawed_back_fen = f.clawed_back_fen + excluded.clawed_back_fen",
        tuple(list(c) for c in zip(*rows, strict=True)),
    )


def _write_refunds(
    conn: psycopg.Connection[Any], led: Ledger, entries: list[AnyEntry]
) -> list[tuple[psycopg.Cursor[Any], int]]:
    """Refund rows, redemption statuses after refunds, restore rows (new and applied), in
    the pipeline; returns (cursor, rows it must return) to check after it has run."""
    refunds = [e for e in entries if isinstance(e, RefundRecorded)]
    restored = [e for e in entries if isinstance(e, QuotaRestored)]
    out: list[tuple[psycopg.Cursor[Any], int]] = []
    if refunds:
        rows, restores, status = [], [], {}
        for e in refunds:
            r = led.redemptions[e.redemption_id]
            n = next(i for i, f in enumerate(r.refunds) if f.refund_id == e.refund_id)
            rows.append((e.redemption_id, e.refund_id, n, e.client_id, e.idempotency_key,
                         encode(e)))  # fmt: skip
            status[r.id] = r.status
            if e.quota_restore_fen:
                assert e.quota_restore_at_ms is not None
                restores.append((r.id, e.refund_id, r.campaign_id, r.person_id,
                                 e.quota_restore_fen, e.quota_restore_at_ms))  # fmt: skip
        conn.execute(
            "INSERT INTO refunds (redemption_id, refund_id, n, client_id, idem_key, body)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::text[],"
            " %s::bytea[])",
            tuple(list(c) for c in zip(*rows, strict=True)),
        )
        cur = conn.cursor()
        cur.execute(
            "UPDATE redemptions r SET status = u.st"
            " FROM unnest(%s::text[], %s::text[]) AS u(id, st) WHERE r.id = u.id"
            " AND r.status IN ('captured', 'partially_refunded') RETURNING r.id",
            (list(status), list(status.values())),
        )
        out.append((cur, len(status)))
        if restores:
            conn.execute(
                "INSERT INTO restores (redemption_id, refund_id, campaign_id, person_id,"
                " amount_fen, at_ms, state) SELECT *, 'pending' FROM unnest(%s::text[],"
                " %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[])",
                tuple(list(c) for c in zip(*restores, strict=True)),
            )
    if restored:
        cur = conn.cursor()
        cur.execute(
            "UPDATE restores s SET state = 'done' FROM unnest(%s::text[], %s::text[]) AS u(r, f)"
            " WHERE s.redemption_id = u.r AND s.refund_id = u.f AND s.state = 'pending'"
            " RETURNING 1",
            ([e.redemption_id for e in restored], [e.refund_id for e in restored]),
        )
        out.append((cur, len(restored)))
    return out


def _lock_persons_cursor(
    conn: psycopg.Connection[Any], keys: list[tuple[str, str]]
) -> psycopg.Cursor[Any] | None:
    """Insert-or-lock every person row in key order and return its figures."""
    if not keys:
        return None
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO persons (campaign_id, person_id, used_fen, held_fen, seq)"
        " SELECT c, p, 0, 0, 0 FROM unnest(%s::text[], %s::text[]) AS u(c, p) ORDER BY c, p"
        " ON CONFLICT (campaign_id, person_id) DO UPDATE SET seq = persons.seq"
        " RETURNING campaign_id, person_id, used_fen, held_fen, count_total, counts_by_day",
        ([c for c, _ in keys], [p for _, p in keys]),
    )
    return cur


def _person_rows(rows: list[tuple[Any, ...]]) -> list[tuple[str, str, int, int, int, Any]]:
    return [(str(c), str(p), int(u), int(h), int(n), d) for c, p, u, h, n, d in rows]


def _lock_persons(
    conn: psycopg.Connection[Any], keys: list[tuple[str, str]]
) -> list[tuple[str, str, int, int, int, Any]]:
    cur = _lock_persons_cursor(conn, keys)
    return _person_rows(cur.fetchall()) if cur else []


def _write_persons(conn: psycopg.Connection[Any], led: Ledger, keys: list[tuple[str, str]]) -> None:
    rows = []
    for cid, pid in keys:
        p = led.books[cid].persons.get(pid)
        if p is not None:
            rows.append(
                (cid, pid, p.used_fen, p.held_fen, p.count_total, json.dumps(p.count_by_day))
            )
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    conn.execute(
        "UPDATE persons SET used_fen = u.used, held_fen = u.held, count_total = u.n,"
        " counts_by_day = u.d::jsonb FROM unnest(%s::text[], %s::text[], %s::bigint[],"
        " %s::bigint[], %s::int[], %s::text[]) AS u(c, p, used, held, n, d)"
        " WHERE persons.campaign_id = u.c AND persons.person_id = u.p",
        tuple(list(c) for c in cols),
    )


def _write_redemptions(
    conn: psycopg.Connection[Any],
    node_id: str,
    kept: list[HoldPlaced | HoldCaptured | HoldReleased],
) -> psycopg.Cursor[Any] | None:
    """New redemption rows, and status changes (conditional on 'held'); returns the cursor
    of the changes (their ids), to be checked once the pipeline has run."""
    holds = [e for e in kept if isinstance(e, HoldPlaced)]
    if holds:
        cols = list(
            zip(
                *[
                    (
                        e.redemption_id, e.campaign_id, e.platform, e.order_id, e.client_id,
                        e.idempotency_key, e.person_id, e.day, e.discount_fen, e.expires_at_ms,
                        encode(e),
                    )
                    for e in holds
                ],
                strict=True,
            )
        )  # fmt: skip
        conn.execute(
            "INSERT INTO redemptions (id, campaign_id, platform, order_id, client_id, idem_key,"
            " person_id, day, discount_fen, expires_at_ms, hold_body, status, node_id)"
            " SELECT *, 'held', %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],"
            " %s::bytea[])",
            (node_id, *(list(c) for c in cols)),
        )
    changes: list[tuple[str, int | None, int | None, str]] = []
    for x in kept:
        if isinstance(x, HoldCaptured):
            changes.append(("captured", x.ts_ms, None, x.redemption_id))
        elif isinstance(x, HoldReleased):
            status = "voided" if x.why == "void" else "expired"
            changes.append((status, None, x.ts_ms, x.redemption_id))
    if not changes:
        return None
    # One id changes at most once per batch: a second command on it sees the new status
    # in memory and emits nothing (capture twice) or raises (void after capture).
    cur = conn.cursor()
    cur.execute(
        "UPDATE redemptions r SET status = u.st, captured_ms = COALESCE(u.cap, r.captured_ms),"
        " ended_ms = COALESCE(u.ended, r.ended_ms)"
        " FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[]) AS u(st, cap, ended, id)"
        " WHERE r.id = u.id AND r.status = 'held' RETURNING r.id",
        tuple(list(c) for c in zip(*changes, strict=True)),
    )
    return cur


def close_pool(conn: psycopg.Connection[Any], node_id: str, b: Book, day: str) -> bool:
    """Close a day's pool once every lease of it is back: write the one ``TrancheClosed``
    of the global log and roll the leftover on (R4), like ``Ledger._due_transition``."""
    row = conn.execute(
        "SELECT remaining_fen FROM pools WHERE campaign_id = %s AND day = %s AND state = 'open'"
        " FOR UPDATE",
        (b.id, day),
    ).fetchone()
    if row is None:
        return False
    live = conn.execute(
        "SELECT 1 FROM leases WHERE campaign_id = %s AND day = %s AND state = 'live' LIMIT 1",
        (b.id, day),
    ).fetchone()
    if live is not None:
        return False
    leftover = int(row[0])
    to_day: str | None = None
    if b.settings.campaign.leftover == "rollover":
        import datetime as dt

        nxt = b.schedule.following(dt.date.fromisoformat(day))
        to_day = nxt.date.isoformat() if nxt else None
    conn.execute(
        "UPDATE pools SET state = 'closed', remaining_fen = 0 WHERE campaign_id = %s AND day = %s",
        (b.id, day),
    )
    t = b.tranches[day]
    body = encode(TrancheClosed(t.closes_at_ms, b.id, day, leftover, to_day))
    conn.execute("INSERT INTO entries (node_id, body) VALUES (%s, %s)", (node_id, body))
    if to_day is not None and leftover:
        pg.money_to_pool(conn, b.id, day, to_day, leftover)
    return True


def replay_global_log(store: PostgresStore, settings: list[Settings]) -> Ledger:
    """A fresh ledger with the whole global log applied: the campaign as every node's
    entries together made it (the audit's replay, for reports)."""
    led = Ledger(settings)
    with store.consistent_reads():
        for body in store.iter_bodies():
            led.apply(decode(body))
    return led


# ------------------------------------------------------------------ node view
def refresh_view(led: Ledger, rows: list[tuple[Any, ...]]) -> None:
    """Bring the view's redemptions up to their rows (status, times), importing those it
    has never seen. Only the redemption objects and their indexes change: money figures
    of the view are replaced from leases and person rows before every decision."""
    import heapq

    for rid, status, captured_ms, ended_ms, body in rows:
        r = led.redemptions.get(rid)
        if r is None:
            e = decode(bytes(body))
            assert isinstance(e, HoldPlaced)
            r = _redemption_of(e)
            led.redemptions[r.id] = r
            led.idempotency[(e.client_id, e.idempotency_key)] = ("hold", r.id, "")
            led.active_orders[(e.platform, e.order_id)] = r.id
            heapq.heappush(led._expiries, (r.expires_at_ms, r.id))
            led._next_due_ms = min(led._next_due_ms, r.expires_at_ms)
        if r.status != status:
            r.status = str(status)
            r.captured_ms = captured_ms if captured_ms is not None else r.captured_ms
            r.ended_ms = ended_ms if ended_ms is not None else r.ended_ms
            if (
                status in ("voided", "expired")
                and led.active_orders.get((r.platform, r.order_id)) == r.id
            ):
                del led.active_orders[(r.platform, r.order_id)]


def refresh_refunds(led: Ledger, rows: list[tuple[str, int, bytes]]) -> None:
    """Bring the view's redemptions' refund histories up to the rows (refunds recorded by
    other nodes): the redemption's side only; that node moved the money."""
    for rid, n, body in rows:
        r = led.redemptions[rid]
        if n < len(r.refunds):
            continue  # known here already
        assert n == len(r.refunds), f"refund {n} of {rid} arrives before the one before it"
        e = decode(body)
        assert isinstance(e, RefundRecorded)
        led.note_refund(r, e)


def import_restores(led: Ledger, rows: list[tuple[Any, ...]]) -> None:
    """Due quota restores of any node's refunds, into the view's timed events (the next
    batch locks their rows and persons, and applies those still pending)."""
    refresh_view(led, [row[4:] for row in rows])
    for rid, fid, amount, at_ms, *_ in rows:
        r = led.redemptions[rid]
        p = led.books[r.campaign_id].persons.get(r.person_id)
        if p is not None and any(x.refund_id == fid for x in p.restores):
            continue
        led.add_restore(r, PendingRestore(int(at_ms), str(rid), str(fid), int(amount)))


def refresh_persons(led: Ledger, rows: list[tuple[str, str, int, int, int, Any]]) -> None:
    for cid, pid, used, held, count, by_day in rows:
        b = led.books[cid]
        p = b.persons.get(pid)
        if p is None:
            p = b.persons[pid] = Person(pid)
        p.used_fen, p.held_fen, p.count_total = used, held, count
        p.count_by_day = dict(by_day or {})


def _redemption_of(e: HoldPlaced) -> Redemption:
    return Redemption(
        id=e.redemption_id,
        campaign_id=e.campaign_id,
        day=e.day,
        person_id=e.person_id,
        platform=e.platform,
        order_id=e.order_id,
        payable_fen=e.payable_fen,
        discount_fen=e.discount_fen,
        capped=e.capped,
        created_ms=e.ts_ms,
        expires_at_ms=e.expires_at_ms,
        lines=e.lines,
        fingerprint=e.fingerprint,
        client_id=e.client_id,
        idempotency_key=e.idempotency_key,
    )


def _assert_locked(
    led: Ledger, entries: list[AnyEntry], persons: set[tuple[str, str]], rows: list[Any]
) -> None:
    """Every person row a decision changed was locked and refreshed first (positive space:
    a write without its lock would silently overwrite another node's figures)."""
    for e in entries:
        if isinstance(e, HoldPlaced):
            key = (e.campaign_id, e.person_id)
        elif isinstance(e, (HoldCaptured, HoldReleased, QuotaRestored)):
            r = led.redemptions[e.redemption_id]
            key = (r.campaign_id, r.person_id)
        else:
            continue
        assert key in persons, f"person {key} changed without its row lock"
    del rows


def _due_restores(led: Ledger, now_ms: int) -> list[tuple[str, str, str, str]]:
    """Quota restores due at ``now_ms`` in the view: (campaign, person, redemption, refund).
    A walk of the restore heap that stops at the first later one on each branch."""
    heap = led._restores
    out: list[tuple[str, str, str, str]] = []
    stack = [0]
    while stack:
        i = stack.pop()
        if i >= len(heap) or heap[i][0].at_ms > now_ms:
            continue
        pr, cid, pid = heap[i]
        if not pr.done:
            out.append((cid, pid, pr.redemption_id, pr.refund_id))
        stack += (2 * i + 1, 2 * i + 2)
    return out


def _due(led: Ledger, now_ms: int) -> list[str]:
    """Redemptions whose expiry is due at ``now_ms`` in the view: a walk of the expiry heap
    that stops at the first later entry on each branch (O(due), not O(holds))."""
    heap = led._expiries
    out: list[str] = []
    stack = [0]
    while stack:
        i = stack.pop()
        if i >= len(heap) or heap[i][0] > now_ms:
            continue
        rid = heap[i][1]
        if led.redemptions[rid].status == "held":
            out.append(rid)
        stack += (2 * i + 1, 2 * i + 2)
    return out
