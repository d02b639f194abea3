"""The decisions of a live campaign's operators: pause, resume, amend, block, lift.

Each runs on the one writer in arrival order, like a hold (the engine queues it as a
command), checks the request against the state *now* and emits one entry, applied at once
by :meth:`LedgerState.apply` (:mod:`lijian.core.changes`). A raised error means nothing
changed. Timed events due before the change are applied first (``advance``), so a pause
at t follows every release, expiry and close due at or before t.

Four eyes: an amendment moves money, so it is proposed by one operator key and applied
only when another approves it; pause, resume, blocks and lifts act at once (an emergency
stop must not wait for a second person).
"""

from __future__ import annotations

import datetime as dt
import itertools
import unicodedata

from lijian.core.changes import Amendment, Block, Change, free_fen
from lijian.core.entries import (
    AmendmentApplied,
    AmendmentProposed,
    AmendmentRejected,
    BlockAdded,
    BlockLifted,
    CampaignPaused,
    CampaignResumed,
)
from lijian.core.errors import (
    AmendmentNotFound,
    BlockNotFound,
    Conflict,
    Forbidden,
    InvalidRequest,
)
from lijian.core.ledger import Ledger
from lijian.core.schedule import split_budget_fen
from lijian.core.status import AmendmentKind, AmendmentStatus, BlockKind, TrancheState

REASON_MAX_CHARS = 500
ID_MAX_CHARS = 128  # person ids, platforms and SKUs named in a block
DELTA_MAX_FEN = 10**15
DAYS_MAX = 1000  # days listed in one budget amendment (a campaign has fewer)
# Changes per ledger: operators act by hand, so this is far beyond a season's needs and
# keeps the lists (answered whole, without pages) and the snapshot bounded.
CHANGES_MAX = 100_000


def _room(led: Ledger) -> None:
    if len(led.changes.log) >= CHANGES_MAX:
        raise Conflict("too_many_changes", f"this ledger holds its limit of {CHANGES_MAX} changes")


def check_text(value: object, field: str, max_chars: int) -> str:
    """1..max_chars characters, no control characters, not only blanks."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field} is required (1-{max_chars} characters)", (field,))
    if len(value) > max_chars:
        raise InvalidRequest(f"{field} is longer than {max_chars} characters", (field,))
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidRequest(f"{field} contains control characters", (field,))
    return value


def pause(led: Ledger, campaign_id: str, by: str, reason: object, now_ms: int) -> Change:
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    b = led.book(campaign_id)
    if b.paused:
        raise Conflict("campaign_already_paused", f"campaign {campaign_id!r} is paused already")
    led.emit(CampaignPaused(led.now_ms, b.id, led.changes.next_change_id(), by, reason))
    return led.changes.log[-1]


def resume(led: Ledger, campaign_id: str, by: str, reason: object, now_ms: int) -> Change:
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    b = led.book(campaign_id)
    if not b.paused:
        raise Conflict("campaign_not_paused", f"campaign {campaign_id!r} is not paused")
    led.emit(CampaignResumed(led.now_ms, b.id, led.changes.next_change_id(), by, reason))
    return led.changes.log[-1]


def propose(
    led: Ledger,
    campaign_id: str,
    by: str,
    reason: object,
    kind: object,
    delta_fen: object,
    days: object,
    last_date: object,
    now_ms: int,
) -> Amendment:
    """A budget or end amendment, waiting for a second operator's approval."""
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    b = led.book(campaign_id)
    listed: list[str] | None = None
    end: str | None = None
    delta = 0
    if kind == AmendmentKind.BUDGET:
        am_kind = AmendmentKind.BUDGET
        if isinstance(delta_fen, bool) or not isinstance(delta_fen, int):
            raise InvalidRequest("delta_fen must be an integer number of fen", ("delta_fen",))
        if delta_fen == 0 or abs(delta_fen) > DELTA_MAX_FEN:
            raise InvalidRequest(
                f"delta_fen must be non-zero and at most {DELTA_MAX_FEN} in size", ("delta_fen",)
            )
        delta = delta_fen
        listed = _listed_days(led, campaign_id, days)
    elif kind == AmendmentKind.END:
        am_kind = AmendmentKind.END
        end = _date(last_date, "last_date")
        problem = _end_problem(led, campaign_id, end)
        if problem:
            raise InvalidRequest(problem, ("last_date",))
    else:
        raise InvalidRequest('kind must be "budget" or "end"', ("kind",))
    am_id = led.changes.next_amendment_id()
    cid = led.changes.next_change_id()
    led.emit(
        AmendmentProposed(led.now_ms, b.id, am_id, cid, am_kind, by, reason, delta, listed, end)
    )
    return led.changes.amendments[am_id]


