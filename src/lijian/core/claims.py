"""A claim of a voucher ([claims] mode = "claim"), decided by the one writer.

First come, first served in arrival order: a claim takes ``voucher_value_fen`` from the
open tranche at once (``VoucherClaimed``) and counts against the person's savings cap as
a hold does; or it is declined with every reason that applies. The request's stateless
reasons (real name, device location) are found outside the writer (``claim_reasons``),
as an order's are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from lijian.core.book import Book
from lijian.core.entries import SoldOut, VoucherClaimed, VoucherRegistered
from lijian.core.errors import Conflict, IdempotencyKeyReused, InvalidRequest
from lijian.core.ledger import Ledger, _dedupe
from lijian.core.order import Location, Person, text_meta
from lijian.core.rules import GeoPort, Reason, reason
from lijian.core.status import KeyUse
from lijian.core.voucher_rules import new_voucher_id, valid_until_ms
from lijian.core.vouchers import Voucher
from lijian.core.window import window_ends_ms, windowed


class ClaimRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/campaigns/{id}/claims``."""

    person: Person
    device_location: Location | None = None
    category: Annotated[str, text_meta(64, min_length=1)] | None = None


@dataclass(slots=True)
class ClaimOutcome:
    voucher: Voucher | None
    reasons: list[Reason]
    replayed: bool = False


def claim_reasons(req: ClaimRequest, b: Book, geo: GeoPort) -> list[Reason]:
    """The stateless reasons (R8, R10) a claim is declined for, and a bad category."""
    s, out = b.settings, []
    if not s.claims.on:  # the campaign's kind, not the request's shape: a conflict
        raise Conflict("campaign_without_claims", f"campaign {b.id!r} hands out no vouchers")
    if s.claims.per_category != (req.category is not None):
        why = "category is required" if s.claims.per_category else "this campaign takes no category"
        raise InvalidRequest(why, ("category",))
    if req.category is not None and req.category not in s.eligibility.categories:
        raise InvalidRequest(f"category {req.category!r} is not of the campaign", ("category",))
    if s.eligibility.require_real_name and not req.person.real_name_verified:
        out.append(reason("not_real_name_verified"))
    if s.eligibility.require_device_in_city:
        loc = req.device_location
        if loc is None:
            out.append(reason("location_missing"))
        elif not geo.device_in_city(loc.lng, loc.lat, loc.crs):
            out.append(reason("location_outside_city"))
    return out


def _state_reasons(led: Ledger, b: Book, req: ClaimRequest, now_ms: int) -> list[Reason]:
    c = b.settings.claims
    pid = req.person.id
    out: list[Reason] = []
    if b.paused:
        out.append(reason("campaign_paused"))
    if led.changes.persons and led.changes.person_blocked(b.id, [pid]):
        out.append(reason("person_blocked"))
    sched = b.schedule
    t = b.open_tranche()
    if now_ms < sched.starts_at_ms:
        out.append(reason("campaign_not_started"))
    elif now_ms >= b.ends_at_ms:
        out.append(reason("campaign_ended"))
    else:
        minute = (now_ms - _midnight_ms(b, now_ms)) // 60_000
        hours = b.settings.campaign
        o = hours.daily_open_min if c.claim_open_min is None else c.claim_open_min
        close = hours.daily_close_min if c.claim_close_min is None else c.claim_close_min
        if t is None or not t.opens_at_ms <= now_ms < t.closes_at_ms or not o <= minute < close:
            out.append(reason("claim_window_closed"))
    day = t.day if t is not None else sched.local_date(now_ms).isoformat()
    total, today = led.vouchers.claims_counted(b.id, pid, day)
    if (c.person_claims_total and total >= c.person_claims_total) or (
        c.person_claims_per_day and today >= c.person_claims_per_day
    ):
        out.append(reason("person_claim_limit"))
    if req.category is not None and led.vouchers.claimed_in_category(b.id, pid, day, req.category):
        out.append(reason("person_category_limit"))
    p = b.persons.get(pid)
    if b.settings.identity.link_by:
        g = b.group_figures([b.identity.find(pid)], day)
        used = g.used_fen + g.held_fen
    else:
        used = p.used_fen + p.held_fen if p else 0
    if b.settings.limits.person_savings_cap_fen - used < c.voucher_value_fen:
        out.append(reason("person_cap_reached"))
    if t is not None and t.available_fen < c.voucher_value_fen:
        out.append(reason("claims_sold_out"))
    return out


def registering(b: Book, day: str, now_ms: int) -> bool:
    """A lottery's registration period: from claim_open, lottery_register_s long, on a
    day whose draw was committed before its open (else claims are first come)."""
    if b.settings.claims.allocation != "lottery" or not windowed(b, day):
        return False
    return now_ms < window_ends_ms(b, day) and b.draws[day].seed is None


def _register(
    led: Ledger,
    b: Book,
    req: ClaimRequest,
    day: str,
    reasons: list[Reason],
    now_ms: int,
    request: tuple[str, str, str],
) -> ClaimOutcome:
    """A registration for the day's draw: the tranche's money and the cap are the draw's
    to check (lijian.core.vouchers.lottery_winners), the person's limits are checked now."""
    reasons = [x for x in reasons if x[0] not in ("claims_sold_out", "person_cap_reached")]
    if reasons:
        return ClaimOutcome(None, reasons)
    c = b.settings.claims
    vid = new_voucher_id(led)
    led.emit(VoucherRegistered(now_ms, b.id, vid, day, req.person.id, c.voucher_value_fen,
                               req.category, window_ends_ms(b, day), *request))  # fmt: skip
    return ClaimOutcome(led.vouchers.by_id[vid], [])


def _midnight_ms(b: Book, now_ms: int) -> int:
    """The local midnight before ``now_ms`` (the claim hours are minutes after it)."""
    return b.schedule.next_midnight_ms(now_ms) - 86_400_000


def decide_claim(
    led: Ledger,
    campaign_id: str,
    req: ClaimRequest,
    stateless: list[Reason],
    now_ms: int,
    client_id: str,
    idempotency_key: str,
    fingerprint: str,
) -> ClaimOutcome:
    """Claim a voucher, or decline with every reason that applies."""
    led.advance(now_ms)
    now_ms = led.now_ms
    b = led.book(campaign_id)
    seen = led.idempotency.get((client_id, idempotency_key))
    if seen is not None:
        v = led.vouchers.by_id.get(seen[1])
        if seen[0] != KeyUse.CLAIM or v is None or v.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with another request by this client"
            )
        return ClaimOutcome(v, [], replayed=True)
    reasons = _dedupe(stateless + _state_reasons(led, b, req, now_ms))
    t = b.open_tranche()
    if t is not None and registering(b, t.day, now_ms):
        return _register(led, b, req, t.day, reasons, now_ms, (client_id, idempotency_key,
                                                              fingerprint))  # fmt: skip
    if reasons or t is None:
        led.sold_out_by(b, t, reasons, "claims_sold_out")
        return ClaimOutcome(None, reasons or [reason("claim_window_closed")])
    c = b.settings.claims
    vid = new_voucher_id(led)
    until = valid_until_ms(b, c.valid_days, now_ms)
    led.emit(VoucherClaimed(now_ms, b.id, vid, t.day, req.person.id, c.voucher_value_fen,
                            req.category, until, client_id, idempotency_key,
                            fingerprint))  # fmt: skip
    if t.available_fen < c.voucher_value_fen and t.sold_out_at_ms is None:
        led.emit(SoldOut(now_ms, b.id, t.day))  # the last whole voucher: sold out at once
    return ClaimOutcome(led.vouchers.by_id[vid], [])
