"""Response shapes of docs/API.md as msgspec Structs, for the OpenAPI document only.

The engine's views (``lijian.core.views``) build the response bodies as dicts; these
Structs describe the same fields so that ``/openapi.json`` is generated, not typed twice
by hand, and the schemathesis test checks every response against them: if a view and
this file drift apart, that test fails.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
Date = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date"})]
Fen = Annotated[int, msgspec.Meta(description="integer fen (1 CNY = 100 fen)")]
# A TOML table as loaded: its values are of every TOML type. msgspec describes this as
# the bare {"type": "object"} of the document; a value type of ``object`` it cannot.
TomlTable = dict[str, Any]
RedemptionStatus = Literal[
    "held", "captured", "voided", "expired", "refunded", "partially_refunded"
]
CampaignState = Literal["scheduled", "open", "sold_out", "closed_for_day", "paused", "ended"]


class Reason(msgspec.Struct):
    code: Annotated[str, msgspec.Meta(description="stable decline code (R20)")]
    message: str


class Quote(msgspec.Struct):
    eligible: bool
    discount_fen: Fen
    payable_fen: Fen
    pay_fen: Fen
    capped: bool
    reasons: list[Reason]


class Declined(msgspec.Struct):
    """200: the order is not granted (not an error). Never stored under the key."""

    status: Literal["declined"]
    reasons: list[Reason]
    discount_fen: Literal[0]


class RedemptionCreated(msgspec.Struct):
    """201: the discount is held (R16 phase one)."""

    id: str
    status: Literal["held"]
    campaign_id: str
    platform: str
    order_id: str
    person_id: str
    payable_fen: Fen
    discount_fen: Fen
    pay_fen: Fen
    capped: bool
    expires_at: DateTime
    tranche_date: Date


class Refund(msgspec.Struct):
    refund_id: str
    kind: Literal["full", "partial"]
    returned_payable_fen: Fen
    card_refund_fen: Fen
    clawback_fen: Fen
    quota_restore_fen: Fen
    quota_restore_at: DateTime | None
    created_at: DateTime


class Redemption(msgspec.Struct):
    id: str
    status: RedemptionStatus
    campaign_id: str
    platform: str
    order_id: str
    person_id: str
    payable_fen: Fen
    discount_fen: Fen
    pay_fen: Fen
    capped: bool
    expires_at: DateTime
    tranche_date: Date
    created_at: DateTime
    captured_at: DateTime | None
    ended_at: DateTime | None
    refunded_payable_fen: Fen
    card_refunded_fen: Fen
    clawed_back_fen: Fen
    refunds: list[Refund]


class RefundCreated(msgspec.Struct):
    refund_id: str
    kind: Literal["full", "partial"]
    returned_payable_fen: Fen
    card_refund_fen: Fen
    clawback_fen: Fen
    quota_restore_fen: Fen
    quota_restore_at: DateTime | None
    created_at: DateTime
    redemption: Redemption


class PendingRestore(msgspec.Struct):
    amount_fen: Fen
    at: DateTime


class PersonQuota(msgspec.Struct):
    person_id: str
    cap_fen: Fen
    used_fen: Fen
    held_fen: Fen
    remaining_fen: Fen
    pending_restores: list[PendingRestore]
    redemptions_count: int
    linked_persons: (
        Annotated[
            list[str],
            msgspec.Meta(description="with [identity] link_by: the other persons of the group"),
        ]
        | None
    ) = None


class Today(msgspec.Struct):
    date: Date
    opens_at: DateTime
    closes_at: DateTime
    released_fen: Fen
    held_fen: Fen
    granted_fen: Fen
    remaining_fen: Fen
    sold_out_at: DateTime | None
    # [claims] mode = "claim": vouchers claimed today, whole vouchers the tranche still holds
    vouchers_claimed: int | None = None
    vouchers_left: int | None = None
    draw: Draw | None = None  # [claims] allocation = "lottery": the day's draw


class AdmissionWindow(msgspec.Struct):
    """Requests waiting in today's admission window ([release] admission_window_s)."""

    waiting: int
    max_waiting: int


class FullGroup(msgspec.Struct):
    """A linked group that declined a new member (it holds the most persons allowed)."""

    person_key: Annotated[str, msgspec.Meta(description="the group's first person")]
    at: DateTime
    size: Annotated[int, msgspec.Meta(description="the size it would have had")]


