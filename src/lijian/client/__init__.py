"""A small typed client for the HTTP API (docs/API.md), sync and async, on httpx.

It signs every ``/v1/`` request with :func:`lijian.http.auth.sign`, the function the
server's verifier is tested against, over the request target exactly as httpx puts it
on the wire; it makes a fresh nonce per attempt and an ``Idempotency-Key`` per
redemption and refund; it decodes answers into the Structs of
:mod:`lijian.http.schemas` (the ones ``/openapi.json`` is generated from) and turns
every problem answer into :class:`ProblemError`.

Retries are bounded (``RETRIES_MAX``) and happen only where repeating cannot change the
outcome: reads, the catalogue upload (an upsert), quotes, and the POSTs that carry an
``Idempotency-Key`` (resent with the *same* key, so the server answers the first result
again). Capture, void and clock moves are retried only when the connection was never
made. What is retried: a connection error, a timeout, 503 and 429 (waiting what
``Retry-After`` says, at most ``RETRY_WAIT_MAX_S``)::

    from lijian.client import Credentials, LijianClient

    with LijianClient("http://127.0.0.1:8000", Credentials("unionpay", b"…")) as api:
        answer = api.redeem(order)          # RedemptionCreated | Declined
        if isinstance(answer, RedemptionCreated):
            api.capture(answer.id)
"""

from __future__ import annotations

from lijian.client.calls import (
    Call,
    Credentials,
    CredentialsError,
    ProblemError,
    new_idempotency_key,
    new_nonce,
    signature_headers,
)
from lijian.client.transport import AsyncLijianClient, LijianClient
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

__all__ = [
    "AsyncLijianClient",
    "Audit",
    "Call",
    "CampaignList",
    "CampaignSettings",
    "CampaignStatus",
    "CatalogResult",
    "ClockResult",
    "Credentials",
    "CredentialsError",
    "Declined",
    "LijianClient",
    "PersonQuota",
    "ProblemError",
    "Quote",
    "Redemption",
    "RedemptionCreated",
    "RefundCreated",
    "Settlement",
    "Voucher",
    "VoucherClaimed",
    "VoucherList",
    "new_idempotency_key",
    "new_nonce",
    "signature_headers",
]
