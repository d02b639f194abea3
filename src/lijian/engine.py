"""The engine's Python API: what the HTTP layer, the CLI and the simulator call.

One redemption, end to end::

    Engine.redeem(order, client, key, fingerprint)          # this module, caller's thread
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
import gc
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lijian import ledger_key as key_files
from lijian import reports
from lijian.catalog import Catalog
from lijian.clock import Clock, ManualClock, SystemClock, ledger_clock
from lijian.core import views
from lijian.core.book import Book
from lijian.core.chain import chain_view
from lijian.core.draw import derive_seed
from lijian.core.entries import ClockMoved
from lijian.core.errors import (
    CampaignNotFound,
    Conflict,
    InvalidRequest,
    LijianError,
    NotFound,
)
from lijian.core.invariants import check_invariants
from lijian.core.keyed import key_id, keyed_order
from lijian.core.ledger import Ledger
from lijian.core.order import Order, RefundRequest
from lijian.core.rules import Evaluation, GeoPort, evaluate_order, reason
from lijian.core.settings import Settings
from lijian.engine_catalog import CatalogUploads
from lijian.engine_claims import ClaimCalls, voucher_category
from lijian.engine_sync import BlockingCalls
from lijian.events.audits import PeriodicAudit, audit_every_s
from lijian.events.outbox import events_page, open_outbox
from lijian.gc_tuning import tune_gc
from lijian.inputs import default_geo
from lijian.new_campaigns import CampaignGeo, after_operation, save_known_files, save_new_files
from lijian.operations import operation_command, operations_view, stopped_by_operator
from lijian.outcome import Outcome, as_outcome, quote_body, shape_hold
from lijian.release import AdmissionWindows
from lijian.risk_report import risk_report
from lijian.store import open_store
from lijian.stored_ledger import open_stored_ledger
from lijian.writer import BatchContext, GroupCommitWriter

CALL_TIMEOUT_S = 600.0  # a sync call waits at most this long for the engine's loop


class Engine(BlockingCalls, ClaimCalls):
    """The engine. Its ledger lives on one event loop (see writer.py).

    Async callers (the HTTP server) construct it with ``background=False`` and ``await
    start()`` in their loop, then call the coroutines and the plain read methods from that
    loop. Sync callers (CLI, simulator, tests) construct it with ``background=True``
    (the default): it then runs its own loop in a thread, and ``call`` and the blocking
    ``*_sync`` methods (``lijian.engine_sync``) hand work to that loop.
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
    ) -> None:
        settings = list(settings)
        if not settings:
            raise InvalidRequest("at least one campaign is required")
        self.clock: Clock = clock or SystemClock()
        # The ledger key (lijian.ledger_key): given, or the ledger's key file. It keys
        # identifiers and derives draw seeds; only this one writer holds it.
        if ledger_key is None:
            ledger_key = key_files.resolve(db_path, key_file)
        self._key = ledger_key
        self.store = open_store(db_path, synchronous, node_id=node_id)
        self.store.backfill_chain()  # a ledger from before the hash chain: chain it once
        unsaved = save_known_files(self.store, settings)  # the others: after recovery
        self._settings = settings
        self.ledger = Ledger(settings, node_id=node_id)
        self.geo = CampaignGeo(lambda: self.ledger, geo_loader)
        self.catalog = Catalog()
        self.recovered_entries = self._recover()
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
        self.webhooks: Any = None  # a WebhookDelivery once enable_webhooks was called
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
        self._led: Callable[[], Ledger] = lambda: self.ledger  # the reports' view of it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._start_background()

    # --------------------------------------------------------------- lifecycle
    def _recover(self) -> int:
        """Rebuild state from the store: the latest snapshot, then replay every later entry
        through ``Ledger.apply``. Returns the number of entries replayed."""
        # Recovery creates every object the ledger will hold; the cycle collector would
        # walk them again and again while they are being built. It stays off until
        # tune_gc freezes what was built (also on failure: the finally below).
        gc.disable()
        try:
            return self._recover_state()
        finally:
            tune_gc()

    def _recover_state(self) -> int:
        rec = open_stored_ledger(
            self.store, self._settings, node_id=self.ledger.node_id, from_snapshot=True
        )
        self.ledger, self.snapshot_seq = rec.ledger, rec.snapshot_seq
        problems = check_invariants(self.ledger)
        if problems:
            raise AssertionError("ledger invariants fail after recovery: " + "; ".join(problems))
        self.catalog.upsert(self.store.catalog_rows())
        self.catalog.set_reference_prices(self.store.reference_prices())
        return rec.replayed

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

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the engine's loop from another thread; await it if async."""
        loop = self._loop
        assert loop is not None and self._thread is not None, "engine not started in background"

        async def run() -> Any:
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

    @property
    def campaign_ids(self) -> list[str]:
        return list(self.ledger.books)

    def settings(self, campaign_id: str) -> Settings:
        return self.ledger.book(campaign_id).settings

    async def campaign_settings(self, campaign_id: str) -> Settings:
        return self.settings(campaign_id)  # (a gateway asks its sequencer: RemoteEngine)

    def now_ms(self) -> int:
        return max(self.clock.now_ms(), self.ledger.now_ms)

    # -------------------------------------------------------------- evaluation
    def evaluate(self, order: Order) -> tuple[Book, Evaluation]:
        """The stateless half of the rules (geography, catalogue, discount)."""
        b = self.ledger.book(order.campaign_id)
        ev = evaluate_order(order, b.settings, self.catalog, self.geo[b.id])
        return b, voucher_category(self.ledger, self.catalog, b, order, ev)

    def quote(self, order: Order) -> dict[str, Any]:
        """Evaluate without reserving (loop thread)."""
        order = keyed_order(self._key, order)
        try:
            b, ev = self.evaluate(order)
        except CampaignNotFound:
            return quote_body(False, 0, 0, False, [reason("campaign_not_found")])
        reasons, _, grant, capped = self.ledger.order_terms(b, order, ev, self.now_ms())
        if reasons:
            return quote_body(False, 0, ev.payable_fen, False, reasons)
        return quote_body(True, grant, ev.payable_fen, capped, [])

    def _fast_decline(
        self, b: Book, order: Order, ev: Evaluation, client_id: str, key: str
    ) -> Outcome | None:
        """Answer a certain decline from memory without queueing (docs/ARCHITECTURE.md).

        Only when the request is new (unknown key, order not active): a retry of a
        granted request must replay its grant, so it always goes to the writer.
        """
        led = self.ledger
        if (client_id, key) in led.idempotency or (
            order.platform,
            order.order_id,
        ) in led.active_orders:
            return None
        if self.now_ms() >= led.next_due_ms or b.settings.claims.on:  # (vouchers: the writer)
            # A timed event (10:00 release, expiry, close) is due but not applied yet: the
            # in-memory state is stale, so let the writer decide after advancing.
            return None
        if not ev.reasons and not stopped_by_operator(led, b, order, ev):
            t = b.open_tranche()
            if t is None or t.sold_out_at_ms is None:
                return None
            if t.available_fen >= min(ev.discount_fen, b.settings.limits.person_savings_cap_fen):
                return None
        reasons, _, _, _ = led.evaluate_state(b, order, ev, self.now_ms())
        return Outcome(200, views.declined_view(reasons)) if reasons else None

    # ---------------------------------------------------------------- commands
    def _hold_command(
        self, order: Order, ev: Evaluation, client_id: str, key: str, fingerprint: str
    ) -> Callable[[BatchContext], Outcome]:
        def run(ctx: BatchContext) -> Outcome:
            out = ctx.ledger.hold(order, ev, ctx.now_ms, client_id, key, fingerprint)
            if out.redemption is None:
                self.events.declined(order.campaign_id, (c for c, _ in out.reasons), ctx.now_ms)
            return shape_hold(ctx.ledger, out)

        return run

    def redeem_submit(
        self, order: Order, client_id: str, key: str, fingerprint: str
    ) -> Outcome | asyncio.Future[Any]:
        """Evaluate now; answer a certain decline at once, else queue the hold."""
        order = keyed_order(self._key, order)
        try:
            b, ev = self.evaluate(order)
        except CampaignNotFound:
            return Outcome(200, views.declined_view([reason("campaign_not_found")]))
        waiting = self.windows.offer(b, order, ev, client_id, key, fingerprint)
        if waiting is not None:
            return waiting
        fast = self._fast_decline(b, order, ev, client_id, key)
        if fast is not None:
            self.events.declined(b.id, (r["code"] for r in fast.body["reasons"]), self.now_ms())
            return fast
        return self.writer.submit(self._hold_command(order, ev, client_id, key, fingerprint))

    async def redeem(self, order: Order, client_id: str, key: str, fingerprint: str) -> Outcome:
        out = self.redeem_submit(order, client_id, key, fingerprint)
        if isinstance(out, Outcome):
            return out
        result: Outcome = await out
        return result

    def submit_redemptions(
        self, requests: list[tuple[Order, str, str, str]]
    ) -> list[Outcome | asyncio.Future[Any]]:
        """Evaluate and queue several redemptions now, in order (they may share a commit):
        an immediate ``Outcome`` or a future per request. A ``LijianError`` (409 conflict,
        422 …) comes back in its slot as the ``Outcome`` the HTTP layer would answer."""
        slots: list[Outcome | asyncio.Future[Any]] = []
        for order, client_id, key, fp in requests:
            try:
                slots.append(self.redeem_submit(order, client_id, key, fp))
            except LijianError as exc:
                slots.append(as_outcome(exc))
        return slots

    @staticmethod
    async def outcomes(slots: list[Outcome | asyncio.Future[Any]]) -> list[Outcome]:
        """Wait for what ``submit_redemptions`` queued; errors become their Outcome."""
        out: list[Outcome] = []
        for s in slots:
            if isinstance(s, Outcome):
                out.append(s)
                continue
            try:
                out.append(await s)
            except LijianError as exc:
                out.append(as_outcome(exc))
        return out

    async def redeem_many(self, requests: list[tuple[Order, str, str, str]]) -> list[Outcome]:
        """Several redemptions submitted together, in order (they may share a commit)."""
        return await self.outcomes(self.submit_redemptions(requests))

    def _redemption_command(self, fn: str, redemption_id: str) -> Callable[[BatchContext], Outcome]:
        def run(ctx: BatchContext) -> Outcome:
            r = getattr(ctx.ledger, fn)(redemption_id, ctx.now_ms)
            tz = ctx.ledger.books[r.campaign_id].schedule.tz
            return Outcome(200, views.redemption_view(r, tz))

        return run

    async def capture(self, redemption_id: str) -> Outcome:
        out: Outcome = await self.writer.submit(self._redemption_command("capture", redemption_id))
        return out

    async def void(self, redemption_id: str) -> Outcome:
        out: Outcome = await self.writer.submit(self._redemption_command("void", redemption_id))
        return out

    async def run_many(self, calls: list[tuple[str, str]]) -> list[Outcome]:
        """Captures and voids in bulk: [("capture"|"void", redemption id)]."""
        futs = [self.writer.submit(self._redemption_command(fn, rid)) for fn, rid in calls]
        out: list[Outcome] = []
        for f in futs:
            try:
                out.append(await f)
            except LijianError as exc:
                out.append(as_outcome(exc))
        return out

    def _refund_command(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Callable[[BatchContext], Outcome]:
        def run(ctx: BatchContext) -> Outcome:
            led = ctx.ledger
            f, replayed = led.refund(redemption_id, req, ctx.now_ms, client_id, key, fp)
            r = led.redemption(redemption_id)
            body = views.refund_created_view(r, f, led.books[r.campaign_id].schedule.tz)
            return Outcome(201, body, replayed)

        return run

    async def refund(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Outcome:
        out: Outcome = await self.writer.submit(
            self._refund_command(redemption_id, req, client_id, key, fp)
        )
        return out

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

    async def operate(self, op: str, campaign_id: str, body: dict[str, Any], by: str) -> Outcome:
        """An operator's change of a live campaign (lijian.operations), in the writer's order."""
        out: Outcome = await self.writer.submit(operation_command(op, campaign_id, body, by))
        await after_operation(self, op, out)
        return out

    async def read_operations(self, campaign_id: str, what: str) -> dict[str, Any]:
        return operations_view(self.ledger, campaign_id, what)

    # ----------------------------------------------------------------- reading
    def redemption(self, redemption_id: str) -> dict[str, Any]:
        r = self.ledger.redemption(redemption_id)
        return views.redemption_view(r, self.ledger.books[r.campaign_id].schedule.tz)

    def person(self, campaign_id: str, person_id: str) -> dict[str, Any]:
        return views.person_view(self.ledger, campaign_id, person_id)

    def status(self, campaign_id: str) -> dict[str, Any]:
        body = views.status_view(self.ledger, campaign_id, self.now_ms())
        b = self.ledger.book(campaign_id)
        if b.settings.release.admission_window_s:
            body["admission_window"] = self.windows.view(campaign_id)
        if b.settings.identity.link_by:
            body["identity"] = views.identity_view(b)
        return body

    def public_status(self, campaign_id: str) -> dict[str, Any]:
        body = views.public_view(self.ledger, campaign_id, self.now_ms())
        return {**body, **chain_view(self.store.chain, self.store.day_closes, campaign_id)}

    # The reports walk the whole ledger: in slices between requests (lijian/reports.py).
    async def settlement_report(self, campaign_id: str, day: str) -> dict[str, Any]:
        """The settlement of ``day`` (docs/API.md), from the ledger: it holds every redemption."""
        return await reports.settlement_report(self.reports, self._led, campaign_id, day)

    async def read_risk(self, campaign_id: str, day: str, after: int, limit: int) -> dict[str, Any]:
        """A page of a day's risk flags (GET …/risk), from the ledger's index of them."""
        return risk_report(self.ledger, campaign_id, day, after, limit)

    async def evidence_report(self, campaign_id: str, day: str) -> dict[str, Any]:
        """The signed evidence bundle of a closed day (evidence/bundle.py), from this
        ledger: the same payload ``lijian evidence`` writes from the store."""
        return await reports.evidence_report(self.reports, self._led, self.store, campaign_id, day)

    async def campaign_list(self) -> list[Settings]:
        return [b.settings for b in self.ledger.books.values()]

    async def audit_report(self, campaign_id: str) -> dict[str, Any]:
        """The invariant check of the API's audit endpoint, on this engine's ledger."""
        from lijian.audit import invariants_report

        self.settings(campaign_id)
        led, problems = await self.reports.audit(self._led)
        rep = invariants_report(led, problems)
        if not rep.ok:  # audit.failed (once per failure), in the writer's next commit
            self.audits.report(campaign_id, rep.violations)
        return {"campaign_id": campaign_id, "ok": rep.ok, "entries": rep.entries,
                "checks": rep.checks}  # fmt: skip

    def check(self) -> list[str]:
        return check_invariants(self.ledger)

    # ------------------------------------------- the port the HTTP layer calls
    # The HTTP layer awaits these, so it cannot tell this engine from a gateway's client
    # of the sequencer (lijian.cluster.gateway.RemoteEngine), which has the same methods.
    @property
    def manual_clock(self) -> bool:
        return self.clock.manual

    def observe_batches(self, on_batch: Callable[[int, float], None]) -> None:
        self.writer.on_batch = on_batch

    async def quote_order(self, order: Order) -> dict[str, Any]:
        return self.quote(order)

    async def read_redemption(self, redemption_id: str) -> dict[str, Any]:
        return self.redemption(redemption_id)

    async def read_person(self, campaign_id: str, person_id: str) -> dict[str, Any]:
        return self.person(campaign_id, person_id)

    async def read_status(self, campaign_id: str) -> dict[str, Any]:
        return self.status(campaign_id)

    async def read_public(self, campaign_id: str) -> dict[str, Any]:
        return self.public_status(campaign_id)

    async def health(self) -> dict[str, Any]:
        """What ``/readyz`` and ``/metrics`` report of the writer."""
        w = self.writer
        st = w.stats
        return {"ok": w.failed is None, "queue_depth": w.queue_depth,
                "last_batch_entries": st.last_batch_size, "max_batch_entries": st.max_batch_size,
                "entries": st.entries, **w.durability_health()}  # fmt: skip

    async def gauges(self) -> dict[str, Any]:
        """The ledger's figures for ``/metrics``: every campaign's status and the writer."""
        return {"status": {c: self.status(c) for c in self.campaign_ids},
                "writer": await self.health(), "events": self._event_gauges()}  # fmt: skip

    # ------------------------------------------------------ operator events
    def enable_webhooks(self, receivers: list[Any]) -> None:
        """Deliver the outbox to ``receivers`` (lijian.events.receivers), from start()."""
        from lijian.events.delivery import WebhookDelivery

        self.webhooks = WebhookDelivery(
            receivers, self.store.read_events, self.events, self._tz_of, self.now_ms
        )

    def _tz_of(self, campaign_id: str) -> Any:
        b = self.ledger.books.get(campaign_id)
        return b.schedule.tz if b else self._settings[0].tz

    async def read_events(self, after_seq: int, limit: int) -> dict[str, Any]:
        """A page of the stored events after ``after_seq`` (GET /v1/admin/events)."""
        page: dict[str, Any] = await asyncio.to_thread(
            events_page, self.store, after_seq, limit, self._tz_of
        )
        return page

    def _event_gauges(self) -> dict[str, Any]:
        w = self.webhooks
        receivers = {} if w is None else {
            url: {"delivered": st.delivered, "failures": st.failures, "lag_s": w.lag_s(url)}
            for url, st in w.stats.items()
        }  # fmt: skip
        return {"recorded": self.store.last_event_seq, "dropped": self.events.dropped,
                "receivers": receivers}  # fmt: skip
