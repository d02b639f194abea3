"""The dashboard's HTTP surface: pages, login/logout, the event stream, reports.

=================================  =========================================================
``GET /``                          the dashboard (303 to ``/login`` without a session)
``GET /login``, ``POST /login``    the login form (CSRF token + signed login cookie)
``POST /logout``                   ends the session (CSRF token)
``GET /dashboard/events``          Server-Sent Events: one snapshot per change, ≤ 0.5 s late
``GET /dashboard/api/history``     one row per campaign day
``GET /dashboard/api/burn``        one day's burn-down by minute
``GET /dashboard/api/settlement``  R19 settlement of a day (``core/settlement.py``)
``GET /dashboard/settlement.csv``  the same as a CSV download (the API's CSV format)
``GET /dashboard/static/{name}``   the page's own scripts and styles (no CDN, no internet)
``POST /dashboard/api/operate``    an operator's change: pause, amend, block (controls.py)
``GET /dashboard/api/changes``     the change log, amendments or blocks of a campaign
=================================  =========================================================

They are served by the process that holds the ``Engine`` (the one process, or the
sequencer of ``lijian serve --workers N``, whose gateways pass these pages through:
``lijian.cluster.proxy``), so one process holds every session. Every handler runs on
the engine's event loop and reads the ledger directly; only the password hash runs in a
thread. Responses carry a strict Content-Security-Policy (no
inline script, nothing from elsewhere), ``no-store`` and anti-framing headers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import math
import re
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from lijian.cluster.proxy import client_address
from lijian.core.settlement import settlement_csv
from lijian.dashboard.accounts import USERNAME_LEN_MAX, Account, check_password
from lijian.dashboard.controls import Controls, Web
from lijian.dashboard.live import LiveFeed
from lijian.dashboard.session import (
    LOGIN_COOKIE,
    LOGIN_FORM_TTL_S,
    SESSION_COOKIE,
    SESSION_TTL_S,
    LoginThrottle,
    Session,
    SessionSigner,
)
from lijian.engine import Engine

if TYPE_CHECKING:
    from lijian.http.metrics import Metrics

SSE_CONNECTIONS_MAX = 32  # per server: each is a task and a socket
SSE_HEARTBEAT_S = 15.0  # a comment line when nothing changed, so proxies keep the socket
SSE_STREAM_MAX_S = 300.0  # then the browser reconnects (session re-checked, shutdown fast)
SSE_RETRY_MS = 1_000
FORM_BYTES_MAX = 4_096
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "controls.js": "text/javascript; charset=utf-8",
    "login.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # not "no-referrer": with it a browser sends "Origin: null" on our own form posts
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LOGIN_ERRORS = {  # shown without JavaScript too, so in both languages
    "bad_credentials": "用户名或密码错误 · Wrong user name or password",
    "form_expired": "登录页已过期，请重试 · The login form expired, please try again",
    "throttled": "失败次数过多，请稍后再试 · Too many failed attempts, try again later",
}


def _asset(name: str) -> str:
    return resources.files("lijian.dashboard").joinpath("static", name).read_text("utf-8")


def _secure(resp: Response) -> Response:
    for k, v in SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    return resp


def _problem(status: int, code: str, detail: str) -> Response:
    body = {"type": f"urn:lijian:problem:{code}", "status": status, "code": code, "detail": detail}
    return _secure(JSONResponse(body, status, media_type="application/problem+json"))


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _same_origin(request: Request) -> bool:
    """A browser sends Origin on a POST; it must be this server (CSRF, defence in depth)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or a very old one: the CSRF token still applies
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc == host


