"""A sharded sequencer's redemptions, voids and quotes through the order registry.

When the sequencer is one shard of several (``--order-registry``), ``install`` makes
the guard its ``claim_step`` (a redemption's claim, inside the sequencer's grouped path
for a frame's redemptions) and replaces three of its served methods (void, quote,
operate) with these. What changes is only the R15 fact that another ledger holds: the
engine and its writer decide as in one process.

- **Redeem**: a repeat of a known Idempotency-Key goes straight to the engine (its
  first answer replays, whatever the registry says now). Otherwise the order is claimed
  for its campaign (``OrderRegistry.claim``); if another campaign holds it, the engine
  declines it with every reason, ``other_government_subsidy`` among them, as one ledger
  would (``Engine.redeem_submit(elsewhere=True)``). Once the writer answered (after its
  commit), a claim that did not end in an active redemption is released.
- **Void** and **expiry**: once committed, the order is free in this ledger and its row
  is released, so the order may draw on another campaign, as in one ledger. Expiries are
  timed events of the writer: the writer's ``on_committed`` hands their entries here.
- **Quote**: reads the registry (no claim) and quotes with the same R15 reason.
- **A new campaign** (``POST /v1/campaigns``, its approval or rejection): the campaign
  is owned in ``shard_campaigns`` before the writer sees the change, so a campaign id
  another node owns is refused (409 ``campaign_exists``, as one ledger refuses an id it
  has) and a campaign is never made in two ledgers. Once answered, a campaign this ledger
  neither has nor has proposed (the proposal refused or rejected) loses its row. These
  changes are rare: one at a time (at most ``CAMPAIGN_WAITING_MAX`` waiting).

The same order's claims and releases are serialised here (one lock per order, at most
``LOCKS_MAX`` orders at once), so a release never deletes a row that a redemption of the
same order, decided meanwhile, relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from lijian.cluster.order_claims import Key, OrderRegistry
from lijian.cluster.wire import Method
from lijian.core import launch
from lijian.core.entries import AnyEntry, HoldReleased
from lijian.core.errors import Conflict
from lijian.core.ledger import Ledger
from lijian.core.order import Order
from lijian.core.settings import SettingsError
from lijian.core.settings_text import settings_from_toml
from lijian.core.status import AmendmentKind, AmendmentStatus
from lijian.engine import Engine
from lijian.http.problems import Problem
from lijian.jsonish import Json
from lijian.outcome import Outcome

log = logging.getLogger("lijian.shard_guard")
LOCKS_MAX = 100_000  # orders being claimed or released at once
CAMPAIGN_WAITING_MAX = 64  # new campaigns' changes waiting for the one before
RETRY_EVERY_S = 1.0  # releases the registry did not take are tried again
RETRY_MAX = 100_000  # releases kept for a retry (beyond: the next start reconciles)


class ShardGuard:
    def __init__(self, engine: Engine, registry: OrderRegistry) -> None:
        self.engine = engine
        self.registry = registry
        self._locks: dict[Key, asyncio.Lock] = {}
        self._users: dict[Key, int] = {}
        self._retry: dict[Key, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._retrier: asyncio.Task[None] | None = None
        self._campaigns = asyncio.Lock()  # new campaigns' changes, one at a time
        self._campaign_waiting = 0

    async def start(self) -> None:
        await self.registry.start()
        self.engine.writer.on_committed = self._committed
        self._retrier = asyncio.ensure_future(self._retry_loop())

    async def close(self) -> None:
        self.engine.writer.on_committed = None
        if self._retrier is not None:
            self._retrier.cancel()
        await self.registry.close()

    @contextlib.asynccontextmanager
    async def _order(self, key: Key) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            if len(self._locks) >= LOCKS_MAX:
                raise Problem(503, "overloaded", "too many orders being decided at once",
                              headers={"Retry-After": "1"})  # fmt: skip
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    def _free(self, key: Key, campaign_id: str) -> bool:
        """The order is not active in ``campaign_id`` in this ledger."""
        led = self.engine.ledger
        rid = led.active_orders.get(key)
        return rid is None or led.redemptions[rid].campaign_id != campaign_id

    async def _release_if_free(self, key: Key, campaign_id: str) -> None:
        if self._free(key, campaign_id):
            try:
                await self.registry.release([(key, campaign_id)])
            except Problem:  # kept for a retry: meanwhile the order stays claimed here
                self._keep(key, campaign_id)

    def _keep(self, key: Key, campaign_id: str) -> None:
        if len(self._retry) < RETRY_MAX:
            self._retry[key] = campaign_id

    # ------------------------------------------------------------ methods
    def needs_claim(self, order: Order, client_id: str, key: str) -> bool:
        """A repeat of a known key, or a campaign this ledger lacks (its decline), is
        decided at once: its answer does not depend on the registry."""
        led = self.engine.ledger
        return (client_id, key) not in led.idempotency and order.campaign_id in led.books

    async def claimed(
        self, order: Order, decide: Callable[[bool], Outcome | asyncio.Future[Outcome]]
    ) -> Outcome:
        """The order claimed for its campaign, then decided (``elsewhere`` if another
        campaign holds it), then the claim released if it did not become active."""
        k = (order.platform, order.order_id)
        async with self._order(k):
            owner = await self.registry.claim(k, order.campaign_id)
            elsewhere = owner != order.campaign_id
            try:
                return await _settled(decide(elsewhere))
            finally:
                if not elsewhere:
                    await self._release_if_free(k, order.campaign_id)

    async def void(self, redemption_id: str) -> Outcome:
        out = await self.engine.void(redemption_id)
        r = self.engine.ledger.redemptions.get(redemption_id)
        if r is not None:
            k = (r.platform, r.order_id)
            async with self._order(k):
                await self._release_if_free(k, r.campaign_id)
        return out

    async def quote(self, order: Order) -> Json:
        owner = await self.registry.owner((order.platform, order.order_id))
        return self.engine.quote(order, owner is not None and owner != order.campaign_id)

    async def operate(self, op: str, campaign_id: str, body: Json, by: str) -> Outcome:
        cid = self._new_campaign(op, campaign_id, body)
        if cid is None:  # a change of a campaign this ledger has: its own rows stand
            return await self.engine.operate(op, campaign_id, body, by)
        if self._campaign_waiting >= CAMPAIGN_WAITING_MAX:
            raise Problem(503, "overloaded", "too many new campaigns being decided at once",
                          headers={"Retry-After": "1"})  # fmt: skip
        self._campaign_waiting += 1
        try:
            async with self._campaigns:
                owner = await self.registry.own_campaign(cid)
                if owner != self.registry.node:
                    where = f"node {owner!r}" if owner else "no room on this node"
                    raise Conflict("campaign_exists",
                                   f"campaign {cid!r} exists already ({where})")  # fmt: skip
                try:
                    return await self.engine.operate(op, campaign_id, body, by)
                finally:
                    if cid not in owned_campaigns(self.engine.ledger):
                        await self._disown(cid)
        finally:
            self._campaign_waiting -= 1

    async def _disown(self, cid: str) -> None:
        try:
            await self.registry.disown_campaign(cid)
        except Problem:  # the row stays (the id reserved here): the next start deletes it
            log.warning("campaign %s: its row in shard_campaigns is left until the next "
                        "start", cid)  # fmt: skip

    def _new_campaign(self, op: str, campaign_id: str, body: Json) -> str | None:
        """The id of the campaign a new campaign's change is about, else None. A file
        that does not parse is left to the engine (its 422)."""
        if op == "propose_campaign":
            text = body.get("settings_toml")
            try:
                return settings_from_toml(text).campaign.id if isinstance(text, str) else None
            except SettingsError:  # the engine names what is wrong with it (422)
                return None
        am_id = body.get("amendment_id")
        if op in ("approve", "reject") and launch.is_new_campaign(
            self.engine.ledger, campaign_id, am_id
        ):
            return campaign_id
        return None

    # ---------------------------------------------------- expiries (writer)
    def _committed(self, entries: list[AnyEntry]) -> None:
        """On the loop, after a commit: the orders its releases freed (voids and
        expiries) lose their rows."""
        led = self.engine.ledger
        freed: list[tuple[Key, str]] = []
        for x in entries:
            if isinstance(x, HoldReleased):
                r = led.redemptions.get(x.redemption_id)
                if r is not None:
                    freed.append(((r.platform, r.order_id), r.campaign_id))
        if freed:
            t = asyncio.ensure_future(self._release_all(freed))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _release_all(self, freed: list[tuple[Key, str]]) -> None:
        for k, cid in freed:
            async with self._order(k):
                await self._release_if_free(k, cid)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(RETRY_EVERY_S)
            if self._retry:
                items, self._retry = list(self._retry.items()), {}
                await self._release_all(items)


class GuardedEngine:
    """The engine as a shard's own HTTP port calls it (the API served next to its
    dashboard): redemptions, voids, quotes and operators' changes go through the guard,
    as the gateways' calls do (``install``), so no port of a shard bypasses the order
    registry. Every other call is the engine's own."""

    def __init__(self, engine: Engine, guard: ShardGuard) -> None:
        self._engine = engine
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def redeem_submit(
        self, order: Order, client_id: str, key: str, fingerprint: str
    ) -> Outcome | asyncio.Future[Outcome]:
        e, guard = self._engine, self._guard
        if not guard.needs_claim(order, client_id, key):
            return e.redeem_submit(order, client_id, key, fingerprint)

        def decide(elsewhere: bool) -> Outcome | asyncio.Future[Outcome]:
            return e.redeem_submit(order, client_id, key, fingerprint, elsewhere)

        return asyncio.ensure_future(guard.claimed(order, decide))

    async def void(self, redemption_id: str) -> Outcome:
        return await self._guard.void(redemption_id)

    async def quote_order(self, order: Order) -> Json:
        return await self._guard.quote(order)

    async def operate(self, op: str, campaign_id: str, body: Json, by: str) -> Outcome:
        return await self._guard.operate(op, campaign_id, body, by)


async def _settled(out: Outcome | asyncio.Future[Outcome]) -> Outcome:
    return out if isinstance(out, Outcome) else await out


def owned_campaigns(led: Ledger) -> list[str]:
    """Every campaign the ledger has, or has proposed (its rows in ``shard_campaigns``)."""
    proposed = [
        a.campaign_id
        for a in led.changes.amendments.values()
        if a.kind == AmendmentKind.CAMPAIGN and a.status == AmendmentStatus.PROPOSED
    ]
    return sorted({*led.books, *proposed})


def install(seq: object, guard: ShardGuard) -> None:
    """Claim before each new redemption (the sequencer's ``claim_step``: its grouped
    path stays), and serve VOID, QUOTE and OPERATE through ``guard`` (the same decoders
    and checks)."""
    from lijian.cluster.sequencer import Sequencer, Served

    assert isinstance(seq, Sequencer)
    seq.claim_step = guard
    for method, run in ((Method.VOID, guard.void), (Method.QUOTE, guard.quote),
                        (Method.OPERATE, guard.operate)):  # fmt: skip
        m = seq.methods[method]
        seq.methods[method] = Served(m.decode, run, m.wire, m.per_link)
