"""The operator events through a sharded gateway (cluster/shard_events.py), on shards that
answer from memory: one listing of every shard's events, ids naming their shard, and a
cursor holding each shard's position, so paging skips and repeats nothing even while
the shards commit more between the pages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lijian.cluster.gateway_views import RemoteViews
from lijian.cluster.shard_events import merged_events, parse_shard_cursor, shard_event_id
from lijian.cluster.wire import Method
from lijian.core.errors import InvalidRequest
from lijian.events.model import after_seq, event_id


class FakeLedger:
    """A shard's events as a sequencer pages them (``events_page``)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, at: str, what: str) -> None:
        seq = len(self.events) + 1
        self.events.append({"id": event_id(seq), "type": "campaign.paused",
                            "campaign_id": what, "occurred_at": at, "data": {}})  # fmt: skip

    async def read_events(self, after: str, limit: int) -> dict[str, Any]:
        rows = self.events[after_seq(after) : after_seq(after) + limit]
        return {"events": rows, "next_after": rows[-1]["id"] if len(rows) == limit else None}


def page(shards: dict[str, FakeLedger], after: str, limit: int) -> dict[str, Any]:
    return asyncio.run(merged_events(list(shards.items()), after, limit))  # type: ignore[arg-type]


def at(minute: int) -> str:
    return f"2025-02-12T10:{minute:02d}:00+08:00"


def test_pages_merge_every_shard_oldest_first_and_skip_nothing() -> None:
    a, b = FakeLedger(), FakeLedger()
    for m in (1, 4, 5):
        a.add(at(m), f"a{m}")
    for m in (2, 3, 9):
        b.add(at(m), f"b{m}")
    shards = {"a": a, "b": b}
    first = page(shards, "", 4)
    assert [e["campaign_id"] for e in first["events"]] == ["a1", "b2", "b3", "a4"]
    assert [e["id"] for e in first["events"]] == [
        "evt_a0000000000000001", "evt_b0000000000000001", "evt_b0000000000000002",
        "evt_a0000000000000002"]  # fmt: skip
    assert first["next_after"] == "evt_a2b2"
    # Meanwhile each shard commits an event older than what the page listed last (b's
    # clock is behind): it is not skipped, each shard goes on from its own position.
    a.add(at(6), "a6")
    b.add(at(0), "b0")
    second = page(shards, first["next_after"], 4)
    assert [e["campaign_id"] for e in second["events"]] == ["a5", "a6", "b9", "b0"]
    assert second["next_after"] == "evt_a4b4"
    last = page(shards, second["next_after"], 4)
    assert last == {"events": [], "next_after": None}
    # A short page is the last: next_after null, as on one ledger.
    whole = page(shards, "", 100)
    assert len(whole["events"]) == 8 and whole["next_after"] is None
    ids = [e["id"] for e in first["events"] + second["events"]]
    assert sorted(ids) == sorted(e["id"] for e in whole["events"])  # no repeat, no gap


def test_an_event_id_is_a_cursor_of_its_shard() -> None:
    a, b = FakeLedger(), FakeLedger()
    a.add(at(1), "a1")
    a.add(at(2), "a2")
    b.add(at(3), "b3")
    got = page({"a": a, "b": b}, shard_event_id("a", 1), 10)
    assert [e["campaign_id"] for e in got["events"]] == ["a2", "b3"]
    assert got["next_after"] is None


@pytest.mark.parametrize(
    "after",
    [
        "evt_0000000000000001",
        "evt_z1",
        "evt_a1a2",
        "evt_a",
        "evt_a12345678901234567",
        "nope",
        "evt_abcdefghi1",
        "evt_A1",
    ],
)
def test_a_cursor_of_other_shards_or_one_ledger_is_refused(after: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_shard_cursor(after, ["a", "b"])
    assert e.value.fields == ("after",)


def test_a_cursor_is_bounded_by_the_shards() -> None:
    nodes = [chr(ord("a") + i // 26) + chr(ord("a") + i % 26) for i in range(64)]
    text = "evt_" + "".join(f"{n}{10**16 - 1}" for n in nodes)
    assert parse_shard_cursor(text, nodes) == dict.fromkeys(nodes, 10**16 - 1)
    with pytest.raises(InvalidRequest):  # a 65th part is past any gateway's shards
        parse_shard_cursor(text + "zz1", [*nodes, "zz"])


class OneLink(RemoteViews):
    """A gateway's link to one sequencer (``RemoteViews``): its hello, its EVENTS calls."""

    def __init__(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        self.sent: list[tuple[object, ...]] = []

    async def _view(self, method: Method, *args: object) -> Any:
        self.sent.append((method, *args))
        return {"events": [], "next_after": None}

    def _link_info(self) -> Any:
        return self.hello


def test_a_gateway_of_one_shard_reads_the_shards_own_ids() -> None:
    """A shard's ids name its node behind a gateway of one ``--shard`` too: such an id
    given back is read as that shard's (as its plain one is); one ledger's gateway
    refuses a node-named id, as ever."""
    shard = OneLink({"node": "b", "order_registry": True})
    for after in ("evt_b0000000000000007", "evt_0000000000000007", "evt_b7"):
        asyncio.run(shard.read_events(after, 5))
    assert shard.sent == [(Method.EVENTS, 7, 5)] * 3
    with pytest.raises(InvalidRequest):
        asyncio.run(shard.read_events("evt_a0000000000000007", 5))
    one = OneLink({"node": "a", "order_registry": False})
    with pytest.raises(InvalidRequest):
        asyncio.run(one.read_events("evt_a0000000000000007", 5))
    asyncio.run(one.read_events("evt_0000000000000007", 5))
    assert one.sent == [(Method.EVENTS, 7, 5)]
