"""The order registry of sharded sequencers: R15 across ledgers (docs/SCALE-OUT.md).

Each sharded sequencer owns a set of campaigns in a ledger of its own. One order
(platform, order_id) may draw on one campaign only (R15): in one ledger that is
``LedgerState.active_orders``; across ledgers it is this table, in a PostgreSQL database
every sharded sequencer is given (``lijian sequencer --order-registry``):

- ``shard_campaigns(campaign_id → node)``: which sequencer (its ``--node``) owns a
  campaign. Written by the sequencer itself at start, before it serves; a campaign
  another node already owns refuses the start (``ShardConflict``, one line, exit 3), so
  a campaign is never split between two ledgers. A campaign created over the API is
  owned before its proposal is committed, and the proposal of a campaign another node
  owns is refused (``shard_guard``); a refused or rejected proposal's row is deleted.
  Gateways learn the owners from each sequencer's hello, never from a guess of their own.
- ``order_claims((platform, order_id) → campaign_id, node)``: the campaign an order
  draws on while it holds or has captured a redemption there (what ``active_orders``
  says in one ledger). A claim is ``INSERT … ON CONFLICT DO NOTHING`` then a read of the
  row: whoever inserted first owns it; the others see its campaign.

The invariant: every order active in any shard's ledger has its row here, naming that
campaign. So an order can never draw on two campaigns: a sequencer claims the row
*before* its writer may hold, and deletes it only *after* a commit left the order not
active (a decline, a void, an expiry), conditionally on the campaign. A crash between
the two leaves a row without a hold: conservative (another campaign declines the order
meanwhile), and the owner's next start reconciles its rows with its ledger before it
serves (``reconcile``). Rows are written only by the campaign's own sequencer.

Limits: every statement runs under ``STATEMENT_TIMEOUT_MS`` on a connection made within
``CONNECT_TIMEOUT_S``; a batch carries at most ``BATCH_MAX`` claims (one round trip for
all the claims that arrived in one loop turn); at most ``WAITING_MAX`` claims wait. A
registry that does not answer is a 503 ``sequencer_unavailable`` for the redemption (it
did not run: a retry with its key is safe), never a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from lijian.http.problems import Problem

log = logging.getLogger("lijian.order_claims")

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5_000
BATCH_MAX = 1_000  # claims (or releases) in one round trip
WAITING_MAX = 100_000  # claims waiting for a round trip (a gateway's in-flight bound)
RECONCILE_PAGE = 10_000  # rows read or written per statement at start
NODE_RE = re.compile(r"[a-z]{1,8}")  # a shard's node: part of its redemption ids
CAMPAIGNS_PER_NODE_MAX = 1_000

Key = tuple[str, str]  # (platform, order_id)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shard_campaigns (
  campaign_id text PRIMARY KEY,
  node text NOT NULL
);
CREATE TABLE IF NOT EXISTS order_claims (
  platform text NOT NULL,
  order_id text NOT NULL,
  campaign_id text NOT NULL,
  node text NOT NULL,
  PRIMARY KEY (platform, order_id)
);
CREATE INDEX IF NOT EXISTS order_claims_node ON order_claims (node, platform, order_id);
"""
_SCHEMA_LOCK = 0x6C696A69616E  # pg_advisory_xact_lock: two shards creating it at once

