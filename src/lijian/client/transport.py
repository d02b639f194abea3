"""The clients: one :class:`LijianClient` (sync) and one :class:`AsyncLijianClient`,
each a thin loop over :mod:`lijian.client.calls` (build, sign, send, retry, decode)."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import TypeVar

import httpx

from lijian.client import calls
from lijian.client.calls import Body, Call, Credentials, retry_after_s, signature_headers
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
    Quote,
    Redemption,
    RedemptionCreated,
    RefundCreated,
    Settlement,
)

T = TypeVar("T")
RETRIES_MAX = 3  # attempts after the first
RETRY_WAIT_MAX_S = 5.0  # one wait at most, whatever Retry-After says
RETRY_BASE_S = 0.2  # first backoff when the server names no wait; doubles per attempt
TIMEOUT_S = 30.0
RETRY_STATUSES = (429, 503)


def _build(
    http: httpx.Client | httpx.AsyncClient, creds: Credentials | None, call: Call[T]
) -> httpx.Request:
    headers: dict[str, str] = {}
    if call.content_type:
        headers["Content-Type"] = call.content_type
    if call.idempotency_key:
        headers["Idempotency-Key"] = call.idempotency_key
    req = http.build_request(
        call.method, call.path, content=call.body, headers=headers, params=call.params
    )
    if creds is not None and call.path.startswith("/v1/"):
        # The target as it goes on the wire: base URL's path prefix, percent-encoding, query.
        target = req.url.raw_path.decode("ascii")
        req.headers.update(signature_headers(creds, call.method, target, call.body))
    return req


def _wait_s(attempt: int, r: httpx.Response | None) -> float:
    named = retry_after_s(r) if r is not None else None
    wait = RETRY_BASE_S * 2**attempt if named is None else named
    return min(wait, RETRY_WAIT_MAX_S)


def _retry(
    call: Call[T], attempt: int, exc: Exception | None, r: httpx.Response | None, most: int
) -> bool:
    if attempt >= most:
        return False
    if isinstance(exc, httpx.ConnectError):
        return True  # nothing reached the server: any request may be sent again
    if not call.repeatable:
        return False
    if exc is not None:
        return isinstance(exc, httpx.TransportError)
    return r is not None and r.status_code in RETRY_STATUSES


class LijianClient:
    """Sync client. ``creds`` None sends unsigned requests (operations endpoints)."""

    def __init__(
        self,
        base_url: str,
        creds: Credentials | None,
        *,
        timeout_s: float = TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        retries_max: int = RETRIES_MAX,
    ) -> None:
        assert 0 <= retries_max <= RETRIES_MAX
        self.creds = creds
        self.retries_max = retries_max
        self.http = httpx.Client(
            base_url=base_url, timeout=timeout_s, transport=transport, follow_redirects=False
        )

    def __enter__(self) -> LijianClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            req = _build(self.http, self.creds, call)  # a fresh nonce every attempt
            try:
                r = self.http.send(req)
            except httpx.TransportError as exc:
                if not _retry(call, attempt, exc, None, self.retries_max):
                    raise
                time.sleep(_wait_s(attempt, None))
            else:
                if not _retry(call, attempt, None, r, self.retries_max):
                    return call.finish(r)
                time.sleep(_wait_s(attempt, r))
            attempt += 1

    # The contract's calls, one line each (the requests are built in calls.py).
    def quote(self, order: Body) -> Quote:
        return self.send(calls.quote_order(order))

    def redeem(self, order: Body, key: str | None = None) -> RedemptionCreated | Declined:
        return self.send(calls.redeem(order, key))

    def claim(
        self, campaign_id: str, request: Body, key: str | None = None
    ) -> VoucherClaimed | Declined:
        return self.send(calls.claim(campaign_id, request, key))

    def voucher(self, voucher_id: str) -> Voucher:
        return self.send(calls.voucher(voucher_id))

    def person_vouchers(
        self, campaign_id: str, person_id: str, after: int = 0, limit: int = 50
    ) -> VoucherList:
        return self.send(calls.person_vouchers(campaign_id, person_id, after, limit))

    def redemption(self, rid: str) -> Redemption:
        return self.send(calls.redemption(rid))

    def capture(self, rid: str) -> Redemption:
        return self.send(calls.capture(rid))

    def void(self, rid: str) -> Redemption:
        return self.send(calls.void(rid))

    def refund(self, rid: str, request: Body, key: str | None = None) -> RefundCreated:
        return self.send(calls.refund(rid, request, key))

    def person(self, campaign_id: str, person_id: str) -> PersonQuota:
        return self.send(calls.person(campaign_id, person_id))

    def status(self, campaign_id: str) -> CampaignStatus:
        return self.send(calls.status(campaign_id))

    def campaigns(self) -> CampaignList:
        return self.send(calls.campaigns())

    def campaign(self, campaign_id: str) -> CampaignSettings:
        return self.send(calls.campaign(campaign_id))

    def put_catalog(self, campaign_id: str, ndjson: bytes) -> CatalogResult:
        return self.send(calls.put_catalog(campaign_id, ndjson))

    def settlement(self, campaign_id: str, date: str) -> Settlement:
        return self.send(calls.settlement(campaign_id, date))

    def audit(self, campaign_id: str) -> Audit:
        return self.send(calls.audit(campaign_id))

    def set_clock(self, now: str | None = None, advance_s: int | None = None) -> ClockResult:
        return self.send(calls.set_clock(now, advance_s))

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        """A request of any kind, signed; the answer as it came (no ProblemError)."""
        return self.send(calls.raw(method, path, body, content_type, key))


class AsyncLijianClient:
    """The same client for asyncio (the load generator uses it)."""

    def __init__(
        self,
        base_url: str,
        creds: Credentials | None,
        *,
        timeout_s: float = TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
        retries_max: int = RETRIES_MAX,
    ) -> None:
        assert 0 <= retries_max <= RETRIES_MAX
        self.creds = creds
        self.retries_max = retries_max
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
            limits=limits or httpx.Limits(),
        )

    async def __aenter__(self) -> AsyncLijianClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def with_credentials(self, creds: Credentials) -> AsyncLijianClient:
        """Another client signing as ``creds`` over the same connection pool."""
        other = object.__new__(AsyncLijianClient)
        other.creds, other.http, other.retries_max = creds, self.http, self.retries_max
        return other

    async def send(self, call: Call[T], timeout_s: float | None = None) -> T:
        attempt = 0
        while True:
            req = _build(self.http, self.creds, call)
            if timeout_s is not None:
                req.extensions["timeout"] = httpx.Timeout(timeout_s).as_dict()
            try:
                r = await self.http.send(req)
            except httpx.TransportError as exc:
                if not _retry(call, attempt, exc, None, self.retries_max):
                    raise
                await asyncio.sleep(_wait_s(attempt, None))
            else:
                if not _retry(call, attempt, None, r, self.retries_max):
                    return call.finish(r)
                await asyncio.sleep(_wait_s(attempt, r))
            attempt += 1

    async def quote(self, order: Body) -> Quote:
        return await self.send(calls.quote_order(order))

    async def redeem(self, order: Body, key: str | None = None) -> RedemptionCreated | Declined:
        return await self.send(calls.redeem(order, key))

    async def claim(
        self, campaign_id: str, request: Body, key: str | None = None
    ) -> VoucherClaimed | Declined:
        return await self.send(calls.claim(campaign_id, request, key))

    async def voucher(self, voucher_id: str) -> Voucher:
        return await self.send(calls.voucher(voucher_id))

    async def person_vouchers(
        self, campaign_id: str, person_id: str, after: int = 0, limit: int = 50
    ) -> VoucherList:
        return await self.send(calls.person_vouchers(campaign_id, person_id, after, limit))

    async def redemption(self, rid: str) -> Redemption:
        return await self.send(calls.redemption(rid))

    async def capture(self, rid: str) -> Redemption:
        return await self.send(calls.capture(rid))

    async def void(self, rid: str) -> Redemption:
        return await self.send(calls.void(rid))

    async def refund(self, rid: str, request: Body, key: str | None = None) -> RefundCreated:
        return await self.send(calls.refund(rid, request, key))

    async def person(self, campaign_id: str, person_id: str) -> PersonQuota:
        return await self.send(calls.person(campaign_id, person_id))

    async def status(self, campaign_id: str) -> CampaignStatus:
        return await self.send(calls.status(campaign_id))

    async def campaigns(self) -> CampaignList:
        return await self.send(calls.campaigns())

    async def campaign(self, campaign_id: str) -> CampaignSettings:
        return await self.send(calls.campaign(campaign_id))

    async def put_catalog(self, campaign_id: str, ndjson: bytes) -> CatalogResult:
        return await self.send(calls.put_catalog(campaign_id, ndjson), timeout_s=120.0)

    async def settlement(self, campaign_id: str, date: str) -> Settlement:
        return await self.send(calls.settlement(campaign_id, date))

    async def audit(self, campaign_id: str) -> Audit:
        return await self.send(calls.audit(campaign_id))

    async def set_clock(self, now: str | None = None, advance_s: int | None = None) -> ClockResult:
        return await self.send(calls.set_clock(now, advance_s))

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        return await self.send(calls.raw(method, path, body, content_type, key))
