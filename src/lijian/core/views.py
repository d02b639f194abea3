"""JSON-shaped views of ledger state, exactly as ``docs/API.md`` names the fields.

The HTTP layer serialises these dicts as they are, so it stays thin and the simulator,
the CLI and the API all say the same thing. A view only passed on is a
``dict[str, object]``; one read into before it is passed on (today's) is a TypedDict.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict
from zoneinfo import ZoneInfo

from lijian.core.book import OPEN, SCHEDULED, Book, Person
from lijian.core.identity import GROUP_SIZE_MAX
from lijian.core.ledger import Ledger
from lijian.core.redemption import Redemption, Refund
from lijian.core.rules import Reason
from lijian.core.schedule import from_ms
from lijian.core.status import CampaignState, RedemptionStatus
from lijian.core.vouchers import whole_vouchers
from lijian.core.window import draw_view

_ISO_CACHE: dict[tuple[int, str], str] = {}
_ISO_CACHE_MAX = 4_096  # a batch's holds share one expiry time: a tiny cache saves ~7 µs each


def iso(ts_ms: int | None, tz: ZoneInfo) -> str | None:
    """RFC 3339 with the campaign's offset (milliseconds only when there are any)."""
    if ts_ms is None:
        return None
    key = (ts_ms, tz.key)
    text = _ISO_CACHE.get(key)
    if text is None:
        spec = "seconds" if ts_ms % 1000 == 0 else "milliseconds"
        text = from_ms(ts_ms, tz).isoformat(timespec=spec)
        if len(_ISO_CACHE) >= _ISO_CACHE_MAX:
            _ISO_CACHE.clear()
        _ISO_CACHE[key] = text
    return text


def reasons_view(reasons: list[Reason]) -> list[dict[str, str]]:
    return [{"code": c, "message": m} for c, m in reasons]


def declined_view(reasons: list[Reason]) -> dict[str, object]:
    return {"status": "declined", "reasons": reasons_view(reasons), "discount_fen": 0}


def created_view(r: Redemption, tz: ZoneInfo) -> dict[str, object]:
    """The 201 body of a new redemption; also what an idempotent replay returns."""
    where, (payable_fen, discount_fen) = r.where, r.fen  # (packed: core/redemption.py)
    return {
        "id": r.id,
        "status": RedemptionStatus.HELD,
        "campaign_id": where.campaign_id,
        "platform": where.platform,
        "order_id": r.order_id,
        "person_id": r.person_id,
        "payable_fen": payable_fen,
        "discount_fen": discount_fen,
        "pay_fen": payable_fen - discount_fen,
        "capped": where.capped,
        "expires_at": iso(r.expires_at_ms, tz),
        "tranche_date": where.day,
    }


def refund_view(f: Refund, tz: ZoneInfo) -> dict[str, object]:
    return {
        "refund_id": f.refund_id,
        "kind": f.kind,
        "returned_payable_fen": f.returned_payable_fen,
        "card_refund_fen": f.card_refund_fen,
        "clawback_fen": f.clawback_fen,
        "quota_restore_fen": f.quota_restore_fen,
        "quota_restore_at": iso(f.quota_restore_at_ms, tz),
        "created_at": iso(f.ts_ms, tz),
    }


def redemption_view(r: Redemption, tz: ZoneInfo) -> dict[str, object]:
    out = created_view(r, tz)
    refunded = r.refunded  # its refunds' figures, read at once (zeros before the first)
    out.update(
        status=r.status,
        created_at=iso(r.created_ms, tz),
        captured_at=iso(r.captured_ms, tz),
        ended_at=iso(r.ended_ms, tz),
        refunded_payable_fen=refunded.returned_payable_fen,
        card_refunded_fen=refunded.card_refunded_fen,
        clawed_back_fen=refunded.clawed_back_fen,
        refunds=[refund_view(f, tz) for f in refunded.refunds],
    )
    return out


