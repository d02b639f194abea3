"""The one seam between the HTTP layer and the ledger (docs/ARCHITECTURE.md).

The HTTP layer (``lijian.http``) calls only what this protocol lists, so it cannot tell
where the ledger is: in one process it is the :class:`~lijian.engine.Engine` itself; in a
gateway it is :class:`~lijian.cluster.gateway.RemoteEngine`, a thin client of the
sequencer, which runs the same ``Engine`` and serves exactly these methods over the
transport (``lijian.cluster.sequencer``). Static facts (campaign ids, settings, whether
the clock is manual) are plain attributes; everything that reads or changes the ledger
is awaited.

A signed request takes a nonce and a rate token before it is served: from the
``AdmissionPort``, which in one process is ``lijian.http.admission.LocalAdmission`` and
on a gateway the sequencer (``SequencerPort``, what ``remote_ledger`` answers). The
request's ``TicketSlot`` is an explicit argument: ``carrier(slot)`` gives the engine
that request calls (on a gateway, its first call takes the ticket along).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import msgspec

from lijian.core.claims import ClaimRequest
from lijian.core.order import Order, RefundRequest
from lijian.core.settings import Settings
from lijian.jsonish import Json
from lijian.outcome import Outcome


class Ticket(msgspec.Struct, array_like=True, frozen=True):
    """A signed request's claim on shared state: its nonce and a rate token (sent by a
    gateway to the sequencer with the request's first call)."""

    key_id: str
    nonce: str
    ts_s: int
    take_rate: bool = True  # False: the request is refused (403) before the rate limit
    # True: the gateway sends the call again after a lost connection (gateway.py); its
    # nonce may already be taken, by this very call.
    resent: bool = False


class TicketSlot:
    """One signed request's ticket, until it is admitted (taken: ``ticket`` is None),
    and the mark of its nonce in the durable log, once remembered (0: nothing to wait
    for)."""

    __slots__ = ("mark", "ticket")

    def __init__(self, ticket: Ticket | None) -> None:
        self.ticket = ticket
        self.mark = 0


class EnginePort(Protocol):
    @property
    def campaign_ids(self) -> list[str]: ...

    @property
    def manual_clock(self) -> bool: ...

    def settings(self, campaign_id: str) -> Settings: ...

    # A campaign created over the API (lijian.core.launch) appears while serving: these
    # ask for what may be new (a gateway asks its sequencer for an id it does not know).
    async def campaign_settings(self, campaign_id: str) -> Settings: ...

    async def campaign_list(self) -> list[Settings]: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    # The sequencer whose client this engine is (a gateway); None: the ledger is here.
    def remote_ledger(self) -> SequencerPort | None: ...

    def observe_batches(self, on_batch: Callable[[int, float], None]) -> None: ...

    # Redemptions: an immediate answer or a future (the hot path avoids a coroutine).
    def redeem_submit(
        self, order: Order, client_id: str, key: str, fingerprint: str
    ) -> Outcome | asyncio.Future[Outcome]: ...

    async def quote_order(self, order: Order) -> Json: ...

    async def capture(self, redemption_id: str) -> Outcome: ...

    async def void(self, redemption_id: str) -> Outcome: ...

    async def refund(
        self, redemption_id: str, req: RefundRequest, client_id: str, key: str, fp: str
    ) -> Outcome: ...

    # Claimed vouchers ([claims] mode = "claim"; lijian.engine_claims).
    async def claim(
        self, campaign_id: str, req: ClaimRequest, client_id: str, key: str, fingerprint: str
    ) -> Outcome: ...

    async def read_voucher(self, voucher_id: str) -> Json: ...

    async def read_vouchers(
        self, campaign_id: str, person_id: str, after: int, limit: int
    ) -> Json: ...

    async def catalog_upsert(
        self,
        rows: list[tuple[str, str, str]],
        categories: dict[str, int] | None = None,
        campaign_id: str | None = None,
        prices: list[tuple[str, str, int]] | None = None,
    ) -> int: ...

    async def set_clock(
        self, target_ms: int | None = None, advance_ms: int | None = None
    ) -> int: ...

    # Running a live campaign (lijian.operations): one call for every operator change.
    async def operate(self, op: str, campaign_id: str, body: Json, by: str) -> Outcome: ...

    async def read_operations(self, campaign_id: str, what: str) -> Json: ...

    async def read_risk(self, campaign_id: str, day: str, after: int, limit: int) -> Json: ...

    async def read_redemption(self, redemption_id: str) -> Json: ...

    async def read_person(self, campaign_id: str, person_id: str) -> Json: ...

    async def read_status(self, campaign_id: str) -> Json: ...

    async def read_public(self, campaign_id: str) -> Json: ...

    async def settlement_report(self, campaign_id: str, day: str) -> Json: ...

    async def audit_report(self, campaign_id: str) -> Json: ...

    async def evidence_report(self, campaign_id: str, day: str) -> Json: ...

    # ``after``: an ``evt_…`` from an earlier page ("": from the first event); a sharded
    # gateway's cursor names each shard's position (lijian.cluster.shard_events).
    async def read_events(self, after: str, limit: int) -> Json: ...

    async def health(self) -> Json: ...

    async def gauges(self) -> Json: ...


class AdmissionPort(Protocol):
    """Where a signed request's nonce and rate token are taken (``lijian.http.admission``):
    one answer for one process and for every gateway."""

    # The engine the request's handler calls, its ticket admitted (one process: now,
    # raising the refusal) or to be taken along by its first call (a gateway). A refusal
    # is an HTTP problem (401 nonce_reused, 429 rate_limited), raised.
    def carrier(self, slot: TicketSlot) -> EnginePort: ...

    # The ticket alone, now (a request answered without the engine: 403, bad input).
    async def admit(self, slot: TicketSlot) -> None: ...

    async def nonce_is_fresh(self, key_id: str, nonce: str, ts_s: int) -> bool: ...

    # What the answer waits for: its nonce stored (None: nothing to wait for).
    def stored(self, slot: TicketSlot) -> asyncio.Future[None] | None: ...


class SequencerPort(AdmissionPort, Protocol):
    """A gateway's sequencer: its admission, and the ledger's half of /metrics."""

    async def ledger_metrics(self) -> bytes: ...
