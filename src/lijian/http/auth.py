"""Signed requests (docs/API.md, "Authentication"): HMAC-SHA256, timestamp window, nonces.

A request under ``/v1/`` carries ``X-Lijian-Key``, ``X-Lijian-Timestamp`` (unix seconds),
``X-Lijian-Nonce`` (16-64 chars) and ``X-Lijian-Signature``::

    hex(HMAC-SHA256(secret,
                    METHOD \\n PATH_WITH_QUERY \\n TIMESTAMP \\n NONCE \\n hex(SHA256(BODY))))

Verification runs in two steps so that a streamed upload (the catalogue) can be refused on
its headers before its body is read, and verified against the body's hash at the end:
``precheck`` (key known, timestamp within 300 s of the *real* clock, nonce well formed and
not seen), then ``verify`` (HMAC compared in constant time; only then is the nonce
remembered, so an attacker cannot burn a client's nonces with unsigned requests).

The nonce memory is bounded in time and in size (TIGER_STYLE: a limit on everything).
A nonce needs remembering only while its request could still pass the timestamp check;
the contract promises 10 minutes, which covers the ±300 s window. When a key exceeds its
hard cap, the oldest nonces are forgotten and the key's *timestamp floor* rises to the
newest forgotten request's timestamp: from then on a request at or below the floor is
refused, so a forgotten nonce can never be replayed. Legitimate clients never see this
unless one key sends more than ``NONCES_PER_KEY_MAX`` requests in 10 minutes.

Where a ledger is, the memory is also durable: ``on_remember`` hands each accepted nonce
to the writer, which stores it in its next commit, and a restart ``restore``s the stored
ones (lijian/durable_nonces.py, http/admission.py: ``durable_memory``).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lijian.http.clients import Client

TIMESTAMP_SKEW_MAX_S = 300
NONCE_TTL_S = 600  # "never reused by this key within 10 minutes"
NONCE_LEN_MIN = 16
NONCE_LEN_MAX = 64
NONCES_PER_KEY_MAX = 2_000_000  # ~200 B each: ≤ 400 MB per key at the cap, 3.3k req/s for 10 min
TIMESTAMP_DIGITS_MAX = 12
_NONCE_RE = re.compile(rb"[\x21-\x7e]{%d,%d}" % (NONCE_LEN_MIN, NONCE_LEN_MAX))


class AuthError(Exception):
    """A 401: ``code`` is the stable slug, ``detail`` says what to fix."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class _KeyNonces:
    # (seen_at_s, request timestamp, nonce), in arrival order: the oldest is evicted first.
    order: collections.deque[tuple[float, int, str]] = field(default_factory=collections.deque)
    seen: set[str] = field(default_factory=set)
    floor_ts_s: int = -1  # requests with a timestamp at or below this are refused


