"""Admission windows at the engine: hold the first N seconds' redemptions, then decide.

With ``[release] admission_window_s = N`` every redemption for the day's tranche that
arrives in the first N seconds after ``daily_open`` waits here (its HTTP request stays
open) and is decided when the window ends, all together, in the draw's order
(``lijian.core.window``). This lives in the engine, where the one ledger is: in
``serve --workers N`` and with gateways the sequencer's engine holds the requests and
the gateways simply wait for the answer, so every topology gives the same order.

Bounds: at most ``[release] max_waiting`` requests wait in one window, and
``waiting_max`` in all windows of the engine together (beyond: 503 with ``Retry-After``,
the seconds until the window ends); a request waits at most the window plus its
decision (the decision is due the moment the window ends: a timer, or the next request
or clock move after it, whichever comes first). A request that cannot be granted
whatever the order (stateless reasons: outside the city, not campaign goods, …) is
answered at once, and so are retries of a decided request and orders already redeemed.

Seeds: at start, every future day of a windowed campaign without a draw gets its
commitment in a ``DrawCommitted`` entry, committed before the first request is served, so
it is public before the open. The seed itself is derived from the ledger key
(``lijian.core.draw.derive_seed``): it is in no entry until the window has ended, when
the ledger reveals it (``DrawRevealed``, a timed event of ``Ledger.advance``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypedDict, TypeVar

from lijian.clock import Clock
from lijian.core.book import Book
from lijian.core.draw import commitment
from lijian.core.entries import DrawCommitted
from lijian.core.errors import (
    EngineOverloaded,
    EngineStopped,
    IdempotencyKeyReused,
    LijianError,
)
from lijian.core.ledger import HoldOutcome, Ledger
from lijian.core.order import Order
from lijian.core.rules import Evaluation
from lijian.core.window import Arrival, windowed
from lijian.writer import BatchContext, GroupCommitWriter

WAITING_MAX_DEFAULT = 200_000  # requests waiting in all windows of all campaigns together
POLL_S = 0.05  # a manual clock moves by command: look this often whether a window ended


class WindowFull(EngineOverloaded):
    """More requests wait in admission windows than the limit: 503, retry after it ends."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


# What a waiting request is answered with: the engine's Outcome (``shape`` makes it).
R = TypeVar("R")


@dataclass(slots=True)
class _Waiting(Generic[R]):
    arrival: Arrival
    futures: list[asyncio.Future[R]]


@dataclass(slots=True)
class _Window(Generic[R]):
    campaign_id: str
    day: str
    ends_ms: int
    waiting: list[_Waiting[R]] = field(default_factory=list)
    by_key: dict[tuple[str, str], _Waiting[R]] = field(default_factory=dict)


class WindowView(TypedDict):
    waiting: int
    max_waiting: int


