"""What a request to the API is, independent of sync or async I/O: credentials and
signature headers, one :class:`Call` per endpoint, and how an answer is decoded.

The signature is :func:`lijian.http.auth.sign` itself, not a second copy: the client
and the server's verifier cannot drift apart (tests/test_client.py checks both against
the fixed vector published in docs/API.md).
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from lijian.http.auth import sign
from lijian.http.clients import ClientsError, load_clients
from lijian.http.openapi_claims import Voucher, VoucherClaimed, VoucherList
from lijian.http.schemas import (
    Audit,
    CampaignList,
    CampaignSettings,
    CampaignStatus,
    CatalogResult,
    ClockResult,
    Declined,
    PersonQuota,
    ProblemField,
    Quote,
    Redemption,
    RedemptionCreated,
    RefundCreated,
    Settlement,
)

T = TypeVar("T")
JSON = "application/json"
NDJSON = "application/x-ndjson"
ENV_KEY = "LIJIAN_KEY"
ENV_SECRET = "LIJIAN_SECRET"
NONCE_BYTES = 16  # 32 hex characters: inside the contract's 16-64


class CredentialsError(ValueError):
    """No usable key id and secret (missing file, unknown key, empty environment)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    key_id: str
    secret: bytes

    def __init__(self, key_id: str, secret: bytes | str) -> None:
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "secret", secret.encode() if isinstance(secret, str) else secret)

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials({self.key_id!r})"

    @classmethod
    def from_clients_file(cls, path: str | Path, key_id: str | None = None) -> Credentials:
        """The client ``key_id`` of a server's clients file (default: its first client)."""
        try:
            clients = load_clients(path)
        except ClientsError as exc:
            raise CredentialsError("; ".join(exc.problems)) from None
        if key_id is None:
            key_id = next(iter(clients))
        c = clients.get(key_id)
        if c is None:
            raise CredentialsError(
                f"{path}: no client {key_id!r} (there are: {', '.join(sorted(clients))})"
            )
        return cls(c.key_id, c.secret)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Credentials:
        """``LIJIAN_KEY`` and ``LIJIAN_SECRET``."""
        key_id, secret = environ.get(ENV_KEY), environ.get(ENV_SECRET)
        if not key_id or not secret:
            raise CredentialsError(f"set {ENV_KEY} and {ENV_SECRET}, or give a clients file")
        return cls(key_id, secret)


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def signature_headers(
    creds: Credentials,
    method: str,
    path_with_query: str,
    body: bytes,
    *,
    ts_s: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four ``X-Lijian-*`` headers of one request. ``path_with_query`` is the
    request target as sent on the wire (percent-encoded path, ``?``, query)."""
    ts = str(int(time.time()) if ts_s is None else ts_s)  # real time, never the campaign's
    nonce = nonce or new_nonce()
    return {
        "X-Lijian-Key": creds.key_id,
        "X-Lijian-Timestamp": ts,
        "X-Lijian-Nonce": nonce,
        "X-Lijian-Signature": sign(creds.secret, method, path_with_query, ts, nonce, body),
    }


_problem_fields = msgspec.json.Decoder(list[ProblemField])


class ProblemError(Exception):
    """A 4xx/5xx answer: the problem document's ``status``, ``code``, ``detail``,
    ``errors`` (fields, and lines of a catalogue), ``retry_after_s`` when given."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[ProblemField] | None = None,
        retry_after_s: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.retry_after_s = retry_after_s
        self.request_id = request_id

    @classmethod
    def from_response(cls, r: httpx.Response) -> ProblemError:
        code, detail, errors = f"http_{r.status_code}", r.text[:300], []
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("code"), str):
            code, detail = doc["code"], str(doc.get("detail", ""))
            try:
                errors = _problem_fields.decode(msgspec.json.encode(doc.get("errors", [])))
            except msgspec.ValidationError:
                errors = []
        return cls(
            r.status_code,
            code,
            detail,
            errors,
            retry_after_s(r),
            r.headers.get("X-Request-Id"),
        )


def retry_after_s(r: httpx.Response) -> float | None:
    v = r.headers.get("Retry-After", "")
    return float(v) if v.isdigit() else None


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its answer. ``repeatable``: sending it twice has the
    effect of sending it once (reads, upserts, quotes, and POSTs with an idempotency
    key, which is then the same on every attempt)."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    body: bytes = b""
    content_type: str | None = None
    idempotency_key: str | None = None
    params: Mapping[str, str] | None = None
    repeatable: bool = False
    raise_problems: bool = True

    def finish(self, r: httpx.Response) -> T:
        if r.status_code >= 400 and self.raise_problems:
            raise ProblemError.from_response(r)
        return self.decode(r)


def _as(kind: type[T]) -> Callable[[httpx.Response], T]:
    decoder = msgspec.json.Decoder(kind)

    def decode(r: httpx.Response) -> T:
        return decoder.decode(r.content)

    return decode


_created = msgspec.json.Decoder(RedemptionCreated)
_declined = msgspec.json.Decoder(Declined)


def _redeemed(r: httpx.Response) -> RedemptionCreated | Declined:
    return _created.decode(r.content) if r.status_code == 201 else _declined.decode(r.content)


def _seg(value: str) -> str:
    """One path segment, percent-encoded (ids may hold ``/``, spaces, Chinese)."""
    return quote(value, safe="")