class NonceMemory:
    """Per key: which nonces were used in the last ``ttl_s`` seconds (bounded)."""

    def __init__(
        self,
        ttl_s: float = NONCE_TTL_S,
        cap_per_key: int = NONCES_PER_KEY_MAX,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        assert ttl_s > 0 and cap_per_key > 0
        self.ttl_s = ttl_s
        self.cap_per_key = cap_per_key
        self.clock_s = clock_s
        self._keys: dict[str, _KeyNonces] = {}
        # Called with (key, nonce, timestamp, seen at) for every nonce remembered; what it
        # returns is kept in ``last_mark`` (the writer's mark for the nonce's commit).
        self.on_remember: Callable[[str, str, int, float], int] | None = None
        self.last_mark = 0

    def __len__(self) -> int:
        return sum(len(k.seen) for k in self._keys.values())

    def _expire(self, k: _KeyNonces, now_s: float) -> None:
        horizon = now_s - self.ttl_s
        order, seen = k.order, k.seen
        while order and order[0][0] < horizon:
            seen.discard(order.popleft()[2])

    # is_fresh and remember run on every signed request: the oldest entry is looked at
    # inline and _expire is called only when something is due to go.
    def is_fresh(self, key_id: str, nonce: str, ts_s: int) -> bool:
        """True when the nonce was not used by this key (and the timestamp is above floor)."""
        k = self._keys.get(key_id)
        if k is None:
            return True
        order = k.order
        if order:
            now_s = self.clock_s()
            if order[0][0] < now_s - self.ttl_s:
                self._expire(k, now_s)
        return nonce not in k.seen and ts_s > k.floor_ts_s

    def remember(self, key_id: str, nonce: str, ts_s: int) -> bool:
        """Record a nonce; False if it was already there (a concurrent replay)."""
        k = self._keys.get(key_id)
        if k is None:
            k = self._keys[key_id] = _KeyNonces()
        now_s = self.clock_s()
        order, seen = k.order, k.seen
        if order and order[0][0] < now_s - self.ttl_s:
            self._expire(k, now_s)
        if nonce in seen or ts_s <= k.floor_ts_s:
            return False
        while len(order) >= self.cap_per_key:
            _, old_ts, old_nonce = order.popleft()
            seen.discard(old_nonce)
            k.floor_ts_s = max(k.floor_ts_s, old_ts)
        order.append((now_s, ts_s, nonce))
        seen.add(nonce)
        if self.on_remember is not None:
            self.last_mark = self.on_remember(key_id, nonce, ts_s, now_s)
        return True

    def restore(self, rows: list[tuple[str, str, int, int]], floors: dict[str, int]) -> int:
        """Load stored nonces (key, nonce, timestamp, seen at ms; oldest first) and the
        timestamp floors of those left out, before serving. Returns the number loaded."""
        assert not self._keys, "restore into an empty memory"
        now_s = self.clock_s()
        n = 0
        for key_id, nonce, ts_s, seen_ms in rows:
            seen_s = seen_ms / 1000
            if seen_s < now_s - self.ttl_s:
                continue
            k = self._keys.get(key_id)
            if k is None:
                k = self._keys[key_id] = _KeyNonces()
            if nonce in k.seen:
                continue
            while len(k.order) >= self.cap_per_key:
                _, old_ts, old_nonce = k.order.popleft()
                k.seen.discard(old_nonce)
                k.floor_ts_s = max(k.floor_ts_s, old_ts)
            k.order.append((seen_s, ts_s, nonce))
            k.seen.add(nonce)
            n += 1
        for key_id, floor_ts_s in floors.items():
            k = self._keys.setdefault(key_id, _KeyNonces())
            k.floor_ts_s = max(k.floor_ts_s, floor_ts_s)
        return n


def body_sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signing_string(method: str, path_with_query: str, ts: str, nonce: str, body_hex: str) -> bytes:
    return f"{method}\n{path_with_query}\n{ts}\n{nonce}\n{body_hex}".encode()


def sign(secret: bytes, method: str, path_with_query: str, ts: str, nonce: str, body: bytes) -> str:
    """The signature a client sends (also what tests and the benchmark use)."""
    msg = signing_string(method, path_with_query, ts, nonce, body_sha256_hex(body))
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


_BLOCK_BYTES = 64  # SHA-256's block: an HMAC key is padded (or first hashed) to it
_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))


