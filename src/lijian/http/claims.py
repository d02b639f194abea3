"""Claimed vouchers over HTTP ([claims] mode = "claim"): a claim, a voucher, a person's
vouchers. Each handler makes one engine call (the claim: decided by the one writer in
arrival order, its Idempotency-Key required, committed before it answers); a gateway
sends the same call to its sequencer, which checks its arguments with the same
functions (``check_claim``, ``check_vouchers``) before the engine sees them."""

from __future__ import annotations

import msgspec

from lijian.core.claims import ClaimRequest
from lijian.core.voucher_views import VOUCHERS_PAGE_DEFAULT, VOUCHERS_PAGE_MAX
from lijian.http.api import (
    CHANNEL_OPS,
    READERS,
    ApiHost,
    _small_int,
    decode,
    idempotency_key,
    outcome_reply,
    path_id,
    query_param,
    require_json,
)
from lijian.http.arguments import check_fingerprint, check_id, check_idempotency_key, invalid
from lijian.http.types import Call, Reply, Route, json_reply

_decode_claim = msgspec.json.Decoder(ClaimRequest).decode


def check_claim(cid: str, req: ClaimRequest, client_id: str, key: str, fp: str) -> None:
    check_id("campaign_id", cid)
    check_idempotency_key(key)
    check_fingerprint(fp)


def check_vouchers(cid: str, person_id: str, after: int, limit: int) -> None:
    check_id("campaign_id", cid)
    check_id("person_id", person_id)
    if not 0 <= after <= 10**9:
        raise invalid("after", "an integer 0..1000000000")
    if not 1 <= limit <= VOUCHERS_PAGE_MAX:
        raise invalid("limit", f"an integer 1..{VOUCHERS_PAGE_MAX}")


class ClaimsApi:
    def __init__(self, app: ApiHost) -> None:
        # No engine of its own: a handler calls ``call.engine``, which for a signed
        # request is the one that carries its ticket (a gateway sends it along).
        self.app = app

    def routes(self) -> list[Route]:
        c = "/v1/campaigns/{campaign_id}"
        r = [
            Route("POST", c + "/claims", self.claim, CHANNEL_OPS),
            Route("GET", "/v1/vouchers/{voucher_id}", self.voucher, READERS),
            Route("GET", c + "/persons/{person_id}/vouchers", self.vouchers, READERS),
        ]
        return [
            Route(x.method, x.template, x.handler, x.roles, x.reader, x.body_max_bytes,
                  f"{x.method} {x.template}")
            for x in r
        ]  # fmt: skip

    async def claim(self, call: Call) -> Reply:
        cid = path_id(call, "campaign_id")
        require_json(call)
        key = idempotency_key(call)
        req: ClaimRequest = decode(call, _decode_claim, checked_type=True)
        assert call.client is not None
        out = await call.engine.claim(cid, req, call.client.key_id, key, call.fingerprint())
        return outcome_reply(out)

    async def voucher(self, call: Call) -> Reply:
        return json_reply(200, await call.engine.read_voucher(path_id(call, "voucher_id")))

    async def vouchers(self, call: Call) -> Reply:
        cid, pid = path_id(call, "campaign_id"), path_id(call, "person_id")
        await call.engine.campaign_settings(cid)  # 404 before 422: the resource must exist
        after = _small_int(query_param(call, "after"), 0)
        limit = _small_int(query_param(call, "limit"), VOUCHERS_PAGE_DEFAULT)
        check_vouchers(cid, pid, after, limit)
        return json_reply(200, await call.engine.read_vouchers(cid, pid, after, limit))
