"""The OpenAPI paths and schemas of running a live campaign (docs/API.md), merged into
the document by ``openapi.build_spec``. Request schemas are the structs the handlers
decode into (``http/operations.py``); responses are described by the structs below."""

from __future__ import annotations

from typing import Literal

import msgspec

from lijian.core.settings_text import SETTINGS_TOML_MAX_BYTES
from lijian.core.steering import REASON_MAX_CHARS
from lijian.http.openapi_shapes import Described, Op, Ref
from lijian.http.operation_bodies import (
    CLEAN_TEXT_PATTERN,
    AmendmentBody,
    BlockBody,
    ReasonBody,
    ReviewBody,
)
from lijian.http.schemas import CampaignState, RiskFlag
from lijian.jsonish import Json

CAMPAIGN = "/v1/campaigns/{campaign_id}"
OP_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
LIST_ERRORS = (401, 403, 404, 422, 429)


class ChangeResult(msgspec.Struct):
    campaign_id: str
    state: CampaignState
    change_id: str


class SplitDay(msgspec.Struct):
    date: str
    delta_fen: int | None = None  # budget amendments
    withdrawn_fen: int | None = None  # end amendments


class Amendment(msgspec.Struct):
    id: str
    campaign_id: str
    status: Literal["proposed", "applied", "rejected"]
    kind: Literal["budget", "end", "campaign"]
    proposed_by: str
    proposed_at: str
    reason: str
    delta_fen: int | None = None
    days: str | list[str] | None = None
    last_date: str | None = None
    approved_by: str | None = None
    applied_at: str | None = None
    approval_reason: str | None = None
    split: list[SplitDay] | None = None
    rejected_by: str | None = None
    rejected_at: str | None = None
    rejection_reason: str | None = None
    settings_toml: str | None = None  # kind campaign: the proposed settings file


class Block(msgspec.Struct):
    id: str
    campaign_id: str
    kind: Literal["person", "sku"]
    active: bool
    by: str
    at: str
    reason: str
    person_id: str | None = None
    platform: str | None = None
    sku: str | None = None
    lifted_by: str | None = None
    lifted_at: str | None = None
    lift_reason: str | None = None


class Change(msgspec.Struct):
    id: str
    kind: Literal[
        "pause", "resume", "amendment.proposed", "amendment.applied", "amendment.rejected",
        "block.added", "block.lifted",
    ]  # fmt: skip
    campaign_id: str
    at: str
    by: str
    reason: str
    amendment_id: str | None = None
    block_id: str | None = None


class AmendmentList(msgspec.Struct):
    amendments: list[Amendment]


class BlockList(msgspec.Struct):
    blocks: list[Block]


class ChangeList(msgspec.Struct):
    changes: list[Change]


class FlagReview(msgspec.Struct):
    flag_id: str
    action: Literal["dismiss", "block_person", "block_sku"]
    reason: str
    operator: str  # the operator's key id
    block_id: str | None  # the block it added (block_person, block_sku)
    reviewed_at: str


class ReviewQueue(msgspec.Struct):
    open_count: int  # flags not reviewed yet
    flags: list[RiskFlag]  # the oldest open ones, at most 500
    reviews: list[FlagReview]  # the latest reviews, newest first, at most 500


TYPES: list[object] = [
    ReasonBody, AmendmentBody, BlockBody, ChangeResult, Amendment, Block, Change,
    AmendmentList, BlockList, ChangeList, ReviewBody, FlagReview, ReviewQueue,
]  # fmt: skip