# Rows are inserted in key order (ORDER BY): two sequencers' batches holding some of the
# same orders in other orders then take their locks in one order and cannot deadlock,
# where PostgreSQL would break the cycle by failing one batch (a 503 for all of it).
_CLAIM = """
INSERT INTO order_claims (platform, order_id, campaign_id, node)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS k(p, o, c, n)
ORDER BY p, o
ON CONFLICT DO NOTHING
"""
# A batch's claims in one statement (one round trip): the rows it inserted, and the rows
# that were there. A row whose insert by another sequencer made ours conflict but was
# committed after this statement's snapshot is in neither: that claim is sent again.
_CLAIM_ONCE = """
WITH k AS (
  SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(platform, order_id, campaign_id)
), ins AS (
  INSERT INTO order_claims (platform, order_id, campaign_id, node)
  SELECT platform, order_id, campaign_id, %s FROM k ORDER BY platform, order_id
  ON CONFLICT DO NOTHING RETURNING platform, order_id, campaign_id
)
SELECT platform, order_id, campaign_id FROM ins
UNION ALL
SELECT c.platform, c.order_id, c.campaign_id FROM order_claims c
JOIN k ON c.platform = k.platform AND c.order_id = k.order_id
"""
_OWNERS = """
SELECT c.platform, c.order_id, c.campaign_id FROM order_claims c
JOIN unnest(%s::text[], %s::text[]) AS k(platform, order_id)
  ON c.platform = k.platform AND c.order_id = k.order_id
"""
_RELEASE = """
DELETE FROM order_claims c USING unnest(%s::text[], %s::text[], %s::text[])
  AS k(platform, order_id, campaign_id)
WHERE c.platform = k.platform AND c.order_id = k.order_id AND c.campaign_id = k.campaign_id
"""

# At most CAMPAIGNS_PER_NODE_MAX rows per node (the count and the insert in one statement).
_OWN_CAMPAIGN = """
INSERT INTO shard_campaigns (campaign_id, node)
SELECT %s, %s WHERE (SELECT count(*) FROM shard_campaigns WHERE node = %s) < %s
ON CONFLICT DO NOTHING
"""

CAMPAIGN_UNAVAILABLE = Problem(
    503,
    "sequencer_unavailable",
    "the order registry does not answer: the campaign was not changed, send it again",
    headers={"Retry-After": "1"},
)
UNAVAILABLE = Problem(
    503,
    "sequencer_unavailable",
    "the order registry does not answer: the redemption did not run, send it again",
    headers={"Retry-After": "1"},
)


class ShardConflict(Exception):
    """A campaign this sequencer would serve is owned by another node."""


def check_node(node: str) -> str:
    if not NODE_RE.fullmatch(node):
        raise ValueError(f"--node must be 1-8 letters a-z, got {node!r}")
    return node


@dataclass(slots=True)
class _Claim:
    key: Key
    campaign_id: str
    fut: asyncio.Future[str]


def _options(url: str) -> str:
    """libpq ``options``: a statement timeout, plus the URL's own (a search_path), which
    libpq would otherwise replace."""
    own = str(psycopg.conninfo.conninfo_to_dict(url).get("options") or "")
    return f"{own} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()


