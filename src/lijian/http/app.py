"""The ASGI application: routing, body limits, signatures, roles, rate limits, problems.

Why not a framework's router for the API: a redemption is the hot path, and the engine
answers one in tens of microseconds; a framework's request object, middleware stack and
dependency injection would cost as much again. So the contract's endpoints are plain
``async def handler(call) -> Reply`` functions (``api.py``) dispatched here by a dict
lookup (static paths) or a short list of regexes (paths with ids). Everything that is not
part of the contract (the API docs page, the operator dashboard a colleague adds at
``GET /``) goes to a Starlette app behind it, where extensions mount their routes
(``extras.py``). This module knows neither: ``assembly.py`` hands it the contract's
routes and the fallback app, so the pipeline can be read (and tested) on its own.

One request, in order (a refusal at any step changes no state)::

    route match (404/405) → Content-Length ≤ limit (413) → signature headers (401)
    → body read with limit (413) → HMAC (401) → role (403) → nonce (401), rate limit (429)
    → handler: content type (415), Idempotency-Key (400/422), decode (400/422), engine

The nonce and the rate token are the ``AdmissionPort``'s (``lijian.port``): this
process's own ``Admission`` beside a ledger, the sequencer's on a gateway. The pipeline
is one for both: it hands the port the request's ``TicketSlot`` and calls the engine the
port gives back (``carrier``), so a gateway's ticket rides with the first engine call.

The engine's ledger lives on this event loop (uvicorn's), so handlers call its read
methods directly and await its commands; nothing here takes a lock.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from starlette.applications import Starlette

from lijian.core.errors import LijianError
from lijian.http.admission import Admission, LocalAdmission, durable_memory
from lijian.http.auth import Authenticator, AuthError, Pending
from lijian.http.clients import Client
from lijian.http.logs import access_writer, get_logger
from lijian.http.metrics import Metrics
from lijian.http.problems import Problem, from_engine_error, problem_reply, too_large
from lijian.http.ratelimit import RateLimiter
from lijian.http.types import ASGIApp, Call, ClientGone, Message, Receive, Reply, Route, Scope, Send
from lijian.port import AdmissionPort, EnginePort, SequencerPort, Ticket, TicketSlot

REQUEST_ID_LEN_MAX = 128
_REQUEST_ID_RE = re.compile(rb"[\x21-\x7e]{1,%d}" % REQUEST_ID_LEN_MAX)

_perf_counter = time.perf_counter
_sha256 = hashlib.sha256
log = get_logger()


def _info_logged() -> bool:
    """Whether ``log.info`` writes anything: structlog's filtering loggers say so. Asked
    once at start-up, so that a request does not build an access-log line (~1 µs of
    keyword arguments and rounding) only for the logger to drop it."""
    # A fresh proxy: binding the module's ``log`` here would pin its configuration.
    enabled = getattr(get_logger().bind(), "is_enabled_for", None)
    return True if enabled is None else bool(enabled(logging.INFO))


class Router:
    """Static paths by dict lookup; templated paths by regex, tried in order."""

    def __init__(self, routes: Iterable[Route]) -> None:
        # Per path: its routes by method, and the sorted methods (the 405's Allow),
        # computed here rather than on every request.
        self._static: dict[str, tuple[dict[str, Route], list[str]]] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, Route], list[str]]] = []
        by_template: dict[str, dict[str, Route]] = {}
        for r in routes:
            methods = by_template.setdefault(r.template, {})
            assert r.method not in methods, f"{r.method} {r.template} defined twice"
            methods[r.method] = r
        for template, methods in by_template.items():
            if "{" not in template:
                self._static[template] = (methods, sorted(methods))
            else:
                rx = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
                self._dynamic.append((re.compile(f"^{rx}$"), methods, sorted(methods)))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        """(route, path params, methods allowed on the path); all empty if no path matches."""
        hit = self._static.get(path)
        if hit is not None:
            return hit[0].get(method), {}, hit[1]
        for rx, methods, allowed in self._dynamic:
            m = rx.match(path)
            if m:
                return methods.get(method), m.groupdict(), allowed
        return None, {}, []


async def read_body(receive: Receive, limit_bytes: int, first: Message | None = None) -> bytes:
    """The whole body, at most ``limit_bytes`` (413 beyond); ``first`` is a message the
    caller already received. A small body arrives in one message (uvicorn hands over
    what the parser has): no list of chunks for it."""
    msg = first if first is not None else await receive()
    if msg["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = msg.get("body", b"")
    size = len(body)
    if size > limit_bytes:
        raise too_large(limit_bytes)
    if not msg.get("more_body", False):
        return body
    chunks = [body]
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit_bytes:
            raise too_large(limit_bytes)
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


def _refuse_declared_size(route: Route, h: dict[bytes, bytes]) -> None:
    """413 before reading a body whose declared length is over the route's limit."""
    declared = h.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > route.body_max_bytes:
        raise too_large(route.body_max_bytes)


