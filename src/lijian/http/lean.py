"""uvicorn's httptools protocol with less work per request (the guard builds on it).

A grant's answer is decided in tens of microseconds; uvicorn's per-request machinery
around it cost as much again (docs/PERFORMANCE.md, "The HTTP stack's share"). What
``LeanProtocol`` and ``LeanCycle`` do differently, each the same to a client:

- **one write per answer**: uvicorn writes the head when the app sends
  ``http.response.start`` and the body at ``http.response.body``, two ``send`` system
  calls and usually two TCP segments. Here a head that declares its ``content-length``
  waits for the body and leaves with it (a fixed-size answer's body is in hand when it
  starts); a head without one (a stream) is written at once, as before.
- **a head from cached pieces**: the status lines, the ``date`` header's bytes (rebuilt
  when uvicorn replaces its default headers, once a second), and the header names
  already checked (lower-cased, validated once); the values are checked with one regex
  search over all of them.
- **the usual URL without parsing**: an origin-form target without ``?``, ``#`` or
  ``%`` is its own path; anything else goes through ``httptools.parse_url`` as before.
- **no wrapper coroutine per request**: the app's coroutine is the task; what uvicorn's
  ``run_asgi`` did around it (500 when the app failed before answering, a close when it
  failed or stopped midway) is done in the task's done callback.
- **a body that arrived whole is handed over as it came**: no bytearray and copy, and
  ``receive`` does not wait on an event that is already set.

Everything else (pipelining order, flow control, ``Expect: 100-continue``, chunked
request bodies, ``limit_concurrency``, graceful shutdown) is uvicorn's code or follows
it line by line; the keep-alive timer stays uvicorn's unless a subclass replaces
``_kept_alive`` (the guard does: its sweep closes idle connections, no timer per request).
"""

from __future__ import annotations

import asyncio
import contextvars
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, service_unavailable
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
)

NAMES_CACHED_MAX = 256  # header names checked once; an app naming more checks the rest each time
JOIN_BODY_MAX_BYTES = 64 * 1024  # above this the head and body are two writes (no big copy)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LENGTH, _ENCODING, _CONNECTION = b"content-length", b"transfer-encoding", b"connection"
_SPECIAL = frozenset((_LENGTH, _ENCODING, _CONNECTION))
_names: dict[bytes, bytes] = {}  # a header name as the app gave it -> checked, lower case
_defaults: list[Any] = [None, b""]  # uvicorn's default-headers list, and its bytes


def _nothing() -> None:
    pass


def _lower_checked(name: bytes) -> bytes:
    low = _names.get(name)
    if low is None:
        if HEADER_RE.search(name):
            raise RuntimeError("Invalid HTTP header name.")
        low = name.lower()
        if len(_names) < NAMES_CACHED_MAX:
            _names[name] = low
    return low


