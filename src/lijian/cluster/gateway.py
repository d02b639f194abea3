"""A gateway's engine: a thin client of the sequencer with the methods of the one seam.

``RemoteEngine`` implements ``lijian.port.EnginePort`` (and ``AdmissionPort``): the HTTP
layer calls it exactly as it calls the ``Engine`` in one process, and every call that
reads or changes the ledger becomes one message to the sequencer (``wire.py``), where the
one engine decides it. What the gateway keeps is static: the campaigns' settings (sent by
the sequencer at connect time, so both parse the same files; a campaign created over the
API later is asked for by id when first named, and settings never change once a campaign
exists) and whether the clock is manual. Nothing it holds can change an answer.

Limits: at most ``INFLIGHT_MAX`` calls wait for answers (beyond: 503 ``overloaded``);
each waits at most ``CALL_TIMEOUT_S``, but the end of a catalogue upload, which waits as
long as the sequencer sends ``PROGRESS`` for it (``gateway_policy.CATALOG_STALL_S``).
The connection is TLS with this gateway's certificate, and the sequencer must show a
certificate from the same CA naming it (``tls.py``): anything else listening at the
address is refused. A lost connection (the sequencer died, or a standby took over: give
every sequencer's address, in order) is re-established trying each address in turn, then
waiting a back-off that doubles from ``RECONNECT_DELAY_S[0]`` to
``RECONNECT_DELAY_S[1]`` with jitter (each wait is drawn between half and all of it),
and is reset only by a connection that answered: a sequencer that accepts and drops at
once is not hammered. Failures are logged at most once per ``RECONNECT_LOG_EVERY_S``.
Until the first sequencer answers (start-up waits ``CONNECT_TIMEOUT_S`` for it, then
serves anyway) every call is 503. The calls a lost connection carried whose answer was
lost are sent again on the new connection if they are safe to repeat (``RESENDABLE``:
redemptions and refunds carry their Idempotency-Key, which the ledger turns into a
replay of whatever was decided; captures, voids and reads are idempotent), within their
own deadline; the others (catalogue uploads, clock moves) fail with 503
``sequencer_unavailable`` and ``Retry-After``, as do calls made while no sequencer can
be reached. Nothing is guessed locally.

No call waits long on a sequencer that cannot answer: a connection counts only once a
ping on it was answered (a dead sequencer's socket, kept by its supervisor, still
completes TCP handshakes into its backlog); on a connection silent for
``LINK_SILENT_S`` while calls wait (a ping sent after ``PING_AFTER_S``) the quick calls
get their 503, the connection stays; the calls kept for a resend wait ``RESEND_WAIT_S``
for a new connection. So a caller has its 503 within 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import msgspec

from lijian.cluster.gateway_campaigns import RemoteCampaigns, hello_settings
from lijian.cluster.gateway_policy import (
    CALL_TIMEOUT_S,
    CATALOG_STALL_S,
    CONNECT_ATTEMPT_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    FIRST_ANSWER_S,
    HANDSHAKE_TIMEOUT_S,
    INFLIGHT_MAX,
    LINK_LOST,
    LINK_SILENT_S,
    PING_AFTER_S,
    PING_METHOD,
    QUICK,
    RECONNECT_DELAY_S,
    RECONNECT_LOG_EVERY_S,
    RESEND_WAIT_S,
    RESENDABLE,
    SWEEP_EVERY_S,
    UNSIGNED_PARTS,
    WINDOW_WAIT_S,
    Pending,
    Sent,
    SequencerUnavailable,
    as_bool,
    as_bytes,
    as_int,
    as_json,
    as_none,
    as_outcome,
    backoff_waits_s,
    catalog_late,
    catalog_wait_s,
    unavailable,
)
from lijian.cluster.gateway_views import RemoteViews
from lijian.cluster.tls import SEQUENCER_NAME
from lijian.cluster.wire import (
    ANSWER_FRAME_BYTES_MAX,
    ERROR,
    OK,
    PROBLEM,
    PROGRESS,
    REQUEST_FRAME_BYTES_MAX,
    Method,
    Outbox,
    args_bytes_max,
    decode_answers,
    encode,
    parse_address,
    read_frame,
)
from lijian.core.claims import ClaimRequest
from lijian.core.errors import EngineOverloaded, LijianError
from lijian.core.order import Order, RefundRequest
from lijian.core.settings import Settings
from lijian.http.problems import Problem
from lijian.jsonish import Json
from lijian.outcome import Outcome
from lijian.port import EnginePort, SequencerPort, Ticket, TicketSlot

log = logging.getLogger("lijian.gateway")
T = TypeVar("T")  # what a call's answer is converted to


class RemotePort(RemoteViews, RemoteCampaigns):
    """The port's methods (``lijian.port.EnginePort``), each one message on the link.

    A signed request's ticket is an explicit part of the object it calls: the gateway's
    app asks ``RemoteEngine.carrier(slot)`` for a ``TicketCarrier`` whose first call
    takes the slot's ticket along (no round trip of its own); the ``RemoteEngine`` itself
    carries none (start-up, unsigned routes)."""

    _link: RemoteEngine
    _slot: TicketSlot | None

    def _call(
        self, method: Method, args: tuple[object, ...], convert: Callable[[object], T]
    ) -> asyncio.Future[T]:
        ticket = None
        slot = self._slot
        if slot is not None and slot.ticket is not None and method not in UNSIGNED_PARTS:
            ticket, slot.ticket = slot.ticket, None  # the first call takes the request's
        return self._link.send(method, args, convert, ticket)

    async def _view(self, method: Method, *args: object) -> Json:
        return await self._call(method, args, as_json)

    def _link_info(self) -> Json:
        return self._link.info

    @property
    def manual_clock(self) -> bool:
        if not self._link.info:
            raise SequencerUnavailable("no answer from the sequencer yet")
        return bool(self._link.info.get("manual_clock", False))

    async def start(self) -> None:
        await self._link.connect_first()

    async def aclose(self) -> None:
        await self._link.close_link()

    def remote_ledger(self) -> SequencerPort | None:
        return self._link

    def observe_batches(self, on_batch: Callable[[int, float], None]) -> None:
        """Commits happen at the sequencer; its own /metrics has their histograms."""

    def redeem_submit(
        self, order: Order, client_id: str, key: str, fingerprint: str
    ) -> asyncio.Future[Outcome]:
        return self._call(Method.REDEEM, (order, client_id, key, fingerprint), as_outcome)

    async def quote_order(self, order: Order) -> Json:
        return await self._view(Method.QUOTE, order)

    async def capture(self, redemption_id: str) -> Outcome:
        return await self._call(Method.CAPTURE, (redemption_id,), as_outcome)

    async def void(self, redemption_id: str) -> Outcome:
        return await self._call(Method.VOID, (redemption_id,), as_outcome)

    async def claim(
        self, campaign_id: str, req: ClaimRequest, client_id: str, key: str, fingerprint: str
    ) -> Outcome:
        args = (campaign_id, req, client_id, key, fingerprint)
        return await self._call(Method.CLAIM, args, as_outcome)

    async def operate(self, op: str, campaign_id: str, body: Json, by: str) -> Outcome:
        return await self._call(Method.OPERATE, (op, campaign_id, body, by), as_outcome)

    async def refund(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Outcome:
        args = (redemption_id, req, client_id, key, fp)
        return await self._call(Method.REFUND, args, as_outcome)

    async def set_clock(self, target_ms: int | None = None, advance_ms: int | None = None) -> int:
        return await self._call(Method.CLOCK, (target_ms, advance_ms), as_int)


class TicketCarrier(RemotePort):
    """The port for one signed request: its first call takes the request's ticket."""

    __slots__ = ("_link", "_slot")

    def __init__(self, link: RemoteEngine, slot: TicketSlot) -> None:
        self._link = link
        self._slot = slot


