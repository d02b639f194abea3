"""The JSON shapes of claimed vouchers (``POST …/claims``, ``GET /v1/vouchers/{id}``,
a person's list), read from the ledger's records."""

from __future__ import annotations

from lijian.core.book import Book
from lijian.core.errors import VoucherNotFound
from lijian.core.status import VoucherStatus
from lijian.core.views import iso
from lijian.core.vouchers import Voucher, Vouchers

VOUCHERS_PAGE_MAX = 200  # a person's vouchers per page
VOUCHERS_PAGE_DEFAULT = 50


def claimed_view(v: Voucher, b: Book) -> dict[str, object]:
    """The 201 body of a claim."""
    tz = b.schedule.tz
    return {
        "id": v.id,
        "status": v.status,
        "campaign_id": v.campaign_id,
        "person_id": v.person_id,
        "value_fen": v.value_fen,
        "category": v.category,
        "claimed_at": iso(v.claimed_ms, tz),
        "valid_until": iso(v.valid_until_ms, tz),
        "tranche_date": v.tranche_day,
    }


def registered_view(v: Voucher, b: Book) -> dict[str, object]:
    """The 202 body of a lottery's registration: decided at ``draw_at``."""
    return {"id": v.id, "status": v.status, "draw_at": iso(v.valid_until_ms, b.schedule.tz)}


def voucher_view(v: Voucher, b: Book) -> dict[str, object]:
    """A voucher as it stands: the claim's fields, and what paid with it. A lottery's
    registration, until its draw, has no valid_until yet but its ``draw_at``."""
    drawn = v.status not in (VoucherStatus.REGISTERED, VoucherStatus.LOST)
    return {
        **claimed_view(v, b),
        "valid_until": iso(v.valid_until_ms, b.schedule.tz) if drawn else None,
        "draw_at": None if drawn or not v.registered else iso(v.valid_until_ms, b.schedule.tz),
        "redemption_id": v.redemption_id,
        "discount_fen": v.discount_fen,
        "returned_fen": v.returned_fen,
        "ended_at": iso(v.ended_ms, b.schedule.tz),
        "restored_from": v.restored_from,
    }


def find_voucher(vs: Vouchers, voucher_id: str) -> Voucher:
    v = vs.by_id.get(voucher_id)
    if v is None:
        raise VoucherNotFound(f"unknown voucher {voucher_id!r}")
    return v


def person_vouchers_view(
    vs: Vouchers, b: Book, person_id: str, after: int, limit: int
) -> dict[str, object]:
    """One page of a person's vouchers, oldest first: ``after`` of them skipped."""
    mine = vs.of_person(b.id, person_id)
    page = mine[after : after + limit]
    more = after + limit < len(mine)
    return {
        "campaign_id": b.id,
        "person_id": person_id,
        "vouchers": [voucher_view(v, b) for v in page],
        "next_after": after + limit if more else None,
    }
