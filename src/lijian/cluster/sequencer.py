"""The sequencer: the one ``Engine`` of a campaign set, serving gateways.

It is the same engine that runs in one process, on the same event loop, with the same
writer: commands from every gateway go on its one queue in the order their frames
arrive, are decided in that order and are answered only after their batch is committed
(the writer resolves the futures after the fsync). Reads are answered from the ledger in
memory, so a read sees every write acknowledged before it. The catalogue, the clock and
the nonce memory live here too (``Admission``): no gateway has a copy that could differ.

On PostgreSQL the sequencer holds the ledger's lease (``lease.py``): while its own view
of the lease is not certainly valid it answers nothing from memory (503, so a gateway
retries elsewhere), since a standby may be about to take over.

A message carrying a ``Ticket`` is admitted first (nonce, rate limit): a refusal is the
answer and the command does not run, exactly as one process refuses before its handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from lijian.cluster.wire import (
    ERROR,
    OK,
    PROBLEM,
    Call,
    Outbox,
    WireError,
    decode_calls,
    encode,
    read_frame,
)
from lijian.core.errors import LijianError
from lijian.core.order import Order, RefundRequest
from lijian.engine import Engine
from lijian.http.admission import Admission, Answers
from lijian.http.problems import Problem, from_engine_error
from lijian.outcome import Outcome

log = logging.getLogger("lijian.sequencer")
CONNECTIONS_MAX = 256  # gateways per sequencer (each holds one connection)


@dataclass(frozen=True, slots=True)
class Method:
    decode: Callable[[bytes], tuple[Any, ...]]
    run: Callable[..., Any]  # a result, a Future, or a coroutine
    wire: Callable[[Any], Any] = lambda x: x  # the result as msgpack-able builtins


def _args(*types: Any) -> Callable[[bytes], tuple[Any, ...]]:
    return msgspec.msgpack.Decoder(tuple[*types] if types else tuple[()]).decode  # type: ignore[valid-type]


def _outcome(o: Outcome) -> tuple[int, dict[str, Any], bool]:
    return o.status, o.body, o.replayed


class Sequencer:
    """Serves ``engine`` (started on this loop) to gateways."""

    def __init__(
        self,
        engine: Engine,
        admission: Admission,
        hello: dict[str, Any],
        on_redeemed: Callable[[str, Outcome], None] | None = None,
        ledger_metrics: Callable[[], Any] | None = None,
        lease_valid: Callable[[], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.lease_valid = lease_valid
        self.admission = admission
        self.hello = hello
        self.on_redeemed = on_redeemed
        self.connections = 0
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        e = engine
        self.methods: dict[str, Method] = {
            "hello": Method(_args(), lambda: self.hello),
            "admit": Method(_args(), lambda: None),
            "fresh": Method(_args(str, str, int), admission.is_fresh),
            "redeem": Method(_args(Order, str, str, str), self._redeem, _outcome),
            "quote": Method(_args(Order), e.quote),
            "capture": Method(_args(str), e.capture, _outcome),
            "void": Method(_args(str), e.void, _outcome),
            "refund": Method(_args(str, RefundRequest, str, str, str), e.refund, _outcome),
            "catalog": Method(_args(list[tuple[str, str, str]], dict[str, int]), e.catalog_upsert),
            "clock": Method(_args(int | None, int | None), e.set_clock),
            "redemption": Method(_args(str), e.redemption),
            "person": Method(_args(str, str), e.person),
            "status": Method(_args(str), e.status),
            "public": Method(_args(str), e.public_status),
            "settlement": Method(_args(str, str), e.settlement_report),
            "audit": Method(_args(str), e.audit_report),
            "evidence": Method(_args(str, str), e.evidence_report),
            "events": Method(_args(int, int), e.read_events),
            "health": Method(_args(), e.health),
            "gauges": Method(_args(), e.gauges),
            "metrics": Method(_args(), ledger_metrics or _no_metrics),
        }

    # ----------------------------------------------------------- connections
    async def listen_on(self, sock: Any) -> None:
        """Serve on an already bound, listening socket (TCP or Unix)."""
        import socket

        if sock.family == socket.AF_UNIX:
            server = await asyncio.start_unix_server(self._connection, sock=sock)
        else:
            server = await asyncio.start_server(self._connection, sock=sock)
        self._servers.append(server)

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        for w in list(self._writers):
            w.close()
        for s in self._servers:
            await s.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= CONNECTIONS_MAX:
            writer.close()
            return
        self.connections += 1
        self._writers.add(writer)
        out = Outbox(writer)
        try:
            while True:
                body = await read_frame(reader)
                for call in decode_calls(body):
                    self._dispatch(call, out)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the gateway went away (or we stop): what it sent is decided all the same
        except (WireError, msgspec.DecodeError) as exc:
            log.warning("gateway broke the protocol: %s", exc)
        finally:
            self.connections -= 1
            self._writers.discard(writer)
            out.close()
            writer.close()

    # -------------------------------------------------------------- commands
    def _dispatch(self, c: Call, out: Answers) -> None:
        m = self.methods.get(c.method)
        if m is None:
            out.put(encode((c.call_id, ERROR, ["invalid_request", f"no method {c.method!r}"])))
            return
        if self.lease_valid is not None and not self.lease_valid():
            out.put(_problem(c.call_id, _NO_LEASE))
            return
        try:
            if c.ticket is not None:
                problem = self.admission.admit(c.ticket)
                # Every answer from here waits until the ticket's nonce is stored.
                out = self.admission.hold_answers(out)
                if problem is not None:
                    out.put(_problem(c.call_id, problem))
                    return
            result = m.run(*m.decode(c.args))
        except LijianError as exc:
            out.put(_problem(c.call_id, from_engine_error(exc)))
            return
        except Problem as p:
            out.put(_problem(c.call_id, p))
            return
        except msgspec.DecodeError as exc:
            out.put(encode((c.call_id, ERROR, ["invalid_request", str(exc)])))
            return
        if asyncio.isfuture(result) or asyncio.iscoroutine(result):
            fut = asyncio.ensure_future(result)
            fut.add_done_callback(lambda f: self._settled(c.call_id, m, f, out))
        else:
            out.put(encode((c.call_id, OK, m.wire(result))))

    def _settled(self, call_id: int, m: Method, fut: asyncio.Future[Any], out: Answers) -> None:
        if fut.cancelled():
            out.put(encode((call_id, ERROR, ["engine_stopped", "cancelled"])))
            return
        exc = fut.exception()
        if exc is None:
            out.put(encode((call_id, OK, m.wire(fut.result()))))
        elif isinstance(exc, LijianError):
            out.put(_problem(call_id, from_engine_error(exc)))
        elif isinstance(exc, Problem):
            out.put(_problem(call_id, exc))
        else:
            log.error("command failed: %r", exc)
            out.put(_problem(call_id, Problem(500, "internal_error", "unexpected server error")))

    def _redeem(self, order: Order, client_id: str, key: str, fp: str) -> Any:
        out = self.engine.redeem_submit(order, client_id, key, fp)
        hook = self.on_redeemed
        if hook is None:
            return out
        if isinstance(out, Outcome):
            hook(order.campaign_id, out)
        else:
            cid = order.campaign_id
            out.add_done_callback(
                lambda f: hook(cid, f.result()) if not f.cancelled() and not f.exception() else None
            )
        return out


_NO_LEASE = Problem(
    503,
    "sequencer_unavailable",
    "this sequencer's lease is not certain: it may be taken over",
    headers={"Retry-After": "1"},
)


async def _no_metrics() -> bytes:
    return b""


def _problem(call_id: int, p: Problem) -> bytes:
    return encode((call_id, PROBLEM, [p.status, p.code, p.detail, p.errors, p.headers]))
