"""A gateway passes the pages that are not the contract (the operator dashboard, its
event stream, the API docs) through to the sequencer, where the ledger they show is.

A plain streaming reverse proxy over httpx: the request body (small: a login form) is
read whole, the response is streamed chunk by chunk (the dashboard's Server-Sent Events
never end), and the upstream stream is closed as soon as the browser goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY_MAX_BYTES = 1024 * 1024  # the dashboard's forms are tiny
CONNECT_TIMEOUT_S = 5.0
# Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the message's.
_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
     b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length"}
)  # fmt: skip


class Proxy:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        # No read timeout: an event stream is quiet between ticks by design.
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=None)
        self._client: httpx.AsyncClient | None = None
        self._timeout = timeout

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # created on the serving loop, at first use
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if len(body) > BODY_MAX_BYTES:
                await _plain(send, 413, b"request body too large")
                return
            if not msg.get("more_body", False):
                break
        raw = scope.get("raw_path") or scope["path"].encode()
        qs = scope.get("query_string", b"")
        url = self.base_url + (raw + b"?" + qs if qs else raw).decode("latin-1")
        # The browser's Host goes along: the dashboard checks Origin against it (CSRF).
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP or k == b"host"]
        client = self._http()
        try:
            req = client.build_request(scope["method"], url, headers=headers, content=body)
            resp = await client.send(req, stream=True)
        except httpx.TransportError:
            await _plain(send, 503, b"the sequencer's pages cannot be reached", retry=True)
            return
        try:
            out = [(k.lower(), v) for k, v in resp.headers.raw if k.lower() not in _HOP]
            await send({"type": "http.response.start", "status": resp.status_code,
                        "headers": out})  # fmt: skip
            gone = asyncio.ensure_future(_disconnected(receive))
            try:
                async for chunk in resp.aiter_raw():
                    if gone.done():
                        return
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.TransportError:
                return
            finally:
                gone.cancel()
            await send({"type": "http.response.body", "body": b""})
        finally:
            with contextlib.suppress(Exception):
                await resp.aclose()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _plain(send: Send, status: int, text: bytes, retry: bool = False) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", b"%d" % len(text))]  # fmt: skip
    if retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})
