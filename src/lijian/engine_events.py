"""The engine's operator events (lijian.events): webhooks that deliver its outbox, and
the stored events read a page at a time.

A mixin of :class:`lijian.engine.Engine`. The outbox itself is filled by the writer's
commits; what is here delivers and reads it and never changes the ledger, so it
lives apart from the engine's commands.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from lijian.engine_state import EngineState
from lijian.events.model import after_seq
from lijian.events.outbox import events_page
from lijian.jsonish import Json

if TYPE_CHECKING:
    from lijian.events.receivers import Receiver


class EventCalls(EngineState):
    """Webhook delivery switched on, and ``GET /v1/admin/events``."""

    def enable_webhooks(self, receivers: list[Receiver]) -> None:
        """Deliver the outbox to ``receivers`` (lijian.events.receivers), from start()."""
        from lijian.events.delivery import WebhookDelivery

        self.webhooks = WebhookDelivery(
            receivers, self.store.read_events, self.events, self._tz_of, self.now_ms
        )

    def name_events(self, node: str) -> None:
        """This ledger is a shard (``--order-registry``): its events' ids name its node,
        in its webhooks and its listing alike (events.model.event_id), from the start
        of serving on. One ledger's stay plain ``evt_<seq>``."""
        self.event_node = node
        if self.webhooks is not None:
            self.webhooks.node = node

    def _tz_of(self, campaign_id: str) -> ZoneInfo:
        b = self.ledger.books.get(campaign_id)
        return b.schedule.tz if b else self._settings[0].tz

    async def read_events(self, after: str, limit: int) -> Json:
        """A page of the stored events after the event ``after`` (GET /v1/admin/events)."""
        return await self.read_events_seq(after_seq(after, self.event_node), limit)

    async def read_events_seq(self, after_seq: int, limit: int) -> Json:
        """A page of the stored events after ``after_seq`` (a sequencer's answer)."""
        return await asyncio.to_thread(
            events_page, self.store, after_seq, limit, self._tz_of, self.event_node
        )
