"""Every closed set of names the ledger uses for a status, a state or a kind.

They are ``StrEnum``s, so a member *is* its string: the JSON of the API, the msgpack of
the log, the snapshot and the gateways' transport carry exactly the text they carried
when these were plain strings (``"held"``, ``"open"``), and a value read back from any
of them compares equal to the member. What the enums add is one place that lists the
values, and mypy catching a misspelt status before a test does.

Decline codes are the contract's documented strings (R20); they are one ``Literal`` set
here, so that every ``reason(...)`` call is checked and ``rules.MESSAGES`` covers each.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class RedemptionStatus(StrEnum):
    """Where one redemption stands (docs/API.md: ``status`` of a redemption)."""

    HELD = "held"  # reserved (R16 phase one), not captured, voided or expired yet
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"  # the hold's TTL passed without a capture
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


# A hold still reserves money, or its discount was granted: an order can have one of these.
HOLD_ENDED = frozenset({RedemptionStatus.VOIDED, RedemptionStatus.EXPIRED})
# Captured, with or without refunds since: what settlement and refunds apply to.
SETTLED = frozenset(
    {
        RedemptionStatus.CAPTURED,
        RedemptionStatus.PARTIALLY_REFUNDED,
        RedemptionStatus.REFUNDED,
    }
)
REFUNDABLE = frozenset({RedemptionStatus.CAPTURED, RedemptionStatus.PARTIALLY_REFUNDED})


class TrancheState(StrEnum):
    """One day's tranche: scheduled → open → closed, each step once."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    CLOSED = "closed"


class CampaignState(StrEnum):
    """What ``GET …/status`` and the public feed say the campaign is doing now."""

    SCHEDULED = "scheduled"  # before the first tranche opened
    OPEN = "open"
    SOLD_OUT = "sold_out"  # today's tranche is open and has nothing left
    CLOSED_FOR_DAY = "closed_for_day"
    PAUSED = "paused"  # an operator paused it (lijian.core.changes); the schedule goes on
    ENDED = "ended"


class ReleaseReason(StrEnum):
    """Why a hold's money went back (``HoldReleased.why``)."""

    VOID = "void"  # the channel said the payment failed
    EXPIRE = "expire"  # the TTL passed


class RefundKind(StrEnum):
    FULL = "full"
    PARTIAL = "partial"


class KeyUse(StrEnum):
    """What an Idempotency-Key was first used for (the ledger's idempotency index)."""

    HOLD = "hold"
    REFUND = "refund"
    CLAIM = "claim"  # a voucher's claim (lijian.core.claims)


class VoucherStatus(StrEnum):
    """Where one claimed voucher stands (lijian.core.vouchers)."""

    REGISTERED = "registered"  # a lottery's registration, before its draw
    LOST = "lost"  # a registration the draw did not pick
    CLAIMED = "claimed"  # its value is reserved from a tranche; usable until valid_until
    HELD = "held"  # an order is paying with it (its hold not captured, voided or expired)
    USED = "used"  # its order was captured
    EXPIRED = "expired"  # valid_until passed unused: its value went back (re-release)


class EntryKind(StrEnum):
    """The msgpack tag of each ledger entry type (``lijian.core.entries``)."""

    OPEN = "open"
    CLOSE = "close"
    SOLD_OUT = "soldout"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    REFUND = "refund"
    RESTORE = "restore"
    DRAW_SEEDED = "seed"
    WINDOW_DECIDED = "window"
    IDENTIFIERS_SEEN = "identifiers"
    GROUP_FULL = "groupfull"
    DRAW_COMMITTED = "commit"
    DRAW_REVEALED = "reveal"
    LEDGER_KEYED = "key"
    PAUSED = "paused"
    RESUMED = "resumed"
    AMENDMENT_PROPOSED = "am_proposed"
    AMENDMENT_APPLIED = "am_applied"
    AMENDMENT_REJECTED = "am_rejected"
    BLOCK_ADDED = "block_added"
    BLOCK_LIFTED = "block_lifted"
    CLOCK_MOVED = "clock"
    CAMPAIGN_PROPOSED = "campaign_proposed"
    RISK_FLAGGED = "risk_flagged"
    VOUCHER_CLAIMED = "voucher_claimed"
    VOUCHER_HELD = "voucher_held"
    VOUCHER_USED = "voucher_used"
    VOUCHER_EXPIRED = "voucher_expired"
    VOUCHER_RESTORED = "voucher_restored"
    VOUCHER_REGISTERED = "voucher_registered"
    LOTTERY_DRAWN = "lottery_drawn"
    ITEMS_SUBSIDISED = "items"
    RISK_NOTED = "risk_noted"
    FLAG_REVIEWED = "flag_reviewed"