def refund_created_view(r: Redemption, f: Refund, tz: ZoneInfo) -> dict[str, object]:
    """The 201 body of a refund: the redemption as it stood right after this refund."""
    body = refund_view(f, tz)
    red = redemption_view(r, tz)
    status, returned, card, claw, n_refunds = f.after
    red.update(
        status=status,
        refunded_payable_fen=returned,
        card_refunded_fen=card,
        clawed_back_fen=claw,
        refunds=[refund_view(x, tz) for x in r.refunds[:n_refunds]],
    )
    body["redemption"] = red
    return body


def person_view(ledger: Ledger, campaign_id: str, person_id: str) -> dict[str, object]:
    b = ledger.book(campaign_id)
    if not b.settings.identity.link_by:
        return person_body(b, ledger.person(campaign_id, person_id))
    # One person across identities: any member shows the whole group's figures (the
    # running totals at its root), and the group's members (at most MEMBERS_LISTED_MAX).
    members = b.members(person_id)
    group = Person(person_id)
    totals = b.identity.totals(person_id)
    if totals is None:
        group = b.persons.get(person_id) or group
        count_total = group.count_total
    else:
        group.used_fen, group.held_fen = totals.used_fen, totals.held_fen
        count_total = totals.count_total
        for pid in members:
            p = b.persons.get(pid)
            if p is not None and p.restores:
                group.restores = [*(group.restores or ()), *p.restores]
    body = person_body(b, group, count_total)
    body["linked_persons"] = [m for m in members if m != person_id]
    return body


def person_body(b: Book, p: Person, count_total: int | None = None) -> dict[str, object]:
    """A person's quota as the API shows it (the figures may come from a person row; a
    group's count is given, as a group's figures are carried by a made-up ``p``)."""
    person_id = p.person_id
    cap = b.settings.limits.person_savings_cap_fen
    return {
        "person_id": person_id,
        "cap_fen": cap,
        "used_fen": p.used_fen,
        "held_fen": p.held_fen,
        "remaining_fen": max(0, cap - p.used_fen - p.held_fen),
        "pending_restores": [
            {"amount_fen": x.amount_fen, "at": iso(x.at_ms, b.schedule.tz)}
            for x in sorted(p.restores or ())
        ],
        "redemptions_count": p.count_total if count_total is None else count_total,
    }


def campaign_state(b: Book, now_ms: int) -> CampaignState:
    if now_ms >= b.ends_at_ms or b.next_transition >= 2 * len(b.order_days):
        return CampaignState.ENDED
    if b.paused:  # until resumed; the schedule (releases, closes) goes on meanwhile
        return CampaignState.PAUSED
    t = b.tranche_at(now_ms)
    if t is None or t.state == SCHEDULED:
        return CampaignState.SCHEDULED if b.next_transition == 0 else CampaignState.CLOSED_FOR_DAY
    if t.state != OPEN:
        return CampaignState.CLOSED_FOR_DAY
    return CampaignState.SOLD_OUT if t.sold_out_at_ms is not None else CampaignState.OPEN


class TodayView(TypedDict):
    """``today`` of the status and the public feed: the tranche of the local date."""

    date: str
    opens_at: str | None
    closes_at: str | None
    released_fen: int
    held_fen: int
    granted_fen: int
    remaining_fen: int
    sold_out_at: str | None
    vouchers_claimed: NotRequired[int]  # [claims]: whole vouchers
    vouchers_left: NotRequired[int]
    draw: NotRequired[dict[str, object] | None]  # a lottery's draw (status_view)


def today_view(b: Book, now_ms: int) -> TodayView | None:
    tz = b.schedule.tz
    day = b.schedule.local_date(now_ms).isoformat()
    t = b.tranches.get(day)
    if t is None:
        return None
    released = t.released_fen if t.state != SCHEDULED else t.base_fen + t.inflow_pending_fen
    remaining = t.available_fen if t.state == OPEN else (released if t.state == SCHEDULED else 0)
    today: TodayView = {
        "date": t.day,
        "opens_at": iso(t.opens_at_ms, tz),
        "closes_at": iso(t.closes_at_ms, tz),
        "released_fen": released,
        "held_fen": t.held_fen,
        "granted_fen": t.granted_fen,
        "remaining_fen": remaining,
        "sold_out_at": iso(t.sold_out_at_ms, tz),
    }
    if b.settings.claims.on:  # [claims]: whole vouchers
        today["vouchers_claimed"] = t.vouchers_claimed
        today["vouchers_left"] = whole_vouchers(b, remaining)
    return today


