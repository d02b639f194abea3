"""A gateway's engine: a thin client of the sequencer with the methods of the one seam.

``RemoteEngine`` implements ``lijian.port.EnginePort`` (and ``AdmissionPort``): the HTTP
layer calls it exactly as it calls the ``Engine`` in one process, and every call that
reads or changes the ledger becomes one message to the sequencer (``wire.py``), where the
one engine decides it. What the gateway keeps is static: the campaigns' settings (sent by
the sequencer at connect time, so both parse the same files) and whether the clock is
manual. Nothing it holds can change an answer.

Limits: at most ``INFLIGHT_MAX`` calls wait for answers (beyond: 503 ``overloaded``);
each waits at most ``CALL_TIMEOUT_S``. A lost connection (the sequencer died, or a
standby took over: give every sequencer's address, in order) is re-established with
bounded back-off, trying each address in turn. The calls it carried whose answer was
lost are sent again on the new connection if they are safe to repeat (``RESENDABLE``:
redemptions and refunds carry their Idempotency-Key, which the ledger turns into a
replay of whatever was decided; captures, voids and reads are idempotent), within their
own deadline; the others (catalogue uploads, clock moves) fail with 503
``sequencer_unavailable`` and ``Retry-After``, as do calls made while no sequencer can
be reached. Nothing is guessed locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import tomllib
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from lijian.cluster.wire import (
    ERROR,
    OK,
    PROBLEM,
    Outbox,
    WireError,
    decode_answers,
    encode,
    parse_address,
    read_frame,
)
from lijian.core.errors import CampaignNotFound, EngineOverloaded, InvalidRequest, LijianError
from lijian.core.order import Order, RefundRequest
from lijian.core.settings import MAX_ADMISSION_WINDOW_S, Settings, parse_settings
from lijian.http.admission import CURRENT_TICKET, Ticket
from lijian.http.problems import Problem
from lijian.outcome import Outcome

log = logging.getLogger("lijian.gateway")

INFLIGHT_MAX = 100_000  # as many as the sequencer's queue holds
CALL_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 60.0  # at start: the sequencer may still be recovering its ledger
RECONNECT_DELAY_S = (0.05, 2.0)  # back-off from the first to the longest wait
SWEEP_EVERY_S = 0.5
WINDOW_WAIT_S = float(MAX_ADMISSION_WINDOW_S)  # a redemption may wait that long for its window
# Calls that may be sent again after a lost connection: the ledger decides each at most
# once (idempotency keys, hold states) or they only read. A resend carries its ticket
# marked ``resent``: the sequencer admits it again without a second rate token, a few
# times at most, since the first send may have taken its nonce.
RESENDABLE = frozenset(
    ("hello", "redeem", "quote", "capture", "void", "refund", "redemption", "person",
     "status", "public", "settlement", "audit", "evidence", "events", "health", "gauges", "metrics",
     "operations")
)  # fmt: skip
# Not "operate": an operator's change (a pause, an approval) is not idempotent, so a lost
# answer is a 503 and the operator reads the change log before trying again.
# What ends a connection (the sequencer stopped, or it sent what cannot be read).
_LOST = (asyncio.IncompleteReadError, ConnectionError, WireError, msgspec.DecodeError)


class SequencerUnavailable(LijianError):
    """No answer from the sequencer (down, unreachable, or too slow): 503, retry later."""

    code = "sequencer_unavailable"


def _outcome(payload: Any) -> Outcome:
    status, body, replayed = payload
    return Outcome(status, body, replayed)


def _same(payload: Any) -> Any:
    return payload


class _Pending:
    __slots__ = ("convert", "deadline_s", "fut", "resend")

    def __init__(self, fut: asyncio.Future[Any], convert: Callable[[Any], Any], deadline_s: float,
                 resend: tuple[str, tuple[Any, ...], Ticket | None] | None) -> None:  # fmt: skip
        self.fut = fut
        self.convert = convert
        self.deadline_s = deadline_s
        # (method, args, ticket) to send again after a lost connection, if safe
        self.resend = resend


class RemoteEngine:
    shared_admission = True

    def __init__(
        self,
        addresses: list[str],
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
        inflight_max: int = INFLIGHT_MAX,
    ) -> None:
        assert addresses and call_timeout_s > 0 and inflight_max > 0
        self.addresses = [parse_address(a) for a in addresses]
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s
        self.inflight_max = inflight_max
        self.info: dict[str, Any] = {}
        self._settings: dict[str, Settings] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._order: deque[tuple[float, int]] = deque()  # (deadline, id), for the sweeper
        # Redemptions may wait at the sequencer for an admission window (lijian.release):
        # their deadline is later by the longest window, so they keep a queue of their own
        # (each queue's deadlines stay in order).
        self._order_redeem: deque[tuple[float, int]] = deque()
        self._out: Outbox | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False
        self._connected: asyncio.Event | None = None
        self.reconnects = 0
        self.resent = 0  # calls sent again after a lost connection

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect (waiting up to ``connect_timeout_s``), learn the campaigns, and keep
        the connection up from then on."""
        self._connected = asyncio.Event()
        deadline = time.monotonic() + self.connect_timeout_s
        reader = await self._connect(deadline)
        self._tasks.append(asyncio.ensure_future(self._keep_connected(reader)))
        self._tasks.append(asyncio.ensure_future(self._sweep()))
        # The sequencer answers once it has recovered its ledger: wait as long as for
        # the connection.
        remaining_s = max(deadline - time.monotonic(), self.call_timeout_s)
        hello = await asyncio.wait_for(self._hello(), remaining_s)
        self.info = hello
        for text in hello["settings"]:
            s = parse_settings(tomllib.loads(text))
            self._settings[s.campaign.id] = s

    async def _hello(self) -> dict[str, Any]:
        """Ask again after a lost connection, or while the sequencer is not yet sure of its
        lease (a 503 right after a takeover, or when a renewal ran late on a busy
        machine), until answered; ``start`` bounds the wait."""
        while True:
            try:
                out: dict[str, Any] = await self._call("hello", ())
                return out
            except SequencerUnavailable:
                pass
            except Problem as exc:
                if exc.code != SequencerUnavailable.code:
                    raise
            await asyncio.sleep(RECONNECT_DELAY_S[0])

    async def aclose(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._drop("the gateway is stopping")

    async def _connect(self, deadline_s: float) -> asyncio.StreamReader:
        delay_s = RECONNECT_DELAY_S[0]
        while True:
            for host, port in self.addresses:
                try:
                    if host == "unix":
                        reader, writer = await asyncio.open_unix_connection(str(port))
                    else:
                        reader, writer = await asyncio.open_connection(host, port)
                except OSError:
                    continue
                self._out = Outbox(writer)
                assert self._connected is not None
                self._connected.set()
                return reader
            if time.monotonic() + delay_s > deadline_s:
                where = ", ".join(f"{h}:{p}" for h, p in self.addresses)
                raise SequencerUnavailable(f"cannot reach the sequencer at {where}")
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_DELAY_S[1])

    async def _keep_connected(self, reader: asyncio.StreamReader) -> None:
        while not self._closing:
            with contextlib.suppress(*_LOST):
                await self._read_answers(reader)
            if self._closing:
                return
            self._drop("the connection to the sequencer was lost", keep_resendable=True)
            log.warning("sequencer connection lost; reconnecting")
            reader = await self._connect(float("inf"))
            self.reconnects += 1
            self._resend()
            log.warning("sequencer connection restored")

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
        kept: dict[int, _Pending] = {}
        for call_id, p in self._pending.items():
            if p.fut.done():
                continue
            if keep_resendable and p.resend is not None and p.deadline_s > now_s:
                kept[call_id] = p
            else:
                p.fut.set_exception(SequencerUnavailable(why))
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
        pending = self._pending
        while True:
            for a in decode_answers(await read_frame(reader)):
                p = pending.pop(a.call_id, None)
                if p is None or p.fut.done():
                    continue  # timed out meanwhile: the caller has had its 503
                if a.kind == OK:
                    p.fut.set_result(p.convert(a.payload))
                elif a.kind == PROBLEM:
                    status, code, detail, errors, headers = a.payload
                    p.fut.set_exception(Problem(status, code, detail, errors, headers))
                else:
                    assert a.kind == ERROR
                    p.fut.set_exception(LijianError(str(a.payload[1])))

    async def _sweep(self) -> None:
        """Fail calls that waited past their deadline (FIFO: deadlines are in order)."""
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            now_s = time.monotonic()
            for order in (self._order, self._order_redeem):
                self._sweep_one(order, now_s)

    def _sweep_one(self, order: deque[tuple[float, int]], now_s: float) -> None:
        while order and order[0][0] <= now_s:
            _, call_id = order.popleft()
            p = self._pending.pop(call_id, None)
            if p is not None and not p.fut.done():
                p.fut.set_exception(SequencerUnavailable("no answer in time from the sequencer"))

    # ----------------------------------------------------------------- calls
    def _send(
        self,
        method: str,
        args: tuple[Any, ...],
        convert: Callable[[Any], Any],
        ticket: Ticket | None = None,
    ) -> Any:
        out = self._out
        if out is None or out.closed:
            raise SequencerUnavailable("the sequencer cannot be reached")
        if len(self._pending) >= self.inflight_max:
            raise EngineOverloaded(f"more than {self.inflight_max} calls waiting for the sequencer")
        if ticket is None:
            slot = CURRENT_TICKET.get()
            if slot is not None and slot.ticket is not None:
                ticket, slot.ticket = slot.ticket, None  # the first call takes the request's
        call_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        redeem = method == "redeem"
        deadline_s = time.monotonic() + self.call_timeout_s + (WINDOW_WAIT_S if redeem else 0)
        resend = (method, args, ticket) if method in RESENDABLE else None
        self._pending[call_id] = _Pending(fut, convert, deadline_s, resend)
        (self._order_redeem if redeem else self._order).append((deadline_s, call_id))
        out.put(encode((call_id, method, ticket, args)))
        return fut

    async def _call(
        self, method: str, args: tuple[Any, ...], convert: Callable[[Any], Any] = _same
    ) -> Any:
        return await self._send(method, args, convert)

    async def _view(self, method: str, *args: Any) -> dict[str, Any]:
        out: dict[str, Any] = await self._call(method, args)
        return out

    # ------------------------------------------------ the port (EnginePort)
    @property
    def campaign_ids(self) -> list[str]:
        return list(self._settings)

    @property
    def manual_clock(self) -> bool:
        return bool(self.info.get("manual_clock", False))

    def settings(self, campaign_id: str) -> Settings:
        s = self._settings.get(campaign_id)
        if s is None:
            raise CampaignNotFound(f"unknown campaign {campaign_id!r}")
        return s

    def observe_batches(self, on_batch: Callable[[int, float], None]) -> None:
        """Commits happen at the sequencer; its own /metrics has their histograms."""

    def redeem_submit(self, order: Order, client_id: str, key: str, fingerprint: str) -> Any:
        return self._send("redeem", (order, client_id, key, fingerprint), _outcome)

    async def quote_order(self, order: Order) -> dict[str, Any]:
        return await self._view("quote", order)

    async def capture(self, redemption_id: str) -> Outcome:
        out: Outcome = await self._call("capture", (redemption_id,), _outcome)
        return out

    async def void(self, redemption_id: str) -> Outcome:
        out: Outcome = await self._call("void", (redemption_id,), _outcome)
        return out

    async def operate(self, op: str, campaign_id: str, body: dict[str, Any], by: str) -> Outcome:
        out: Outcome = await self._call("operate", (op, campaign_id, body, by), _outcome)
        return out

    async def read_operations(self, campaign_id: str, what: str) -> dict[str, Any]:
        return await self._view("operations", campaign_id, what)

    async def refund(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Outcome:
        out: Outcome = await self._call(
            "refund", (redemption_id, req, client_id, key, fp), _outcome
        )
        return out

    async def catalog_upsert(
        self,
        rows: list[tuple[str, str, str]],
        categories: dict[str, int] | None = None,
        campaign_id: str | None = None,
    ) -> int:
        """The sequencer checks the rows against ``campaign_id`` and counts the categories
        from the rows themselves: ``categories`` is not sent."""
        if campaign_id is None:
            raise InvalidRequest("a catalogue upload names its campaign", ("campaign_id",))
        return int(await self._call("catalog", (campaign_id, rows)))

    async def set_clock(self, target_ms: int | None = None, advance_ms: int | None = None) -> int:
        return int(await self._call("clock", (target_ms, advance_ms)))

    async def read_redemption(self, redemption_id: str) -> dict[str, Any]:
        return await self._view("redemption", redemption_id)

    async def read_person(self, campaign_id: str, person_id: str) -> dict[str, Any]:
        return await self._view("person", campaign_id, person_id)

    async def read_status(self, campaign_id: str) -> dict[str, Any]:
        return await self._view("status", campaign_id)

    async def read_public(self, campaign_id: str) -> dict[str, Any]:
        return await self._view("public", campaign_id)

    async def settlement_report(self, campaign_id: str, day: str) -> dict[str, Any]:
        return await self._view("settlement", campaign_id, day)

    async def audit_report(self, campaign_id: str) -> dict[str, Any]:
        return await self._view("audit", campaign_id)

    async def evidence_report(self, campaign_id: str, day: str) -> dict[str, Any]:
        return await self._view("evidence", campaign_id, day)

    async def read_events(self, after_seq: int, limit: int) -> dict[str, Any]:
        return await self._view("events", after_seq, limit)

    async def health(self) -> dict[str, Any]:
        return await self._view("health")

    async def gauges(self) -> dict[str, Any]:
        return await self._view("gauges")

    # --------------------------------------------- the port (AdmissionPort)
    async def admit(self, ticket: Ticket) -> Problem | None:
        """Send a request's ticket alone; the refusal, or None when admitted."""
        try:
            await self._send("admit", (), _same, ticket)
        except Problem as p:
            return p
        return None

    async def ledger_metrics(self) -> bytes:
        """The ledger's half of /metrics, rendered by the sequencer (Prometheus text)."""
        return bytes(await self._call("metrics", ()))

    async def nonce_is_fresh(self, key_id: str, nonce: str, ts_s: int) -> bool:
        return bool(await self._call("fresh", (key_id, nonce, ts_s)))