def _precheck(auth: Authenticator, h: dict[bytes, bytes]) -> Pending:
    return auth.precheck(
        h.get(b"x-lijian-key"),
        h.get(b"x-lijian-timestamp"),
        h.get(b"x-lijian-nonce"),
        h.get(b"x-lijian-signature"),
    )


# An extension mounts extra (non-contract) routes on the Starlette app behind the API,
# e.g. the operator dashboard at GET /. It gets the LijianApp for the engine and metrics.
Extension = Callable[[Starlette, "LijianApp"], None]
# What the app is built with, given the app itself (they read its engine and metrics):
# the contract's routes (``api.Api.routes``) and the app behind them (``extras.py``).
RoutesFactory = Callable[["LijianApp"], Sequence[Route]]
FallbackFactory = Callable[["LijianApp"], ASGIApp]


class LijianApp:
    def __init__(
        self,
        engine: EnginePort,
        clients: dict[str, Client],
        *,
        routes: RoutesFactory,
        fallback: FallbackFactory,
        access_log: bool = True,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.clients = clients
        self.extra_gauges: dict[str, Callable[[], float]] = {}
        # The signature is checked here; the nonce is remembered by the admission, whose
        # memory ``precheck`` reads (a gateway's stays empty: the sequencer's is the one).
        self.auth = Authenticator(clients, clock_s=clock_s, remember_nonces=False)
        # A gateway's engine is the sequencer's client: nonces and rate limits are the
        # sequencer's (http/admission.py), so every gateway answers like one process.
        self.sequencer: SequencerPort | None = engine.remote_ledger()
        self.local: LocalAdmission | None = None
        self.nonce_log = None
        self.gate: AdmissionPort
        if self.sequencer is not None:
            self.gate = self.sequencer
        else:
            # Beside a ledger the nonces are durable: loaded from its store now, stored
            # in its commits, and an answer waits for its nonce's commit.
            self.nonce_log = durable_memory(self.auth.nonces, engine)
            admission = Admission(clients, clock_s, self.auth.nonces, self.nonce_log)
            self.gate = self.local = LocalAdmission(admission, engine)
        self.metrics = Metrics(engine, self._gauges)
        self.access_log = access_log
        self.ready = False
        self.draining = False
        # Start-up and shutdown steps of the process around the app (the sequencer's
        # listener starts after the engine and stops before it; cluster/supervisor.py).
        self.on_started: list[Callable[[], Awaitable[None]]] = []
        self.on_stopping: list[Callable[[], Awaitable[None]]] = []
        contract = list(routes(self))
        self.router = Router(contract)
        self.fallback = fallback(self)
        self._rid_prefix = os.urandom(4).hex().encode() + b"-"
        self._rid_seq = itertools.count(1)
        # Per route, its metrics recorder with the labels already bound.
        self._observe = {r.name: self.metrics.route(r.name) for r in contract}
        self._observe_unmatched = self.metrics.route("unmatched")
        self._log_info = _info_logged()
        self._access_line = access_writer()

    @property
    def limiter(self) -> RateLimiter:
        """This process's rate limits (one process, a sequencer's own HTTP port)."""
        assert self.local is not None, "a gateway's rate limits are the sequencer's"
        return self.local.admission.limiter

    def _gauges(self) -> dict[str, float]:
        out = {"lijian_nonces_remembered": float(len(self.auth.nonces))}
        out.update({name: f() for name, f in self.extra_gauges.items()})
        return out

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # An HTTP request is served right here, not one coroutine further down: a
        # coroutine call per request is ~0.3 µs (measured on the redemption path).
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        t0 = _perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        route, params, allowed = self.router.match(method, path)
        if route is None and not allowed:
            await self._fallback(scope, receive, send, t0)
            return
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id")
        if rid is None or _REQUEST_ID_RE.fullmatch(rid) is None:
            rid = b"%s%x" % (self._rid_prefix, next(self._rid_seq))
        raw = scope.get("raw_path") or path.encode()
        qs: bytes = scope.get("query_string", b"")
        path_qs = (raw + b"?" + qs if qs else raw).decode("latin-1")
        call = Call(method, path, path_qs, qs, headers, params, rid, self.engine)
        try:
            if route is None:
                raise Problem(
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed on {path}",
                    headers={"Allow": ", ".join(allowed)},
                )
            reply = await self._serve(route, call, receive)
        except ClientGone:
            return
        except Problem as p:
            reply = problem_reply(p)
        except LijianError as exc:
            reply = problem_reply(from_engine_error(exc))
        except Exception:
            log.exception("unhandled", rid=call.request_id, method=method, path=path)
            reply = problem_reply(Problem(500, "internal_error", "unexpected server error"))
        body = reply.body
        status = reply.status
        response_headers = [
            (b"content-type", reply.content_type),
            # content-length spares uvicorn a chunked response (an extra write per request)
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", rid),
        ]
        if reply.headers:
            response_headers.extend(reply.headers)
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
        dt_s = _perf_counter() - t0
        if route is not None:
            self._observe[route.name](status, dt_s)
        else:
            self._observe_unmatched(status, dt_s)
        if self._log_info and (self.access_log or status >= 400):
            name = route.name if route else "unmatched"
            ms = round(dt_s * 1000, 3)
            client = call.client.key_id if call.client else None
            if self._access_line is not None:
                self._access_line(call.request_id, method, path, name, status, ms, client)
            else:
                log.info("request", rid=call.request_id, method=method, path=path, route=name,
                         status=status, ms=ms, client=client)  # fmt: skip

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":  # none offered: refuse the handshake
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.engine.start()
                    self.engine.observe_batches(self.metrics.on_batch)
                    for step in self.on_started:
                        await step()
                except Exception as exc:
                    log.exception("startup_failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                self.ready = True
                log.info("ready", campaigns=self.engine.campaign_ids)
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                # uvicorn has stopped accepting and waited for in-flight requests; drain
                # the writer's queue and commit before the process exits (SIGTERM).
                self.ready, self.draining = False, True
                try:
                    for step in self.on_stopping:
                        await step()
                    await self.engine.aclose()
                    log.info("stopped")
                except Exception as exc:
                    log.exception("shutdown_failed")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _fallback(self, scope: Scope, receive: Receive, send: Send, t0: float) -> None:
        """Non-contract routes (docs, extensions): same metrics and access log."""
        status = 0

        async def sending(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        await self.fallback(scope, receive, sending)
        dt_s = time.perf_counter() - t0
        self.metrics.observe_request("other", status, dt_s)
        if self._log_info and (self.access_log or status >= 400):
            log.info("request", method=scope["method"], path=scope["path"], route="other",
                     status=status, ms=round(dt_s * 1000, 3))  # fmt: skip

    async def _serve(self, route: Route, call: Call, receive: Receive) -> Reply:
        if route.roles is None:
            return await route.handler(call)
        h = call.headers
        _refuse_declared_size(route, h)
        try:
            pending = _precheck(self.auth, h)
        except AuthError as exc:
            self.metrics.auth_failures.inc(exc.code)
            raise Problem(401, exc.code, exc.detail) from None
        key_id = pending.client.key_id
        try:
            if route.reader is None:
                # read_body inlined for the usual case, a body that arrived whole with
                # its headers: one coroutine less per request.
                msg = await receive()
                body = msg.get("body", b"")
                if msg["type"] != "http.request" or msg.get("more_body", False):
                    body = await read_body(receive, route.body_max_bytes, msg)
                elif len(body) > route.body_max_bytes:
                    raise too_large(route.body_max_bytes)
                call.body = body
                call.body_hex = _sha256(body).hexdigest()
            else:
                call.parsed, call.body_hex = await route.reader(call, receive)
            call.signed_prefix = f"{call.method}\n{call.path_qs}\n".encode()
            client = self.auth.verify_raw(pending, call.signed_prefix, call.body_hex.encode())
        except (AuthError, Problem) as exc:
            # A reused nonce is refused before the body or the MAC are looked at.
            err: AuthError | Problem = exc
            if not await self.gate.nonce_is_fresh(key_id, pending.nonce, pending.ts_s):
                err = AuthError("nonce_reused", "X-Lijian-Nonce was already used by this key")
            if isinstance(err, AuthError):
                self.metrics.auth_failures.inc(err.code)
                raise Problem(401, err.code, err.detail) from None
            raise err from None
        call.client = client
        assert route.roles is not None
        allowed = client.role in route.roles
        # The role is refused before the rate limit: a 403 takes the nonce only.
        slot = TicketSlot(Ticket(key_id, pending.nonce, pending.ts_s, take_rate=allowed))
        try:
            if not allowed:
                await self._admit(slot)
                raise Problem(
                    403,
                    "forbidden",
                    f"role {client.role!r} may not call {route.method} {route.template}",
                )
            call.engine = self.gate.carrier(slot)
            reply = await route.handler(call)
        except Problem as p:
            if slot.ticket is not None:  # answered without the engine: admit first
                await self._admit(slot)
            elif p.code in ("nonce_reused", "rate_limited"):  # the ticket was refused
                self._count_refusal(p, key_id)
            raise
        except LijianError:
            if slot.ticket is not None:
                await self._admit(slot)
            raise
        finally:
            # Whatever the answer, it leaves only once the nonce is stored: a command's
            # commit carried it already; a read or a refusal waits for the next commit.
            durable = self.gate.stored(slot)
            if durable is not None:
                await durable
        if slot.ticket is not None:
            await self._admit(slot)
        return reply

    async def _admit(self, slot: TicketSlot) -> None:
        """The ticket alone; its refusal (401 reused nonce, 429) is the answer."""
        key_id = slot.ticket.key_id if slot.ticket is not None else ""
        try:
            await self.gate.admit(slot)
        except Problem as p:
            self._count_refusal(p, key_id)
            raise

    def _count_refusal(self, p: Problem, key_id: str) -> None:
        if p.status == 401:
            self.metrics.auth_failures.inc(p.code)
        elif p.status == 429:
            self.metrics.rate_limited.inc(key_id)