def _default_bytes(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (``date``, ``server`` if on) as bytes; uvicorn replaces
    the list once a second, so its identity says when to rebuild."""
    if _defaults[0] is not default_headers:
        parts = []
        for name, value in default_headers:
            if HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            parts.append(b"%s: %s\r\n" % (_lower_checked(name), value))
        _defaults[0], _defaults[1] = default_headers, b"".join(parts)
    out: bytes = _defaults[1]
    return out


class LeanCycle:
    """One request and its answer: what uvicorn's ``RequestResponseCycle`` holds, and its
    ``send``/``receive`` (the guard and uvicorn's protocol read the same attributes)."""

    __slots__ = (
        "body", "chunked_encoding", "disconnected", "expected_content_length", "flow", "head",
        "keep_alive", "message_event", "more_body", "on_response", "proto",
        "response_complete", "response_started", "scope", "transport",
        "waiting_for_100_continue",
    )  # fmt: skip

    def __init__(
        self, scope: Any, proto: LeanProtocol, expect_100_continue: bool, keep_alive: bool
    ) -> None:
        self.scope = scope
        self.proto = proto
        self.transport = proto.transport
        self.flow = proto.flow
        self.message_event = asyncio.Event()
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body: bytes | bytearray = b""
        self.more_body = True
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0
        self.head: bytes | None = None  # written with the first body
        self.on_response: Callable[[], None] = proto.on_response_complete

    # ------------------------------------------------------------------ the task's end
    def done(self, task: asyncio.Task[None]) -> None:
        """What uvicorn's ``run_asgi`` did after the app returned or raised."""
        self.proto.tasks.discard(task)
        logger = self.proto.logger
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if exc is not None:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                self._answer_500()
            else:
                self._flush_head()
                self.transport.close()
        elif task.result() is not None:
            logger.error("ASGI callable should return None, but returned '%s'.", task.result())
            self._flush_head()
            self.transport.close()
        elif not self.response_started and not self.disconnected:
            logger.error("ASGI callable returned without starting response.")
            self._answer_500()
        elif not self.response_complete and not self.disconnected:
            logger.error("ASGI callable returned without completing response.")
            self._flush_head()
            self.transport.close()
        self.on_response = _nothing

    def _answer_500(self) -> None:
        if self.disconnected:
            return
        self.response_started = self.response_complete = True
        self.keep_alive = False
        self.transport.write(
            STATUS_LINE[500] + _default_bytes(self.proto.server_state.default_headers)
            + b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n"
            b"connection: close\r\n\r\nInternal Server Error"
        )  # fmt: skip
        self.message_event.set()
        self.transport.close()
        self.on_response()

    def _flush_head(self) -> None:
        head = self.head
        if head is not None and not self.disconnected:
            self.head = None
            self.transport.write(head)

    # ------------------------------------------------------------------ ASGI
    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self.response_started = True
            self.waiting_for_100_continue = False
            self._start(message["status"], message.get("headers", ()))
        elif not self.response_complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.body', but got '{message['type']}'."
                )
            body = message.get("body", b"")
            more_body = message.get("more_body", False)
            if self.scope["method"] == "HEAD":
                self.expected_content_length = 0
                out = b""
            elif self.chunked_encoding:
                out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
                if not more_body:
                    out += b"0\r\n\r\n"
            else:
                if len(body) > self.expected_content_length:
                    raise RuntimeError("Response content longer than Content-Length")
                self.expected_content_length -= len(body)
                out = body
            head = self.head
            if head is not None:
                self.head = None
                if len(out) <= JOIN_BODY_MAX_BYTES:
                    out = head + out
                else:
                    self.transport.write(head)
            if out:
                self.transport.write(out)
            if not more_body:
                if self.expected_content_length != 0:
                    raise RuntimeError("Response content shorter than Content-Length")
                self.response_complete = True
                self.message_event.set()
                if not self.keep_alive:
                    self.transport.close()
                self.on_response()
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, "
                "after response already completed."
            )

    def _start(self, status: int, headers: Any) -> None:
        """The head, as uvicorn builds it; kept for the body if its length is declared."""
        parts = [STATUS_LINE[status], _default_bytes(self.proto.server_state.default_headers)]
        values = []
        has_connection_close = False
        for name, value in headers:
            low = _lower_checked(name)
            values.append(value)
            if low in _SPECIAL:
                if low == _LENGTH and self.chunked_encoding is None:
                    self.expected_content_length = int(value.decode())
                    self.chunked_encoding = False
                elif low == _ENCODING and value.lower() == b"chunked":
                    self.expected_content_length = 0
                    self.chunked_encoding = True
                elif low == _CONNECTION:
                    tokens = [token.lower().strip() for token in value.split(b",")]
                    if b"close" in tokens:
                        self.keep_alive = False
                        has_connection_close = True
            parts += (low, b": ", value, b"\r\n")
        # One search over every value: a forbidden byte in any of them is found.
        if HEADER_VALUE_RE.search(b"".join(values)):
            raise RuntimeError("Invalid HTTP header value.")
        if not self.keep_alive and not has_connection_close:
            parts.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        if self.chunked_encoding is False:
            self.head = head  # its body is in hand: it leaves with the head
        else:
            self.transport.write(head)

    async def receive(self) -> Any:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(_CONTINUE)
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            event = self.message_event
            if not event.is_set():
                await event.wait()
            event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = self.body
        self.body = b""
        if type(body) is not bytes:
            body = bytes(body)
        return {"type": "http.request", "body": body, "more_body": self.more_body}


class LeanProtocol(HttpToolsProtocol):
    """uvicorn's protocol with the per-request callbacks above (``LeanCycle``)."""

    cycle: LeanCycle  # type: ignore[assignment]
    pipeline: deque[tuple[LeanCycle, Any]]  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ws="none" (http/server.py): no upgrade checks on the hot path then.
        self._ws = self.ws_protocol_class is not None
        self._asgi: Any = {"version": self.asgi_version, "spec_version": "2.3"}
        self._fresh_context = self.config.reset_contextvars

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": self._asgi,
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_headers_complete(self) -> None:
        parser = self.parser
        scope: Any = self.scope
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if self._ws and parser.should_upgrade() and self._should_upgrade():
            return
        url = self.url
        if url[:1] == b"/" and b"?" not in url and b"#" not in url and b"%" not in url:
            raw_path, query, path = url, b"", url.decode("ascii")
        else:
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path, parsed.query or b""
            path = raw_path.decode("ascii")
            if "%" in path:
                path = urllib.parse.unquote(path)
        root = self.root_path
        scope["path"] = root + path if root else path
        scope["raw_path"] = root.encode("ascii") + raw_path if root else raw_path
        scope["query_string"] = query
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        else:
            app = self.app
        existing = self.cycle
        self.cycle = LeanCycle(
            scope,
            self,
            self.expect_100_continue,
            http_version != "1.0" and parser.should_keep_alive(),
        )
        if existing is None or existing.response_complete:
            self._start_asgi_task(self.cycle, app)
        else:  # pipelined: queued until the answers before it are sent
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, app))

    def _start_asgi_task(self, cycle: LeanCycle, app: Any) -> None:  # type: ignore[override]
        coro = app(cycle.scope, cycle.receive, cycle.send)
        if self._fresh_context:  # uvicorn's opt-in, kept
            task = self.loop.create_task(coro, context=contextvars.Context())
        else:
            task = self.loop.create_task(coro)
        task.add_done_callback(cycle.done)
        self.tasks.add(task)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if (self._ws and self.parser.should_upgrade() and self._should_upgrade()) or (
            cycle.response_complete
        ):
            return
        held = cycle.body
        if not held:
            cycle.body = held = body
        elif type(held) is bytes:
            cycle.body = held = bytearray(held) + body
        else:
            held += body
        if len(held) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if (self._ws and self.parser.should_upgrade() and self._should_upgrade()) or (
            cycle.response_complete
        ):
            return
        cycle.more_body = False
        cycle.message_event.set()

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._kept_alive()

    def _kept_alive(self) -> None:
        """Nothing more to answer on the connection: uvicorn's idle timer."""
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
