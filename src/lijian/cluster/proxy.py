"""A gateway passes the operator dashboard's pages (and their event stream) through to
the sequencer, where the ledger they show is: those paths only, by an explicit list
(``DASHBOARD_PAGES``, the paths of ``dashboard/routes.py``). Everything else that is not
the contract is answered by the gateway itself with the very app one process has behind
the API (``http/extras.py``: the API docs, and 404 or 405 as problem+json), so an unknown
path, ``GET *`` or a path with dot segments gets the answer one process gives, and
nothing but the dashboard reaches the sequencer's HTTP port (:func:`pass_through`).

A plain streaming reverse proxy over httpx: the request body (small: a login form) is
read whole, the response is streamed chunk by chunk (the dashboard's Server-Sent Events
never end), and the upstream stream is closed as soon as the browser goes away.

Several sequencers (an active one and standbys, ``--dashboard-url`` repeated): a request
goes to the one that answered last, else to the next in the given order. A standby's
HTTP port is bound but not served until it takes the lease, so a connection to it is
accepted and then silent: with more than one address, an upstream that sends no
headers within ``HEADERS_TIMEOUT_S`` (or refuses the connection, or answers 503) counts
as down. A request that may have reached a silent upstream is sent on to the next only
if it is a ``GET`` (it changes nothing); a form posted there is answered 503, as the
standby might act on it once it serves.

The browser's address goes along, vouched for: the login throttle at the sequencer must
count the browser, not the gateway. The gateway drops any ``X-Forwarded-For`` the browser
sent and sets its own with ``X-Lijian-Forwarded-Mac``, an HMAC of that address under the
key in ``LIJIAN_PROXY_KEY``; the sequencer believes the address only when the MAC is
right (:func:`client_address`), so a header sent to the public socket proves nothing.
``lijian serve --workers N`` draws that key at start-up and its children inherit it; for
``lijian sequencer`` and ``lijian gateway`` on other machines set the same
``LIJIAN_PROXY_KEY`` in both environments (without it a gateway forwards no address and
the sequencer counts logins per gateway).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import http.cookiejar
import os
from collections.abc import Callable, Iterable
from hashlib import sha256

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from lijian.cluster.proxy_key import PROXY_KEY_ENV
from lijian.http.types import Receive, Scope, Send

FORWARDED_FOR = b"x-forwarded-for"
FORWARDED_MAC = b"x-lijian-forwarded-mac"
ADDRESS_LEN_MAX = 64  # an IPv6 address with a zone fits
BODY_MAX_BYTES = 1024 * 1024  # the dashboard's forms are tiny
CONNECT_TIMEOUT_S = 5.0
# With several upstreams: how long the first bytes of an answer may take before the next
# upstream is tried (the dashboard's pages answer in well under a second; its event
# stream sends its headers at once).
HEADERS_TIMEOUT_S = 5.0
UPSTREAMS_MAX = 8  # an active sequencer and its standbys
_SAFE_METHODS = frozenset({"GET", "HEAD"})
# Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the message's.
_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
     b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length",
     FORWARDED_FOR, FORWARDED_MAC, b"forwarded", b"x-real-ip"}
)  # fmt: skip


# The dashboard's pages and the methods each takes (dashboard/routes.py: Dashboard.routes,
# and its controls; a test keeps the two lists equal). Only these go to the sequencer.
DASHBOARD_PAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/", ("GET",)),
    ("/login", ("GET", "POST")),
    ("/logout", ("POST",)),
    ("/dashboard/events", ("GET",)),
    ("/dashboard/api/history", ("GET",)),
    ("/dashboard/api/burn", ("GET",)),
    ("/dashboard/api/settlement", ("GET",)),
    ("/dashboard/settlement.csv", ("GET",)),
    ("/dashboard/static/{name}", ("GET",)),
    # The operator's controls (dashboard/controls.py).
    ("/dashboard/api/operate", ("POST",)),
    ("/dashboard/api/changes", ("GET",)),
)


def pass_through(base_urls: list[str]) -> Callable[[Starlette, object], None]:
    """An extension (``http/extras.py``) that mounts the dashboard's pages on a gateway's
    app as a pass-through to the HTTP port of whichever sequencer at ``base_urls``
    answers."""
    proxy = Proxy(base_urls)

    def mount(app: Starlette, _lijian: object) -> None:
        for path, methods in DASHBOARD_PAGES:
            app.router.routes.append(Route(path, proxy, methods=list(methods)))

    return mount


def _proxy_key() -> bytes | None:
    key = os.environ.get(PROXY_KEY_ENV)
    return key.encode() if key else None


def _mac(key: bytes, address: bytes) -> bytes:
    digest = hmac.new(key, b"forwarded-for\n" + address, sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


def client_address(headers: Iterable[tuple[bytes, bytes]], peer: str | None) -> str:
    """The browser's address: the one a gateway vouched for, else the socket's peer."""
    key = _proxy_key()
    if key is not None:
        forwarded = mac = None
        for k, v in headers:
            if k == FORWARDED_FOR:
                forwarded = v
            elif k == FORWARDED_MAC:
                mac = v
        if (
            forwarded is not None
            and mac is not None
            and len(forwarded) <= ADDRESS_LEN_MAX
            and hmac.compare_digest(mac, _mac(key, forwarded))
        ):
            return forwarded.decode("latin-1")
    return peer or "?"


class Proxy:
    def __init__(self, base_urls: list[str]) -> None:
        assert 1 <= len(base_urls) <= UPSTREAMS_MAX, base_urls
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self._live = 0  # the upstream that answered last: tried first
        # No read timeout: an event stream is quiet between ticks by design.
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=None)
        self._client: httpx.AsyncClient | None = None
        self._timeout = timeout
        self._key = _proxy_key()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # created on the serving loop, at first use
            # A jar that keeps nothing: the client is shared by every browser, and a
            # session cookie it kept from one answer would go out with the next
            # browser's requests (logged in as someone else).
            nothing = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            jar = http.cookiejar.CookieJar(policy=nothing)
            self._client = httpx.AsyncClient(timeout=self._timeout, cookies=jar)
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
        target = (raw + b"?" + qs if qs else raw).decode("latin-1")
        # The browser's Host goes along: the dashboard checks Origin against it (CSRF).
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP or k == b"host"]
        peer = scope.get("client")
        if self._key is not None and peer:
            address = str(peer[0]).encode("latin-1")
            headers += [(FORWARDED_FOR, address), (FORWARDED_MAC, _mac(self._key, address))]
        resp = await self._send(scope["method"], target, headers, body)
        if resp is None:
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

    async def _send(self, method: str, target: str, headers: list[tuple[bytes, bytes]],
                    body: bytes) -> httpx.Response | None:  # fmt: skip
        """The answer of the first upstream that gives one (the last one that did comes
        first), its body not yet read; None when none does."""
        client = self._http()
        several = len(self.base_urls) > 1
        n = len(self.base_urls)
        unavailable: httpx.Response | None = None  # a 503, kept in case nothing better
        for i in [(self._live + k) % n for k in range(n)]:
            req = client.build_request(method, self.base_urls[i] + target, headers=headers,
                                       content=body)  # fmt: skip
            try:
                if several:
                    resp = await asyncio.wait_for(client.send(req, stream=True), HEADERS_TIMEOUT_S)
                else:
                    resp = await client.send(req, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                continue  # nothing was sent: the next upstream may take any request
            except (httpx.TransportError, TimeoutError):
                if method in _SAFE_METHODS:
                    continue
                break  # a silent upstream may still act on this form: never send it twice
            if several and resp.status_code == 503 and method in _SAFE_METHODS:
                if unavailable is not None:
                    await unavailable.aclose()
                unavailable = resp
                continue
            if unavailable is not None:
                await unavailable.aclose()
            self._live = i
            return resp
        return unavailable


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
