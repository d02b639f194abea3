"""Event types, the stored event row and the body a receiver gets."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict
from zoneinfo import ZoneInfo

from lijian.core.errors import InvalidRequest
from lijian.core.views import iso

ID_PREFIX = "evt_"
ID_DIGITS = 16  # zero-padded: ids sort as their seq does
_ID = re.compile(r"^evt_(\d{1,16})$")


class EventType(StrEnum):
    TRANCHE_THRESHOLD = "tranche.threshold"
    TRANCHE_SOLD_OUT = "tranche.sold_out"
    TRANCHE_RESTOCKED = "tranche.restocked"
    BUDGET_THRESHOLD = "budget.threshold"
    DECLINES_SPIKE = "declines.spike"
    AUDIT_FAILED = "audit.failed"
    IDENTITY_GROUP_FULL = "identity.group_full"
    # Running a live campaign (lijian.events.changes): one per operator change.
    CAMPAIGN_PAUSED = "campaign.paused"
    CAMPAIGN_RESUMED = "campaign.resumed"
    AMENDMENT_PROPOSED = "amendment.proposed"
    AMENDMENT_APPLIED = "amendment.applied"
    AMENDMENT_REJECTED = "amendment.rejected"
    BLOCK_ADDED = "block.added"
    BLOCK_LIFTED = "block.lifted"
    RISK_FLAGGED = "risk.flagged"  # a pattern of fraud seen (docs/RISK.md)
    VOUCHERS_SOLD_OUT = "vouchers.sold_out"  # [claims]: the day's vouchers are all claimed
    VOUCHERS_THRESHOLD = "vouchers.threshold"  # [claims]: the day's vouchers left fell low


ALL_TYPES = tuple(t.value for t in EventType)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event not yet committed (its seq is given by the store in the commit)."""

    campaign_id: str
    type: EventType
    occurred_ms: int
    data: Mapping[str, object]  # JSON: the change, flag or figures the event is about

    def data_json(self) -> str:
        return json.dumps(self.data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class EventBody(TypedDict):
    """What a receiver gets (docs/API.md)."""

    id: str
    type: str
    campaign_id: str
    occurred_at: str | None  # as core.views.iso types it; an event's time is always there
    data: object  # NewEvent.data, as stored


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    campaign_id: str
    type: str
    occurred_ms: int
    data_json: str

    @property
    def id(self) -> str:
        return event_id(self.seq)

    def body(self, tz: ZoneInfo, node: str = "") -> EventBody:
        """What a receiver gets (docs/API.md): id, type, campaign_id, occurred_at, data.
        ``node``: a shard's (``event_id``), so its ids are unique across the shards."""
        return {
            "id": event_id(self.seq, node),
            "type": self.type,
            "campaign_id": self.campaign_id,
            "occurred_at": iso(self.occurred_ms, tz),
            "data": json.loads(self.data_json),
        }


def event_id(seq: int, node: str = "") -> str:
    """An event's id: ``evt_<seq>`` of one ledger; a shard's names its node first
    (``evt_b0000000000000007``, docs/SCALE-OUT.md), so two shards' ids never collide in
    a receiver that takes both shards' webhooks, and they are the ids a sharded gateway's
    listing shows (cluster/shard_events.py)."""
    return f"{ID_PREFIX}{node}{seq:0{ID_DIGITS}d}"


def parse_event_id(text: str, node: str = "") -> int | None:
    """``evt_…`` back to its seq; None if it is not one of ours. With ``node`` (a
    shard's), its own ``evt_<node><seq>`` is one of ours as well as the plain form."""
    m = _ID.match(text)
    if m is None and node and text.startswith(ID_PREFIX + node):
        m = _ID.match(ID_PREFIX + text[len(ID_PREFIX) + len(node) :])
    return int(m[1]) if m else None


def after_seq(after: str, node: str = "") -> int:
    """``GET /v1/admin/events``'s ``after`` on one ledger: its seq ("": from the first
    event); 422 if it is not one of this ledger's ids (``node``: a shard's, whose ids
    name it)."""
    seq = parse_event_id(after, node) if after else 0
    if seq is None:
        raise InvalidRequest(f"after: {AFTER_MESSAGE}", ("after",))
    return seq


AFTER_MESSAGE = "an event id evt_… from an earlier page or delivery"
# What ``after`` may be before a deployment reads it: one ledger's id, or a sharded
# gateway's cursor (lijian.cluster.shard_events: a node and a seq per shard, 64 at most).
AFTER_SHAPE = re.compile(r"^evt_(?:[0-9]{1,16}|(?:[a-z]{1,8}[0-9]{1,16}){1,64})$")
