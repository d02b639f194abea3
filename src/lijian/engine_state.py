"""What the engine's parts share: the state :class:`lijian.engine.Engine` builds at
start-up, and the few questions every part asks of it (the time, a campaign's settings).

The engine is one object split by meaning into mixins (``engine_orders``,
``engine_views``, ``engine_events``, ``engine_claims``). Each of them
reads this state, none builds it: ``Engine.__init__`` and ``engine_recovery`` do. The
attributes are declared here, once, so that each part is type-checked against the same
names without importing ``lijian.engine`` (which imports them all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lijian.catalog import Catalog
from lijian.clock import Clock
from lijian.core.keyed import KeyedMemo
from lijian.core.ledger import Ledger
from lijian.core.settings import Settings
from lijian.events.audits import PeriodicAudit
from lijian.events.outbox import Outbox
from lijian.new_campaigns import CampaignGeo
from lijian.outcome import Outcome
from lijian.release import AdmissionWindows
from lijian.reports import ReportGate
from lijian.store import Store
from lijian.writer import GroupCommitWriter

if TYPE_CHECKING:
    from lijian.events.delivery import WebhookDelivery


class EngineState:
    """The engine's state, set by ``Engine.__init__`` (see there for what each is)."""

    clock: Clock
    store: Store
    ledger: Ledger
    catalog: Catalog
    geo: CampaignGeo
    writer: GroupCommitWriter
    windows: AdmissionWindows[Outcome]
    events: Outbox
    webhooks: WebhookDelivery | None  # once enable_webhooks was called
    event_node: str  # a shard's node, named in its events' ids ("": one ledger's)
    audits: PeriodicAudit
    reports: ReportGate
    _led: Callable[[], Ledger]  # the reports' view of the ledger, current after a restore
    _key: bytes  # the ledger key: only this one writer holds it
    _keyed: KeyedMemo  # keys identifiers under ``_key``, remembering them (bounded)
    _settings: list[Settings]  # the campaigns the engine was started with

    @property
    def campaign_ids(self) -> list[str]:
        return list(self.ledger.books)

    def settings(self, campaign_id: str) -> Settings:
        return self.ledger.book(campaign_id).settings

    async def campaign_settings(self, campaign_id: str) -> Settings:
        return self.settings(campaign_id)  # (a gateway asks its sequencer: RemoteEngine)

    def now_ms(self) -> int:
        return max(self.clock.now_ms(), self.ledger.now_ms)
