"""The lean per-request machinery under the guard (http/lean.py): what a client sees is
uvicorn's, in fewer writes.

In process, with a transport that records each write: a fixed-size answer is one write
(head and body), a streamed one writes its head at once; pipelined requests are
answered in order; ``Expect: 100-continue`` gets its interim answer when the app reads
the body; a chunked request body arrives whole; an app that fails gets uvicorn's 500
(or a close once it has begun to answer). Then the same over a real socket, per topology."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from lijian.http.guard import Limits, guarded_protocol
from tests.http.harness import Server, order

DATE = (b"date", b"Mon, 07 Dec 2026 20:00:00 GMT")
JSON = b'{"status":"ok"}'
App = Callable[[Any, Any, Any], Awaitable[None]]


class Recorder(asyncio.Transport):
    """A transport that keeps every write, for the exact bytes and their number."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.closed_by_server = False  # before the test's own connection_lost

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _serve(
    app: App, *chunks: bytes, settle: int = 20, transport: Recorder | None = None
) -> Recorder:
    """Feed ``chunks`` to a guarded protocol serving ``app``, letting the loop run
    between them (and ``settle`` turns after the last); the transport, with what was
    written."""
    cls = guarded_protocol(Limits())
    config = uvicorn.Config(
        app, http=cls, lifespan="off", log_level="critical", proxy_headers=False
    )
    config.load()
    state = ServerState()
    state.default_headers = [DATE]
    proto = cls(config, state, {}, _loop=asyncio.get_running_loop())
    transport = transport or Recorder()
    proto.connection_made(transport)
    for chunk in chunks:
        proto.data_received(chunk)
        for _ in range(settle):
            await asyncio.sleep(0)
    transport.closed_by_server = transport.closed
    proto.connection_lost(None)
    return transport


def _answer(body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %s\r\ndate: Mon, 07 Dec 2026 20:00:00 GMT\r\ncontent-type: application/json"
        b"\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)
    )


