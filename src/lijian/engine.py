"""The engine's Python API: what the HTTP layer, the CLI and the simulator call.

This module builds the engine (its start-up, its loop) and holds the commands that are
not a redemption's (the clock, catalogue uploads, operators' changes). The rest of its
API is mixed in from modules named for what they do: ``engine_orders`` (quotes and
redemptions), ``engine_views`` (reads and reports), ``engine_events`` (webhooks and the
event log), ``engine_claims`` (vouchers), on the state ``engine_state`` declares;
``engine_recovery`` rebuilds the ledger at start-up. Callers without a loop wrap it in
``lijian.blocking.Blocking``.

One redemption, end to end::

    Engine.redeem(order, client, key, fingerprint)          # engine_orders, caller's thread
      → evaluate(): payable, discount, stateless reasons     # core/rules.py (geo, catalogue)
      → fast decline from memory if it cannot be granted    # e.g. sold out: no queue, no I/O
      → GroupCommitWriter.submit_async(command)              # writer.py, bounded queue
          → Ledger.hold(): stateful checks, HoldPlaced entry # core/ledger.py, writer thread
          → SqliteStore.commit_batch(): one txn, one fsync   # store/sqlite.py
      → the future resolves; result shaped as docs/API.md JSON   # core/views.py

Results are ``(http_status, body, replayed)`` tuples whose bodies follow ``docs/API.md``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar, TypeVarTuple, overload

from lijian import ledger_key as key_files
from lijian import reports
from lijian.catalog import Catalog
from lijian.clock import Clock, ManualClock, SystemClock, ledger_clock
from lijian.core.draw import derive_seed
from lijian.core.entries import ClockMoved
from lijian.core.errors import Conflict, InvalidRequest, NotFound
from lijian.core.keyed import KeyedMemo, key_id
from lijian.core.ledger import Ledger
from lijian.core.rules import GeoPort
from lijian.core.settings import Settings
from lijian.engine_catalog import CatalogUploads
from lijian.engine_claims import ClaimCalls
from lijian.engine_events import EventCalls
from lijian.engine_orders import OrderCalls
from lijian.engine_recovery import WarmStart, recover
from lijian.engine_views import ViewCalls
from lijian.events.audits import PeriodicAudit, audit_every_s
from lijian.events.outbox import open_outbox
from lijian.inputs import default_geo
from lijian.jsonish import Json
from lijian.new_campaigns import CampaignGeo, after_operation, save_known_files, save_new_files
from lijian.operations import operation_command
from lijian.outcome import Outcome, shape_hold
from lijian.release import AdmissionWindows
from lijian.store import open_store
from lijian.writer import BatchContext, GroupCommitWriter

R = TypeVar("R")
Ts = TypeVarTuple("Ts")  # the arguments of a function run by Engine.call

CALL_TIMEOUT_S = 600.0  # a sync call waits at most this long for the engine's loop


class Engine(OrderCalls, ViewCalls, EventCalls, ClaimCalls):
    """The engine. Its ledger lives on one event loop (see writer.py).

    Async callers (the HTTP server) construct it with ``background=False`` and ``await
    start()`` in their loop, then call the coroutines and the plain read methods from that
    loop. Sync callers (CLI, simulator, tests) construct it with ``background=True``
    (the default): it then runs its own loop in a thread, and ``call`` hands work to that
    loop (``lijian.blocking.Blocking`` wraps the usual calls so).
    """

    def __init__(
        self,
        settings: Iterable[Settings],
        db_path: str | Path,  # a SQLite file, or a postgresql:// URL
        clock: Clock | None = None,
        synchronous: str = "FULL",
        geo_loader: Callable[[str], GeoPort] = default_geo,
        node_id: str = "a",
        max_queue: int = 100_000,
        max_batch: int = 8_192,
        background: bool = True,
        ledger_key: bytes | None = None,
        key_file: str | Path | None = None,
        warm: WarmStart | None = None,
    ) -> None:
        settings = list(settings)
        if not settings:
            raise InvalidRequest("at least one campaign is required")
        self.clock = clock or SystemClock()
        # The ledger key (lijian.ledger_key): given, or the ledger's key file. It keys
        # identifiers and derives draw seeds; only this one writer holds it.
        if ledger_key is None:
            ledger_key = key_files.resolve(db_path, key_file)
        self._key = ledger_key
        self._keyed = KeyedMemo(ledger_key)  # the identifiers' HMACs, remembered
        self.store = open_store(db_path, synchronous, node_id=node_id)
        self.store.backfill_chain()  # a ledger from before the hash chain: chain it once
        unsaved = save_known_files(self.store, settings)  # the others: after recovery
        self._settings = settings
        self.ledger = Ledger(settings, node_id=node_id)
        self.geo = CampaignGeo(lambda: self.ledger, geo_loader)
        self.catalog = Catalog()
        # ``warm``: a standby's ledger, kept up with the log while it waited for the
        # lease (cluster/follower.py); it replays the tail instead of the whole log.
        rec = recover(self.store, settings, self.ledger.node_id, self.catalog, warm)
        self.ledger, self.snapshot_seq = rec.ledger, rec.snapshot_seq
        self.recovered_entries = rec.replayed
        save_new_files(self.store, unsaved)  # recovery accepted them (lijian.new_campaigns)
        problem = key_files.mismatch(self.ledger.key_id, self._key, key_file or db_path)
        if problem:
            self.store.close()
            raise key_files.LedgerKeyError(problem)
        self.clock = ledger_clock(self.clock, self.ledger.manual_clock_ms, self.ledger.now_ms)
        self.writer = GroupCommitWriter(
            self.ledger, self.store, self.clock, max_queue=max_queue, max_batch=max_batch
        )
        self.writer.snapshot_seq = self.snapshot_seq
        self.uploads = CatalogUploads(self.writer, self.catalog)
        # Operator events (lijian.events): the outbox the writer commits, and webhooks.
        self.events = open_outbox([b.settings for b in self.ledger.books.values()], self.store)
        self.writer.outbox = self.events
        self.webhooks = None  # a WebhookDelivery once enable_webhooks was called
        self.event_node = ""  # plain evt_<seq> unless a shard (name_events)
        # audit.failed without anyone asking: lijian.events.audits, on the loop from start()
        self.audits = PeriodicAudit(lambda: self.ledger, self.events, self.now_ms, audit_every_s())
        # Fair release ([release] admission_window_s): lijian.release holds those requests.
        key = self._key
        self.windows = AdmissionWindows(
            lambda: self.ledger,
            self.writer,
            self.clock,
            shape_hold,
            lambda cid, day: derive_seed(key, cid, day),
        )
        # Seeds are revealed by the ledger when a window ends (Ledger.advance); the key's
        # id goes into the ledger with the first entry that depends on the key.
        self.ledger.seeds = self._seed
        self.ledger.bind_key_id = key_id(key)
        self.reports = reports.ReportGate()
        self._led = lambda: self.ledger  # the reports' view of it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._start_background()

    # --------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the writer on the running loop (async callers)."""
        self._loop = asyncio.get_running_loop()
        self.writer.start()
        if self.webhooks is not None:
            self.webhooks.start()
        self.audits.start()
        moved = self.ledger.manual_clock_ms
        if moved is not None and self.clock.now_ms() > moved:  # clock.ledger_clock
            await self.set_clock(self.clock.now_ms())
        await self.windows.seed_days()  # committed before the first request is served
        self.geo.load_all()

    def _seed(self, campaign_id: str, day: str) -> str:
        return self.windows.seed_source(campaign_id, day)

    async def aclose(self) -> None:
        """Graceful stop: drain the queue, commit, close the file."""
        await self.audits.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()  # first: the writer's last commit holds its cursors
        self.windows.close()  # requests waiting for a window: 503, retry after the restart
        await self.writer.stop()
        self.store.close()

    def _start_background(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="lijian-engine", daemon=True)
        self._thread.start()
        ready.wait()

    # A coroutine function's answer is what it returns once awaited; a plain one's, itself.
    @overload
    def call(self, fn: Callable[[*Ts], Awaitable[R]], *args: *Ts) -> R: ...

    @overload
    def call(self, fn: Callable[[*Ts], R], *args: *Ts) -> R: ...

    def call(self, fn: Callable[[*Ts], object], *args: *Ts) -> object:
        """Run ``fn(*args)`` on the engine's loop from another thread; await it if async."""
        loop = self._loop
        assert loop is not None and self._thread is not None, "engine not started in background"

        async def run() -> object:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=CALL_TIMEOUT_S)

    def close(self) -> None:
        """Stop a background engine (sync callers)."""
        if self._thread is None or self._loop is None:
            return
        self.call(self.aclose)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------- the clock, catalogue, operations
    def _clock_command(
        self, target_ms: int | None, advance_ms: int | None
    ) -> Callable[[BatchContext], int]:
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise NotFound("the clock is not manual")

        def run(ctx: BatchContext) -> int:
            # Checked here, in the writer's order, not by the caller: the clock is the
            # engine's state, and a caller's earlier look at it may be stale.
            if target_ms is not None and target_ms < clock.now_ms():
                raise Conflict("clock_backwards", "the manual clock only moves forward")
            try:
                if target_ms is not None:
                    now = clock.set_ms(target_ms)
                else:
                    now = clock.advance_ms(advance_ms or 0)
            except ValueError as exc:
                raise InvalidRequest(str(exc), ("now",)) from exc
            ctx.ledger.advance(now)
            if now != ctx.ledger.manual_clock_ms:  # a ledger entry: restored on restart
                ctx.ledger.emit(ClockMoved(now))
            return now

        return run

    async def set_clock(self, target_ms: int | None = None, advance_ms: int | None = None) -> int:
        """Move a manual clock; everything due runs (releases, expiries, restores)."""
        result: int = await self.writer.submit(self._clock_command(target_ms, advance_ms))
        return result

    async def catalog_upsert(
        self,
        rows: list[tuple[str, str, str]],
        categories: dict[str, int] | None = None,
        campaign_id: str | None = None,
        prices: list[tuple[str, str, int]] | None = None,
    ) -> int:
        """Store catalogue rows (and their reference prices) durably, then index them
        (``engine_catalog.CatalogUploads``; ``campaign_id`` is the upload's, whose rules the
        caller checked)."""
        return await self.uploads.upsert(rows, categories or {}, prices or [])

    async def operate(self, op: str, campaign_id: str, body: Json, by: str) -> Outcome:
        """An operator's change of a live campaign (lijian.operations), in the writer's order."""
        out: Outcome = await self.writer.submit(operation_command(op, campaign_id, body, by))
        await after_operation(self, op, out)
        return out

    # ------------------------------------------- the port the HTTP layer calls
    # The HTTP layer awaits these, so it cannot tell this engine from a gateway's client
    # of the sequencer (lijian.cluster.gateway.RemoteEngine), which has the same methods.
    @property
    def manual_clock(self) -> bool:
        return self.clock.manual

    def observe_batches(self, on_batch: Callable[[int, float], None]) -> None:
        self.writer.on_batch = on_batch

    def remote_ledger(self) -> None:
        """The ledger is here: signed requests are admitted in this process."""
