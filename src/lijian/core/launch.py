"""A new campaign over the API: proposed with its settings file, applied by another key.

Like a budget amendment (:mod:`lijian.core.steering`) a new campaign moves money, so it
is *proposed* by one operator key (a ``CampaignProposed`` entry carrying the settings
text) and takes effect only when *another* operator key approves it (``AmendmentApplied``
of that amendment: applying it makes the campaign's book from the text, live and on
replay, so the campaign is served after a restart without any ``--campaign`` file).
Each decision runs on the one writer in arrival order; a raised error means nothing
changed. Until it is applied the campaign does not exist: quotes, redemptions and
status of its id answer as for any unknown campaign.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from lijian.core.changes import Amendment
from lijian.core.entries import AmendmentApplied, AmendmentRejected, CampaignProposed
from lijian.core.errors import (
    CampaignNotFound,
    Conflict,
    InvalidRequest,
    SettingsInvalid,
)
from lijian.core.ledger import Ledger
from lijian.core.settings import SettingsError
from lijian.core.settings_text import settings_from_toml
from lijian.core.status import AmendmentKind
from lijian.core.steering import (
    REASON_MAX_CHARS,
    _room,
    check_four_eyes,
    check_text,
    pending_amendment,
)


def propose_campaign(led: Ledger, text: object, by: str, reason: object, now_ms: int) -> Amendment:
    """A new campaign from its settings file, waiting for a second operator's approval."""
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    if not isinstance(text, str):
        raise InvalidRequest("the body is a campaign settings file (TOML)", ("body",))
    try:
        s = settings_from_toml(text)
    except SettingsError as exc:
        raise SettingsInvalid([(p.path, p.message) for p in exc.problems]) from None
    _room(led)
    led.advance(now_ms)
    cid = s.campaign.id
    _not_taken(led, cid)
    am_id = led.changes.next_amendment_id()
    ch_id = led.changes.next_change_id()
    led.emit(CampaignProposed(led.now_ms, cid, am_id, ch_id, by, reason, text))
    return led.changes.amendments[am_id]


def _not_taken(led: Ledger, campaign_id: str) -> None:
    if campaign_id in led.books:
        raise Conflict("campaign_exists", f"campaign {campaign_id!r} exists already")
    pending = led.changes.proposed_campaign(campaign_id)
    if pending is not None:
        raise Conflict("campaign_exists", f"campaign {campaign_id!r} is proposed ({pending.id})")


def is_new_campaign(led: Ledger, campaign_id: str, am_id: object) -> bool:
    """Whether ``am_id`` is the proposal of new campaign ``campaign_id`` (its approval
    and rejection are decided here, not by steering: there is no book yet)."""
    a = led.changes.amendments.get(am_id) if isinstance(am_id, str) else None
    return a is not None and a.kind == AmendmentKind.CAMPAIGN and a.campaign_id == campaign_id


def approve_campaign(
    led: Ledger, campaign_id: str, am_id: object, by: str, reason: object, now_ms: int
) -> Amendment:
    """Create the proposed campaign now, if another key proposed it."""
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    a = pending_amendment(led, campaign_id, am_id, AmendmentKind.CAMPAIGN)
    check_four_eyes(a, by)
    if campaign_id in led.books:  # a start with a --campaign file of this id since
        raise Conflict("campaign_exists", f"campaign {campaign_id!r} exists already")
    ch_id = led.changes.next_change_id()
    led.emit(AmendmentApplied(led.now_ms, campaign_id, a.id, ch_id, by, reason, []))
    assert campaign_id in led.books
    # Its schedule from now on, in the same commit: a day whose window is open now is
    # released before anyone is answered (earlier days open and close in time order).
    led.advance(led.now_ms)
    return a


def reject_campaign(
    led: Ledger, campaign_id: str, am_id: object, by: str, reason: object, now_ms: int
) -> Amendment:
    reason = check_text(reason, "reason", REASON_MAX_CHARS)
    _room(led)
    led.advance(now_ms)
    a = pending_amendment(led, campaign_id, am_id, AmendmentKind.CAMPAIGN)
    ch_id = led.changes.next_change_id()
    led.emit(AmendmentRejected(led.now_ms, campaign_id, a.id, ch_id, by, reason))
    return led.changes.amendments[a.id]


def campaign_tz(led: Ledger, campaign_id: str) -> ZoneInfo:
    """The time zone a campaign's changes are shown in: its book's, or (proposed or
    rejected, no book) its settings'. An id nobody proposed: ``CampaignNotFound``."""
    b = led.books.get(campaign_id)
    if b is not None:
        return b.schedule.tz
    for a in led.changes.amendments.values():
        if a.kind == AmendmentKind.CAMPAIGN and a.campaign_id == campaign_id:
            assert a.settings_toml is not None
            return settings_from_toml(a.settings_toml).tz
    raise CampaignNotFound(f"unknown campaign {campaign_id!r}")
