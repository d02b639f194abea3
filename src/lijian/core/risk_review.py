"""The review queue: an operator dismisses a risk flag, or blocks its person or a SKU.

Every review is a ``FlagReviewed`` entry decided by the one writer (an operator command,
lijian.operations), so the queue after a restart is the one acknowledged. A block is the
operators' ordinary block (core/steering.py: a ``BlockAdded`` in the same batch, lifted
the ordinary way); the review names it. A flag is reviewed once: a second review is a
conflict, so two operators acting on one flag at once cannot both succeed.
"""

from __future__ import annotations

from lijian.core import steering
from lijian.core.entries import FlagReviewed, RiskFlagged
from lijian.core.errors import Conflict, FlagNotFound, InvalidRequest
from lijian.core.ledger import Ledger
from lijian.core.risk import FLAGS_PAGE_MAX, flag_view, review_view
from lijian.core.status import BlockKind, ReviewAction
from lijian.core.views import iso


def review(
    led: Ledger, cid: str, by: str, why: object, flag_id: object, action: object,
    person_id: object, sku: object, now_ms: int,
) -> FlagReviewed:  # fmt: skip
    """Decide one review (checks first, then the entries: nothing is half done)."""
    reason = steering.check_text(why, "reason", steering.REASON_MAX_CHARS)
    led.advance(now_ms)
    b = led.book(cid)
    # Every other text is an unknown flag (404), as an unknown block is: no flag id holds
    # anything but "flag-" and digits.
    fid = flag_id if isinstance(flag_id, str) else ""
    f = led.risk.by_id.get(fid)
    if f is None or f.campaign_id != cid:
        raise FlagNotFound(f"unknown flag {fid!r} of campaign {cid!r}")
    if fid in led.risk.reviews:
        done = led.risk.reviews[fid]
        raise Conflict("flag_already_reviewed", f"flag {fid} was reviewed already ({done.action})")
    if action not in tuple(ReviewAction):
        raise InvalidRequest(
            f"action must be one of {', '.join(ReviewAction)}", ("action",)
        )  # fmt: skip
    act = ReviewAction(str(action))
    block_id: str | None = None
    if act is ReviewAction.BLOCK_PERSON:
        pid = _one_named(person_id, f.person_ids, "person_id")
        block_id = steering.add_block(led, cid, by, reason, BlockKind.PERSON, pid, None, None,
                                      now_ms).id  # fmt: skip
    elif act is ReviewAction.BLOCK_SKU:
        platform, code = _sku_named(led, f, sku)
        block_id = steering.add_block(led, cid, by, reason, BlockKind.SKU, None, platform, code,
                                      now_ms).id  # fmt: skip
    led.emit(FlagReviewed(led.now_ms, b.id, fid, act, reason, by, block_id))
    return led.risk.reviews[fid]


def _one_named(value: object, named: list[str], field: str) -> str:
    """The value given, which the flag must name; or the flag's only one."""
    if value is None and len(named) == 1:
        return named[0]
    if value is None:
        raise InvalidRequest(f"{field} is required: the flag names {len(named)}", (field,))
    if value not in named:
        raise InvalidRequest(f"{field} {value!r} is not named by the flag", (field,))
    return str(value)


def _sku_named(led: Ledger, f: RiskFlagged, sku: object) -> tuple[str, str]:
    """(platform, sku) of a SKU in the flag's redemptions."""
    found: dict[str, str] = {}
    for rid in f.redemption_ids:
        r = led.redemptions[rid]
        for code, _, _ in r.lines:
            found.setdefault(code, r.platform)
    code = _one_named(sku, sorted(found), "sku")
    return found[code], code


def queue_view(led: Ledger, cid: str) -> dict[str, object]:
    """The review queue of a campaign: its oldest open flags (at most FLAGS_PAGE_MAX), the
    number open, and the latest reviews (at most FLAGS_PAGE_MAX, newest first)."""
    b = led.book(cid)
    tz = b.settings.tz
    opened = led.risk.open_page(cid, 0, FLAGS_PAGE_MAX)
    reviews = [e for e in reversed(led.risk.reviews.values()) if e.campaign_id == cid]
    return {
        "open_count": len(led.risk.open.get(cid, {})),
        "flags": [{**flag_view(e), "raised_at": iso(e.ts_ms, tz)} for e in opened],
        "reviews": [
            {**review_view(e), "reviewed_at": iso(e.ts_ms, tz)} for e in reviews[:FLAGS_PAGE_MAX]
        ],
    }