class HmacPads:
    """HMAC-SHA256 with one key, its two key pads hashed once (RFC 2104): a signature
    then costs two ``hashlib`` state copies and the message's compressions, with no
    ``hmac.HMAC`` object (whose Python ``copy`` and wrapper calls cost more than the
    hashing of a request's signing string). Byte for byte ``hmac.new(key, msg,
    hashlib.sha256).hexdigest()`` (tests/test_signature_pads.py)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK_BYTES:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK_BYTES, b"\0")
        # The bound copy methods of the two prepared states: one attribute lookup less.
        self._inner = hashlib.sha256(key.translate(_TRANS_36)).copy
        self._outer = hashlib.sha256(key.translate(_TRANS_5C)).copy

    def hexdigest(self, msg: bytes) -> str:
        inner = self._inner()
        inner.update(msg)
        outer = self._outer()
        outer.update(inner.digest())
        return outer.hexdigest()


@dataclass(slots=True)
class Pending:
    """A request whose headers passed ``precheck``; ``verify`` finishes it.

    Not frozen: a frozen dataclass sets each field through ``object.__setattr__``, which
    costs ~0.5 µs a request for nothing here."""

    client: Client
    ts: str
    ts_s: int
    nonce: str
    signature: bytes
    ts_raw: bytes = b""
    nonce_raw: bytes = b""


_SIGNATURE_REQUIRED = (
    "signature_required",
    "X-Lijian-Key, X-Lijian-Timestamp, X-Lijian-Nonce and X-Lijian-Signature are required",
)


class Authenticator:
    def __init__(
        self,
        clients: dict[str, Client],
        nonces: NonceMemory | None = None,
        clock_s: Callable[[], float] = time.time,
        remember_nonces: bool = True,
    ) -> None:
        self.clients = clients
        self.clock_s = clock_s  # the real clock, never the campaign's (docs/API.md)
        self.nonces = nonces if nonces is not None else NonceMemory(clock_s=clock_s)
        # A gateway does not remember nonces: the sequencer does (lijian.cluster), so that
        # a nonce is refused wherever it is replayed. Its memory here stays empty.
        self.remember_nonces = remember_nonces
        # Keyed by the header's bytes: no decode before the lookup. The clients are
        # fixed for the life of the server (read once from the --clients file).
        self._by_header = {k.encode("latin-1"): c for k, c in clients.items()}
        # Each client's key pads hashed once (HmacPads): a signature skips the two
        # key-pad compressions of hmac.new and the hmac.HMAC wrapper (docs/PERFORMANCE.md,
        # "HMAC over precomputed pads": hmac.new 4.2, HMAC.copy 3.1, pads 2.0 µs).
        self._pads = {k: HmacPads(c.secret) for k, c in clients.items()}

    def _mac_hex(self, client: Client, msg: bytes) -> bytes:
        pads = self._pads.get(client.key_id)
        if pads is None:  # a client given to verify() that was not configured here
            return hmac.new(client.secret, msg, hashlib.sha256).hexdigest().encode()
        return pads.hexdigest(msg).encode()

    def precheck(
        self,
        key_id: bytes | None,
        ts: bytes | None,
        nonce: bytes | None,
        signature: bytes | None,
    ) -> Pending:
        # Every signed request passes here: the checks are written out inline.
        if key_id is None or ts is None or nonce is None or signature is None:
            raise AuthError(*_SIGNATURE_REQUIRED)
        # Same answer as clients.get(key_id.decode("latin-1")): latin-1 maps bytes to
        # characters one to one.
        client = self._by_header.get(key_id)
        if client is None:
            raise AuthError("unknown_key", "unknown X-Lijian-Key")
        if not ts.isdigit() or len(ts) > TIMESTAMP_DIGITS_MAX:
            raise AuthError("timestamp_out_of_window", "X-Lijian-Timestamp: unix seconds")
        ts_s = int(ts)
        if abs(self.clock_s() - ts_s) > TIMESTAMP_SKEW_MAX_S:
            raise AuthError(
                "timestamp_out_of_window",
                f"X-Lijian-Timestamp is more than {TIMESTAMP_SKEW_MAX_S} s from the server's "
                "real clock",
            )
        # Visible ASCII only: the nonce is part of the signed string and of a header.
        if _NONCE_RE.fullmatch(nonce) is None:
            raise AuthError(
                "nonce_invalid",
                f"X-Lijian-Nonce: {NONCE_LEN_MIN}-{NONCE_LEN_MAX} visible ASCII characters",
            )
        n = nonce.decode("ascii")
        if not self.nonces.is_fresh(client.key_id, n, ts_s):
            raise AuthError("nonce_reused", "X-Lijian-Nonce was already used by this key")
        return Pending(client, ts.decode("ascii"), ts_s, n, signature, ts, nonce)

    def verify(self, p: Pending, method: str, path_with_query: str, body_hex: str) -> Client:
        msg = signing_string(method, path_with_query, p.ts, p.nonce, body_hex)
        # compare_digest runs in time independent of where the strings differ.
        if not hmac.compare_digest(self._mac_hex(p.client, msg), p.signature.lower()):
            raise AuthError("bad_signature", "X-Lijian-Signature does not match the request")
        if self.remember_nonces and not self.nonces.remember(p.client.key_id, p.nonce, p.ts_s):
            raise AuthError("nonce_reused", "X-Lijian-Nonce was already used by this key")
        return p.client

    def verify_raw(self, p: Pending, prefix: bytes, body_hex: bytes) -> Client:
        """``verify`` for callers that hold the signed parts as bytes (the app):
        ``prefix`` is ``METHOD\\nPATH_WITH_QUERY\\n`` exactly as ``signing_string``
        encodes it, ``body_hex`` the hex SHA-256 of the body. Same checks, same answers."""
        # ts is digits and the nonce visible ASCII (precheck): their raw bytes are what
        # signing_string would encode.
        msg = b"%s%s\n%s\n%s" % (prefix, p.ts_raw, p.nonce_raw, body_hex)
        if not hmac.compare_digest(self._mac_hex(p.client, msg), p.signature.lower()):
            raise AuthError("bad_signature", "X-Lijian-Signature does not match the request")
        if self.remember_nonces and not self.nonces.remember(p.client.key_id, p.nonce, p.ts_s):
            raise AuthError("nonce_reused", "X-Lijian-Nonce was already used by this key")
        return p.client