class AdmissionWindows(Generic[R]):
    """The open windows of one engine (on the engine's loop, like the ledger)."""

    def __init__(
        self,
        ledger: Callable[[], Ledger],
        writer: GroupCommitWriter,
        clock: Clock,
        shape: Callable[[Ledger, HoldOutcome], R],  # a hold outcome → the answer
        seed_source: Callable[[str, str], str],
        waiting_max: int = WAITING_MAX_DEFAULT,
    ) -> None:
        assert waiting_max > 0
        self._ledger = ledger
        self._writer = writer
        self._clock = clock
        self._shape = shape
        self.waiting_max = waiting_max
        self._open: dict[tuple[str, str], _Window[R]] = {}
        self._waiting = 0
        self._timer: asyncio.Task[None] | None = None
        self.decided = 0  # windows decided since start
        # (campaign, day) → its seed: derived from the ledger key (the engine gives it);
        # the simulator replaces it to be deterministic for a simulation seed.
        self.seed_source = seed_source

    @property
    def waiting(self) -> int:
        return self._waiting

    def _now_ms(self) -> int:
        return max(self._clock.now_ms(), self._ledger().now_ms)

    # ------------------------------------------------------------------ seeds
    async def seed_days(self) -> int:
        """Store the commitment of every future day of every windowed campaign (or
        lottery of claimed vouchers) lacking a draw (its seed is revealed when its
        window, or its registrations, have ended)."""
        led = self._ledger()
        now_ms = self._now_ms()
        todo = [
            (b.id, day)
            for b in led.books.values()
            if b.settings.release.admission_window_s > 0
            or b.settings.claims.allocation == "lottery"
            for day, t in b.tranches.items()
            if day not in b.draws and t.opens_at_ms > now_ms
        ]
        if not todo:
            return 0

        def run(ctx: BatchContext) -> int:
            ctx.ledger.bind_key()  # the seeds derive from it: a start with another is refused
            for cid, day in todo:
                promise = commitment(self.seed_source(cid, day))
                ctx.ledger.emit(DrawCommitted(ctx.ledger.now_ms, cid, day, promise))
            return len(todo)

        n: int = await self._writer.submit(run)
        return n

    # --------------------------------------------------------------- arrivals
    def window_of(self, b: Book, now_ms: int) -> tuple[str, int] | None:
        """(day, window end) when ``now_ms`` is inside the day's admission window."""
        window_s = b.settings.release.admission_window_s
        if window_s <= 0:
            return None
        w = b.schedule.window_at(now_ms)
        if w is None:
            return None
        day = w.date.isoformat()
        ends_ms = w.opens_at_ms + window_s * 1000
        if not w.opens_at_ms <= now_ms < ends_ms or not windowed(b, day):
            return None
        return day, ends_ms

    def offer(
        self, b: Book, order: Order, ev: Evaluation, client_id: str, key: str, fingerprint: str
    ) -> asyncio.Future[R] | None:
        """Hold the request for its window (a future of its Outcome), or None: decide it
        as usual. Windows that have ended are decided first, so nothing that arrives
        after a window ever overtakes the requests that waited in it."""
        if not self._open and b.settings.release.admission_window_s <= 0:
            return None  # the hot path of first come, first served: nothing to look at
        now_ms = self._now_ms()
        self.flush_due(now_ms)
        where = self.window_of(b, now_ms)
        if where is None or ev.reasons:
            return None
        led = self._ledger()
        if (client_id, key) in led.idempotency or (order.platform, order.order_id) in (
            led.active_orders
        ):
            return None  # a replay or a 409: the same answer now as at the window's end
        day, ends_ms = where
        w = self._open.get((b.id, day))
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        same = w.by_key.get((client_id, key)) if w else None
        if same is not None:
            if same.arrival.fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with another request by this client"
                )
            same.futures.append(fut)  # a retry while waiting: the same answer, once
            return fut
        limit = b.settings.release.max_waiting
        if self._waiting >= self.waiting_max or (w is not None and len(w.waiting) >= limit):
            wait_s = max(1, math.ceil((ends_ms - now_ms) / 1000))
            raise WindowFull(
                f"{min(limit, self.waiting_max)} requests wait for the admission window "
                f"already; retry in {wait_s} s",
                wait_s,
            )
        if w is None:
            w = self._open[(b.id, day)] = _Window(b.id, day, ends_ms)
        entry = _Waiting(Arrival(order, ev, client_id, key, fingerprint), [fut])
        w.waiting.append(entry)
        w.by_key[(client_id, key)] = entry
        self._waiting += 1
        self._arm()
        return fut

    # --------------------------------------------------------------- decisions
    def _arm(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Decide each window once it has ended (system clock: sleep until then)."""
        while self._open:
            now_ms = self._now_ms()
            first_end_ms = min(w.ends_ms for w in self._open.values())
            if first_end_ms <= now_ms:
                self.flush_due(now_ms)
                continue
            await asyncio.sleep(min(POLL_S, (first_end_ms - now_ms) / 1000))

    def flush_due(self, now_ms: int) -> None:
        """Queue the decision of every window that has ended (in the writer's order)."""
        for k in [k for k, w in self._open.items() if w.ends_ms <= now_ms]:
            w = self._open.pop(k)
            self._waiting -= len(w.waiting)
            self._decide(w)

    def _decide(self, w: _Window[R]) -> None:
        arrivals = [x.arrival for x in w.waiting]
        shape = self._shape

        def run(ctx: BatchContext) -> list[LijianError | R]:
            results = ctx.ledger.decide_window(w.campaign_id, w.day, arrivals, ctx.now_ms)
            return [r if isinstance(r, LijianError) else shape(ctx.ledger, r) for r in results]

        try:
            fut = self._writer.submit(run)
        except LijianError as exc:
            for x in w.waiting:
                _fail(x.futures, exc)
            return
        self.decided += 1

        def done(f: asyncio.Future[list[LijianError | R]]) -> None:
            if f.cancelled() or f.exception() is not None:
                error = f.exception() if not f.cancelled() else None
                for x in w.waiting:
                    _fail(x.futures, error or asyncio.CancelledError())
                return
            for x, r in zip(w.waiting, f.result(), strict=True):
                if isinstance(r, LijianError):
                    _fail(x.futures, r)
                else:
                    _answer(x.futures, r)

        fut.add_done_callback(done)

    def close(self) -> None:
        """A graceful stop: the waiting requests get 503 and retry with the same key
        after the restart (deciding a window early would not be the window's order)."""
        if self._timer is not None:
            self._timer.cancel()
        windows, self._open, self._waiting = list(self._open.values()), {}, 0
        for w in windows:
            for x in w.waiting:
                _fail(x.futures, EngineStopped("the engine is stopping: retry"))

    def view(self, campaign_id: str) -> WindowView:
        """The operator's view: requests waiting in the campaign's open window."""
        led = self._ledger()
        ws = [w for w in self._open.values() if w.campaign_id == campaign_id]
        limit = led.book(campaign_id).settings.release.max_waiting
        return {"waiting": sum(len(w.waiting) for w in ws), "max_waiting": limit}


def _answer(futures: list[asyncio.Future[R]], result: R) -> None:
    for f in futures:
        if not f.done():  # done: the caller went away, and the decision stands
            f.set_result(result)


def _fail(futures: list[asyncio.Future[R]], error: BaseException) -> None:
    for f in futures:
        if not f.done():
            f.set_exception(error)
