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

Password guessing is braked per (address, account), per address and globally
(``LoginThrottle``), so an attacker cannot lock an operator on another address out. An
attempt is counted before its password is hashed, so concurrent attempts cannot
overshoot the brakes.

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
from typing import TypeVar

SESSION_COOKIE = "lijian_session"
LOGIN_COOKIE = "lijian_login"
SESSION_TTL_S = 12 * 3600  # one working day; then log in again
LOGIN_FORM_TTL_S = 15 * 60  # a login page older than this must be reloaded
COOKIE_LEN_MAX = 1_024
REVOKED_MAX = 10_000  # logged-out session ids remembered until they would have expired
# Login throttling (LoginThrottle): free failures, then a wait doubling per failure.
PAIR_FREE_FAILURES = 3  # per (address, account)
ADDRESS_FREE_FAILURES = 20  # per address, whatever the accounts
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
FORGET_AFTER_S = 3_600.0  # a quiet hour since the last failure starts the count again
GLOBAL_FAILURES_PER_S = 0.5  # failed logins of all addresses together, sustained
GLOBAL_FAILURES_BURST = 30
TRUSTED_TTL_S = 30 * 24 * 3600.0  # a successful (address, account) passes the wider brakes
THROTTLED_KEYS_MAX = 10_000  # per table


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


@dataclass(slots=True)
class _Backoff:
    failures: int  # consecutive failures, forgotten after FORGET_AFTER_S of quiet
    last_s: float
    until_s: float  # no attempt before this


@dataclass(frozen=True, slots=True)
class Attempt:
    """What ``LoginThrottle.admit`` decided: the wait (refused when above 0), and whether
    the address and global brakes counted it (a trusted pair passes them)."""

    wait_s: float
    wide: bool


@dataclass(frozen=True, slots=True)
class ThrottleRules:
    """The brakes' figures (defaults below; tests may use smaller ones)."""

    pair_free: int = PAIR_FREE_FAILURES
    address_free: int = ADDRESS_FREE_FAILURES
    base_s: float = BACKOFF_BASE_S
    max_s: float = BACKOFF_MAX_S
    global_per_s: float = GLOBAL_FAILURES_PER_S
    global_burst: int = GLOBAL_FAILURES_BURST