_EXAMPLES: dict[str, Json] = {
    "ReasonBody": {"pause": {"value": {"reason": "fraud wave on one platform"}}},
    "AmendmentBody": {
        "top-up": {
            "value": {
                "kind": "budget",
                "delta_fen": 50_000_000,
                "days": "remaining",
                "reason": "second tranche of city funds",
            }
        },
        "cut": {
            "value": {
                "kind": "budget",
                "delta_fen": -10_000_000,
                "days": ["2025-02-20", "2025-02-21"],
                "reason": "money short",
            }
        },
        "end": {"value": {"kind": "end", "last_date": "2025-02-20", "reason": "ends early"}},
    },
    "ReviewBody": {
        "dismiss": {"value": {"action": "dismiss", "reason": "a family's orders"}},
        "block": {"value": {"action": "block_person", "person_id": "p-123", "reason": "scalper"}},
    },
    "BlockBody": {
        "person": {"value": {"kind": "person", "person_id": "p-123", "reason": "borrowed ids"}},
        "sku": {
            "value": {
                "kind": "sku",
                "platform": "jd",
                "sku": "JD-100012",
                "reason": "price raised before the discount",
            }
        },
    },
}


# A new campaign's settings file, as POST /v1/campaigns takes it (a short one: every
# section the settings have is described in docs/SETTINGS.md).
CAMPAIGN_TOML_EXAMPLE = """\
[campaign]
id = "chengdu-2025-wave-2"
name = "Chengdu spring consumption vouchers, second wave"
timezone = "Asia/Shanghai"
budget_fen = 1700000000
start_date = "2025-03-01"
end_date = "2025-03-17"
daily_open = "10:00"
daily_close = "24:00"
tranches = "equal"
leftover = "rollover"
city_adcode = "510100"
platforms = ["jd", "vip"]
payment_channels = ["unionpay"]

[discount]
kind = "percent"
rate_bp = 1500

[limits]
person_savings_cap_fen = 150000
hold_ttl_s = 900

[eligibility]
categories = ["home_textiles", "sports_outdoor"]
"""


def new_campaign_op(op: Op, json_out: Described) -> Json:
    """``POST /v1/campaigns``: a new campaign from its settings file (TOML body)."""
    # (The limit is in bytes of UTF-8, 413 above it: JSON Schema counts characters.)
    toml = {"schema": {"type": "string"},
            "examples": {"second wave": {"value": CAMPAIGN_TOML_EXAMPLE}}}  # fmt: skip
    reason = {
        "name": "reason",
        "in": "query",
        "required": False,
        "description": 'why (1-500 characters); default: "a new campaign"',
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": REASON_MAX_CHARS,
            "pattern": CLEAN_TEXT_PATTERN,
        },
    }
    out: Json = op(
        "Propose a new campaign from its settings file (served once another operator approves it)",
        "operator",
        {201: json_out("Amendment", "proposed: kind campaign, with campaign_id")},
        OP_ERRORS,
        params=[reason],
        body={"required": True, "content": {"application/toml": toml}},
        tag="live",
        description="The body is the campaign settings file (Content-Type: application/toml, "
        f"at most {SETTINGS_TOML_MAX_BYTES} bytes). A file with problems: 422 listing every "
        "problem (field and why, as `lijian campaign check` says them). An id that exists or "
        "is proposed: 409 campaign_exists. Approve or reject at /v1/campaigns/{campaign_id}/"
        "amendments/{amendment_id}/approve|reject, by another operator key (403 "
        "four_eyes_required for the proposer's). Once approved the campaign is served like "
        "one loaded with --campaign, also after a restart without that file.",
    )
    return out


