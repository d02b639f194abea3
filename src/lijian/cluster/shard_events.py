"""``GET /v1/admin/events`` through a sharded gateway: every shard's events, one listing.

Each ledger numbers its own events (``evt_<seq>``), so two shards both have an
``evt_0000000000000001``: a listing that passed them on as they are would give a receiver
two events with one id, and it de-duplicates by id. Through a sharded gateway:

- an event's ``id`` names its shard: ``evt_<node><seq, 16 digits>`` (``evt_b0000000000000007``),
  which is unique in the deployment, as one ledger's ids are in one ledger. It is the id
  the shard itself gives the event, in its webhooks and its own listing (a sequencer
  with the order registry names its ``--node``: ``events.model.event_id``); a shard's
  plain ``evt_<seq>`` (a sequencer from before) is named here the same way;
- the listing is every shard's events, merged oldest first by ``occurred_at`` (ties: the
  ``--shard`` order). Within a shard the ledger's order is kept exactly;
- ``next_after`` (a full page) is a cursor holding every shard's position:
  ``evt_a12b7`` (shard ``a`` after its event 12, ``b`` after 7), at most ``SHARDS_MAX``
  parts of a node and at most 16 digits. Given back as ``after``, every shard goes on
  from its own position, so no event is skipped or listed twice, whatever the shards
  committed between the pages. An event's own id is such a cursor naming one shard: the
  shards it does not name start from their first event (at least once, as deliveries are;
  receivers de-duplicate by id).

Each shard is asked for ``limit`` events after its position and the merged page keeps
the first ``limit``: a short page means every shard had no more (``next_after`` null, as
on one ledger). The plain ``evt_<seq>`` of one ledger names no shard: 422.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import re
from collections.abc import Sequence

from lijian.cluster.gateway import RemotePort
from lijian.core.errors import InvalidRequest
from lijian.events.model import ID_PREFIX, event_id, parse_event_id
from lijian.jsonish import Json

CURSOR_PARTS_MAX = 64  # = shards.SHARDS_MAX: one part per shard
_CURSOR = re.compile(r"^evt_((?:[a-z]{1,8}[0-9]{1,16}){1,64})$")
_PART = re.compile(r"([a-z]{1,8})([0-9]{1,16})")
_BAD_AFTER = "an event id or next_after evt_<node>… from an earlier page of this listing"


def shard_event_id(node: str, seq: int) -> str:
    return event_id(seq, node)  # the id the shard's own webhooks deliver


def shard_cursor(positions: Sequence[tuple[str, int]]) -> str:
    """Every shard's position, in ``--shard`` order (the ones still at 0 left out)."""
    return ID_PREFIX + "".join(f"{node}{seq}" for node, seq in positions if seq)


def parse_shard_cursor(text: str, nodes: Sequence[str]) -> dict[str, int]:
    """``after`` back to each shard's position (0: from its first event); 422 if it is
    not a cursor of these shards (a node named twice, or a node no shard has)."""
    positions = dict.fromkeys(nodes, 0)
    if not text:
        return positions
    m = _CURSOR.match(text)
    if m is None:
        raise InvalidRequest(f"after: {_BAD_AFTER}", ("after",))
    seen: set[str] = set()
    for node, digits in _PART.findall(m[1]):
        if node in seen or node not in positions:
            why = "names a shard twice" if node in seen else f"names no shard ({node!r})"
            raise InvalidRequest(f"after: {_BAD_AFTER}; this one {why}", ("after",))
        seen.add(node)
        positions[node] = int(digits)
    return positions


def _when(body: Json) -> dt.datetime:
    at = body.get("occurred_at")  # always there on an event (events.model.EventBody)
    assert isinstance(at, str), "an event has its time"
    return dt.datetime.fromisoformat(at)


async def merged_events(shards: Sequence[tuple[str, RemotePort]], after: str, limit: int) -> Json:
    """One page of every shard's events (module doc); ``shards``: (node, port) in
    ``--shard`` order."""
    assert 1 <= len(shards) <= CURSOR_PARTS_MAX
    nodes = [node for node, _ in shards]
    positions = parse_shard_cursor(after, nodes)

    async def page(node: str, port: RemotePort) -> list[Json]:
        pos = positions[node]
        got = await port.read_events(event_id(pos) if pos else "", limit)
        events = got["events"]
        assert isinstance(events, list) and len(events) <= limit
        return events

    pages = await asyncio.gather(*(page(node, port) for node, port in shards))
    rows = (
        [(_when(body), i, body) for body in events] for i, events in enumerate(pages)
    )  # each in its ledger's order: merge keeps it, whatever the clocks said
    out: list[Json] = []
    for _, i, body in itertools.islice(heapq.merge(*rows, key=lambda r: r[:2]), limit):
        node = nodes[i]
        seq = parse_event_id(str(body["id"]), node)  # a shard names its node already
        assert seq is not None and seq > positions[node], "a shard's events go on from its position"
        positions[node] = seq
        out.append({**body, "id": shard_event_id(node, seq)})
    full = len(out) == limit
    return {"events": out, "next_after": shard_cursor(list(positions.items())) if full else None}
