"""The engine's redemption commands: an order evaluated, a certain decline answered from
memory, and holds, captures, voids and refunds queued for the one writer.

A mixin of :class:`lijian.engine.Engine`. They are the one path a redemption takes
(docs/ARCHITECTURE.md), apart from the engine's start-up and reads: the stateless half
of the rules runs here on the loop thread, the stateful half in the writer's order
(``Ledger.hold``, ``capture``, ``void``, ``refund``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lijian.core import views
from lijian.core.book import Book
from lijian.core.errors import CampaignNotFound, LijianError
from lijian.core.order import Order, RefundRequest
from lijian.core.rules import Evaluation, evaluate_order, reason
from lijian.engine_claims import voucher_category
from lijian.engine_state import EngineState
from lijian.jsonish import Json
from lijian.operations import stopped_by_operator
from lijian.outcome import Outcome, as_outcome, quote_body, shape_hold
from lijian.writer import BatchContext

# An order keyed and evaluated, ready for its decision (``redeem_prepare``).
Prepared = tuple[Order, Book, Evaluation]


class OrderCalls(EngineState):
    """Quotes and redemptions: ``redeem``, ``capture``, ``void``, ``refund`` and their
    bulk forms (the HTTP layer's and the sequencer's)."""

    # -------------------------------------------------------------- evaluation
    def evaluate(self, order: Order) -> tuple[Book, Evaluation]:
        """The stateless half of the rules (geography, catalogue, discount)."""
        b = self.ledger.book(order.campaign_id)
        ev = evaluate_order(order, b.settings, self.catalog, self.geo[b.id])
        return b, voucher_category(self.ledger, self.catalog, b, order, ev)

    def quote(self, order: Order, elsewhere: bool = False) -> Json:
        """Evaluate without reserving (loop thread). ``elsewhere``: the order draws on
        another ledger's campaign (``Ledger.evaluate_state``)."""
        order = self._keyed.keyed_order(order)
        try:
            b, ev = self.evaluate(order)
        except CampaignNotFound:
            return quote_body(False, 0, 0, False, [reason("campaign_not_found")])
        now_ms = self.now_ms()
        reasons, _, grant, capped = self.ledger.order_terms(b, order, ev, now_ms, elsewhere)
        if reasons:
            return quote_body(False, 0, ev.payable_fen, False, reasons)
        return quote_body(True, grant, ev.payable_fen, capped, [])

    async def quote_order(self, order: Order) -> Json:
        return self.quote(order)

    def _fast_decline(
        self,
        b: Book,
        order: Order,
        ev: Evaluation,
        client_id: str,
        key: str,
        elsewhere: bool = False,
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
        now_ms = self.now_ms()
        if now_ms >= led.next_due_ms or b.settings.claims.on:  # (vouchers: the writer)
            # A timed event (10:00 release, expiry, close) is due but not applied yet: the
            # in-memory state is stale, so let the writer decide after advancing.
            return None
        if not ev.reasons and not elsewhere and not stopped_by_operator(led, b, order, ev):
            t = b.open_tranche()
            if t is None or t.sold_out_at_ms is None:
                return None
            if t.available_fen >= min(ev.discount_fen, b.settings.limits.person_savings_cap_fen):
                return None
        reasons, _, _, _ = led.evaluate_state(b, order, ev, now_ms, elsewhere)
        return Outcome(200, views.declined_view(reasons)) if reasons else None

    # ---------------------------------------------------------------- commands
    def _hold_command(
        self,
        order: Order,
        ev: Evaluation,
        client_id: str,
        key: str,
        fingerprint: str,
        elsewhere: bool = False,
    ) -> Callable[[BatchContext], Outcome]:
        def run(ctx: BatchContext) -> Outcome:
            led = ctx.ledger
            out = led.hold(order, ev, ctx.now_ms, client_id, key, fingerprint, elsewhere)
            if out.redemption is None:
                self.events.declined(order.campaign_id, (c for c, _ in out.reasons), ctx.now_ms)
            return shape_hold(ctx.ledger, out)

        return run

    def redeem_submit(
        self, order: Order, client_id: str, key: str, fingerprint: str, elsewhere: bool = False
    ) -> Outcome | asyncio.Future[Outcome]:
        """Evaluate now; answer a certain decline at once, else queue the hold.
        ``elsewhere``: the order draws on another ledger's campaign (sharded sequencers,
        lijian.cluster.order_claims): declined with every reason, no admission window."""
        prepared = self.redeem_prepare(order)
        return self.redeem_decide(prepared, client_id, key, fingerprint, elsewhere)

    def redeem_prepare(self, order: Order) -> Prepared | Outcome:
        """``redeem_submit``'s stateless half: the order keyed and evaluated (or the answer
        when its campaign is unknown). A sequencer prepares a frame's redemptions one
        after the other, then decides them in arrival order (``redeem_decide``): nothing
        prepared here reads what a decision changes (the ledger and the catalogue change
        in the writer's batches, never between two calls on the loop)."""
        order = self._keyed.keyed_order(order)
        try:
            b, ev = self.evaluate(order)
        except CampaignNotFound:
            return Outcome(200, views.declined_view([reason("campaign_not_found")]))
        return order, b, ev

    def redeem_decide(
        self,
        prepared: Prepared | Outcome,
        client_id: str,
        key: str,
        fingerprint: str,
        elsewhere: bool = False,
    ) -> Outcome | asyncio.Future[Outcome]:
        """``redeem_submit``'s decision of a prepared order: a certain decline answered
        at once, else the hold queued for the writer (or held for an admission window)."""
        if isinstance(prepared, Outcome):
            return prepared
        order, b, ev = prepared
        windows = self.windows
        waiting = None if elsewhere else windows.offer(b, order, ev, client_id, key, fingerprint)
        if waiting is not None:
            return waiting
        fast = self._fast_decline(b, order, ev, client_id, key, elsewhere)
        if fast is not None:
            events = self.events
            if events.counts_declines(b.id):  # (the codes and the clock read only then)
                events.declined(b.id, (r["code"] for r in fast.body["reasons"]), self.now_ms())
            return fast
        hold = self._hold_command(order, ev, client_id, key, fingerprint, elsewhere)
        return self.writer.submit(hold)

    async def redeem(self, order: Order, client_id: str, key: str, fingerprint: str) -> Outcome:
        out = self.redeem_submit(order, client_id, key, fingerprint)
        if isinstance(out, Outcome):
            return out
        result: Outcome = await out
        return result

    def submit_redemptions(
        self, requests: list[tuple[Order, str, str, str]]
    ) -> list[Outcome | asyncio.Future[Outcome]]:
        """Evaluate and queue several redemptions now, in order (they may share a commit):
        an immediate ``Outcome`` or a future per request. A ``LijianError`` (409 conflict,
        422 …) comes back in its slot as the ``Outcome`` the HTTP layer would answer."""
        slots: list[Outcome | asyncio.Future[Outcome]] = []
        for order, client_id, key, fp in requests:
            try:
                slots.append(self.redeem_submit(order, client_id, key, fp))
            except LijianError as exc:
                slots.append(as_outcome(exc))
        return slots

    @staticmethod
    async def outcomes(slots: list[Outcome | asyncio.Future[Outcome]]) -> list[Outcome]:
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
