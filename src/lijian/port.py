"""The one seam between the HTTP layer and the ledger (docs/ARCHITECTURE.md).

The HTTP layer (``lijian.http``) calls only what this protocol lists, so it cannot tell
where the ledger is: in one process it is the :class:`~lijian.engine.Engine` itself; in a
gateway it is :class:`~lijian.cluster.gateway.RemoteEngine`, a thin client of the
sequencer, which runs the same ``Engine`` and serves exactly these methods over the
transport (``lijian.cluster.sequencer``). Static facts (campaign ids, settings, whether
the clock is manual) are plain attributes; everything that reads or changes the ledger
is awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from lijian.core.claims import ClaimRequest
from lijian.core.order import Order, RefundRequest
from lijian.core.settings import Settings
from lijian.jsonish import Json
from lijian.outcome import Outcome

if TYPE_CHECKING:
    from lijian.http.admission import Ticket
    from lijian.http.problems import Problem


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

    async def read_events(self, after_seq: int, limit: int) -> Json: ...

    async def health(self) -> dict[str, Any]: ...

    async def gauges(self) -> Json: ...


class AdmissionPort(Protocol):
    """What a gateway's engine adds: the sequencer's nonces and rate limits
    (``lijian.http.admission``)."""

    shared_admission: bool

    async def admit(self, ticket: Ticket) -> Problem | None: ...

    async def nonce_is_fresh(self, key_id: str, nonce: str, ts_s: int) -> bool: ...

    async def ledger_metrics(self) -> bytes: ...
