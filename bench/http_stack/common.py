"""Framework-independent pieces shared by every benchmark app.

Every app under test does the same work for ``POST /v1/redemptions``:

1. read the raw body;
2. verify the HMAC-SHA256 request signature of docs/API.md (key id, timestamp
   within 300 s of the real clock, nonce 16-64 chars never reused, signature
   over ``METHOD\\nPATH_WITH_QUERY\\nTS\\nNONCE\\nhex(sha256(body))``);
3. require an ``Idempotency-Key`` header (1-255 chars);
4. decode the order JSON into a typed structure (that part is framework
   specific: pydantic for FastAPI, msgspec for the others);
5. compute a 15 % discount in integer fen and answer 201 with a body shaped
   like the contract's redemption.

Only step 4 and the (de)serialisation of the answer differ between apps, so
that what we measure is the framework + server, not our own code.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from datetime import UTC, datetime, timedelta, timezone

# One client, as a clients.toml would give it.
CLIENTS: dict[str, bytes] = {"unionpay": b"change-me"}
CLOCK_SKEW_MAX_S = 300
NONCE_LEN_MIN = 16
NONCE_LEN_MAX = 64
IDEMPOTENCY_KEY_LEN_MAX = 255
DISCOUNT_PERCENT = 15
DISCOUNT_CAP_FEN = 50_000  # 500 yuan per order, so `capped` means something
HOLD_TTL_S = 900
CST = timezone(timedelta(hours=8))

# key id -> {nonce: unix seconds first seen}. A plain dict insert, as the
# brief allows; the real server bounds and expires it (10-minute window).
_nonces_seen: dict[str, dict[str, int]] = {key_id: {} for key_id in CLIENTS}
_redemption_ids = itertools.count(1)


class AuthError(Exception):
    """Any reason for a 401; the message goes into the problem's detail."""


def verify_signature(
    method: str,
    path_with_query: str,
    body: bytes,
    key_id: str | None,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
) -> str:
    """Return the authenticated key id, or raise AuthError."""
    if not key_id or not timestamp or not nonce or not signature:
        raise AuthError("missing signature headers")
    secret = CLIENTS.get(key_id)
    if secret is None:
        raise AuthError("unknown key")
    try:
        ts_s = int(timestamp)
    except ValueError:
        raise AuthError("bad timestamp") from None
    now_s = int(time.time())  # real wall clock, always (docs/API.md)
    if abs(now_s - ts_s) > CLOCK_SKEW_MAX_S:
        raise AuthError("timestamp out of window")
    if not NONCE_LEN_MIN <= len(nonce) <= NONCE_LEN_MAX:
        raise AuthError("bad nonce")
    expected = sign(secret, method, path_with_query, timestamp, nonce, body)
    if not hmac.compare_digest(expected, signature):
        raise AuthError("bad signature")
    seen = _nonces_seen[key_id]
    if nonce in seen:
        raise AuthError("nonce reused")
    seen[nonce] = ts_s
    return key_id


def sign(secret: bytes, method: str, path: str, ts: str, nonce: str, body: bytes) -> str:
    body_hash = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{ts}\n{nonce}\n{body_hash}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_idempotency_key(value: str | None) -> str:
    if value is None or not 1 <= len(value) <= IDEMPOTENCY_KEY_LEN_MAX:
        raise ValueError("Idempotency-Key header required (1-255 chars)")
    return value


def payable_fen(items: list[tuple[int, int, int]]) -> int:
    """Σ(quantity × unit_price_fen − platform_discount_fen)."""
    return sum(q * unit - disc for q, unit, disc in items)


def redemption_fields(payable: int) -> dict[str, object]:
    """The computed part of a 201 answer: integer fen only, no floats."""
    discount_raw = payable * DISCOUNT_PERCENT // 100
    discount = min(discount_raw, DISCOUNT_CAP_FEN)
    now = datetime.now(UTC).astimezone(CST)
    return {
        "id": f"r-{next(_redemption_ids):012x}",
        "payable_fen": payable,
        "discount_fen": discount,
        "pay_fen": payable - discount,
        "capped": discount < discount_raw,
        "expires_at": (now + timedelta(seconds=HOLD_TTL_S)).isoformat(timespec="seconds"),
        "tranche_date": now.date().isoformat(),
    }


HEALTHZ_BODY = b'{"ok":true}'

# docs/API.md's example order; gen_requests.py varies order_id and person id.
EXAMPLE_ORDER: dict[str, object] = {
    "campaign_id": "chengdu-2025-spring",
    "platform": "jd",
    "order_id": "JD-20250212-000123",
    "payment_channel": "unionpay",
    "person": {"id": "p-7f3a9c", "real_name_verified": True, "device_id": "d-01"},
    "device_location": {"lng": 104.0657, "lat": 30.6574, "crs": "gcj02"},
    "delivery_address": {"adcode": "510104", "text": "四川省成都市锦江区红星路三段1号"},
    "items": [
        {
            "sku": "JD-100012345",
            "quantity": 2,
            "unit_price_fen": 12900,
            "platform_discount_fen": 1000,
        }
    ],
    "other_government_subsidy": False,
}
