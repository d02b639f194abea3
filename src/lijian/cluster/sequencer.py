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

Who may talk to it: only a gateway whose certificate the deployment's CA signed
(``tls.py``), on every transport, TCP and Unix socket alike. The TLS handshake must end
within ``HANDSHAKE_TIMEOUT_S`` and comes before any frame is read, so a peer without
credentials is dropped quickly and never takes a gateway's slot. Once authenticated, a
gateway (its certificate's name) holds at most ``CONNECTIONS_PER_GATEWAY_MAX``
connections (a new one replaces its oldest: a gateway that reconnects is the live one),
and all gateways together at most ``CONNECTIONS_MAX``.

Every command that HTTP serves only to a signed request carries that request's
``Ticket`` (``SIGNED``; without one: 401, the command does not run), and is admitted
first (nonce, rate limit): a refusal is the answer and the command does not run, exactly
as one process refuses before its handler. Then its arguments are checked by the rules
the HTTP layer applies (``lijian.http.arguments``: ids, sizes, days, pages, clock moves,
catalogue rows; ``sequencer_checks.py``), so what a peer sends on the wire cannot reach
the engine in a shape one process would have refused. Whatever a call raises becomes
that call's answer (a 500 problem for the unexpected, logged once); the connection and
the calls after it go on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

import msgspec

from lijian.cluster.sequencer_checks import (
    check_clock,
    check_fresh,
    check_operate,
    check_redeem,
    check_refund,
    check_report,
    check_risk,
    decoder,
    ids,
)
from lijian.cluster.tls import peer_name
from lijian.cluster.uploads import CatalogIntake, Link, check_end
from lijian.cluster.wire import (
    ANSWER_FRAME_BYTES_MAX,
    ERROR,
    OK,
    PROBLEM,
    REQUEST_FRAME_BYTES_MAX,
    Call,
    Method,
    Outbox,
    WireError,
    args_bytes_max,
    decode_calls,
    decode_ticket,
    encode,
    read_frame,
)
from lijian.core.claims import ClaimRequest
from lijian.core.errors import LijianError
from lijian.core.order import Order, RefundRequest
from lijian.core.settings_text import settings_from_toml
from lijian.engine import Engine
from lijian.engine_orders import Prepared
from lijian.http import api
from lijian.http import arguments as a
from lijian.http.admission import Admission, Answers
from lijian.http.claims import check_claim, check_vouchers
from lijian.http.problems import Problem, from_decode_error, from_engine_error
from lijian.jsonish import Json
from lijian.new_campaigns import campaign_text, created_texts
from lijian.outcome import Outcome
from lijian.port import Ticket

log = logging.getLogger("lijian.sequencer")
CONNECTIONS_MAX = 128  # authenticated connections, all gateways together
CONNECTIONS_PER_GATEWAY_MAX = 4  # a gateway holds one; a few more while it reconnects
HANDSHAKE_TIMEOUT_S = 2.0  # a TLS handshake on a LAN takes milliseconds
REFUSED_LOG_EVERY_S = 10.0  # a flood of refused connections logs one line per period

# The commands HTTP runs only for a signed request: each must come with its ticket. The
# others are what HTTP serves unsigned (/healthz, /readyz, /metrics, the public feed) or
# the link's own (hello; fresh, which only reads whether a nonce was used; catalog_rows and
# catalog_prices, the parts of a catalogue upload, which run nothing: their end, catalog,
# is signed).
M = Method
# The roles that may ask for each signed command: the table of the HTTP routes (api.py).
ROLES: dict[str, frozenset[str]] = {
    M.REDEEM: api.CHANNEL_OPS, M.QUOTE: api.QUOTERS, M.CAPTURE: api.CHANNEL_OPS,
    M.VOID: api.CHANNEL_OPS, M.REFUND: api.CHANNEL_OPS, M.CATALOG: api.CATALOG_WRITERS,
    M.CLOCK: api.OPERATOR, M.REDEMPTION: api.READERS, M.PERSON: api.READERS,
    M.STATUS: api.ALL, M.SETTLEMENT: api.REPORTS, M.AUDIT: api.REPORTS,
    M.EVIDENCE: api.REPORTS, M.EVENTS: api.REPORTS, M.ADMIT: api.ALL,
    M.OPERATE: api.OPERATOR, M.OPERATIONS: api.REPORTS, M.RISK: api.REPORTS,
    M.CLAIM: api.CHANNEL_OPS, M.VOUCHER: api.READERS, M.VOUCHERS: api.READERS,
}  # fmt: skip
SIGNED = frozenset(ROLES)
# The commands that act for a client (its Idempotency-Key, its refunds): the client they
# name must be the one whose signed request the ticket is.
ACTS_FOR_CLIENT = frozenset((M.REDEEM, M.REFUND, M.CLAIM))
# The methods compared on every redemption, as module constants: an Enum member's lookup
# on its class costs more than the comparison (measured, on the sequencer's hot path).
_REDEEM, _OPERATE = M.REDEEM, M.OPERATE
_TICKET_REQUIRED = Problem(401, "signature_required", "this command needs a signed request")
_INTERNAL = Problem(500, "internal_error", "unexpected server error")


class ClaimStep(Protocol):
    """What a sharded sequencer does around a redemption's decision (the order registry:
    cluster/shard_guard.py), in the same grouped path as every redemption (``_redeems``)."""

    # Whether the redemption needs a claim (not a repeat of a known key, its campaign here).
    def needs_claim(self, order: Order, client_id: str, key: str) -> bool: ...

    # The claim, then ``decide(elsewhere)``, then the release of a claim not used.
    async def claimed(
        self, order: Order, decide: Callable[[bool], Outcome | asyncio.Future[Outcome]]
    ) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class Served:
    """How the sequencer serves one ``Method``: its arguments' decoder, what runs."""

    decode: Callable[[bytes], tuple[object, ...]]
    run: Callable[..., object]  # a result, a Future, or a coroutine
    wire: Callable[[object], object] = lambda x: x  # the result as msgpack-able builtins
    per_link: bool = False  # ``run`` takes the connection's ``Link`` first


def _outcome(o: object) -> tuple[int, Json, bool]:
    assert isinstance(o, Outcome)
    return o.status, o.body, o.replayed


class Sequencer:
    """Serves ``engine`` (started on this loop) to gateways."""

    def __init__(
        self,
        engine: Engine,
        admission: Admission,
        hello: Json,
        on_redeemed: Callable[[str, Outcome], None] | None = None,
        ledger_metrics: Callable[[], Awaitable[bytes]] | None = None,
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
        self.intake = CatalogIntake(engine)
        self._servers: list[asyncio.Server] = []
        self._links: dict[str, list[Link]] = {}  # by gateway name, oldest first
        self._refused_logged_s = 0.0
        # A sharded sequencer's claim in the order registry before a new redemption is
        # decided (cluster/shard_guard.py); None: decided at once.
        self.claim_step: ClaimStep | None = None
        e = engine
        self._redeem_served = Served(
            decoder(Order, str, str, str, check=check_redeem), self._redeem, _outcome
        )
        # By the method's name (a StrEnum member is its own name): a call may name any.
        self.methods: dict[str, Served] = {
            M.HELLO: Served(decoder(), self._hello),
            M.ADMIT: Served(decoder(), lambda: None),
            M.FRESH: Served(decoder(str, str, int, check=check_fresh), admission.is_fresh),
            M.REDEEM: self._redeem_served,
            M.QUOTE: Served(decoder(Order), e.quote),
            M.CAPTURE: Served(decoder(str, check=ids("redemption_id")), e.capture, _outcome),
            M.VOID: Served(decoder(str, check=ids("redemption_id")), e.void, _outcome),
            M.REFUND: Served(
                decoder(str, RefundRequest, str, str, str, check=check_refund), e.refund, _outcome
            ),
            # A catalogue upload: its parts (rows checked as they arrive), then its end.
            M.CATALOG_ROWS: Served(decoder(int, msgspec.Raw), self.intake.rows, per_link=True),
            M.CATALOG_PRICES: Served(decoder(int, msgspec.Raw), self.intake.prices, per_link=True),
            M.CATALOG: Served(
                decoder(int, int, str, check=check_end), self.intake.end, per_link=True
            ),
            M.CLOCK: Served(decoder(int | None, int | None, check=check_clock), e.set_clock),
            M.REDEMPTION: Served(decoder(str, check=ids("redemption_id")), e.redemption),
            M.PERSON: Served(decoder(str, str, check=ids("campaign_id", "person_id")), e.person),
            M.STATUS: Served(decoder(str, check=ids("campaign_id")), e.status),
            M.PUBLIC: Served(decoder(str, check=ids("campaign_id")), e.public_status),
            M.SETTLEMENT: Served(decoder(str, str, check=check_report), e.settlement_report),
            M.RISK: Served(decoder(str, str, int, int, check=check_risk), e.read_risk),
            M.AUDIT: Served(decoder(str, check=ids("campaign_id")), e.audit_report),
            M.EVIDENCE: Served(decoder(str, str, check=check_report), e.evidence_report),
            M.EVENTS: Served(decoder(int, int, check=a.check_events_page), e.read_events_seq),
            M.HEALTH: Served(decoder(), e.health),
            M.GAUGES: Served(decoder(), e.gauges),
            M.METRICS: Served(decoder(), ledger_metrics or _no_metrics),
            # Running a live campaign: every operator change, and its lists.
            M.OPERATE: Served(
                decoder(str, str, Json, str, check=check_operate), e.operate, _outcome
            ),
            M.OPERATIONS: Served(
                decoder(str, str, check=ids("campaign_id", "list")), e.read_operations
            ),
            # Claimed vouchers (lijian.engine_claims), checked as over HTTP (lijian.http.claims).
            M.CLAIM: Served(
                decoder(str, ClaimRequest, str, str, str, check=check_claim), e.claim, _outcome
            ),
            M.VOUCHER: Served(decoder(str, check=ids("voucher_id")), e.read_voucher),
            M.VOUCHERS: Served(decoder(str, str, int, int, check=check_vouchers), e.read_vouchers),
            # Campaigns created over the API since a gateway's hello (lijian.new_campaigns).
            M.CAMPAIGN: Served(decoder(str, check=ids("campaign_id")), self._campaign_text),
            M.CAMPAIGNS: Served(decoder(), lambda: list(e.ledger.books)),
        }
        assert set(self.methods) == set(Method), "every wire method served, nothing else"
        texts = hello["settings"]
        assert isinstance(texts, list), "the hello's settings are the files' TOML texts"
        self._texts: list[str] = texts
        self._file_texts = {settings_from_toml(t).campaign.id: t for t in texts}

    def _hello(self) -> Json:
        """The start-up files' settings and those of campaigns created over the API."""
        created = created_texts(self.engine.ledger)
        return {**self.hello, "settings": self._texts + created}

    def _campaign_text(self, campaign_id: str) -> str:
        return campaign_text(self.engine.ledger, self._file_texts, campaign_id)

    # ----------------------------------------------------------- connections
    async def listen_on(self, sock: socket.socket) -> None:
        """Serve on an already bound, listening socket (TCP or Unix), TLS only."""
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
                self._serve(decode_calls(body), link)
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
            self.intake.drop_all(link)
            link.out.close()
            writer.close()

    # -------------------------------------------------------------- commands
    def _serve(self, calls: list[Call], link: Link) -> None:
        """A frame's calls in arrival order; consecutive redemptions together (``_redeems``)."""
        staged = self.methods.get(M.REDEEM) is self._redeem_served
        run: list[Call] = []
        for c in calls:
            if staged and c.method == _REDEEM:
                run.append(c)
                continue
            if run:
                self._redeems(run, link)
                run = []
            self._dispatch(c, link)
        if run:
            self._redeems(run, link)

    def _dispatch(self, c: Call, link: Link) -> None:
        """Run one call; whatever it raises is its answer, never the connection's end."""
        box: list[Answers] = [link.out]  # _admit replaces it with one that waits for the nonce
        try:
            admitted = self._admit(c, box)
            if admitted is None:
                return
            m, ticket = admitted
            args = self._arguments(c, m, ticket, link, box[0])
            if args is not None:
                result = m.run(link, *args) if m.per_link else m.run(*args)
                self._answer(c, m, result, link, box[0])
        except Exception as exc:  # every failure is this call's answer
            box[0].put(_problem(c.call_id, _as_problem(c.method, exc)))

    def _redeems(self, calls: list[Call], link: Link) -> None:
        """Consecutive ``redeem`` calls of a frame, each step for all of them before the
        next: admitted, then decoded and checked, then prepared by the engine (keyed,
        evaluated), then decided in arrival order. Per call the same steps in the same
        order as ``_dispatch``, with the same answers; only the calls' steps interleave
        differently, and none of them reads what another call's earlier step changes
        (admission is the nonces and rate tokens; the engine's decisions come last, in
        order). Measured: about a third less CPU per forwarded decline than one call at a
        time through every step, each step's code staying hot for the frame's calls. On a
        sharded sequencer a new redemption is not prepared here: its ``claim_step`` claims
        it, then prepares and decides it (``_decide``)."""
        m = self._redeem_served
        admitted: list[tuple[Call, Ticket | None, Answers]] = []
        for c in calls:
            box: list[Answers] = [link.out]
            try:
                got = self._admit(c, box)
            except Exception as exc:
                box[0].put(_problem(c.call_id, _as_problem(c.method, exc)))
                continue
            if got is not None:
                admitted.append((c, got[1], box[0]))
        prepared: list[
            tuple[Call, Order, tuple[object, ...], Prepared | Outcome | None, Answers]
        ] = []
        for c, ticket, out in admitted:
            try:
                args = self._arguments(c, m, ticket, link, out)
                if args is not None:
                    order, client_id, key, _ = args
                    assert isinstance(order, Order)  # decoded as one
                    assert isinstance(client_id, str) and isinstance(key, str)
                    ready = self._prepared(order, client_id, key)
                    prepared.append((c, order, args, ready, out))
            except Exception as exc:
                out.put(_problem(c.call_id, _as_problem(c.method, exc)))
        for c, order, args, ready, out in prepared:
            try:
                _, client_id, key, fp = args
                assert isinstance(client_id, str) and isinstance(key, str) and isinstance(fp, str)
                result = self._decide(order, ready, client_id, key, fp)
                self._answer(c, m, result, link, out)
            except Exception as exc:
                out.put(_problem(c.call_id, _as_problem(c.method, exc)))

    def _admit(self, c: Call, box: list[Answers]) -> tuple[Served, Ticket | None] | None:
        """A call's method, size, lease and ticket checked, its ticket admitted: the method
        and ticket, or None when the call is answered (a refusal). From the admission
        on, ``box[0]`` holds answers until the ticket's nonce is stored."""
        out = box[0]
        m = self.methods.get(c.method)
        if m is None:
            out.put(encode((c.call_id, ERROR, ["invalid_request", f"no method {c.method!r}"])))
            return None
        limit_bytes = args_bytes_max(c.method)
        if len(c.args) > limit_bytes:
            detail = f"{c.method}: {len(c.args)} bytes of arguments, at most {limit_bytes}"
            out.put(_problem(c.call_id, Problem(413, "payload_too_large", detail)))
            return None
        if self.lease_valid is not None and not self.lease_valid():
            out.put(_problem(c.call_id, _NO_LEASE))
            return None
        ticket: Ticket | None = decode_ticket(c.ticket)
        if ticket is None:
            if c.method in SIGNED:
                out.put(_problem(c.call_id, _TICKET_REQUIRED))
                return None
        else:
            problem = self.admission.admit(ticket)
            # Every answer from here waits until the ticket's nonce is stored.
            out = box[0] = self.admission.hold_answers(out)
            if problem is not None:
                out.put(_problem(c.call_id, problem))
                return None
        return m, ticket

    def _arguments(
        self, c: Call, m: Served, ticket: Ticket | None, link: Link, out: Answers
    ) -> tuple[object, ...] | None:
        """The call's arguments decoded and checked, and the ticket's client allowed to
        ask for it; None when the call is answered (403)."""
        args = m.decode(c.args)
        if ticket is not None and c.method in SIGNED:
            forbidden = self._forbidden(c.method, ticket, args, link)
            if forbidden is not None:
                upload_id = args[0] if c.method == M.CATALOG else None
                if isinstance(upload_id, int):  # the refused upload's rows are not kept
                    self.intake.drop(link, upload_id)
                out.put(_problem(c.call_id, Problem(403, "forbidden", forbidden)))
                return None
        return args

    def _answer(self, c: Call, m: Served, result: object, link: Link, out: Answers) -> None:
        """The call's answer: now, or when what it started settles."""
        if type(result) is Outcome:  # a decline from memory: the common answer in a rush
            out.put(_ok(c.call_id, m.wire(result)))
        elif asyncio.isfuture(result) or asyncio.iscoroutine(result):
            fut = asyncio.ensure_future(result)
            call_id, method = c.call_id, c.method
            fut.add_done_callback(lambda f: self._settled(call_id, method, m, f, out))
            if method == M.CATALOG:  # seconds to minutes: its gateway hears it goes on
                self.intake.keep_informed(link.out, call_id, fut)
        else:
            out.put(_ok(c.call_id, m.wire(result)))

    def _forbidden(
        self, method: str, ticket: Ticket, args: tuple[object, ...], link: Link
    ) -> str | None:
        """Why the ticket's client may not ask for this command, as HTTP would refuse it
        (the route's roles, the platform a platform client speaks for); None if it may."""
        client = self.admission.clients[ticket.key_id]  # admitted: the key is known
        if client.role not in ROLES[method]:
            return f"role {client.role!r} may not call {method}"
        if method == _OPERATE and args[3] != ticket.key_id:  # four eyes count keys
            return "the change names an operator other than its signed request's"
        if method in ACTS_FOR_CLIENT:
            client_id = args[1] if method == _REDEEM else args[2]
            if client_id != ticket.key_id:
                return "the command names a client other than its signed request's"
        if client.role == "platform":
            first = args[0] if args else None  # the order, or the upload's id
            order = first if method == M.QUOTE else None
            if isinstance(order, Order) and order.platform != client.platform:
                return f"client {client.key_id!r} speaks only for platform {client.platform!r}"
            upload_id = first if method == M.CATALOG else None
            rows = link.uploads.get(upload_id, []) if isinstance(upload_id, int) else []
            if set(map(itemgetter(0), rows)) - {client.platform}:
                return f"client {client.key_id!r} may only write platform {client.platform!r}"
        return None

    def _settled(
        self, call_id: int, method: str, m: Served, fut: asyncio.Future[object], out: Answers
    ) -> None:
        try:
            if fut.cancelled():
                out.put(encode((call_id, ERROR, ["engine_stopped", "cancelled"])))
                return
            exc = fut.exception()
            if exc is None:
                out.put(_ok(call_id, m.wire(fut.result())))
                return
        except Exception as failed:  # the answer itself failed (encoding it)
            exc = failed
        out.put(_problem(call_id, _as_problem(method, exc)))

    def _redeem(
        self, order: Order, client_id: str, key: str, fp: str
    ) -> Outcome | asyncio.Future[Outcome]:
        return self._decide(order, self._prepared(order, client_id, key), client_id, key, fp)

    def _prepared(self, order: Order, client_id: str, key: str) -> Prepared | Outcome | None:
        """The engine's preparation of a redemption decided now; None for one that waits
        for its claim (``claim_step``): it is prepared once claimed, since what it would
        read (the catalogue) may change meanwhile."""
        step = self.claim_step
        if step is not None and step.needs_claim(order, client_id, key):
            return None
        return self.engine.redeem_prepare(order)

    def _decide(
        self, order: Order, ready: Prepared | Outcome | None, client_id: str, key: str, fp: str
    ) -> Outcome | asyncio.Future[Outcome]:
        """A redemption decided: prepared, at once; else (None) once its claim is made."""
        e, step = self.engine, self.claim_step
        if ready is not None:
            return self._redeemed(order, e.redeem_decide(ready, client_id, key, fp))
        assert step is not None, "only a claim step leaves a redemption unprepared"

        def decide(elsewhere: bool) -> Outcome | asyncio.Future[Outcome]:
            return e.redeem_submit(order, client_id, key, fp, elsewhere)

        return self._redeemed(order, asyncio.ensure_future(step.claimed(order, decide)))

    def _redeemed(
        self, order: Order, out: Outcome | asyncio.Future[Outcome]
    ) -> Outcome | asyncio.Future[Outcome]:
        """``out``, the redemption's outcome, counted by ``on_redeemed`` (now or once settled)."""
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


def _ok(call_id: int, result: object) -> bytes:
    item = encode((call_id, OK, result))
    if len(item) > ANSWER_FRAME_BYTES_MAX - 16:  # cannot be framed: say so, keep the link
        msg = f"the answer ({len(item)} bytes) exceeds the link's {ANSWER_FRAME_BYTES_MAX}"
        return _problem(call_id, Problem(500, "internal_error", msg))
    return item


def _as_problem(method: str, exc: BaseException) -> Problem:
    """The problem that answers a call that raised ``exc``."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, LijianError):
        return from_engine_error(exc)
    if isinstance(exc, msgspec.DecodeError):  # ValidationError (422) included
        return from_decode_error(exc, "arguments")
    # Unexpected: logged once, by where it was raised, without its message or the
    # arguments (they may hold a person's data); the answer says nothing more.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    log.error("call %s failed: %s at %s", method, type(exc).__name__, where)
    return _INTERNAL


def _problem(call_id: int, p: Problem) -> bytes:
    return encode((call_id, PROBLEM, [p.status, p.code, p.detail, p.errors, p.headers]))
