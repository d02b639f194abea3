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

Who may talk to it: only a gateway whose certificate the deployment's CA signed
(``tls.py``), on every transport, TCP and Unix socket alike. The TLS handshake must end
within ``HANDSHAKE_TIMEOUT_S`` and comes before any frame is read, so a peer without
credentials is dropped quickly and never takes a gateway's slot. Once authenticated, a
gateway (its certificate's name) holds at most ``CONNECTIONS_PER_GATEWAY_MAX``
connections (a new one replaces its oldest: a gateway that reconnects is the live one),
and all gateways together at most ``CONNECTIONS_MAX``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from lijian.cluster.tls import peer_name
from lijian.cluster.wire import (
    ANSWER_FRAME_BYTES_MAX,
    ERROR,
    OK,
    PROBLEM,
    REQUEST_FRAME_BYTES_MAX,
    Call,
    Outbox,
    WireError,
    args_bytes_max,
    decode_calls,
    encode,
    read_frame,
)
from lijian.core.errors import LijianError
from lijian.core.order import Order, RefundRequest
from lijian.engine import Engine
from lijian.http.admission import Admission
from lijian.http.ndjson import CATALOG_LINES_MAX
from lijian.http.problems import Problem, from_engine_error
from lijian.outcome import Outcome

log = logging.getLogger("lijian.sequencer")
CONNECTIONS_MAX = 128  # authenticated connections, all gateways together
CONNECTIONS_PER_GATEWAY_MAX = 4  # a gateway holds one; a few more while it reconnects
HANDSHAKE_TIMEOUT_S = 2.0  # a TLS handshake on a LAN takes milliseconds
UPLOADS_PER_LINK_MAX = 2  # catalogue uploads a gateway has in progress at once
# Catalogue rows waiting for the end of their upload, all gateways together: an upload
# is at most CATALOG_LINES_MAX rows, so two may be on their way at once.
BUFFERED_ROWS_MAX = 2 * CATALOG_LINES_MAX
REFUSED_LOG_EVERY_S = 10.0  # a flood of refused connections logs one line per period

Rows = list[tuple[str, str, str]]


@dataclass(frozen=True, slots=True)
class Method:
    decode: Callable[[bytes], tuple[Any, ...]]
    run: Callable[..., Any]  # a result, a Future, or a coroutine
    wire: Callable[[Any], Any] = lambda x: x  # the result as msgpack-able builtins
    per_link: bool = False  # ``run`` takes the connection's ``Link`` first


@dataclass(eq=False)
class Link:
    """One authenticated gateway connection."""

    gateway: str  # its certificate's name
    out: Outbox
    writer: asyncio.StreamWriter
    uploads: dict[int, Rows] = field(default_factory=dict)  # catalogue parts so far


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
        *,
        ssl_context: ssl.SSLContext,
    ) -> None:
        assert ssl_context.verify_mode == ssl.CERT_REQUIRED, "gateways must authenticate"
        self.engine = engine
        self.lease_valid = lease_valid
        self.admission = admission
        self.hello = hello
        self.on_redeemed = on_redeemed
        self.ssl_context = ssl_context
        self.connections = 0
        self.refused = 0  # connections closed by a bound (after their handshake)
        self.buffered_rows = 0
        self._servers: list[asyncio.Server] = []
        self._links: dict[str, list[Link]] = {}  # by gateway name, oldest first
        self._refused_logged_s = 0.0
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
            "catalog_rows": Method(_args(int, Rows), self._catalog_rows, per_link=True),
            "catalog": Method(_args(int, int, dict[str, int]), self._catalog, per_link=True),
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
        """Serve on an already bound, listening socket (TCP or Unix), TLS only."""
        import socket

        start = asyncio.start_unix_server if sock.family == socket.AF_UNIX else asyncio.start_server
        server = await start(self._connection, sock=sock, ssl=self.ssl_context,
                             ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)  # fmt: skip
        self._servers.append(server)

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        for links in list(self._links.values()):
            for link in list(links):
                link.writer.close()
        for s in self._servers:
            await s.wait_closed()

    def _refuse(self, writer: asyncio.StreamWriter, why: str) -> None:
        self.refused += 1
        writer.close()
        now_s = time.monotonic()
        if now_s - self._refused_logged_s >= REFUSED_LOG_EVERY_S:
            self._refused_logged_s = now_s
            log.warning("gateway connection refused: %s (%d refused so far)", why, self.refused)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Called only after a complete handshake: the peer holds a certificate the CA
        # signed for a gateway (clientAuth), checked by OpenSSL.
        gateway = peer_name(writer.get_extra_info("peercert"))
        if gateway is None:
            self._refuse(writer, "no certificate name")
            return
        if self.connections >= CONNECTIONS_MAX:
            self._refuse(writer, f"{CONNECTIONS_MAX} gateway connections already")
            return
        links = self._links.setdefault(gateway, [])
        if len(links) >= CONNECTIONS_PER_GATEWAY_MAX:
            # Its oldest connection is the stale one (a gateway uses one at a time).
            links.pop(0).writer.close()
        link = Link(gateway, Outbox(writer, ANSWER_FRAME_BYTES_MAX), writer)
        links.append(link)
        self.connections += 1
        try:
            while True:
                body = await read_frame(reader, REQUEST_FRAME_BYTES_MAX)
                for call in decode_calls(body):
                    self._dispatch(call, link)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError,
                asyncio.CancelledError):  # fmt: skip
            pass  # the gateway went away (or we stop): what it sent is decided all the same
        except (WireError, msgspec.DecodeError) as exc:
            log.warning("gateway %s broke the protocol: %s", gateway, exc)
        finally:
            self.connections -= 1
            if link in links:  # else replaced by a newer connection of its gateway
                links.remove(link)
            if not links and self._links.get(gateway) is links:
                del self._links[gateway]
            for rows in link.uploads.values():
                self.buffered_rows -= len(rows)
            link.uploads.clear()
            link.out.close()
            writer.close()

    # -------------------------------------------------------------- commands
    def _dispatch(self, c: Call, link: Link) -> None:
        out = link.out
        m = self.methods.get(c.method)
        if m is None:
            out.put(encode((c.call_id, ERROR, ["invalid_request", f"no method {c.method!r}"])))
            return
        limit_bytes = args_bytes_max(c.method)
        if len(c.args) > limit_bytes:
            detail = f"{c.method}: {len(c.args)} bytes of arguments, at most {limit_bytes}"
            out.put(_problem(c.call_id, Problem(413, "payload_too_large", detail)))
            return
        if self.lease_valid is not None and not self.lease_valid():
            out.put(_problem(c.call_id, _NO_LEASE))
            return
        try:
            if c.ticket is not None:
                problem = self.admission.admit(c.ticket)
                if problem is not None:
                    out.put(_problem(c.call_id, problem))
                    return
            args = m.decode(c.args)
            result = m.run(link, *args) if m.per_link else m.run(*args)
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
            out.put(_ok(c.call_id, m.wire(result)))

    def _settled(self, call_id: int, m: Method, fut: asyncio.Future[Any], out: Outbox) -> None:
        if fut.cancelled():
            out.put(encode((call_id, ERROR, ["engine_stopped", "cancelled"])))
            return
        exc = fut.exception()
        if exc is None:
            out.put(_ok(call_id, m.wire(fut.result())))
        elif isinstance(exc, LijianError):
            out.put(_problem(call_id, from_engine_error(exc)))
        elif isinstance(exc, Problem):
            out.put(_problem(call_id, exc))
        else:
            log.error("command failed: %r", exc)
            out.put(_problem(call_id, Problem(500, "internal_error", "unexpected server error")))

    # A catalogue upload arrives as parts (``catalog_rows``, each at most 1 MiB) and
    # ends with ``catalog``, which stores the rows exactly as one call did: every row
    # or none. Parts wait in the connection's memory, bounded per upload, per
    # connection and in total; a lost connection drops its parts (the upload is not
    # repeated: its client gets 503 and sends it again).
    def _catalog_rows(self, link: Link, upload_id: int, rows: Rows) -> int:
        have = link.uploads.get(upload_id)
        if have is None:
            if len(link.uploads) >= UPLOADS_PER_LINK_MAX:
                # The oldest was abandoned (its gateway's call timed out): a gateway
                # sends an upload's parts one after another and then ends it. Were it
                # still going, its end finds fewer rows than it sent, and fails.
                oldest = next(iter(link.uploads))
                self.buffered_rows -= len(link.uploads.pop(oldest))
            have = link.uploads[upload_id] = []
        if len(have) + len(rows) > CATALOG_LINES_MAX:
            self.buffered_rows -= len(link.uploads.pop(upload_id))
            msg = f"a catalogue upload has at most {CATALOG_LINES_MAX} lines"
            raise Problem(413, "payload_too_large", msg)
        if self.buffered_rows + len(rows) > BUFFERED_ROWS_MAX:
            self.buffered_rows -= len(link.uploads.pop(upload_id))
            raise _busy("too many catalogue rows on their way to the ledger")
        have.extend(rows)
        self.buffered_rows += len(rows)
        return len(have)

    def _catalog(self, link: Link, upload_id: int, n_rows: int,
                 categories: dict[str, int]) -> Any:  # fmt: skip
        rows = link.uploads.pop(upload_id, [])
        self.buffered_rows -= len(rows)
        if len(rows) != n_rows:  # a part was lost: store nothing
            raise _busy(f"catalogue upload incomplete: {len(rows)} of {n_rows} rows")
        return self.engine.catalog_upsert(rows, categories)

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


def _busy(detail: str) -> Problem:
    return Problem(503, "overloaded", detail, headers={"Retry-After": "1"})


def _ok(call_id: int, result: Any) -> bytes:
    item = encode((call_id, OK, result))
    if len(item) > ANSWER_FRAME_BYTES_MAX - 16:  # cannot be framed: say so, keep the link
        msg = f"the answer ({len(item)} bytes) exceeds the link's {ANSWER_FRAME_BYTES_MAX}"
        return _problem(call_id, Problem(500, "internal_error", msg))
    return item


def _problem(call_id: int, p: Problem) -> bytes:
    return encode((call_id, PROBLEM, [p.status, p.code, p.detail, p.errors, p.headers]))
