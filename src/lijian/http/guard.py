"""Limits on slow, idle, oversized and crowding clients, in the server's own protocol
(uvicorn + httptools).

uvicorn times out only an idle keep-alive connection, and only once it has answered a
request on it: a client that sends one header byte now and then, or a body one byte at a
time, or nothing at all after connecting, holds its connection (and a slot of
``limit_concurrency``) for ever, so a few thousand such sockets starve everybody else.
Nor does it bound a request's head: httptools hands the URL and each header over in
pieces that are concatenated, so a head of many megabytes costs time quadratic in its
size on the serving loop. ``GuardedProtocol`` is uvicorn's httptools protocol with these
limits added where the bytes arrive. A request only notes its phase (head, body) and
when it began; one sweep a second closes the late connections, so a deadline is met up
to one second late and costs no timer per request:

- **head size**: the request line and headers must end within ``head_max_bytes``
  (16 KiB) of the request's first byte; else 431 and the connection is closed. Bytes are
  counted before the parser sees them, so a 64 MiB head costs 16 KiB of parsing. (In a
  read that ends one pipelined request and begins the next, the next head is counted
  from the following read: at most one read, 256 KiB, beyond the limit.)
- **head deadline**: the request line and every header must arrive within
  ``head_timeout_s`` of the connection (first request) or of the request's first byte
  (later requests on a kept-alive connection); else 408 and the connection is closed.
- **body deadline**: the body must arrive within ``body_timeout_s`` of the end of the
  head, extended by one second per ``body_min_rate_bytes_s`` bytes received (as Apache's
  mod_reqtimeout ``MinRate``), so a large catalogue upload on a slow link still
  completes while a body sent a byte at a time is cut off; else 408 and closed.
- **connections per network**: at most ``per_prefix_max`` open connections from one
  IPv4 /24 or IPv6 /64 (:func:`network_of`) per process; the next one is answered 503
  ``too_many_connections`` at once and closed, before any byte is read. A network, not
  an address: one machine has many addresses of its /24 or /64 (an IPv6 /64 has 2^64).
- **connections in total**: at most ``connections_max`` per process (below uvicorn's
  ``limit_concurrency``, which would answer 503 to everybody). When it is reached, a new
  connection from another network takes the place of one of the network holding the
  most: its slowest request still arriving (answered 503 and closed), else an idle
  kept-alive one (closed). So a few networks with many slow connections each cannot fill
  the process: whoever comes from elsewhere still gets in. A new connection from the
  network holding the most is refused instead (503).

The idle keep-alive timeout (``keep_alive_s``, uvicorn's ``timeout_keep_alive``) starts
when a response is complete and nothing more is queued, and ends when the next request
begins, from which the head deadline runs; the sweep closes a connection idle that long
(uvicorn armed and cancelled a timer per request for it). The per-request machinery
under all this is ``lean.py``'s (uvicorn's, with less work per request).
A refused head (431) is answered, the sending side shut, and what the client still sends
is read and dropped for ``LINGER_S`` (one or two sweeps) before the close, so that the
client reads the answer instead of a reset.

Why here and not another server: granian (2.8) has a header read timeout but no body
deadline and no per-network limit, and a limit at accept time needs the accept path,
which in a Rust server is out of reach; in uvicorn it is one subclass, and its cost per
request is within the noise (``python -m bench.guard_bench``; docs/API.md, "Limits").
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lijian.http.lean import LeanCycle, LeanProtocol
from lijian.jsonish import Json

HEAD_TIMEOUT_S = 10.0
HEAD_MAX_BYTES = 16 * 1024  # request line + headers; a signed API request needs ~1 KiB
BODY_TIMEOUT_S = 10.0
BODY_MIN_RATE_BYTES_S = 64 * 1024  # each 64 KiB received buys one more second
CONNECTIONS_PER_PREFIX_MAX = 1_024  # per serving process, per IPv4 /24 or IPv6 /64
# Per serving process: below uvicorn's limit_concurrency (http/server.py, 8,192), so that
# the guard decides who is let go before uvicorn answers 503 to everybody.
GUARDED_CONNECTIONS_MAX = 8_000
SWEEP_EVERY_S = 1.0  # how often late connections are looked for: deadlines are this coarse
LINGER_S = 1.0  # after a 431: read and drop the rest for this long (up to one sweep more)
ENV_PREFIX = "LIJIAN_"  # e.g. LIJIAN_HEAD_TIMEOUT_S=5 (tests and unusual networks)
IPV4_PREFIX_BITS = 24
IPV6_PREFIX_BITS = 64

_TIMEOUT = b"request timeout: the request did not arrive in time\n"


def _problem(status: int, phrase: bytes, code: bytes, detail: bytes, retry: bool) -> bytes:
    body = b'{"type":"urn:lijian:problem:%s","status":%d,"code":"%s","detail":"%s"}' % (
        code, status, code, detail
    )  # fmt: skip
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\n%s"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s"
        % (status, phrase, b"retry-after: 1\r\n" if retry else b"", len(body), body)
    )


RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT), _TIMEOUT)
)
RESPONSE_503 = _problem(
    503, b"Service Unavailable", b"too_many_connections",
    b"too many open connections from this network", retry=True,
)  # fmt: skip
RESPONSE_431 = _problem(
    431, b"Request Header Fields Too Large", b"request_head_too_large",
    b"the request line and headers are above %d bytes" % HEAD_MAX_BYTES, retry=False,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Limits:
    head_timeout_s: float = HEAD_TIMEOUT_S
    head_max_bytes: int = HEAD_MAX_BYTES
    body_timeout_s: float = BODY_TIMEOUT_S
    body_min_rate_bytes_s: int = BODY_MIN_RATE_BYTES_S
    per_prefix_max: int = CONNECTIONS_PER_PREFIX_MAX
    connections_max: int = GUARDED_CONNECTIONS_MAX
    keep_alive_s: int = 30


def limits_from_env(defaults: Limits, env: dict[str, str] | None = None) -> Limits:
    """The limits, each overridable by ``LIJIAN_<FIELD>`` (upper case); ValueError names
    the variable of a value that is not a positive number."""
    env = dict(os.environ) if env is None else env
    values: Json = {}
    for name in Limits.__dataclass_fields__:
        var = ENV_PREFIX + name.upper()
        text = env.get(var)
        if text is None:
            continue
        kind = type(getattr(defaults, name))
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{var}: expected a positive number, got {text!r}") from None
        if value <= 0:
            raise ValueError(f"{var}: expected a positive number, got {text!r}")
        values[name] = value
    return Limits(**{**{n: getattr(defaults, n) for n in Limits.__dataclass_fields__}, **values})


def raise_open_files_limit(wanted: int) -> int:
    """Lift the soft RLIMIT_NOFILE towards ``wanted`` (never past the hard limit): with the
    usual soft limit of 1,024 the global connection limit could never be reached, and an
    accept failing for want of descriptors stalls every client. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def network_of(address: str) -> str:
    """The network a client address is counted in: its IPv4 /24 (``"203.0.113.0/24"``)
    or its IPv6 /64 (``"2001:db8:1:2::/64"``). An IPv4-mapped IPv6 address counts as
    its IPv4 address; a zone (``%eth0``) is dropped; anything else (a Unix socket's
    empty name) is its own network."""
    head, dot, _ = address.rpartition(".")
    if dot and ":" not in head and head.count(".") == 2:  # the usual case, no parsing
        return f"{head}.0/{IPV4_PREFIX_BITS}"
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return network_of(str(ip.ipv4_mapped))
        net = ipaddress.IPv6Network((ip, IPV6_PREFIX_BITS), strict=False)
        return str(net)
    return str(ipaddress.IPv4Network((ip, IPV4_PREFIX_BITS), strict=False))