class RemoteEngine(RemotePort):
    """The gateway's engine: the link to the sequencer, and the port over it."""

    def __init__(
        self,
        addresses: list[str],
        *,
        ssl_context: ssl.SSLContext,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
        inflight_max: int = INFLIGHT_MAX,
        catalog_stall_s: float = CATALOG_STALL_S,
    ) -> None:
        assert addresses and call_timeout_s > 0 and inflight_max > 0
        self.addresses = [parse_address(a) for a in addresses]
        assert ssl_context.verify_mode == ssl.CERT_REQUIRED and ssl_context.check_hostname
        self.ssl_context = ssl_context
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s
        self.inflight_max = inflight_max
        self.catalog_stall_s = catalog_stall_s
        self._link = self
        self._slot = None
        self.info: Json = {}  # the hello's answer; empty until a sequencer answered
        self.known: dict[str, Settings] = {}  # the campaigns' settings, by id
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        self._order: deque[tuple[float, int]] = deque()  # (deadline, id), for the sweeper
        # Redemptions may wait at the sequencer for an admission window (lijian.release):
        # their deadline is later by the longest window, so they keep a queue of their own
        # (each queue's deadlines stay in order).
        self._order_redeem: deque[tuple[float, int]] = deque()
        # Ends of catalogue uploads: PROGRESS moves their deadlines, so no queue in order
        # (a gateway has a few at once: each is an HTTP upload of up to 256 MiB).
        self._catalog_calls: set[int] = set()
        self._out: Outbox | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._connected: asyncio.Event | None = None
        self._hello_done: asyncio.Event | None = None
        self.uploads = itertools.count(1)  # ids of catalogue uploads
        self._waits = backoff_waits_s()
        self._answered = False  # the current connection has delivered an answer
        self._failures_unlogged = 0
        self._logged_s = -RECONNECT_LOG_EVERY_S
        self._heard_s = 0.0  # monotonic time of the last frame (or of the connection)
        self._pinged_s = 0.0
        self._lost_s: float | None = None  # when the connection was lost, until the next
        self.attempts = 0  # connection attempts, every address
        self.reconnects = 0
        self.resent = 0  # calls sent again after a lost connection

    # ------------------------------------------------------------ lifecycle
    async def connect_first(self) -> None:
        """Connect and learn the campaigns, waiting up to ``connect_timeout_s``; then
        serve anyway (503 until a sequencer answers), keeping the connection up."""
        self._connected = asyncio.Event()
        self._hello_done = asyncio.Event()
        self._tasks.append(asyncio.ensure_future(self._keep_connected()))
        self._tasks.append(asyncio.ensure_future(self._sweep()))
        self._tasks.append(asyncio.ensure_future(self._hello()))
        try:
            await asyncio.wait_for(self._hello_done.wait(), self.connect_timeout_s)
        except TimeoutError:
            log.warning("no answer from the sequencer at %s yet: answering 503 until it "
                        "answers", self._where())  # fmt: skip

    async def _hello(self) -> None:
        """Ask for the campaigns once connected, again after a lost connection or while
        the sequencer is not yet sure of its lease (a 503 right after a takeover, or when
        a renewal ran late on a busy machine), until answered."""
        assert self._connected is not None and self._hello_done is not None
        while True:
            await self._connected.wait()
            wait_s = RECONNECT_DELAY_S[0]
            try:
                hello = await self._call(Method.HELLO, (), as_json)
                break
            except SequencerUnavailable:
                pass
            except (Problem, LijianError) as exc:
                if getattr(exc, "code", None) != SequencerUnavailable.code:
                    # Not a passing state: ask again, slowly, and say so now and then.
                    self._failed(f"the sequencer refused the hello: {exc}")
                    wait_s = RECONNECT_DELAY_S[1]
            await asyncio.sleep(wait_s)
        self.known = hello_settings(hello)
        self.info = hello
        self._hello_done.set()

    async def close_link(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._drop("the gateway is stopping")

    def _where(self) -> str:
        return ", ".join(f"{h}:{p}" for h, p in self.addresses)

    def _failed(self, what: str) -> None:
        """A failed attempt or a lost connection: logged at most once per period."""
        self._failures_unlogged += 1
        now_s = time.monotonic()
        if now_s - self._logged_s >= RECONNECT_LOG_EVERY_S:
            log.warning("sequencer link: %s (%d failures since the last line; retrying with "
                        "back-off)", what, self._failures_unlogged)  # fmt: skip
            self._logged_s = now_s
            self._failures_unlogged = 0

    async def _open(
        self, host: str, port: str | int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls, name, hs_s = self.ssl_context, SEQUENCER_NAME, HANDSHAKE_TIMEOUT_S
        if host == "unix":
            conn = asyncio.open_unix_connection(str(port), ssl=tls, server_hostname=name,
                                                ssl_handshake_timeout=hs_s)  # fmt: skip
        else:
            conn = asyncio.open_connection(host, port, ssl=tls, server_hostname=name,
                                           ssl_handshake_timeout=hs_s)  # fmt: skip
        reader, writer = await asyncio.wait_for(conn, CONNECT_ATTEMPT_TIMEOUT_S)
        try:
            await asyncio.wait_for(self._first_answer(reader, writer), FIRST_ANSWER_S)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def _first_answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A ping, answered: what took the connection is a sequencer that serves (a
        listen backlog completes the handshake of TCP, and with a live supervisor even
        more, but answers nothing)."""
        out = Outbox(writer, REQUEST_FRAME_BYTES_MAX)
        call_id = next(self._ids)
        out.put(encode((call_id, PING_METHOD, None, ())))
        while True:  # nothing else was sent on it: the first answer is the ping's
            body = await read_frame(reader, ANSWER_FRAME_BYTES_MAX)
            if any(a.call_id == call_id for a in decode_answers(body)):
                return

    async def _connect(self) -> asyncio.StreamReader:
        """A connection to the first address that takes one (TLS done, a ping answered),
        retrying each round after the next back-off wait, for as long as it takes."""
        while True:
            tried: list[str] = []
            for host, port in self.addresses:
                self.attempts += 1
                try:
                    reader, writer = await self._open(host, port)
                except (*LINK_LOST, OSError, TimeoutError) as exc:
                    why = str(exc) or ("no answer" if isinstance(exc, TimeoutError) else "")
                    tried.append(f"{host}:{port}: {why or type(exc).__name__}")
                    continue
                self._out = Outbox(writer, REQUEST_FRAME_BYTES_MAX)
                self._answered = False
                self._heard_s = time.monotonic()
                self._lost_s = None
                assert self._connected is not None
                self._connected.set()
                return reader
            self._failed("no sequencer answers (" + "; ".join(tried) + ")")
            least_s, most_s = next(self._waits)
            await asyncio.sleep(random.uniform(least_s, most_s))

    async def _keep_connected(self) -> None:
        reader = await self._connect()
        while not self._closing:
            with contextlib.suppress(*LINK_LOST):
                await self._read_answers(reader)
            if self._closing:
                return
            self._lost_s = time.monotonic()
            self._drop("the connection to the sequencer was lost", keep_resendable=True)
            self._failed("the connection to the sequencer was lost")
            if not self._answered:  # dropped before it answered: back off first
                least_s, most_s = next(self._waits)
                await asyncio.sleep(random.uniform(least_s, most_s))
            reader = await self._connect()
            self.reconnects += 1
            self._resend()

    def _drop(self, why: str, keep_resendable: bool = False) -> None:
        """Close the connection; fail the calls it carried, except (when reconnecting)
        those that are safe to send again and still within their deadline."""
        assert self._connected is not None
        self._connected.clear()
        if self._out is not None:
            self._out.close()
            with contextlib.suppress(Exception):
                self._out.writer.close()
            self._out = None
        now_s = time.monotonic()
        kept: dict[int, Pending] = {}
        for call_id, p in self._pending.items():
            if p.fut.done():
                continue
            if keep_resendable and p.resend is not None and p.deadline_s > now_s:
                kept[call_id] = p
            else:
                p.fut.set_exception(unavailable(p, why))
        self._pending = kept  # the sweeper still times these out at their deadlines

    def _resend(self) -> None:
        out = self._out
        assert out is not None
        for call_id in sorted(self._pending):  # in the order they were first sent
            p = self._pending[call_id]
            if not p.fut.done() and p.resend is not None:
                method, args, ticket = p.resend
                if ticket is not None:
                    ticket = msgspec.structs.replace(ticket, resent=True)
                out.put(encode((call_id, method, ticket, args)))
                self.resent += 1

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        while True:
            body = await read_frame(reader, ANSWER_FRAME_BYTES_MAX)
            self._heard_s = time.monotonic()
            if not self._answered:  # a sequencer that serves: the back-off starts over
                self._answered = True
                self._waits = backoff_waits_s()
                if self.reconnects:
                    log.warning("sequencer connection restored")
            pending = self._pending  # _drop replaces it: read it per frame
            for a in decode_answers(body):
                if a.kind == PROGRESS:  # still at it: more time, within the call's cap
                    p = pending.get(a.call_id)
                    if p is not None and p.cap_s is not None:
                        p.deadline_s = min(self._heard_s + self.catalog_stall_s, p.cap_s)
                    continue
                p = pending.pop(a.call_id, None)
                if p is None or p.fut.done():
                    continue  # timed out meanwhile: the caller has had its 503
                if a.kind == OK:
                    try:
                        p.settle(a.payload)
                    except AssertionError:  # not the shape its method answers: a bug
                        log.error("malformed answer to call %d", a.call_id)
                        p.fut.set_exception(
                            Problem(500, "internal_error", "unexpected server error")
                        )
                elif a.kind == PROBLEM:
                    assert isinstance(a.payload, list)
                    status, code, detail, errors, headers = a.payload
                    p.fut.set_exception(Problem(status, code, detail, errors, headers))
                else:
                    assert a.kind == ERROR
                    assert isinstance(a.payload, list)
                    p.fut.set_exception(LijianError(str(a.payload[1])))

    async def _sweep(self) -> None:
        """Fail calls that waited past their deadline (FIFO: deadlines are in order)."""
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            now_s = time.monotonic()
            for order in (self._order, self._order_redeem):
                self._sweep_one(order, now_s)
            self._sweep_catalog(now_s)
            self._check_link(now_s)

    def _sweep_catalog(self, now_s: float) -> None:
        for call_id in list(self._catalog_calls):
            p = self._pending.get(call_id)
            if p is None or p.fut.done():
                self._catalog_calls.discard(call_id)
            elif p.deadline_s <= now_s:
                self._catalog_calls.discard(call_id)
                del self._pending[call_id]
                p.fut.set_exception(catalog_late(p, self.catalog_stall_s))

    def _check_link(self, now_s: float) -> None:
        """Within 2 s, a 503 for every call no sequencer can answer (module doc)."""
        waiting = [p for p in self._pending.values() if not p.fut.done()]
        out = self._out
        if out is None:
            if waiting and self._lost_s is not None and now_s - self._lost_s > RESEND_WAIT_S:
                self._drop("no sequencer answers")  # the kept calls: 503 now
            return
        silent_s = now_s - self._heard_s
        if not waiting or silent_s < PING_AFTER_S:
            return
        if now_s - self._pinged_s >= PING_AFTER_S:
            self._pinged_s = now_s
            out.put(encode((next(self._ids), PING_METHOD, None, ())))  # answer ignored
        if silent_s <= LINK_SILENT_S:
            return
        # Not even the ping was answered: the quick calls waiting that long get their 503
        # (each is safe to send again: its key, or it only reads). The connection stays:
        # a sequencer that is only slow answers again on it, and one that died ends it.
        late = [p for p in waiting if p.quick and now_s - p.sent_s > LINK_SILENT_S]
        for p in late:
            p.fut.set_exception(SequencerUnavailable("the sequencer does not answer"))
        if late:
            self._failed(f"the sequencer answered nothing for {silent_s:.1f} s")

    def _sweep_one(self, order: deque[tuple[float, int]], now_s: float) -> None:
        while order and order[0][0] <= now_s:
            _, call_id = order.popleft()
            p = self._pending.pop(call_id, None)
            if p is not None and not p.fut.done():
                p.fut.set_exception(SequencerUnavailable("no answer in time from the sequencer"))

    # ----------------------------------------------------------------- calls
    def send(
        self,
        method: Method,
        args: tuple[object, ...],
        convert: Callable[[object], T],
        ticket: Ticket | None,
    ) -> asyncio.Future[T]:
        """One call on the link: its future, resolved with ``convert(answer)``."""
        out = self._out
        if out is None or out.closed:
            raise SequencerUnavailable("the sequencer cannot be reached")
        if len(self._pending) >= self.inflight_max:
            raise EngineOverloaded(f"more than {self.inflight_max} calls waiting for the sequencer")
        call_id = next(self._ids)
        item = encode((call_id, method, ticket, args))
        if len(item) > args_bytes_max(method) + 1024:  # the sequencer would refuse it
            # (and the frame carrying it: REQUEST_FRAME_BYTES_MAX leaves 64 KiB for this)
            msg = f"{method}: {len(item)} bytes, more than the sequencer link carries"
            raise Problem(413, "payload_too_large", msg)
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def settle(payload: object) -> None:
            fut.set_result(convert(payload))

        now_s = time.monotonic()
        deadline_s = now_s + self.call_timeout_s
        resend: Sent | None = (method, args, ticket) if method in RESENDABLE else None
        if method == Method.CATALOG:  # (upload_id, n_rows, campaign_id): PROGRESS moves it
            n_rows = args[1]
            assert isinstance(n_rows, int)
            cap_s = now_s + catalog_wait_s(n_rows)
            deadline_s = min(now_s + self.catalog_stall_s, cap_s)
            self._pending[call_id] = Pending(fut, settle, deadline_s, resend, False, cap_s)
            self._catalog_calls.add(call_id)
        else:
            order = self._order
            if method == Method.REDEEM:
                deadline_s, order = deadline_s + WINDOW_WAIT_S, self._order_redeem
            self._pending[call_id] = Pending(fut, settle, deadline_s, resend, method in QUICK)
            order.append((deadline_s, call_id))
        out.put(item)
        return fut

    # ------------------------------------ the sequencer's admission (SequencerPort)
    def carrier(self, slot: TicketSlot) -> EnginePort:
        return TicketCarrier(self, slot)

    async def admit(self, slot: TicketSlot) -> None:
        """Send a request's ticket alone; its refusal (a Problem) is raised."""
        ticket, slot.ticket = slot.ticket, None
        assert ticket is not None, "a ticket is admitted once"
        await self.send(Method.ADMIT, (), as_none, ticket)

    def stored(self, slot: TicketSlot) -> None:
        """Nothing to wait for here: the sequencer answers once the nonce is stored."""

    async def ledger_metrics(self) -> bytes:
        """The ledger's half of /metrics, rendered by the sequencer (Prometheus text)."""
        return await self._call(Method.METRICS, (), as_bytes)

    async def nonce_is_fresh(self, key_id: str, nonce: str, ts_s: int) -> bool:
        return await self._call(Method.FRESH, (key_id, nonce, ts_s), as_bool)
