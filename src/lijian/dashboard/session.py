"""Dashboard sessions: a signed cookie, CSRF tokens, and a brake on password guessing.

The session is a cookie ``lijian_session`` = ``v1.<payload>.<signature>``: payload is
base64url JSON ``{"u": user, "r": role, "sid": random, "exp": unix s}``, signature is
HMAC-SHA256 over ``v1.<payload>`` with a key drawn at start-up. One process serves the
dashboard (the one holding the engine; with ``lijian serve --workers N`` the gateways
pass its pages through to the sequencer), so that key and the memory of logouts need
no sharing. Nothing is stored on the server except the ids of sessions that logged out
before expiring (bounded), so a copied cookie dies at logout. A restart draws a new key
and so ends every session, on purpose: there is no key file to leak or rotate. Cookies
are ``HttpOnly`` (no script reads them), ``SameSite=Strict`` (no other site's page sends
them) and ``Secure`` when the request came over HTTPS.

CSRF: every state-changing request (login, logout) is a POST that must carry a token
bound to something the attacker cannot read. Before login that is a short-lived signed
``lijian_login`` cookie (double submit); after login, the session id. Tokens are HMACs
with the same key, compared in constant time. The Origin header, when sent, must name
this server.
"""

from __future__ import annotations

import base64
import collections
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256

SESSION_COOKIE = "lijian_session"
LOGIN_COOKIE = "lijian_login"
SESSION_TTL_S = 12 * 3600  # one working day; then log in again
LOGIN_FORM_TTL_S = 15 * 60  # a login page older than this must be reloaded
COOKIE_LEN_MAX = 1_024
REVOKED_MAX = 10_000  # logged-out session ids remembered until they would have expired
LOGIN_FAILURES_MAX = 10  # per address per window; then 429 until the window slides
LOGIN_WINDOW_S = 300
THROTTLED_ADDRESSES_MAX = 10_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    role: str
    sid: str
    expires_s: int


class SessionSigner:
    def __init__(self, key: bytes | None = None, clock_s: Callable[[], float] = time.time):
        self._key = key or os.urandom(32)
        self.clock_s = clock_s
        # sid → expiry (unix s), oldest first: a bounded memory of logouts.
        self._revoked: collections.OrderedDict[str, int] = collections.OrderedDict()

    def _mac(self, purpose: str, data: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\n{data}".encode(), sha256).digest())

    # ------------------------------------------------------------- sessions
    def issue(self, username: str, role: str) -> tuple[str, Session]:
        s = Session(username, role, _b64(os.urandom(16)), int(self.clock_s()) + SESSION_TTL_S)
        payload = _b64(
            json.dumps(
                {"u": s.username, "r": s.role, "sid": s.sid, "exp": s.expires_s},
                separators=(",", ":"),
            ).encode()
        )
        body = f"v1.{payload}"
        return f"{body}.{self._mac('session', body)}", s

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie proves, or None (absent, forged, expired, logged out)."""
        if not cookie or len(cookie) > COOKIE_LEN_MAX or cookie.count(".") != 2:
            return None
        version, payload, sig = cookie.split(".")
        body = f"{version}.{payload}"
        if version != "v1" or not hmac.compare_digest(sig, self._mac("session", body)):
            return None
        try:
            doc = json.loads(_unb64(payload))
            s = Session(str(doc["u"]), str(doc["r"]), str(doc["sid"]), int(doc["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if s.expires_s <= self.clock_s() or s.sid in self._revoked:
            return None
        return s

    def revoke(self, s: Session) -> None:
        self.revoke_id(s.sid, s.expires_s)

    def revoke_id(self, sid: str, expires_s: int) -> None:
        """Forget a session by id (a logout)."""
        now_s = self.clock_s()
        while self._revoked:
            exp = next(iter(self._revoked.values()))
            if exp > now_s and len(self._revoked) < REVOKED_MAX:
                break
            # Expired entries are useless; beyond the cap the oldest goes first (its
            # cookie is the closest to expiring anyway).
            self._revoked.popitem(last=False)
        self._revoked[sid] = expires_s

    # ----------------------------------------------------------------- CSRF
    def csrf_for_session(self, s: Session) -> str:
        return self._mac("csrf", s.sid)

    def check_session_csrf(self, s: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_for_session(s))

    def login_form(self) -> tuple[str, str]:
        """(cookie value, form token) for a fresh login page."""
        nonce = _b64(os.urandom(16))
        exp = int(self.clock_s()) + LOGIN_FORM_TTL_S
        cookie = f"{nonce}.{exp}"
        return f"{cookie}.{self._mac('login-cookie', cookie)}", self._mac("login-form", cookie)

    def check_login_form(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token or len(cookie) > COOKIE_LEN_MAX or cookie.count(".") != 2:
            return False
        nonce, exp, sig = cookie.split(".")
        body = f"{nonce}.{exp}"
        if not hmac.compare_digest(sig, self._mac("login-cookie", body)):
            return False
        if not exp.isdigit() or int(exp) <= self.clock_s():
            return False
        return hmac.compare_digest(str(token), self._mac("login-form", body))


class LoginThrottle:
    """At most ``LOGIN_FAILURES_MAX`` failed logins per address per sliding window."""

    def __init__(self, clock_s: Callable[[], float] = time.monotonic) -> None:
        self.clock_s = clock_s
        self._fails: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, address: str) -> collections.deque[float] | None:
        q = self._fails.get(address)
        if q is None:
            return None
        horizon = self.clock_s() - LOGIN_WINDOW_S
        while q and q[0] < horizon:
            q.popleft()
        return q

    def blocked(self, address: str) -> bool:
        q = self._recent(address)
        return q is not None and len(q) >= LOGIN_FAILURES_MAX

    def failed(self, address: str) -> None:
        q = self._recent(address)
        if q is None:
            while len(self._fails) >= THROTTLED_ADDRESSES_MAX:
                self._fails.popitem(last=False)
            q = self._fails[address] = collections.deque(maxlen=LOGIN_FAILURES_MAX)
        self._fails.move_to_end(address)
        q.append(self.clock_s())

    def succeeded(self, address: str) -> None:
        self._fails.pop(address, None)