def operations_paths(
    op: Op, ref: Ref, json_out: Described, path_param: Described, campaign_param: Json
) -> Json:
    """The paths, built with ``openapi.py``'s own helpers (passed in: no import cycle)."""

    def body(name: str) -> Json:
        media: Json = {"schema": ref(name)}
        if name in _EXAMPLES:
            media["examples"] = _EXAMPLES[name]
        return {"required": True, "content": {"application/json": media}}

    am_id = path_param("amendment_id", "amendment id am_… from POST …/amendments")
    bl_id = path_param("block_id", "block id bl_… from POST …/blocks")
    four_eyes = (
        "A change that moves money is proposed by one operator key and applied only when "
        "another operator key approves it: approval by the proposer's key is 403 "
        "four_eyes_required."
    )

    def write(
        summary: str, ok: dict[int, Json], name: str, params: list[Json], d: str = ""
    ) -> Json:
        return op(summary, "operator", ok, OP_ERRORS, params=params, body=body(name),
                  tag="live", description=d)  # fmt: skip

    def read(summary: str, name: str, what: str) -> Json:
        return op(summary, "operator, auditor", {200: json_out(name, what)}, LIST_ERRORS,
                  params=[campaign_param], tag="live")  # fmt: skip

    c = [campaign_param]
    return {
        f"{CAMPAIGN}/pause": {
            "post": write(
                "Pause the campaign: quotes and redemptions declined campaign_paused",
                {200: json_out("ChangeResult", "paused")},
                "ReasonBody",
                c,
                "Takes effect at once; captures, voids, refunds, expiries and releases go on. "
                "Already paused: 409 campaign_already_paused.",
            )
        },
        f"{CAMPAIGN}/resume": {
            "post": write(
                "Resume a paused campaign",
                {200: json_out("ChangeResult", "the state now")},
                "ReasonBody",
                c,
                "Not paused: 409 campaign_not_paused.",
            )
        },
        f"{CAMPAIGN}/amendments": {
            "post": write(
                "Propose a budget or end amendment (applied once another operator approves)",
                {201: json_out("Amendment", "proposed")},
                "AmendmentBody",
                c,
                four_eyes,
            ),
            "get": read("The campaign's amendments, oldest first", "AmendmentList", "all"),
        },
        f"{CAMPAIGN}/amendments/{{amendment_id}}/approve": {
            "post": write(
                "Approve and apply a proposed amendment",
                {200: json_out("Amendment", "applied")},
                "ReasonBody",
                [*c, am_id],
                four_eyes + " Not proposed any more: 409 amendment_not_pending. A cut below "
                "what is granted plus held: 409 amendment_below_committed (nothing changes).",
            )
        },
        f"{CAMPAIGN}/amendments/{{amendment_id}}/reject": {
            "post": write(
                "Reject a proposed amendment",
                {200: json_out("Amendment", "rejected")},
                "ReasonBody",
                [*c, am_id],
                "Not proposed any more: 409 amendment_not_pending.",
            )
        },
        f"{CAMPAIGN}/blocks": {
            "post": write(
                "Block a person (and persons linked to them) or a platform's SKU",
                {201: json_out("Block", "active")},
                "BlockBody",
                c,
                "Declines person_blocked / sku_blocked from the next decision on; holds made "
                "before stay valid.",
            ),
            "get": read("The campaign's blocks, with active", "BlockList", "all"),
        },
        f"{CAMPAIGN}/blocks/{{block_id}}/lift": {
            "post": write(
                "Lift a block",
                {200: json_out("Block", "lifted")},
                "ReasonBody",
                [*c, bl_id],
                "Already lifted: 409 block_not_active.",
            )
        },
        f"{CAMPAIGN}/changes": {
            "get": read(
                "Every pause, resume, amendment and block of the campaign, oldest first",
                "ChangeList",
                "the change log",
            )
        },
        f"{CAMPAIGN}/risk/queue": {
            "get": read(
                "The review queue: open risk flags, oldest first, and the latest "
                "reviews (docs/RISK.md)",
                "ReviewQueue",
                "the queue",
            ),
        },
        f"{CAMPAIGN}/risk/{{flag_id}}/review": {
            "post": write(
                "Review a risk flag: dismiss it, or block its person or one of its SKUs",
                {200: json_out("FlagReview", "reviewed")},
                "ReviewBody",
                [*c, path_param("flag_id", "flag id flag-… from GET …/risk or …/risk/queue")],
                "A block is the ordinary block (GET …/blocks; lifted at …/blocks/{block_id}/"
                "lift). person_id / sku: required when the flag names several, and must be "
                "named by it (422). Unknown flag: 404 flag_not_found; reviewed already: 409 "
                "flag_already_reviewed.",
            )
        },
    }