def next_release_ms(b: Book, now_ms: int) -> int | None:
    nxt = b.next_open_after(now_ms)
    return nxt.opens_at_ms if nxt else None


FULL_GROUPS_SHOWN = 20  # the most recent groups that declined a member, in the status


def identity_view(b: Book) -> dict[str, object]:
    """``identity`` of the operator's status ([identity] link_by): how many groups
    declined a member for being full (GroupFull), the most recent ones first."""
    full = sorted(b.identity.full.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return {
        "group_size_max": GROUP_SIZE_MAX,
        "groups_full": len(full),
        "recent_full": [
            {"person_key": k, "at": iso(at, b.schedule.tz), "size": size}
            for k, (at, size) in full[:FULL_GROUPS_SHOWN]
        ],
    }


def status_view(ledger: Ledger, campaign_id: str, now_ms: int) -> dict[str, object]:
    b = ledger.book(campaign_id)
    today = today_view(b, now_ms)
    if today is not None and b.settings.claims.allocation == "lottery":
        today["draw"] = lottery_draw_view(ledger, b, today["date"], now_ms)
    return status_body(b, now_ms, today)


def status_body(b: Book, now_ms: int, today: TodayView | None) -> dict[str, object]:
    """The campaign status the API shows (the book's figures may come from the rows),
    with ``today`` as ``today_view`` gave it (and a lottery's draw added)."""
    campaign_id = b.id
    tz = b.schedule.tz
    ts = b.tranches.values()
    return {
        "campaign_id": campaign_id,
        "now": iso(now_ms, tz),
        "state": campaign_state(b, now_ms),
        "budget_fen": b.budget_fen,
        "granted_fen": sum(t.granted_fen for t in ts),
        "held_fen": sum(t.held_fen for t in ts),
        "clawed_back_fen": sum(t.clawed_back_fen for t in ts),
        "today": today,
        "next_release_at": iso(next_release_ms(b, now_ms), tz),
    }


def public_view(ledger: Ledger, campaign_id: str, now_ms: int) -> dict[str, object]:
    """What consumer apps poll: no personal data, no money beyond today's remaining."""
    b = ledger.book(campaign_id)
    today = today_view(b, now_ms)
    return {
        "campaign_id": campaign_id,
        "name": b.settings.campaign.name,
        "state": campaign_state(b, now_ms),
        "today": None if today is None else _public_today(ledger, b, today, now_ms),
        "next_release_at": iso(next_release_ms(b, now_ms), b.schedule.tz),
    }


def _public_today(ledger: Ledger, b: Book, today: TodayView, now_ms: int) -> dict[str, object]:
    out: dict[str, object] = {"date": today["date"], "opens_at": today["opens_at"],
                 "closes_at": today["closes_at"], "remaining_fen": today["remaining_fen"],
                 "sold_out_at": today["sold_out_at"]}  # fmt: skip
    if "vouchers_claimed" in today:  # [claims]
        out["vouchers_claimed"] = today["vouchers_claimed"]
    if "vouchers_left" in today:
        out["vouchers_left"] = today["vouchers_left"]
    draw = lottery_draw_view(ledger, b, today["date"], now_ms)
    if draw is not None:  # only campaigns with an admission window or a lottery have one
        out["draw"] = draw
    return out


def lottery_draw_view(ledger: Ledger, b: Book, day: str, now_ms: int) -> dict[str, object] | None:
    """``today.draw``: the day's commitment, then its seed (lijian.core.window); for a
    lottery of vouchers ([claims] allocation = "lottery") also, once drawn, how many
    registered, won and lost (None before the draw)."""
    draw = draw_view(b, day, now_ms)
    if draw is None or b.settings.claims.allocation != "lottery":
        return draw
    drawn = draw["seed"] is not None  # revealed and drawn in one step of the ledger
    regs, won = ledger.vouchers.drawn.get((b.id, day), (0, 0))
    draw.update(registrations=regs if drawn else None, winners=won if drawn else None,
                lost=regs - won if drawn else None)  # fmt: skip
    return draw