async def fixed(scope: Any, receive: Any, send: Any) -> None:
    msg = await receive()
    body = b'{"path":"%s","got":%d}' % (scope["path"].encode(), len(msg["body"]))
    if scope["path"] == "/slow":
        for _ in range(5):  # answered after the request behind it has arrived
            await asyncio.sleep(0)
    headers = [(b"Content-Type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_a_fixed_size_answer_is_one_write_with_its_head() -> None:
    t = asyncio.run(_serve(fixed, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert t.writes == [_answer(b'{"path":"/a","got":0}')]
    assert not t.closed_by_server  # kept alive


def test_pipelined_requests_are_answered_in_order() -> None:
    two = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nPOST /b?q=1 HTTP/1.1\r\nHost: x\r\n"
    two += b"Content-Length: 3\r\n\r\nabc"
    t = asyncio.run(_serve(fixed, two, settle=40))
    assert t.writes == [_answer(b'{"path":"/slow","got":0}'), _answer(b'{"path":"/b","got":3}')]


def test_the_usual_path_and_one_with_a_query_or_escapes_are_read_alike() -> None:
    seen: list[tuple[str, bytes, bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["path"], scope["raw_path"], scope["query_string"]))
        await fixed(scope, receive, send)

    reqs = [
        b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % u for u in (b"/v1/a", b"/v1/a?x=1", b"/v1/a%20b")
    ]
    asyncio.run(_serve(app, *reqs))
    assert seen == [("/v1/a", b"/v1/a", b""), ("/v1/a", b"/v1/a", b"x=1"),
                    ("/v1/a b", b"/v1/a%20b", b"")]  # fmt: skip


def test_a_streamed_answer_writes_its_head_at_once() -> None:
    t = Recorder()
    release = asyncio.Event()
    before_body: list[list[bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        before_body.append(list(t.writes))
        await release.wait()
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def run() -> None:
        served = asyncio.ensure_future(
            _serve(app, b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n", transport=t)
        )
        for _ in range(5):
            await asyncio.sleep(0)
        release.set()
        await served

    asyncio.run(run())
    head = b"HTTP/1.1 200 OK\r\ndate: %s\r\ntransfer-encoding: chunked\r\n\r\n" % DATE[1]
    assert before_body == [[head]]
    assert t.writes == [head, b"5\r\nhello\r\n", b"0\r\n\r\n"]


async def echo(scope: Any, receive: Any, send: Any) -> None:
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg["body"])
        if not msg["more_body"]:
            break
    body = b"".join(chunks)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_expect_100_continue_is_answered_when_the_body_is_read() -> None:
    head = b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    t = asyncio.run(_serve(echo, head, b"ab", b"cd"))
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", _answer(b"abcd")]


def test_a_chunked_request_body_arrives_whole() -> None:
    head = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    t = asyncio.run(_serve(echo, head + b"3\r\nabc\r\n", b"2\r\nde\r\n", b"0\r\n\r\n"))
    assert t.writes == [_answer(b"abcde")]


def test_an_app_that_fails_before_answering_gets_a_500_and_a_close() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    t = asyncio.run(_serve(app, b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert t.writes == [
        b"HTTP/1.1 500 Internal Server Error\r\ndate: Mon, 07 Dec 2026 20:00:00 GMT\r\n"
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n"
        b"connection: close\r\n\r\nInternal Server Error"
    ]
    assert t.closed_by_server


def test_a_bad_header_value_or_a_failure_midway_closes_without_an_answer() -> None:
    async def bad(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-a", b"line\nbreak"), (b"content-length", b"0")]})  # fmt: skip

    async def midway(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4")]})  # fmt: skip
        raise ValueError("boom")

    t = asyncio.run(_serve(bad, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert t.writes == [] and t.closed_by_server
    # The head held for the body is written before the close, as uvicorn had written it.
    t = asyncio.run(_serve(midway, b"GET /m HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert t.writes == [b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 20:00:00 GMT\r\n"
                        b"content-length: 4\r\n\r\n"] and t.closed_by_server  # fmt: skip


def test_connection_close_is_honoured_after_the_answer() -> None:
    t = asyncio.run(_serve(fixed, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert t.writes == [_answer(b'{"path":"/a","got":0}', extra=b"connection: close\r\n")]
    assert t.closed_by_server


# ---------------------------------------------------------------- over a real socket
def _exchange(port: int, data: bytes, answers: int, expect_continue: bytes = b"") -> bytes:
    """Send ``data`` (then ``expect_continue`` once the 100 came), read ``answers``
    whole answers (each with a content-length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        got = b""
        if expect_continue:
            while b"\r\n\r\n" not in got:
                got += s.recv(65_536)
            assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got
            s.sendall(expect_continue)
        while not _complete(got, answers):
            chunk = s.recv(65_536)
            assert chunk, got
            got += chunk
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)
        return got


def _complete(got: bytes, answers: int) -> bool:
    rest, n = got, 0
    while b"\r\n\r\n" in rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100"):
            continue
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        if len(rest) < length:
            return False
        rest, n = rest[length:], n + 1
    return n >= answers and not rest


def test_pipelined_requests_and_expect_100_continue_over_a_socket(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    two = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /v1/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
    got = _exchange(port, two, 2)
    first, _, second = got.partition(b"HTTP/1.1 404")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b'{"ok":true}')
    assert second and b"not_found" in second
    body = json.dumps(order()).encode()
    signed = server.api.signature_headers("POST", "/v1/quotes", body)
    head = "".join(f"{k}: {v}\r\n" for k, v in signed.items()).encode()
    req = (b"POST /v1/quotes HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
           b"expect: 100-continue\r\ncontent-length: %d\r\n%s\r\n" % (len(body), head))  # fmt: skip
    got = _exchange(port, req, 1, expect_continue=body)
    answer = got.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["eligible"] is True