# A request body: a dict or a Struct (``lijian.core.order.Order``, ``RefundRequest``,
# ``lijian.core.claims.ClaimRequest``), encoded as it is.
Body = Mapping[str, object] | msgspec.Struct


def _json(obj: Body) -> bytes:
    """A dict or a Struct (``lijian.core.order.Order``) as JSON bytes."""
    return msgspec.json.encode(obj)


def quote_order(order: Body) -> Call[Quote]:
    return Call("POST", "/v1/quotes", _as(Quote), _json(order), JSON, repeatable=True)


def redeem(order: Body, key: str | None = None) -> Call[RedemptionCreated | Declined]:
    k = key or new_idempotency_key()
    return Call("POST", "/v1/redemptions", _redeemed, _json(order), JSON, k, repeatable=True)


_claimed = msgspec.json.Decoder(VoucherClaimed)


def _claim_answer(r: httpx.Response) -> VoucherClaimed | Declined:
    return _claimed.decode(r.content) if r.status_code == 201 else _declined.decode(r.content)


def claim(
    campaign_id: str, request: Body, key: str | None = None
) -> Call[VoucherClaimed | Declined]:
    """Claim a voucher ([claims] mode = "claim"): ``request`` is a dict or a
    ``lijian.core.claims.ClaimRequest`` (person, device_location, category)."""
    k = key or new_idempotency_key()
    path = f"/v1/campaigns/{_seg(campaign_id)}/claims"
    return Call("POST", path, _claim_answer, _json(request), JSON, k, repeatable=True)


def voucher(voucher_id: str) -> Call[Voucher]:
    return Call("GET", f"/v1/vouchers/{_seg(voucher_id)}", _as(Voucher), repeatable=True)


def person_vouchers(
    campaign_id: str, person_id: str, after: int = 0, limit: int = 50
) -> Call[VoucherList]:
    path = f"/v1/campaigns/{_seg(campaign_id)}/persons/{_seg(person_id)}/vouchers"
    params = {"after": str(after), "limit": str(limit)}
    return Call("GET", path, _as(VoucherList), params=params, repeatable=True)


def redemption(rid: str) -> Call[Redemption]:
    return Call("GET", f"/v1/redemptions/{_seg(rid)}", _as(Redemption), repeatable=True)


def capture(rid: str) -> Call[Redemption]:
    return Call("POST", f"/v1/redemptions/{_seg(rid)}/capture", _as(Redemption))


def void(rid: str) -> Call[Redemption]:
    return Call("POST", f"/v1/redemptions/{_seg(rid)}/void", _as(Redemption))


def refund(rid: str, request: Body, key: str | None = None) -> Call[RefundCreated]:
    k = key or new_idempotency_key()
    path = f"/v1/redemptions/{_seg(rid)}/refunds"
    return Call("POST", path, _as(RefundCreated), _json(request), JSON, k, repeatable=True)


def person(campaign_id: str, person_id: str) -> Call[PersonQuota]:
    path = f"/v1/campaigns/{_seg(campaign_id)}/persons/{_seg(person_id)}"
    return Call("GET", path, _as(PersonQuota), repeatable=True)


def status(campaign_id: str) -> Call[CampaignStatus]:
    path = f"/v1/campaigns/{_seg(campaign_id)}/status"
    return Call("GET", path, _as(CampaignStatus), repeatable=True)


def campaigns() -> Call[CampaignList]:
    return Call("GET", "/v1/campaigns", _as(CampaignList), repeatable=True)


def campaign(campaign_id: str) -> Call[CampaignSettings]:
    return Call("GET", f"/v1/campaigns/{_seg(campaign_id)}", _as(CampaignSettings), repeatable=True)


def catalog_lines(rows: Iterable[Mapping[str, str]]) -> bytes:
    """``{sku, category, platform}`` rows as the NDJSON body of a catalogue upload."""
    return b"".join(msgspec.json.encode(row) + b"\n" for row in rows)


def put_catalog(campaign_id: str, ndjson: bytes) -> Call[CatalogResult]:
    path = f"/v1/campaigns/{_seg(campaign_id)}/catalog"
    return Call("PUT", path, _as(CatalogResult), ndjson, NDJSON, repeatable=True)


def settlement(campaign_id: str, date: str) -> Call[Settlement]:
    path = f"/v1/campaigns/{_seg(campaign_id)}/settlement"
    return Call("GET", path, _as(Settlement), params={"date": date}, repeatable=True)


def audit(campaign_id: str) -> Call[Audit]:
    return Call("GET", f"/v1/campaigns/{_seg(campaign_id)}/audit", _as(Audit), repeatable=True)


def set_clock(now: str | None = None, advance_s: int | None = None) -> Call[ClockResult]:
    body = {"now": now} if now is not None else {"advance_s": advance_s}
    # Moving to a fixed time twice is moving there once; advancing twice is not.
    return Call(
        "POST", "/v1/admin/clock", _as(ClockResult), _json(body), JSON, repeatable=now is not None
    )


def _raw(r: httpx.Response) -> httpx.Response:
    return r


def raw(
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = None,
    key: str | None = None,
) -> Call[httpx.Response]:
    """A request of any kind; the answer as it came (problems are not raised)."""
    method = method.upper()
    repeatable = method in ("GET", "PUT") or key is not None or path == "/v1/quotes"
    return Call(method, path, _raw, body, content_type, key, None, repeatable, False)