class OrderRegistry:
    """This sequencer's side of the registry (one connection, batched round trips)."""

    def __init__(self, url: str, node: str) -> None:
        self.url = url
        self.node = check_node(node)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._claims: list[_Claim] = []
        # Releases waiting for the next round trip: (key, campaign), and their futures.
        self._releases: list[tuple[Key, str, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.round_trips = 0

    # ------------------------------------------------------------- start
    def register(self, campaign_ids: Iterable[str]) -> None:
        """Create the tables if need be and own ``campaign_ids`` (before serving, sync):
        ``ShardConflict`` if another node owns one of them. This node's other rows stay:
        a start on the wrong ledger must not free another ledger's campaigns."""
        ids = list(campaign_ids)
        if len(ids) > CAMPAIGNS_PER_NODE_MAX:
            raise ShardConflict(f"at most {CAMPAIGNS_PER_NODE_MAX} campaigns per sequencer")
        with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S,
                             options=_options(self.url)) as c, c.transaction():  # fmt: skip
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            c.execute(
                "INSERT INTO shard_campaigns SELECT unnest(%s::text[]), %s ON CONFLICT DO NOTHING",
                (ids, self.node),
            )
            rows = c.execute(
                "SELECT campaign_id, node FROM shard_campaigns WHERE campaign_id = ANY(%s)",
                (ids,),
            ).fetchall()
            taken = sorted(f"{cid} (node {n!r})" for cid, n in rows if n != self.node)
            if taken:
                raise ShardConflict(
                    f"node {self.node!r}: campaigns owned by another sequencer: " + ", ".join(taken)
                )

    def reconcile(self, active: dict[Key, str]) -> tuple[int, int]:
        """Make this node's rows what its ledger says (before serving, sync): rows of
        orders no longer active here are deleted (a crash between a claim and its hold,
        or between a void's commit and its release); active orders without a row get
        one. Returns (deleted, added). An active order whose row names another node's
        campaign is logged as an error: it drew on two campaigns (never by this code)."""
        deleted = added = 0
        with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True,
                             options=_options(self.url)) as c:  # fmt: skip
            after = ("", "")
            while True:
                rows = c.execute(
                    "SELECT platform, order_id, campaign_id FROM order_claims WHERE node = %s"
                    " AND (platform, order_id) > (%s, %s) ORDER BY platform, order_id LIMIT %s",
                    (self.node, *after, RECONCILE_PAGE),
                ).fetchall()
                if not rows:
                    break
                stale = [(p, o, cid) for p, o, cid in rows if active.get((p, o)) != cid]
                if stale:
                    ps, os_, cs = (list(x) for x in zip(*stale, strict=True))
                    cur = c.execute(_RELEASE, (ps, os_, cs))
                    deleted += cur.rowcount
                after = (rows[-1][0], rows[-1][1])
            items = list(active.items())
            for i in range(0, len(items), RECONCILE_PAGE):
                page = items[i : i + RECONCILE_PAGE]
                ps = [k[0] for k, _ in page]
                os_ = [k[1] for k, _ in page]
                cs = [cid for _, cid in page]
                cur = c.execute(_CLAIM, (ps, os_, cs, [self.node] * len(page)))
                added += max(cur.rowcount, 0)
                for p, o, cid in c.execute(_OWNERS, (ps, os_)).fetchall():
                    if active[(p, o)] != cid:
                        log.error("order %s/%s is active in campaign %s here and claimed by "
                                  "campaign %s", p, o, active[(p, o)], cid)  # fmt: skip
        return deleted, added

    # ------------------------------------------------------------ serving
    async def start(self) -> None:
        """Before the gateways' listener: the connection made now (its first use would
        otherwise import and connect on the loop while calls wait), and the claims' task.
        A registry that does not answer yet is tried again at the first claim."""
        self._task = asyncio.ensure_future(self._run())
        try:
            await self._connection()
        except psycopg.Error as exc:
            await self._lost(exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for c in self._claims:
            if not c.fut.done():
                c.fut.set_exception(UNAVAILABLE)
        for _, _, fut in self._releases:
            if not fut.done():
                fut.set_exception(UNAVAILABLE)
        if self._conn is not None:
            await self._conn.close()

    def claim(self, key: Key, campaign_id: str) -> asyncio.Future[str]:
        """The campaign the order draws on: ``campaign_id`` if it was free (now claimed),
        else the campaign that holds it. Resolved by the next round trip."""
        if len(self._claims) >= WAITING_MAX:
            raise Problem(503, "overloaded", "too many orders waiting for the registry",
                          headers={"Retry-After": "1"})  # fmt: skip
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._claims.append(_Claim(key, campaign_id, fut))
        self._wake.set()
        return fut

    async def owner(self, key: Key) -> str | None:
        """The campaign an order draws on, or None (a quote's read; no claim)."""
        try:
            conn = await self._connection()
            cur = await conn.execute(_OWNERS, ([key[0]], [key[1]]))
            row = await cur.fetchone()
        except psycopg.Error as exc:
            await self._lost(exc)
            raise UNAVAILABLE from None
        return None if row is None else str(row[2])

    async def own_campaign(self, campaign_id: str) -> str | None:
        """The node owning ``campaign_id``: this one if it was free (now owned), None if
        this node owns ``CAMPAIGNS_PER_NODE_MAX`` already (a campaign created over the
        API, before its proposal and its approval are committed)."""
        try:
            conn = await self._connection()
            await conn.execute(_OWN_CAMPAIGN, (campaign_id, self.node, self.node,
                                               CAMPAIGNS_PER_NODE_MAX))  # fmt: skip
            cur = await conn.execute(
                "SELECT node FROM shard_campaigns WHERE campaign_id = %s", (campaign_id,)
            )
            row = await cur.fetchone()
        except psycopg.Error as exc:
            await self._lost(exc)
            raise CAMPAIGN_UNAVAILABLE from None
        return None if row is None else str(row[0])

    async def disown_campaign(self, campaign_id: str) -> None:
        """Delete this node's row of a campaign its ledger neither has nor has proposed
        (a proposal refused or rejected)."""
        try:
            conn = await self._connection()
            await conn.execute(
                "DELETE FROM shard_campaigns WHERE campaign_id = %s AND node = %s",
                (campaign_id, self.node),
            )
        except psycopg.Error as exc:
            await self._lost(exc)
            raise CAMPAIGN_UNAVAILABLE from None

    async def release(self, items: list[tuple[Key, str]]) -> None:
        """Delete the rows of orders no longer active in their campaign (each only if it
        still names that campaign), with the releases that arrive meanwhile (one round
        trip). Raises UNAVAILABLE if the registry does not answer."""
        if len(self._releases) + len(items) > WAITING_MAX:
            raise UNAVAILABLE
        loop = asyncio.get_running_loop()
        futs = []
        for key, campaign_id in items:
            fut: asyncio.Future[None] = loop.create_future()
            self._releases.append((key, campaign_id, fut))
            futs.append(fut)
        self._wake.set()
        await asyncio.gather(*futs)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url,
                connect_timeout=CONNECT_TIMEOUT_S,
                autocommit=True,
                options=_options(self.url),
            )
        return self._conn

    async def _lost(self, exc: BaseException) -> None:
        log.warning("order registry: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _run(self) -> None:
        """One round trip for the claims that arrived meanwhile (at most BATCH_MAX), one
        for the releases."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._releases:
                done, self._releases = self._releases[:BATCH_MAX], self._releases[BATCH_MAX:]
                args = ([k[0] for k, _, _ in done], [k[1] for k, _, _ in done],
                        [c for _, c, _ in done])  # fmt: skip
                error: BaseException | None = None
                try:
                    conn = await self._connection()
                    await conn.execute(_RELEASE, args)
                    self.round_trips += 1
                except psycopg.Error as exc:
                    await self._lost(exc)
                    error = UNAVAILABLE
                for _, _, fut in done:
                    if not fut.done():
                        fut.set_result(None) if error is None else fut.set_exception(error)
            while self._claims:
                batch, self._claims = self._claims[:BATCH_MAX], self._claims[BATCH_MAX:]
                try:
                    owners = await self._claim_batch(batch)
                except psycopg.Error as exc:
                    await self._lost(exc)
                    for c in batch:
                        if not c.fut.done():
                            c.fut.set_exception(UNAVAILABLE)
                    continue
                for c in batch:
                    if c.fut.done():
                        continue
                    owner = owners.get(c.key)
                    if owner is None:  # a row this statement could not see: ask again
                        self._claims.append(c)
                    else:
                        c.fut.set_result(owner)

    async def _claim_batch(self, batch: list[_Claim]) -> dict[Key, str]:
        ps = [c.key[0] for c in batch]
        os_ = [c.key[1] for c in batch]
        conn = await self._connection()
        cur = await conn.execute(_CLAIM_ONCE, (ps, os_, [c.campaign_id for c in batch], self.node))
        rows = await cur.fetchall()
        self.round_trips += 1
        return {(str(p), str(o)): str(cid) for p, o, cid in rows}