class ChangeKind(StrEnum):
    """One line of a campaign's change log (``GET …/changes``): what an operator did."""

    PAUSE = "pause"
    RESUME = "resume"
    AMENDMENT_PROPOSED = "amendment.proposed"
    AMENDMENT_APPLIED = "amendment.applied"
    AMENDMENT_REJECTED = "amendment.rejected"
    BLOCK_ADDED = "block.added"
    BLOCK_LIFTED = "block.lifted"


class AmendmentKind(StrEnum):
    BUDGET = "budget"  # the budget moves by delta_fen, split over days' tranches
    END = "end"  # the campaign ends after last_date
    CAMPAIGN = "campaign"  # a new campaign, its settings file carried in the entry


class AmendmentStatus(StrEnum):
    """proposed → applied (approved by a second operator key) or rejected, once."""

    PROPOSED = "proposed"
    APPLIED = "applied"
    REJECTED = "rejected"


class PriceAction(StrEnum):
    """What ``[risk] price_action`` does with a unit priced above its reference."""

    FLAG = "flag"  # granted, and the grant flagged for review
    DECLINE = "decline"  # declined price_above_reference


class FlagCode(StrEnum):
    """What raised a risk flag (lijian.core.risk; docs/RISK.md)."""

    PRICE_ABOVE_REFERENCE = "price_above_reference"  # granted, [risk] price_action "flag"
    SHARED_IDENTITY_CLUSTER = "shared_identity_cluster"  # many persons, one address/device
    REFUND_REBUY = "refund_rebuy"  # a SKU refunded, then bought again soon
    VELOCITY = "velocity"  # many redemptions by one person or group in a few minutes
    CATEGORY_BULK = "category_bulk"  # one category far beyond the median per person


class ReviewAction(StrEnum):
    """What an operator did with a risk flag (``POST …/risk/{flag_id}/review``)."""

    DISMISS = "dismiss"  # looked at, nothing to do
    BLOCK_PERSON = "block_person"  # the flag's persons blocked (a block of core/changes)
    BLOCK_SKU = "block_sku"  # a SKU the flag names blocked


class BlockKind(StrEnum):
    PERSON = "person"
    SKU = "sku"


DeclineCode = Literal[
    "campaign_not_found",
    "campaign_not_started",
    "campaign_ended",
    "tranche_not_open",
    "sold_out",
    "budget_exhausted",
    "person_cap_reached",
    "person_count_limit",
    "not_real_name_verified",
    "location_missing",
    "location_outside_city",
    "address_outside_city",
    "not_campaign_goods",
    "platform_not_participating",
    "payment_channel_not_supported",
    "other_government_subsidy",
    "platform_discount_not_allowed",
    "discount_zero",
    "identity_group_full",
    "campaign_paused",
    "person_blocked",
    "sku_blocked",
    "price_above_reference",
    # Claimed vouchers ([claims] mode = "claim"; lijian.core.claims)
    "claims_sold_out",
    "claim_window_closed",
    "person_claim_limit",
    "person_category_limit",
    "voucher_required",
    "voucher_not_found",
    "voucher_not_yours",
    "voucher_expired",
    "voucher_used",
    "voucher_category_mismatch",
    # Trade-in item rules (lijian.core.items; person_category_limit above also counts units)
    "item_price_above_limit",
    "serial_required",
    "serial_already_subsidised",
]
