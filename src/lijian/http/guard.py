"""Limits on slow and idle clients, in the server's own protocol (uvicorn + httptools).

uvicorn times out only an idle keep-alive connection, and only once it has answered a
request on it: a client that sends one header byte now and then, or a body one byte at a
time, or nothing at all after connecting, holds its connection (and a slot of
``limit_concurrency``) for ever, so a few thousand such sockets from one machine starve
everybody else. ``GuardedProtocol`` is uvicorn's httptools protocol with three limits
added where the bytes arrive. A request only notes its phase (head, body) and when it
began; one sweep a second closes the late connections, so a deadline is met up to one
second late and costs no timer per request:

- **head deadline**: the request line and every header must arrive within
  ``head_timeout_s`` of the connection (first request) or of the request's first byte
  (later requests on a kept-alive connection); else 408 and the connection is closed.
- **body deadline**: the body must arrive within ``body_timeout_s`` of the end of the
  head, extended by one second per ``body_min_rate_bytes_s`` bytes received (as Apache's
  mod_reqtimeout ``MinRate``), so a large catalogue upload on a slow link still
  completes while a body sent a byte at a time is cut off; else 408 and closed.
- **per-address connections**: at most ``per_address_max`` open connections from one
  client address per process; the next one is answered 503 ``too_many_connections`` at
  once and closed, before any byte is read. Well below the global ``CONNECTIONS_MAX``,
  so one address cannot take the slots of all the others.

The idle keep-alive timeout stays uvicorn's (``timeout_keep_alive``): it starts when a
response is complete and ends at the next byte, from which the head deadline runs.

Why here and not another server: granian (2.8) has a header read timeout but no body
deadline and no per-address limit, and a limit at accept time needs the accept path,
which in a Rust server is out of reach; in uvicorn it is one subclass, and its cost per
request is within the noise (``python -m bench.guard_bench``; docs/API.md, "Limits").
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
BODY_MIN_RATE_BYTES_S = 64 * 1024  # each 64 KiB received buys one more second
CONNECTIONS_PER_ADDRESS_MAX = 1_024  # per serving process; the global limit is 8,192
SWEEP_EVERY_S = 1.0  # how often late connections are looked for: deadlines are this coarse
ENV_PREFIX = "LIJIAN_"  # e.g. LIJIAN_HEAD_TIMEOUT_S=5 (tests and unusual networks)

_TIMEOUT = b"request timeout: the request did not arrive in time\n"
_TOO_MANY = (
    b'{"type":"urn:lijian:problem:too_many_connections","status":503,'
    b'"code":"too_many_connections","detail":"too many open connections from this address"}'
)
RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT), _TIMEOUT)
)
RESPONSE_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n"
    b"retry-after: 1\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
    % (len(_TOO_MANY), _TOO_MANY)
)


@dataclass(frozen=True, slots=True)
class Limits:
    head_timeout_s: float = HEAD_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    body_min_rate_bytes_s: int = BODY_MIN_RATE_BYTES_S
    per_address_max: int = CONNECTIONS_PER_ADDRESS_MAX
    keep_alive_s: int = 30


def limits_from_env(defaults: Limits, env: dict[str, str] | None = None) -> Limits:
    """The limits, each overridable by ``LIJIAN_<FIELD>`` (upper case); ValueError names
    the variable of a value that is not a positive number."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
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


class Phase(IntEnum):
    """Where a connection is in its current request (what its deadline is)."""

    WAITING = 0  # no request coming in: the handler works, or kept alive and idle
    HEAD = 1  # reading the request line and headers
    BODY = 2  # reading the body