class Phase(IntEnum):
    """Where a connection is in its current request (what its deadline is)."""

    WAITING = 0  # no request coming in: the handler works, or kept alive and idle
    HEAD = 1  # reading the request line and headers
    BODY = 2  # reading the body
    LINGER = 3  # refused (431): reading and dropping what still comes, then closed
    IDLE = 4  # kept alive after an answer, nothing more coming yet (keep-alive deadline)


def guarded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    """A protocol class bound to ``limits`` and to one count per network for the process.

    No timer per request (a timer handle armed and cancelled twice per request cost ~4 µs
    a request in ``bench/guard_bench.py``): each request only notes its phase and when
    it began, and one sweep a second closes the connections that are late."""
    by_network: dict[str, set[GuardedProtocol]] = {}
    # The networks by how many connections each holds, and the largest such number: the
    # network holding the most is found in O(1) when the process is full (a scan of
    # every network per connection would cost the loop most when it can least afford it).
    tiers: dict[int, set[str]] = {}
    top = [0]
    guarded: set[GuardedProtocol] = set()
    # Since the start, for /metrics (gauges()).
    counts = {"refused": 0, "timed_out": 0, "too_large": 0, "displaced": 0}
    sweeping: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}  # one loop, really
    head_s, body_s, rate = (
        limits.head_timeout_s,
        limits.body_timeout_s,
        limits.body_min_rate_bytes_s,
    )
    head_max, keep_s = limits.head_max_bytes, float(limits.keep_alive_s)
    head, body, waiting, linger = Phase.HEAD, Phase.BODY, Phase.WAITING, Phase.LINGER
    idle = Phase.IDLE
    # The base methods, bound once: no super() lookup per call on the hot path.
    feed = LeanProtocol.data_received
    began, headed = LeanProtocol.on_message_begin, LeanProtocol.on_headers_complete
    bodied, completed = LeanProtocol.on_body, LeanProtocol.on_message_complete

    def sweep(loop: asyncio.AbstractEventLoop) -> None:
        now_s = loop.time()
        for p in [p for p in guarded if p._phase is not waiting]:
            late_s = now_s - p._since_s
            if p._phase is head and late_s >= head_s:
                p._head_late()
            elif p._phase is body and late_s >= body_s + p._body_bytes / rate:
                p._body_late()
            elif p._phase is idle and late_s >= keep_s:
                p._phase = waiting
                if not p.transport.is_closing():
                    p.transport.close()
            elif p._phase is linger and late_s >= LINGER_S:
                p._phase = waiting
                p.transport.close()
        sweeping[loop] = loop.call_later(SWEEP_EVERY_S, sweep, loop)

    def _move(network: str, was: int, now: int) -> None:
        if was:
            tier = tiers[was]
            tier.discard(network)
            if not tier:
                del tiers[was]
                if top[0] == was:
                    top[0] = now  # the network itself is in the tier below now
        if now:
            tiers.setdefault(now, set()).add(network)
            top[0] = max(top[0], now)
        assert top[0] == 0 or top[0] in tiers, (top[0], sorted(tiers))

    def displace(network: str) -> bool:
        """Make room for a connection from ``network``: close one of the network that
        holds the most (another one). False when there is nothing to close."""
        if top[0] <= len(by_network.get(network, ())) + 1:
            return False  # no network holds more than the newcomer's would
        crowd = next(iter(tiers[top[0]]))
        members = by_network[crowd]
        arriving = [p for p in members if p._phase is head or p._phase is body]
        if arriving:
            victim = min(arriving, key=lambda p: p._since_s)  # the slowest so far
        else:
            quiet = [p for p in members if p._phase is idle or (p._phase is waiting and p._idle())]
            if not quiet:
                return False
            victim = quiet[0]
        counts["displaced"] += 1
        victim._let_go()
        return True

    class GuardedProtocol(LeanProtocol):
        _network: str | None = None
        _phase = waiting
        _since_s = 0.0
        _body_bytes = 0
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            address = peer[0] if isinstance(peer, tuple) and peer else None
            if address is not None:
                network = network_of(str(address))
                members = by_network.get(network)
                n = 0 if members is None else len(members)
                if n >= limits.per_prefix_max or (
                    len(guarded) >= limits.connections_max and not displace(network)
                ):
                    # Refused before uvicorn counts it: the answer, then the close. The
                    # client has sent nothing yet (or only a little), so it reads it.
                    self.transport = transport
                    counts["refused"] += 1
                    transport.write(RESPONSE_503)
                    transport.close()
                    return
                if members is None:
                    members = by_network[network] = set()
                members.add(self)
                _move(network, n, n + 1)
                self._network = network
            super().connection_made(transport)
            self._phase, self._since_s = head, self.loop.time()
            guarded.add(self)
            if self.loop not in sweeping:
                sweeping.clear()  # a loop before this one is closed (benchmarks, tests)
                sweeping[self.loop] = self.loop.call_later(SWEEP_EVERY_S, sweep, self.loop)

        def _uncount(self) -> None:
            """Out of the counts, once (a displaced connection leaves them at once, before
            its close completes)."""
            guarded.discard(self)
            network = self._network
            if network is not None:
                self._network = None
                members = by_network[network]
                n = len(members)
                members.remove(self)
                _move(network, n, n - 1)
                if not members:
                    del by_network[network]

        def connection_lost(self, exc: Exception | None) -> None:
            if self.flow is None:  # refused in connection_made: uvicorn never saw it
                return
            self._uncount()
            self._phase = waiting
            super().connection_lost(exc)

        # ------------------------------------------------------------ head size
        def data_received(self, data: bytes) -> None:
            # On every read: no super() (a lookup per call), the base method bound once.
            phase = self._phase
            if phase is body:
                feed(self, data)
                return
            n = self._head_bytes + len(data)
            if n < head_max and phase is not linger:  # usually a whole request in one read
                self._head_bytes = n
                feed(self, data)
            elif phase is not linger:  # refused (431): dropped until the close
                self._feed_counted(memoryview(data))

        def _feed_counted(self, view: memoryview) -> None:
            """Feed at most the head's room at a time; 431 once the room is used up and
            the head has not ended."""
            while view:
                if self.transport.is_closing():
                    return
                if self._phase is body:
                    super().data_received(view)  # type: ignore[arg-type]
                    return
                room = head_max - self._head_bytes
                piece, view = view[:room], view[room:]
                self._head_bytes += len(piece)
                super().data_received(piece)  # type: ignore[arg-type]
                if self._phase is not body and self._head_bytes >= head_max:
                    if not self.transport.is_closing():
                        self._head_too_large()
                    return

        def _head_too_large(self) -> None:
            counts["too_large"] += 1
            if not self._idle() or not self.transport.can_write_eof():
                # An earlier request's answer is still being sent (pipelining): cut short,
                # as at a deadline; nothing more may be written after a shut side.
                self._close(None, None)
                return
            self.transport.write(RESPONSE_431)
            # Shut our side and drop the rest for a moment (the sweep closes it), so the
            # client reads the answer instead of a reset.
            self._phase, self._since_s = linger, self.loop.time()
            self.transport.write_eof()

        # ------------------------------------------------------------ deadlines
        def on_message_begin(self) -> None:
            began(self)
            if self._phase is not head:  # a later request on a kept-alive connection
                self._phase, self._since_s = head, self.loop.time()

        def on_headers_complete(self) -> None:
            headed(self)
            self._phase, self._since_s, self._body_bytes = body, self.loop.time(), 0
            self._head_bytes = 0

        def on_body(self, body: bytes) -> None:
            self._body_bytes += len(body)
            bodied(self, body)

        def on_message_complete(self) -> None:
            self._phase, self._head_bytes = waiting, 0
            completed(self)

        def _kept_alive(self) -> None:
            # Instead of uvicorn's timer armed and cancelled per request: the sweep
            # closes the connection once it has been idle keep_alive_s (up to 1 s late).
            if self._phase is waiting:
                self._phase, self._since_s = idle, self.loop.time()

        def _idle(self) -> bool:
            cycle = self.cycle
            return cycle is None or cycle.response_complete

        def _head_late(self) -> None:
            # self.cycle is the previous request's (or None): answer 408 unless its
            # response is still being sent, which the close cuts short anyway.
            self._timed_out(self._idle(), None)

        def _body_late(self) -> None:
            cycle = self.cycle
            self._timed_out(not cycle.response_started, cycle)

        def _timed_out(self, answer: bool, late: LeanCycle | None) -> None:
            if self.transport.is_closing():
                self._phase = waiting
                return
            counts["timed_out"] += 1
            self._close(RESPONSE_408 if answer else None, late)

        def _let_go(self) -> None:
            """Displaced by a connection from another network: 503 if a request is
            arriving and nothing is being answered, then closed."""
            self._uncount()
            phase, cycle = self._phase, self.cycle
            answer = (phase is head and self._idle()) or (
                phase is body and not cycle.response_started
            )
            self._close(RESPONSE_503 if answer else None, cycle if phase is body else None)

        def _close(self, answer: bytes | None, late: LeanCycle | None) -> None:
            self._phase = waiting
            if answer is not None:
                self.transport.write(answer)
            if late is not None:
                # The handler waiting for the body sees a disconnect; nothing it sends
                # afterwards reaches the socket.
                late.disconnected = True
                late.message_event.set()
            self.transport.close()

    GuardedProtocol.gauges = {  # type: ignore[attr-defined]
        "lijian_connections_open": lambda: float(len(guarded)),
        "lijian_connections_refused": lambda: float(counts["refused"]),
        "lijian_connections_displaced": lambda: float(counts["displaced"]),
        "lijian_requests_timed_out": lambda: float(counts["timed_out"]),
        "lijian_request_heads_too_large": lambda: float(counts["too_large"]),
    }
    return GuardedProtocol


def gauges(protocol: type[HttpToolsProtocol]) -> dict[str, Callable[[], float]]:
    """This process's figures of a ``guarded_protocol`` class, by metric name: open
    connections, connections refused (per-network and total limits), displaced (to make
    room for another network), requests timed out (408) and heads too large (431) since
    the start."""
    out: dict[str, Callable[[], float]] = getattr(protocol, "gauges", {})
    return out