class LoginThrottle:
    """Brakes on password guessing that an attacker cannot turn against an operator.

    - per (address, account): ``pair_free`` failures, then each next attempt waits
      ``base_s`` doubling per failure, at most ``max_s``; a success clears it. An attacker
      on one address slows down only their own tries at that account.
    - per address, across accounts: the same back-off after ``address_free`` failures,
      so rotating user names from one address does not escape the pair brake.
    - globally: a token bucket of failed logins (``global_per_s``, ``global_burst``):
      many addresses together cannot guess faster than that.

    An (address, account) that logged in successfully within ``TRUSTED_TTL_S`` passes the
    address and global brakes (not its own pair brake): an operator who logged in from
    here before still gets in while others fail from the same proxy, or everywhere. The
    address is the browser's, also behind a gateway (``cluster/proxy.py`` vouches for
    it). One instance serves every worker: the dashboard runs in one process only.
    Memory is bounded (``THROTTLED_KEYS_MAX`` each, least recently failed go first).

    The login calls ``admit`` (check and count in one step, before the password hash)
    and, on success, ``succeeded`` with what ``admit`` returned.
    """

    def __init__(
        self, clock_s: Callable[[], float] = time.monotonic, rules: ThrottleRules | None = None
    ) -> None:
        self.clock_s = clock_s
        self.rules = rules or ThrottleRules()
        self._pairs: collections.OrderedDict[tuple[str, str], _Backoff] = collections.OrderedDict()
        self._addresses: collections.OrderedDict[str, _Backoff] = collections.OrderedDict()
        self._trusted: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
        self._tokens = float(self.rules.global_burst)
        self._tokens_at_s = clock_s()

    def _refill(self, now_s: float) -> None:
        r = self.rules
        self._tokens = min(
            float(r.global_burst), self._tokens + (now_s - self._tokens_at_s) * r.global_per_s
        )
        self._tokens_at_s = now_s

    def _is_trusted(self, pair: tuple[str, str], now_s: float) -> bool:
        until_s = self._trusted.get(pair)
        return until_s is not None and until_s > now_s

    def wait_s(self, address: str, account: str) -> float:
        """Seconds before this attempt may be checked; 0 when it may be now."""
        now_s = self.clock_s()
        pair = (address, account)
        waits = [_remaining(self._pairs.get(pair), now_s)]
        if not self._is_trusted(pair, now_s):
            waits.append(_remaining(self._addresses.get(address), now_s))
            self._refill(now_s)
            if self._tokens < 1.0:
                waits.append((1.0 - self._tokens) / self.rules.global_per_s)
        return max(waits)

    def admit(self, address: str, account: str) -> Attempt:
        """Whether an attempt may be checked now; if so it is counted as a failure at
        once, before the password hash (~0.2 s off the loop) runs, and a success gives
        it back (``succeeded``). Counted after the hash, as many attempts as arrive
        during one hash would all pass the check and all be hashed: the brakes would
        bound nothing under concurrency. Check and count happen in one step on the
        event loop, so the attempts evaluated are exactly those the brakes allow."""
        wait_s = self.wait_s(address, account)
        if wait_s > 0:
            return Attempt(wait_s, wide=False)
        wide = not self._is_trusted((address, account), self.clock_s())
        self.failed(address, account)
        return Attempt(0.0, wide)

    def failed(self, address: str, account: str) -> None:
        now_s = self.clock_s()
        r = self.rules
        _fail(self._pairs, (address, account), now_s, r.pair_free, r)
        if not self._is_trusted((address, account), now_s):
            _fail(self._addresses, address, now_s, r.address_free, r)
            self._refill(now_s)
            self._tokens = max(self._tokens - 1.0, 0.0)

    def succeeded(self, address: str, account: str, attempt: Attempt | None = None) -> None:
        """Clears the pair's brake and trusts it; ``attempt`` (from ``admit``) was counted
        as a failure by the address and global brakes: given back."""
        pair = (address, account)
        self._pairs.pop(pair, None)
        if attempt is not None and attempt.wide:
            _unfail(self._addresses, address, self.rules.address_free, self.rules)
            self._refill(self.clock_s())
            self._tokens = min(self._tokens + 1.0, float(self.rules.global_burst))
        self._trusted.pop(pair, None)
        while len(self._trusted) >= THROTTLED_KEYS_MAX:
            self._trusted.popitem(last=False)
        self._trusted[pair] = self.clock_s() + TRUSTED_TTL_S


K = TypeVar("K")  # a throttle table's key: an address, or (address, account)


def _unfail(table: collections.OrderedDict[K, _Backoff], key: K, free: int,
            r: ThrottleRules) -> None:  # fmt: skip
    """One failure fewer (an attempt counted in advance that succeeded)."""
    b = table.get(key)
    if b is None:
        return
    b.failures -= 1
    if b.failures <= 0:
        del table[key]
        return
    over = b.failures - free
    b.until_s = b.last_s + (min(r.base_s * 2 ** (over - 1), r.max_s) if over > 0 else 0.0)


def _remaining(b: _Backoff | None, now_s: float) -> float:
    return 0.0 if b is None else max(b.until_s - now_s, 0.0)


def _fail(table: collections.OrderedDict[K, _Backoff], key: K, now_s: float,
          free: int, r: ThrottleRules) -> None:  # fmt: skip
    b = table.get(key)
    if b is None or now_s - b.last_s > FORGET_AFTER_S:
        while len(table) >= THROTTLED_KEYS_MAX:
            table.popitem(last=False)
        b = table[key] = _Backoff(0, now_s, now_s)
    table.move_to_end(key)
    b.failures += 1
    b.last_s = now_s
    over = b.failures - free
    b.until_s = now_s + (min(r.base_s * 2 ** (over - 1), r.max_s) if over > 0 else 0.0)
