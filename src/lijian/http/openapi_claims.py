"""Claimed vouchers in ``/openapi.json``: the shapes of a claim, a voucher and a
person's vouchers (msgspec Structs, as lijian.http.schemas), and their paths with
examples, built with ``openapi.py``'s own helpers (passed in: no import cycle)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from lijian.core.claims import ClaimRequest
from lijian.core.voucher_views import VOUCHERS_PAGE_DEFAULT, VOUCHERS_PAGE_MAX
from lijian.http.openapi_shapes import Described, Op
from lijian.http.schemas import Date, DateTime, Fen
from lijian.jsonish import Json

VoucherStatus = Literal["registered", "lost", "claimed", "held", "used", "expired"]
VOUCHER_ID = Annotated[str, msgspec.Meta(description="vc_… from POST …/claims")]


class VoucherClaimed(msgspec.Struct):
    """201: a voucher claimed; its value left the day's tranche and counts against the
    person's savings cap until it is used or expires."""

    id: VOUCHER_ID
    status: Literal["claimed"]
    campaign_id: str
    person_id: str
    value_fen: Annotated[int, msgspec.Meta(description="the most it takes off an order")]
    category: str | None
    claimed_at: DateTime
    valid_until: DateTime
    tranche_date: Date


class Voucher(msgspec.Struct):
    """A voucher as it stands."""

    id: VOUCHER_ID
    status: VoucherStatus
    campaign_id: str
    person_id: str
    value_fen: Fen
    category: str | None
    claimed_at: DateTime
    valid_until: Annotated[DateTime | None, msgspec.Meta(description="null until drawn")]
    tranche_date: Date
    draw_at: Annotated[DateTime | None, msgspec.Meta(description="a lottery's, until drawn")]
    redemption_id: Annotated[str | None, msgspec.Meta(description="the order paying with it")]
    discount_fen: Annotated[int, msgspec.Meta(description="that order's discount")]
    returned_fen: Annotated[int, msgspec.Meta(description="value released again")]
    ended_at: DateTime | None
    restored_from: Annotated[
        str | None, msgspec.Meta(description="the voucher a full refund gave back")
    ]


class VoucherRegistered(msgspec.Struct):
    """202: a lottery's registration ([claims] allocation = "lottery"), drawn at draw_at:
    then GET /v1/vouchers/{id} says claimed or lost."""

    id: VOUCHER_ID
    status: Literal["registered"]
    draw_at: DateTime


class VoucherList(msgspec.Struct):
    """A page of a person's vouchers, oldest first."""

    campaign_id: str
    person_id: str
    vouchers: Annotated[list[Voucher], msgspec.Meta(max_length=VOUCHERS_PAGE_MAX)]
    next_after: Annotated[int | None, msgspec.Meta(description="the next page's after")]


TYPES: list[object] = [ClaimRequest, VoucherClaimed, VoucherRegistered, Voucher, VoucherList]

_CLAIM_EXAMPLE = {
    "claim": {
        "value": {
            "person": {"id": "p-1001", "real_name_verified": True},
            "device_location": {"lng": 120.1551, "lat": 30.2741, "crs": "gcj02"},
        }
    },
    "trade-in category": {
        "value": {
            "person": {"id": "p-1001", "real_name_verified": True},
            "device_location": {"lng": 104.0657, "lat": 30.6574, "crs": "gcj02"},
            "category": "phone",
        }
    },
}
_CLAIMED_EXAMPLE = {
    "id": "vc_a0000000000000001",
    "status": "claimed",
    "campaign_id": "hangzhou-2020-claims",
    "person_id": "p-1001",
    "value_fen": 2000,
    "category": None,
    "claimed_at": "2020-03-27T10:00:00.120+08:00",
    "valid_until": "2020-04-03T10:00:00.120+08:00",
    "tranche_date": "2020-03-27",
}


def claims_paths(
    op: Op,
    json_out: Described,
    path_param: Described,
    campaign_param: Json,
    idempotency_key: Json,
) -> Json:
    campaign = "/v1/campaigns/{campaign_id}"
    claimed: Json = {  # json_out's answer, with its example
        "description": "The voucher claimed",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/VoucherClaimed"},
                "example": _CLAIMED_EXAMPLE,
            }
        },
    }
    media = {"schema": {"$ref": "#/components/schemas/ClaimRequest"}, "examples": _CLAIM_EXAMPLE}
    body = {"required": True, "content": {"application/json": media}}
    page = [
        {"name": "after", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": VOUCHERS_PAGE_MAX,
                    "default": VOUCHERS_PAGE_DEFAULT}},
    ]  # fmt: skip
    readers = "channel, operator, auditor"
    return {
        f"{campaign}/claims": {
            "post": op(
                'Claim a voucher ([claims] mode = "claim"), first come first served',
                "channel, operator",
                {
                    201: claimed,
                    202: json_out("VoucherRegistered", "A lottery's registration"),
                    200: json_out("Declined", "Not claimed, with every reason"),
                },
                (400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
                params=[campaign_param, idempotency_key],
                body=body,
                description="Takes voucher_value_fen from the day's tranche at once; it "
                "counts against the person's savings cap like a hold. Declines: "
                "claims_sold_out, claim_window_closed, person_claim_limit, "
                "person_category_limit, and every person, location and operator reason "
                "that applies. A campaign without claims: 409 campaign_without_claims.",
            )
        },
        "/v1/vouchers/{voucher_id}": {
            "get": op(
                "A voucher: claimed, held, used or expired",
                readers,
                {200: json_out("Voucher", "The voucher as it stands")},
                (401, 403, 404, 422, 429),
                params=[path_param("voucher_id", "voucher id vc_… from POST …/claims")],
            )
        },
        f"{campaign}/persons/{{person_id}}/vouchers": {
            "get": op(
                "A person's vouchers, oldest first, a page at a time",
                readers,
                {200: json_out("VoucherList", "One page; next_after when there are more")},
                (401, 403, 404, 422, 429),
                params=[campaign_param, path_param("person_id", "the person's id"), *page],
                tag="campaigns",
            )
        },
    }
