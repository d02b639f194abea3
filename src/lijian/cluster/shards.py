"""A gateway in front of several sequencers, each owning a set of campaigns (shards).

``ShardedEngine`` is the ``EnginePort`` (and ``SequencerPort``) of a gateway given more
than one ``--shard``: one ``RemoteEngine`` per shard (each with its own failover
addresses), and every call routed to the one sequencer that can answer it as one
process would (docs/SCALE-OUT.md, "Sharded campaigns"):

- by campaign (``/v1/campaigns/{id}/…``, a redemption's or quote's order, a claim, an
  operator's change, a catalogue upload): to the shard whose hello listed the campaign.
  The owners are what the sequencers say (their hellos, or ``Method.CAMPAIGN`` for a
  campaign created since), never a guess: while any shard has not answered its hello, a
  campaign no answered shard owns is a 503, not a 404. Unknown everywhere: the shard
  ``placed_shard`` names for it answers (the 404 or decline one process gives). A new
  campaign's proposal (``POST /v1/campaigns``) is made on that shard, a function of
  the campaign's id and the shards' nodes that every gateway computes alike, which owns
  the campaign in the registry first (``shard_guard``): its approval, naming a campaign
  no shard has yet, goes there too, and once approved every gateway finds it by asking
  the shards.
- by id (a redemption's ``rd_…``, a voucher's ``vc_…``): the ids carry their ledger's
  node (``--node``), which each sequencer names in its hello. An id naming no shard goes
  to the first (its 404).
- every shard (the clock, readiness, the nonce check of a refused signature, the
  operator events: one listing, ``shard_events``), or the
  first shard (a ticket admitted without the engine: the same request always goes to the
  same shard, so a replayed request meets its nonce again). Metrics are each shard's,
  labelled ``shard``.

A misconfiguration is refused loudly, not split: two shards naming the same node, a
shard without the order registry (R15 would not hold across shards), or a campaign two
shards both list: the calls they concern are 503 with the reason, logged (at most once
per ``CONFLICT_LOG_EVERY_S``). At most ``SHARDS_MAX`` shards.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
import time
from collections.abc import Callable, Sequence

from lijian.cluster.gateway import RemoteEngine, RemotePort, TicketCarrier
from lijian.cluster.gateway_policy import SequencerUnavailable
from lijian.cluster.shard_events import merged_events
from lijian.core.claims import ClaimRequest
from lijian.core.errors import CampaignNotFound, LijianError
from lijian.core.ledger import WRITER_TAG_LEN
from lijian.core.order import Order, RefundRequest
from lijian.core.settings import Settings, SettingsError
from lijian.core.settings_text import settings_from_toml
from lijian.http.problems import Problem
from lijian.jsonish import Json
from lijian.outcome import Outcome
from lijian.port import EnginePort, SequencerPort, TicketSlot

log = logging.getLogger("lijian.shards")
SHARDS_MAX = 64
CONFLICT_LOG_EVERY_S = 10.0
ID_SEQ_DIGITS = 10  # the sequence at the end of a redemption's or voucher's id
_SAMPLE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?( .*)$")


def shard_node(object_id: str) -> str | None:
    """The node in a redemption's or voucher's id (``Ledger._new_id``), or None."""
    if object_id[:3] not in ("rd_", "vc_") or len(object_id) <= 3 + WRITER_TAG_LEN + ID_SEQ_DIGITS:
        return None
    return object_id[3 : len(object_id) - WRITER_TAG_LEN - ID_SEQ_DIGITS]


def placed_shard(campaign_id: str, nodes: Sequence[str]) -> int:
    """Which of the shards (their nodes) a new campaign goes to: the highest hash of
    node and campaign id (rendezvous hashing). A function of the id and of the set of
    nodes only, so every gateway picks the same shard whatever its ``--shard`` order,
    and the proposal's approval or rejection, sent through any gateway later, finds it;
    campaigns spread evenly, and adding a shard moves no placed campaign (owners are
    the ledgers', not this). A file whose id cannot be read (``""``) has a place too:
    its 422 is the same from any shard."""
    assert nodes and len(set(nodes)) == len(nodes), "distinct nodes (ShardedEngine.answered)"

    def score(i: int) -> bytes:
        return hashlib.sha256(f"{nodes[i]}\0{campaign_id}".encode()).digest()

    return max(range(len(nodes)), key=score)


def _proposed_id(body: Json) -> str:
    """The id of the campaign a ``POST /v1/campaigns`` proposes ("" if its file does
    not parse: the sequencer names what is wrong, 422, nothing proposed)."""
    text = body.get("settings_toml")
    try:
        return settings_from_toml(text).campaign.id if isinstance(text, str) else ""
    except SettingsError:
        return ""


def _not_found(exc: BaseException) -> bool:
    return isinstance(exc, CampaignNotFound) or (isinstance(exc, Problem) and exc.status == 404)


class ShardedPort:
    """The port's methods, each routed to a shard (module doc); ``_slot`` is the signed
    request's ticket, taken by the first call made with it."""

    _set: ShardedEngine
    _slot: TicketSlot | None

    def _on(self, shard: RemoteEngine) -> RemotePort:
        return TicketCarrier(shard, self._slot) if self._slot is not None else shard

    async def _by_campaign(self, campaign_id: str) -> RemotePort:
        return self._on(await self._set.owner_of(campaign_id))

    def _by_id(self, object_id: str) -> RemotePort:
        return self._on(self._set.shard_of_id(object_id))

    # ---------------------------------------------------------- static facts
    @property
    def campaign_ids(self) -> list[str]:
        return [cid for s in self._set.shards for cid in s.known]

    @property
    def manual_clock(self) -> bool:
        return self._set.answered()[0].manual_clock

    def settings(self, campaign_id: str) -> Settings:
        shard = self._set.known_owner(campaign_id)
        if shard is None:
            self._set.answered()  # 503 while a shard has not answered, else unknown
            raise CampaignNotFound(f"unknown campaign {campaign_id!r}")
        return shard.settings(campaign_id)

    async def campaign_settings(self, campaign_id: str) -> Settings:
        shard = await self._set.owner_of(campaign_id)
        return await shard.campaign_settings(campaign_id)

    async def campaign_list(self) -> list[Settings]:
        lists = await asyncio.gather(*(s.campaign_list() for s in self._set.answered()))
        return [x for one in lists for x in one]

    async def start(self) -> None:
        await asyncio.gather(*(s.start() for s in self._set.shards))

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in self._set.shards))

    def remote_ledger(self) -> SequencerPort | None:
        return self._set

    def observe_batches(self, on_batch: Callable[[int, float], None]) -> None:
        """Commits happen at the sequencers; their own /metrics has their histograms."""

    # ---------------------------------------------------------- by campaign
    def redeem_submit(
        self, order: Order, client_id: str, key: str, fingerprint: str
    ) -> asyncio.Future[Outcome]:
        shard = self._set.known_owner(order.campaign_id)
        if shard is not None:  # the hot path: no coroutine of its own
            return self._on(shard).redeem_submit(order, client_id, key, fingerprint)

        async def routed() -> Outcome:
            port = await self._by_campaign(order.campaign_id)
            return await port.redeem_submit(order, client_id, key, fingerprint)

        return asyncio.ensure_future(routed())

    async def quote_order(self, order: Order) -> Json:
        return await (await self._by_campaign(order.campaign_id)).quote_order(order)

    async def claim(
        self, campaign_id: str, req: ClaimRequest, client_id: str, key: str, fingerprint: str
    ) -> Outcome:
        port = await self._by_campaign(campaign_id)
        return await port.claim(campaign_id, req, client_id, key, fingerprint)

    async def operate(self, op: str, campaign_id: str, body: Json, by: str) -> Outcome:
        if op == "propose_campaign":  # a new campaign is made on its placed shard
            shard = self._set.placed(_proposed_id(body))
            return await self._on(shard).operate(op, campaign_id, body, by)
        return await (await self._by_campaign(campaign_id)).operate(op, campaign_id, body, by)

    async def catalog_upsert(
        self,
        rows: list[tuple[str, str, str]],
        categories: dict[str, int] | None = None,
        campaign_id: str | None = None,
        prices: list[tuple[str, str, int]] | None = None,
    ) -> int:
        if campaign_id is None:
            raise CampaignNotFound("a catalogue upload names its campaign")
        port = await self._by_campaign(campaign_id)
        return await port.catalog_upsert(rows, categories, campaign_id, prices)

    async def read_vouchers(self, campaign_id: str, person_id: str, after: int, limit: int) -> Json:
        port = await self._by_campaign(campaign_id)
        return await port.read_vouchers(campaign_id, person_id, after, limit)

    async def read_operations(self, campaign_id: str, what: str) -> Json:
        return await (await self._by_campaign(campaign_id)).read_operations(campaign_id, what)

    async def read_risk(self, campaign_id: str, day: str, after: int, limit: int) -> Json:
        port = await self._by_campaign(campaign_id)
        return await port.read_risk(campaign_id, day, after, limit)

    async def read_person(self, campaign_id: str, person_id: str) -> Json:
        return await (await self._by_campaign(campaign_id)).read_person(campaign_id, person_id)

    async def read_status(self, campaign_id: str) -> Json:
        return await (await self._by_campaign(campaign_id)).read_status(campaign_id)

    async def read_public(self, campaign_id: str) -> Json:
        return await (await self._by_campaign(campaign_id)).read_public(campaign_id)

    async def settlement_report(self, campaign_id: str, day: str) -> Json:
        return await (await self._by_campaign(campaign_id)).settlement_report(campaign_id, day)

    async def audit_report(self, campaign_id: str) -> Json:
        return await (await self._by_campaign(campaign_id)).audit_report(campaign_id)

    async def evidence_report(self, campaign_id: str, day: str) -> Json:
        return await (await self._by_campaign(campaign_id)).evidence_report(campaign_id, day)

    # ---------------------------------------------------------- by id
    async def capture(self, redemption_id: str) -> Outcome:
        return await self._by_id(redemption_id).capture(redemption_id)

    async def void(self, redemption_id: str) -> Outcome:
        return await self._by_id(redemption_id).void(redemption_id)

    async def refund(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Outcome:
        return await self._by_id(redemption_id).refund(redemption_id, req, client_id, key, fp)

    async def read_redemption(self, redemption_id: str) -> Json:
        return await self._by_id(redemption_id).read_redemption(redemption_id)

    async def read_voucher(self, voucher_id: str) -> Json:
        return await self._by_id(voucher_id).read_voucher(voucher_id)

    # ---------------------------------------------------------- every shard
    async def set_clock(self, target_ms: int | None = None, advance_ms: int | None = None) -> int:
        """The first shard moves its clock; every other is set to where it went, so
        the shards show one time. Each takes the request's ticket (its own nonces)."""
        first, *rest = self._each_with_ticket(self._set.answered())
        now_ms = await first.set_clock(target_ms, advance_ms)
        await asyncio.gather(*(s.set_clock(now_ms, None) for s in rest))
        return now_ms

    async def read_events(self, after: str, limit: int) -> Json:
        """Every shard's events, one listing with a cursor of each shard's position
        (``shard_events``). Each shard's read takes the request's ticket, as the clock's
        moves do (a sequencer reads events for a signed request only)."""
        shards = self._set.answered()
        nodes = [str(s.info.get("node")) for s in shards]
        ports = self._each_with_ticket(shards)
        return await merged_events(list(zip(nodes, ports, strict=True)), after, limit)

    def _each_with_ticket(self, shards: list[RemoteEngine]) -> list[RemotePort]:
        """A port per shard, each carrying the request's ticket (their own nonces)."""
        ticket = None
        if self._slot is not None:
            ticket, self._slot.ticket = self._slot.ticket, None
        if ticket is None:
            return list(shards)
        return [TicketCarrier(s, TicketSlot(ticket)) for s in shards]

    async def health(self) -> Json:
        return _merged_health(await asyncio.gather(*(s.health() for s in self._set.answered())))

    async def gauges(self) -> Json:
        """Every shard's: each campaign's status from its shard (no campaign is on two),
        the writers merged as ``health`` merges them. A writer's batch sizes and event
        figures are its own process's, and a sum of them would mean nothing: each
        shard's, labelled with its node, is what a gateway's /metrics serves
        (``ShardedEngine.ledger_metrics``)."""
        gs = await asyncio.gather(*(s.gauges() for s in self._set.answered()))
        status: Json = {}
        for g in gs:
            one = g["status"]
            assert isinstance(one, dict), "a shard's gauges: each campaign's status"
            status.update(one)
        writers = []
        for g in gs:
            w = g["writer"]
            assert isinstance(w, dict), "a shard's gauges: its writer's health"
            writers.append(w)
        return {"status": status, "writer": _merged_health(writers)}


class ShardCarrier(ShardedPort):
    """The port for one signed request: its first call takes the request's ticket."""

    __slots__ = ("_set", "_slot")

    def __init__(self, shards: ShardedEngine, slot: TicketSlot) -> None:
        self._set = shards
        self._slot = slot


class ShardedEngine(ShardedPort):
    """The gateway's engine over several sequencers, and its admission."""

    def __init__(self, groups: list[list[str]], *, ssl_context: ssl.SSLContext,
                 make: Callable[[list[str]], RemoteEngine] | None = None) -> None:  # fmt: skip
        assert 2 <= len(groups) <= SHARDS_MAX, "a sharded gateway has 2..SHARDS_MAX shards"

        def remote(addresses: list[str]) -> RemoteEngine:
            return RemoteEngine(addresses, ssl_context=ssl_context)

        self.shards = [(make or remote)(g) for g in groups]
        self._set = self
        self._slot = None
        self._logged_s = -CONFLICT_LOG_EVERY_S

    # ------------------------------------------------------------ the map
    def _refuse(self, why: str) -> Problem:
        now_s = time.monotonic()
        if now_s - self._logged_s >= CONFLICT_LOG_EVERY_S:
            log.error("shards misconfigured: %s", why)
            self._logged_s = now_s
        return Problem(503, "sequencer_unavailable", f"shards misconfigured: {why}",
                       headers={"Retry-After": "1"})  # fmt: skip

    def answered(self) -> list[RemoteEngine]:
        """Every shard, checked: all answered their hello, with distinct nodes and the
        order registry. Raises 503 otherwise."""
        shards = self.shards
        if not all(s.info for s in shards):
            raise SequencerUnavailable("not every sequencer has answered yet")
        nodes = [str(s.info.get("node", "")) for s in shards]
        if len(set(nodes)) != len(nodes):
            raise self._refuse(f"two sequencers name the same node ({', '.join(nodes)})")
        bare = [n for s, n in zip(shards, nodes, strict=True) if not s.info.get("order_registry")]
        if bare:
            raise self._refuse(f"node {bare[0]!r} has no --order-registry: R15 across shards")
        return shards

    def known_owner(self, campaign_id: str) -> RemoteEngine | None:
        """The shard whose hello (or answer since) listed the campaign; 503 if two did."""
        owners = [s for s in self.shards if campaign_id in s.known]
        if len(owners) > 1:
            nodes = ", ".join(str(s.info.get("node")) for s in owners)
            raise self._refuse(f"campaign {campaign_id!r} is served by nodes {nodes}")
        if owners:
            self.answered()
        return owners[0] if owners else None

    async def owner_of(self, campaign_id: str) -> RemoteEngine:
        """The campaign's shard: known, or asked of every shard (a campaign created over
        the API since the hellos); unknown everywhere: its placed shard (its answer)."""
        shard = self.known_owner(campaign_id)
        if shard is not None:
            return shard
        shards = self.answered()
        found = await asyncio.gather(*(_has(s, campaign_id) for s in shards))
        owners = [s for s, yes in zip(shards, found, strict=True) if yes]
        if len(owners) > 1:
            self.known_owner(campaign_id)  # raises: listed by two
        return owners[0] if owners else self.placed(campaign_id)

    def placed(self, campaign_id: str) -> RemoteEngine:
        """The shard of a campaign no shard has yet (``placed_shard``): where its proposal
        is made, and where its approval, rejection and every call naming it go until
        it is approved (then its owner says so)."""
        shards = self.answered()
        return shards[placed_shard(campaign_id, [str(s.info.get("node")) for s in shards])]

    def shard_of_id(self, object_id: str) -> RemoteEngine:
        shards = self.answered()
        node = shard_node(object_id)
        for s in shards:
            if node is not None and s.info.get("node") == node:
                return s
        return shards[0]

    # ---------------------------------------- admission (SequencerPort)
    def carrier(self, slot: TicketSlot) -> EnginePort:
        return ShardCarrier(self, slot)

    async def admit(self, slot: TicketSlot) -> None:
        """A ticket answered without the engine: the first shard's nonce memory."""
        await self.shards[0].admit(slot)

    def stored(self, slot: TicketSlot) -> None:
        """Nothing to wait for here: a sequencer answers once the nonce is stored."""

    async def nonce_is_fresh(self, key_id: str, nonce: str, ts_s: int) -> bool:
        fresh = await asyncio.gather(
            *(s.nonce_is_fresh(key_id, nonce, ts_s) for s in self.answered())
        )
        return all(fresh)

    async def ledger_metrics(self) -> bytes:
        """Each shard's ledger figures, labelled with its node (one HELP/TYPE each)."""
        shards = self.answered()
        texts = await asyncio.gather(*(s.ledger_metrics() for s in shards))
        return _merged([(str(s.info.get("node")), t) for s, t in zip(shards, texts, strict=True)])


def _merged_health(hs: list[Json]) -> Json:
    """Every shard's writer in one: ready if all are, their queues summed."""
    out: Json = {"ok": all(bool(h["ok"]) for h in hs)}
    out["queue_depth"] = sum(int(str(h["queue_depth"])) for h in hs)
    durability = [d for h in hs if isinstance(d := h.get("durability"), dict)]
    if durability:  # what the first commits survive; refusing if any shard refuses
        refusing = any(bool(d.get("refusing")) for d in durability)
        out["durability"] = {**durability[0], "refusing": refusing}
    return out


async def _has(shard: RemoteEngine, campaign_id: str) -> bool:
    try:
        await shard.campaign_settings(campaign_id)
    except (Problem, LijianError) as exc:
        if _not_found(exc):
            return False
        raise
    return True


def _merged(texts: list[tuple[str, bytes]]) -> bytes:
    """Prometheus texts of several shards as one: each sample labelled ``shard="node"``,
    each family's HELP and TYPE once, its samples of every shard together after them."""
    families: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
    for node, text in texts:
        label = b'shard="' + node.encode() + b'"'
        family = b""
        for line in text.splitlines():
            if line.startswith((b"# HELP ", b"# TYPE ")):
                family = line.split(b" ", 3)[2]
                meta, _ = families.setdefault(family, ([], []))
                if line not in meta:
                    meta.append(line)
                continue
            m = _SAMPLE.match(line)
            if m is None:
                continue
            name, labels, rest = m.group(1), m.group(2), m.group(3)
            inner = label if not labels else labels[1:-1] + b"," + label
            families.setdefault(family, ([], []))[1].append(name + b"{" + inner + b"}" + rest)
    return b"".join(line + b"\n" for meta, samples in families.values() for line in meta + samples)