class IdentityGroups(msgspec.Struct):
    """[identity] link_by: the groups that declined members (identity_group_full)."""

    group_size_max: int
    groups_full: int
    recent_full: Annotated[list[FullGroup], msgspec.Meta(max_length=20)]


class CampaignStatus(msgspec.Struct):
    campaign_id: str
    now: DateTime
    state: CampaignState
    budget_fen: Fen
    granted_fen: Annotated[int, msgspec.Meta(description="captured discounts net of clawbacks")]
    held_fen: Fen
    clawed_back_fen: Fen
    today: Today | None
    next_release_at: DateTime | None
    admission_window: AdmissionWindow | None = None
    identity: IdentityGroups | None = None


class Draw(msgspec.Struct):
    """The admission window's draw: SHA-256 of the seed before, the seed after the window."""

    commitment: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    seed: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")] | None
    window_s: int
    arrivals: int | None
    granted: int | None
    # [claims] allocation = "lottery": once drawn, the registrations, winners and lost
    registrations: int | None = None
    winners: int | None = None
    lost: int | None = None


class PublicToday(msgspec.Struct):
    date: Date
    opens_at: DateTime
    closes_at: DateTime
    remaining_fen: Fen
    sold_out_at: DateTime | None
    draw: Draw | None = None
    vouchers_claimed: int | None = None  # [claims] mode = "claim"
    vouchers_left: int | None = None


class PublicStatus(msgspec.Struct):
    """What consumer apps show: no personal data. Cache-Control: max-age=1."""

    campaign_id: str
    name: str
    state: CampaignState
    today: PublicToday | None
    next_release_at: DateTime | None


class CatalogResult(msgspec.Struct):
    upserted: int


class SettlementRow(msgspec.Struct):
    platform: str
    count: int
    gmv_fen: Fen
    discount_fen: Fen
    clawback_fen: Fen
    net_subsidy_fen: int


class SettlementTotals(msgspec.Struct):
    count: int
    gmv_fen: Fen
    discount_fen: Fen
    clawback_fen: Fen
    net_subsidy_fen: int


class Settlement(msgspec.Struct):
    campaign_id: str
    date: Date
    platforms: list[SettlementRow]
    totals: SettlementTotals


class RiskFigure(msgspec.Struct):
    subject: str  # a SKU, or "" for a figure of the whole flag
    figure: str  # e.g. unit_price_fen, reference_price_fen
    value: int


class RiskFlag(msgspec.Struct):
    id: str
    code: str  # docs/RISK.md
    day: Date
    person_ids: list[str]
    redemption_ids: list[str]
    figures: list[RiskFigure]
    raised_at: str


class RiskPage(msgspec.Struct):
    campaign_id: str
    date: Date
    flags: list[RiskFlag]
    next_after: int | None  # ``after`` of the next page; null on the last


class AuditCheck(msgspec.Struct):
    name: str
    ok: bool
    problems: list[str]


class Audit(msgspec.Struct):
    campaign_id: str
    ok: bool
    entries: int
    checks: list[AuditCheck]


class ClockResult(msgspec.Struct):
    now: DateTime


class CampaignSettings(msgspec.Struct):
    """The campaign TOML as loaded (docs/SETTINGS.md); sections may gain keys."""

    campaign: TomlTable
    discount: TomlTable = msgspec.field(default_factory=dict)
    limits: TomlTable = msgspec.field(default_factory=dict)
    eligibility: TomlTable = msgspec.field(default_factory=dict)
    refunds: TomlTable = msgspec.field(default_factory=dict)


class CampaignList(msgspec.Struct):
    campaigns: list[CampaignSettings]


class ProblemField(msgspec.Struct):
    field: str
    message: str
    line: Annotated[int, msgspec.Meta(description="catalogue uploads: 1-based line")] = 0


class Problem(msgspec.Struct):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    code: Annotated[str, msgspec.Meta(description="stable slug")]
    detail: str
    errors: list[ProblemField]


class Health(msgspec.Struct):
    ok: bool


class Durability(msgspec.Struct):
    """What an acknowledged commit survives on PostgreSQL (lijian.store.pg_durability)."""

    synchronous_commit: str | None
    synchronous_standby_names: str | None
    sync_standbys: int | None
    sync_standby: bool
    required: bool
    refusing: bool


class Ready(msgspec.Struct, omit_defaults=True):
    ready: bool
    draining: bool
    queue_depth: int
    durability: Durability | None = None  # PostgreSQL only
