"""The order registry (cluster/order_claims.py) on PostgreSQL: campaigns owned once,
claims won once, releases only of the campaign's own row, and a start's reconciliation
with its ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from lijian.cluster.order_claims import OrderRegistry, ShardConflict
from tests.http.harness import _drop_pg_schema, _new_pg_schema


@pytest.fixture
def url() -> Iterator[str]:
    schema, url = _new_pg_schema()
    try:
        yield url
    finally:
        _drop_pg_schema(schema)


def rows(url: str) -> set[tuple[str, str, str, str]]:
    with psycopg.connect(url, autocommit=True) as c:
        return {tuple(r) for r in c.execute("SELECT * FROM order_claims").fetchall()}  # type: ignore[misc]


def test_a_campaign_has_one_owner(url: str) -> None:
    OrderRegistry(url, "a").register(["chengdu", "mianyang"])
    OrderRegistry(url, "a").register(["chengdu"])  # the same node again (a restart): fine
    with pytest.raises(ShardConflict, match=r"campaigns owned by another sequencer: chengdu "
                                            r"\(node 'a'\)"):  # fmt: skip
        OrderRegistry(url, "b").register(["deyang", "chengdu"])
    OrderRegistry(url, "b").register(["deyang"])  # refused as a whole: deyang was not taken
    with psycopg.connect(url, autocommit=True) as c:
        owners = dict(c.execute("SELECT campaign_id, node FROM shard_campaigns").fetchall())
    assert owners == {"chengdu": "a", "mianyang": "a", "deyang": "b"}


def test_claims_race_and_one_campaign_wins(url: str) -> None:
    a, b = OrderRegistry(url, "a"), OrderRegistry(url, "b")
    a.register(["A"])
    b.register(["B"])
    orders = [("jd", f"o-{i}") for i in range(300)]

    async def main() -> tuple[list[str], list[str]]:
        await a.start()
        await b.start()
        try:
            fa = [a.claim(k, "A") for k in orders]
            fb = [b.claim(k, "B") for k in orders]
            return list(await asyncio.gather(*fa)), list(await asyncio.gather(*fb))
        finally:
            await a.close()
            await b.close()

    got_a, got_b = asyncio.run(main())
    assert got_a == got_b  # both see the one winner of each order
    stored = {(p, o): cid for p, o, cid, _ in rows(url)}
    assert [stored[k] for k in orders] == got_a
    assert a.round_trips + b.round_trips < len(orders)  # batched: not one per claim


def test_a_release_deletes_only_its_campaigns_row(url: str) -> None:
    a = OrderRegistry(url, "a")
    a.register(["A"])

    async def main() -> None:
        await a.start()
        try:
            assert await a.claim(("jd", "o-1"), "A") == "A"
            await a.release([(("jd", "o-1"), "B")])  # not B's: kept
            assert await a.owner(("jd", "o-1")) == "A"
            await a.release([(("jd", "o-1"), "A")])
            assert await a.owner(("jd", "o-1")) is None
        finally:
            await a.close()

    asyncio.run(main())


def test_a_start_reconciles_its_rows_with_its_ledger(url: str) -> None:
    """A crash between a claim and the hold's commit leaves a row without a hold; one
    between a void's commit and the release leaves a row of a free order; a row lost
    (a release whose commit then failed) leaves an active order without one. The next
    start makes the node's rows what its ledger says; other nodes' rows stay."""
    a, b = OrderRegistry(url, "a"), OrderRegistry(url, "b")
    a.register(["A", "A2"])
    b.register(["B"])
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "INSERT INTO order_claims VALUES ('jd', 'crashed', 'A', 'a'), ('jd', 'voided', 'A',"
            " 'a'), ('jd', 'held', 'A', 'a'), ('jd', 'moved', 'A', 'a'), ('jd', 'theirs', 'B', 'b')"
        )
    active = {("jd", "held"): "A", ("jd", "moved"): "A2", ("vip", "lost"): "A"}
    deleted, added = a.reconcile(active)
    assert (deleted, added) == (3, 2)
    assert rows(url) == {
        ("jd", "held", "A", "a"),
        ("jd", "moved", "A2", "a"),
        ("vip", "lost", "A", "a"),
        ("jd", "theirs", "B", "b"),
    }
    assert a.reconcile(active) == (0, 0)  # nothing left to mend


def test_claims_in_opposite_orders_never_deadlock(url: str) -> None:
    """Two sequencers claiming the same orders in opposite orders, batch after batch:
    each batch takes its rows' locks in one order (the key's), so PostgreSQL never has to
    break a deadlock by failing one of them (which would be a 503 for the redemption)."""
    a, b = OrderRegistry(url, "a"), OrderRegistry(url, "b")
    a.register(["A"])
    b.register(["B"])

    async def main() -> list[tuple[str, str]]:
        await a.start()
        await b.start()
        try:
            winners = []
            for round_ in range(20):
                orders = [("jd", f"r{round_}-{i:03}") for i in range(200)]
                fa = [a.claim(k, "A") for k in orders]
                fb = [b.claim(k, "B") for k in reversed(orders)]
                got_a = await asyncio.gather(*fa)
                got_b = await asyncio.gather(*fb)
                assert got_a == list(reversed(got_b))
                winners += list(zip(got_a, got_b, strict=True))
            return winners
        finally:
            await a.close()
            await b.close()

    winners = asyncio.run(main())
    assert len(winners) == 20 * 200
    stored = {(p, o): cid for p, o, cid, _ in rows(url)}
    assert len(stored) == 20 * 200 and set(stored.values()) <= {"A", "B"}


def test_a_campaign_created_over_the_api_is_owned_once(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``own_campaign``: the first node to ask owns the id (the other is told who does);
    ``disown_campaign`` deletes only its own row; a node is bounded in campaigns."""
    from lijian.cluster import order_claims

    a, b = OrderRegistry(url, "a"), OrderRegistry(url, "b")
    a.register(["chengdu"])

    async def main() -> list[str | None]:
        await a.start()
        await b.start()
        try:
            got = [await a.own_campaign("wave-2"), await b.own_campaign("wave-2"),
                   await b.own_campaign("chengdu"), await a.own_campaign("wave-2")]  # fmt: skip
            await b.disown_campaign("wave-2")  # not b's: stays a's
            got.append(await b.own_campaign("wave-2"))
            await a.disown_campaign("wave-2")
            got.append(await b.own_campaign("wave-2"))  # free again: b's now
            monkeypatch.setattr(order_claims, "CAMPAIGNS_PER_NODE_MAX", 2)
            got.append(await b.own_campaign("wave-3"))  # b has wave-2 only: room for one
            got.append(await b.own_campaign("wave-4"))  # full: nobody owns it
            return got
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(main()) == ["a", "a", "a", "a", "a", "b", "b", None]