def guarded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    """A protocol class bound to ``limits`` and to one per-address count for the process.

    No timer per request (a timer handle armed and cancelled twice per request cost ~4 µs
    a request in ``bench/guard_bench.py``): each request only notes its phase and when
    it began, and one sweep a second closes the connections that are late."""
    open_by_address: dict[str, int] = {}
    guarded: set[GuardedProtocol] = set()
    counts = {"refused": 0, "timed_out": 0}  # since the start, for /metrics (gauges())
    sweeping: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}  # one loop, really
    head_s, body_s, rate = (
        limits.head_timeout_s,
        limits.body_timeout_s,
        limits.body_min_rate_bytes_s,
    )
    head, body, waiting = Phase.HEAD, Phase.BODY, Phase.WAITING

    def sweep(loop: asyncio.AbstractEventLoop) -> None:
        now_s = loop.time()
        for p in [p for p in guarded if p._phase is not waiting]:
            late_s = now_s - p._since_s
            if p._phase is head and late_s >= head_s:
                p._head_late()
            elif p._phase is body and late_s >= body_s + p._body_bytes / rate:
                p._body_late()
        sweeping[loop] = loop.call_later(SWEEP_EVERY_S, sweep, loop)

    class GuardedProtocol(HttpToolsProtocol):
        _address: str | None = None
        _phase = waiting
        _since_s = 0.0
        _body_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            address = peer[0] if isinstance(peer, tuple) and peer else None
            if address is not None:
                n = open_by_address.get(address, 0)
                if n >= limits.per_address_max:
                    # Refused before uvicorn counts it: the answer, then the close. The
                    # client has sent nothing yet (or only a little), so it reads it.
                    self.transport = transport
                    counts["refused"] += 1
                    transport.write(RESPONSE_503)
                    transport.close()
                    return
                open_by_address[address] = n + 1
                self._address = address
            super().connection_made(transport)
            self._phase, self._since_s = head, self.loop.time()
            guarded.add(self)
            if self.loop not in sweeping:
                sweeping.clear()  # a loop before this one is closed (benchmarks, tests)
                sweeping[self.loop] = self.loop.call_later(SWEEP_EVERY_S, sweep, self.loop)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.flow is None:  # refused in connection_made: uvicorn never saw it
                return
            guarded.discard(self)
            self._phase = waiting
            address = self._address
            if address is not None:
                self._address = None
                n = open_by_address.get(address, 1) - 1
                if n > 0:
                    open_by_address[address] = n
                else:
                    open_by_address.pop(address, None)
            super().connection_lost(exc)

        # ------------------------------------------------------------ deadlines
        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._phase is not head:  # a later request on a kept-alive connection
                self._phase, self._since_s = head, self.loop.time()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._phase, self._since_s, self._body_bytes = body, self.loop.time(), 0

        def on_body(self, body: bytes) -> None:
            self._body_bytes += len(body)
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._phase = waiting
            super().on_message_complete()

        def _head_late(self) -> None:
            # self.cycle is the previous request's (or None): answer 408 unless its
            # response is still being sent, which the close cuts short anyway.
            cycle = self.cycle
            self._timed_out(cycle is None or cycle.response_complete, None)

        def _body_late(self) -> None:
            cycle = self.cycle
            self._timed_out(not cycle.response_started, cycle)

        def _timed_out(self, answer: bool, late: Any) -> None:
            self._phase = waiting
            if self.transport.is_closing():
                return
            counts["timed_out"] += 1
            if answer:
                self.transport.write(RESPONSE_408)
            if late is not None:
                # The handler waiting for the body sees a disconnect; nothing it sends
                # afterwards reaches the socket.
                late.disconnected = True
                late.message_event.set()
            self.transport.close()

    GuardedProtocol.gauges = {  # type: ignore[attr-defined]
        "lijian_connections_open": lambda: float(len(guarded)),
        "lijian_connections_refused": lambda: float(counts["refused"]),
        "lijian_requests_timed_out": lambda: float(counts["timed_out"]),
    }
    return GuardedProtocol


def gauges(protocol: type[HttpToolsProtocol]) -> dict[str, Callable[[], float]]:
    """This process's figures of a ``guarded_protocol`` class, by metric name: open
    connections, connections refused (per-address limit) and requests timed out (408)
    since the start."""
    out: dict[str, Callable[[], float]] = getattr(protocol, "gauges", {})
    return out