def _date(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a date YYYY-MM-DD", (field,))
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or day.isoformat() != value:
        raise InvalidRequest(f"{field}: {value[:20]!r} is not a date YYYY-MM-DD", (field,))
    return value


def _listed_days(led: Ledger, campaign_id: str, days: object) -> list[str] | None:
    if days == "remaining":
        return None
    if not isinstance(days, list) or not days:
        raise InvalidRequest('days must be "remaining" or a non-empty list of dates', ("days",))
    if len(days) > DAYS_MAX:
        raise InvalidRequest(f"days lists at most {DAYS_MAX} dates", ("days",))
    out = [_date(d, "days") for d in days]
    if any(a >= z for a, z in itertools.pairwise(out)):
        raise InvalidRequest("days must be sorted, each date once", ("days",))
    b = led.book(campaign_id)
    for d in out:
        if d not in b.tranches or not b.serves(d):
            raise InvalidRequest(f"days: {d} is not a day of the campaign", ("days",))
        if b.tranches[d].state == TrancheState.CLOSED:
            raise InvalidRequest(f"days: the window of {d} has closed", ("days",))
    return out


def _end_problem(led: Ledger, campaign_id: str, last_date: str) -> str | None:
    b = led.book(campaign_id)
    if last_date not in b.tranches or not b.serves(last_date):
        return f"last_date {last_date} is not a day of the campaign"
    today = b.schedule.local_date(led.now_ms).isoformat()
    if last_date < today:
        return f"last_date {last_date} is before today ({today})"
    if any(b.tranches[d].state != TrancheState.SCHEDULED for d in b.order_days if d > last_date):
        return f"a day after {last_date} has been released already"
    return None


def pending_amendment(
    led: Ledger, campaign_id: str, am_id: object, kind: AmendmentKind | None = None
) -> Amendment:
    """The proposed amendment ``am_id`` of ``campaign_id`` (of ``kind``, if given): an id
    as the request gave it, so of any type (no amendment has one other than text)."""
    a = led.changes.amendments.get(am_id) if isinstance(am_id, str) else None
    if a is None or a.campaign_id != campaign_id or kind not in (None, a.kind):
        raise AmendmentNotFound(f"unknown amendment {am_id!r} of campaign {campaign_id!r}")
    if a.status != AmendmentStatus.PROPOSED:
        raise Conflict("amendment_not_pending", f"amendment {am_id} is {a.status}")
    return a


def check_four_eyes(a: Amendment, by: str) -> None:
    """A change that moves money takes effect only when another operator key approves it."""
    if by == a.proposed_by:
        raise Forbidden(
            "four_eyes_required", "an amendment is approved by another operator key than its own"
        )


def approve(
    led: Ledger, campaign_id: str, am_id: object, by: str, reason: object, now_ms: int
) -> Amendment:
    """Apply a proposed amendment now, if another key proposed it and it still fits."""
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    b = led.book(campaign_id)
    a = pending_amendment(led, campaign_id, am_id)
    check_four_eyes(a, by)
    if a.kind == AmendmentKind.BUDGET:
        days = a.days if a.days is not None else _remaining_days(led, campaign_id)
        for d in days:
            if not b.serves(d) or b.tranches[d].state == TrancheState.CLOSED:
                raise Conflict("amendment_not_applicable", f"the window of {d} has closed")
        if not days:
            raise Conflict("amendment_not_applicable", "no day of the campaign is left")
        sign = 1 if a.delta_fen > 0 else -1
        amounts = split_budget_fen(abs(a.delta_fen), len(days))  # like tranches = "equal"
        split = [(d, sign * f) for d, f in zip(days, amounts, strict=True)]
        for d, f in split:
            if free_fen(b, d) + f < 0:
                raise Conflict(
                    "amendment_below_committed",
                    f"{d}: a cut of {-f} fen exceeds the {free_fen(b, d)} fen not granted or held",
                )
    else:
        assert a.last_date is not None
        problem = _end_problem(led, campaign_id, a.last_date)
        if problem:
            raise Conflict("amendment_not_applicable", problem)
        split = [(d, free_fen(b, d)) for d in b.order_days if d > a.last_date]
    cid = led.changes.next_change_id()
    led.emit(AmendmentApplied(led.now_ms, b.id, a.id, cid, by, reason, split))
    return a


def _remaining_days(led: Ledger, campaign_id: str) -> list[str]:
    """Today (if its window has not closed) and every later day of the campaign."""
    b = led.book(campaign_id)
    return [d for d in b.order_days if b.tranches[d].state != TrancheState.CLOSED]


def reject(
    led: Ledger, campaign_id: str, am_id: object, by: str, reason: object, now_ms: int
) -> Amendment:
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    b = led.book(campaign_id)
    a = pending_amendment(led, campaign_id, am_id)
    cid = led.changes.next_change_id()
    led.emit(AmendmentRejected(led.now_ms, b.id, a.id, cid, by, reason))
    return led.changes.amendments[a.id]


def add_block(
    led: Ledger,
    campaign_id: str,
    by: str,
    reason: object,
    kind: object,
    person_id: object,
    platform: object,
    sku: object,
    now_ms: int,
) -> Block:
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    b = led.book(campaign_id)
    pid = plat = code = ""
    if kind == BlockKind.PERSON:
        bl_kind = BlockKind.PERSON
        pid = check_text(person_id, "person_id", ID_MAX_CHARS)
    elif kind == BlockKind.SKU:
        bl_kind = BlockKind.SKU
        plat = check_text(platform, "platform", ID_MAX_CHARS)
        code = check_text(sku, "sku", ID_MAX_CHARS)
    else:
        raise InvalidRequest('kind must be "person" or "sku"', ("kind",))
    bl_id = led.changes.next_block_id()
    cid = led.changes.next_change_id()
    led.emit(BlockAdded(led.now_ms, b.id, bl_id, cid, bl_kind, pid, plat, code, by, reason))
    return led.changes.blocks[bl_id]


def lift(
    led: Ledger, campaign_id: str, bl_id: object, by: str, reason: object, now_ms: int
) -> Block:
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    b = led.book(campaign_id)
    bl = led.changes.blocks.get(bl_id) if isinstance(bl_id, str) else None
    if bl is None or bl.campaign_id != campaign_id:
        raise BlockNotFound(f"unknown block {bl_id!r} of campaign {campaign_id!r}")
    if not bl.active:
        raise Conflict("block_not_active", f"block {bl_id} was lifted already")
    led.emit(BlockLifted(led.now_ms, b.id, bl.id, led.changes.next_change_id(), by, reason))
    return bl