class Dashboard:
    def __init__(
        self, engine: Engine, accounts: Mapping[str, Account], metrics: Metrics | None = None
    ) -> None:
        self.engine = engine
        self.accounts = dict(accounts)
        self.feed = LiveFeed(engine, metrics)
        self.signer = SessionSigner()  # a fresh key: a restart ends every session
        self.throttle = LoginThrottle()
        self.streams = 0

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.page, methods=["GET"]),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/dashboard/events", self.events, methods=["GET"]),
            Route("/dashboard/api/history", self.history, methods=["GET"]),
            Route("/dashboard/api/burn", self.burn, methods=["GET"]),
            Route("/dashboard/api/settlement", self.settlement, methods=["GET"]),
            Route("/dashboard/settlement.csv", self.settlement_csv, methods=["GET"]),
            Route("/dashboard/static/{name}", self.static, methods=["GET"]),
            *Controls(self, WEB).routes(),  # pause, amend, block (dashboard/controls.py)
        ]

    # ----------------------------------------------------------------- helpers
    def _session(self, request: Request) -> Session | None:
        return self.signer.read(request.cookies.get(SESSION_COOKIE))

    def _campaign(self, request: Request) -> str | None:
        cid = request.query_params.get("campaign") or self.engine.campaign_ids[0]
        return cid if cid in self.engine.ledger.books else None

    def _campaign_and_day(self, request: Request) -> tuple[str, str] | Response:
        cid = self._campaign(request)
        if cid is None:
            return _problem(404, "campaign_not_found", "unknown campaign")
        day = request.query_params.get("date", "")
        try:
            ok = bool(_DATE_RE.match(day)) and dt.date.fromisoformat(day).isoformat() == day
        except ValueError:
            ok = False
        if not ok:
            return _problem(422, "invalid_request", "date: required, a date YYYY-MM-DD")
        return cid, day

    # ------------------------------------------------------------------- pages
    async def page(self, request: Request) -> Response:
        s = self._session(request)
        if s is None:
            return _secure(RedirectResponse("/login", 303))
        self.feed.ensure_started()
        campaigns = [
            {"id": cid, "name": b.settings.campaign.name, "days": list(b.tranches)}
            for cid, b in self.engine.ledger.books.items()
        ]
        boot = {"user": s.username, "role": s.role, "campaigns": campaigns}
        # "<" escaped: the JSON sits in a <script type="application/json"> element.
        boot_json = json.dumps(boot, ensure_ascii=False).replace("<", "\\u003c")
        body = (
            _asset("dashboard.html")
            .replace("{{boot}}", boot_json)
            .replace("{{csrf}}", html.escape(self.signer.csrf_for_session(s)))
            .replace("{{user}}", html.escape(s.username))
            .replace("{{role}}", html.escape(s.role))
        )
        return _secure(HTMLResponse(body))

    def _login_form(
        self, request: Request, error: str | None, status: int, username: str = ""
    ) -> Response:
        cookie, token = self.signer.login_form()
        msg = LOGIN_ERRORS.get(error or "", "")
        body = (
            _asset("login.html")
            .replace("{{csrf}}", html.escape(token))
            .replace("{{error_code}}", html.escape(error or ""))
            .replace("{{error}}", html.escape(msg))
            .replace("{{hidden}}", "" if msg else "hidden")
            .replace("{{username}}", html.escape(username[:USERNAME_LEN_MAX]))
        )
        resp = HTMLResponse(body, status)
        resp.set_cookie(
            LOGIN_COOKIE,
            cookie,
            max_age=LOGIN_FORM_TTL_S,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=_is_https(request),
        )
        return _secure(resp)

    async def login_page(self, request: Request) -> Response:
        if self._session(request) is not None:
            return _secure(RedirectResponse("/", 303))
        return self._login_form(request, None, 200)

    async def login(self, request: Request) -> Response:
        # The browser's address, also behind a gateway (which vouches for it).
        address = client_address(request.scope["headers"], request.client and request.client.host)
        if not _same_origin(request):
            return _problem(403, "cross_origin", "a login must come from this server's page")
        form = await _read_form(request)
        if form is None:
            return _problem(400, "bad_form", "expected a urlencoded form of at most 4 KiB")
        if not self.signer.check_login_form(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            return self._login_form(request, "form_expired", 403)
        username, password = form.get("username", ""), form.get("password", "")
        # Throttled per (address, account), per address and globally (session.py).
        name = username[:USERNAME_LEN_MAX]
        # The attempt counts as a failure before the hash, so that concurrent attempts
        # cannot all pass the brakes while the first ones are being hashed.
        attempt = self.throttle.admit(address, name)
        if attempt.wait_s > 0:
            resp = self._login_form(request, "throttled", 429, username)
            resp.headers["retry-after"] = str(math.ceil(attempt.wait_s))
            return resp
        account = self.accounts.get(username)
        # PBKDF2 costs ~0.2 s of CPU: off the loop, which serves the grants.
        ok = await asyncio.to_thread(check_password, account, password)
        if not ok or account is None:
            return self._login_form(request, "bad_credentials", 401, username)
        self.throttle.succeeded(address, name, attempt)
        cookie, _ = self.signer.issue(account.username, account.role)
        resp = RedirectResponse("/", 303)
        resp.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_TTL_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=_is_https(request),
        )
        resp.delete_cookie(LOGIN_COOKIE, path="/login")
        return _secure(resp)

    async def logout(self, request: Request) -> Response:
        s = self._session(request)
        if s is None:
            return _secure(RedirectResponse("/login", 303))
        form = await _read_form(request)
        if (
            not _same_origin(request)
            or form is None
            or not self.signer.check_session_csrf(s, form.get("csrf"))
        ):
            return _problem(403, "csrf", "logout needs the page's token")
        self.signer.revoke(s)
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return _secure(resp)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        media = STATIC_FILES.get(name)
        if media is None:
            return _problem(404, "not_found", "no such file")
        resp = Response(_asset(name), media_type=media)
        resp.headers["cache-control"] = "no-cache"  # revalidate: a new release shows at once
        return _secure(resp)

    # ------------------------------------------------------------------- data
    async def _current(self, settlement: bool = False) -> Response | None:
        """Bring the feed up to date; a 503 if its figures would be a stale projection.
        The settlement reads the engine's ledger, always whole: it never waits."""
        await self.feed.current()
        why = self.feed.ready()
        if why is None or settlement:
            return None
        resp = _problem(503, "dashboard_catching_up", why)
        resp.headers["retry-after"] = "2"
        return resp

    def _require(self, request: Request) -> Session | Response:
        s = self._session(request)
        if s is None:
            return _problem(401, "login_required", "log in at /login")
        return s

    async def events(self, request: Request) -> Response:
        s = self._require(request)
        if isinstance(s, Response):
            return s
        cid = self._campaign(request)
        if cid is None:
            return _problem(404, "campaign_not_found", "unknown campaign")
        if self.streams >= SSE_CONNECTIONS_MAX:
            resp = _problem(503, "too_many_streams", f"at most {SSE_CONNECTIONS_MAX} dashboards")
            resp.headers["retry-after"] = "5"
            return resp
        self.feed.ensure_started()
        headers = {"x-accel-buffering": "no"}  # nginx: do not buffer the stream
        stream = self._stream(request, s, cid)
        return _secure(StreamingResponse(stream, media_type="text/event-stream", headers=headers))

    async def _stream(self, request: Request, s: Session, cid: str) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        self.streams += 1
        self.feed.listeners += 1
        try:
            if not self.feed.fresh() or cid not in self.feed.payloads:
                await self.feed.tick()  # a current snapshot now, not a stale one
            yield f"retry: {SSE_RETRY_MS}\n\n".encode()
            sent = -1
            deadline = loop.time() + SSE_STREAM_MAX_S
            while loop.time() < deadline:
                if self.signer.read(request.cookies.get(SESSION_COOKIE)) is None:
                    yield b"event: logout\ndata: {}\n\n"  # expired or logged out elsewhere
                    return
                version, body = self.feed.payloads.get(cid, (sent, b""))
                if version != sent:
                    sent = version
                    yield b"event: snapshot\ndata: " + body + b"\n\n"
                elif not await self.feed.wait_changed(SSE_HEARTBEAT_S):
                    yield b": heartbeat\n\n"
        finally:
            self.streams -= 1
            self.feed.listeners -= 1

    async def history(self, request: Request) -> Response:
        s = self._require(request)
        if isinstance(s, Response):
            return s
        cid = self._campaign(request)
        if cid is None:
            return _problem(404, "campaign_not_found", "unknown campaign")
        busy = await self._current()
        if busy is not None:
            return busy
        return _secure(JSONResponse({"campaign_id": cid, "days": self.feed.history(cid)}))

    async def burn(self, request: Request) -> Response:
        s = self._require(request)
        if isinstance(s, Response):
            return s
        got = self._campaign_and_day(request)
        if isinstance(got, Response):
            return got
        cid, day = got
        busy = await self._current()
        if busy is not None:
            return busy
        burn = self.feed.burn(cid, day)
        if burn is None:
            return _problem(404, "no_tranche", f"{cid} has no tranche on {day}")
        return _secure(JSONResponse(burn))

    async def settlement(self, request: Request) -> Response:
        s = self._require(request)
        if isinstance(s, Response):
            return s
        got = self._campaign_and_day(request)
        if isinstance(got, Response):
            return got
        busy = await self._current(settlement=True)
        if busy is not None:
            return busy
        return _secure(JSONResponse(self.feed.settlement(*got)))

    async def settlement_csv(self, request: Request) -> Response:
        s = self._require(request)
        if isinstance(s, Response):
            return s
        got = self._campaign_and_day(request)
        if isinstance(got, Response):
            return got
        cid, day = got
        busy = await self._current(settlement=True)
        if busy is not None:
            return busy
        resp = Response(
            settlement_csv(self.feed.settlement(cid, day)),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="settlement-{cid}-{day}.csv"'},
        )
        return _secure(resp)


async def _read_form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form (no multipart library: logins are three short fields)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > FORM_BYTES_MAX:
            return None
        chunks.append(chunk)
    try:
        fields = parse_qs(b"".join(chunks).decode("utf-8"), max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}


# What dashboard/controls.py answers with (passed to it, so it does not import this module).
WEB = Web(_problem, _secure, _read_form, _same_origin)
