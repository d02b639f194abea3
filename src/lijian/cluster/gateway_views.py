"""The gateway's read-only calls of the EnginePort: each is one ``_view`` call of the
sequencer, answered from its ledger; which of them are quick or resendable is
lijian.cluster.gateway_policy's to say."""

from __future__ import annotations

from lijian.cluster.wire import Method
from lijian.events.model import after_seq
from lijian.jsonish import Json


class RemoteViews:
    """Mixed into RemotePort (gateway.py), which provides ``_view`` over its link."""

    async def _view(self, method: Method, *args: object) -> Json:
        raise NotImplementedError

    def _link_info(self) -> Json:  # the sequencer's hello (empty until it answered)
        raise NotImplementedError

    async def read_voucher(self, voucher_id: str) -> Json:
        return await self._view(Method.VOUCHER, voucher_id)

    async def read_vouchers(self, campaign_id: str, person_id: str, after: int, limit: int) -> Json:
        return await self._view(Method.VOUCHERS, campaign_id, person_id, after, limit)

    async def read_operations(self, campaign_id: str, what: str) -> Json:
        return await self._view(Method.OPERATIONS, campaign_id, what)

    async def read_redemption(self, redemption_id: str) -> Json:
        return await self._view(Method.REDEMPTION, redemption_id)

    async def read_person(self, campaign_id: str, person_id: str) -> Json:
        return await self._view(Method.PERSON, campaign_id, person_id)

    async def read_status(self, campaign_id: str) -> Json:
        return await self._view(Method.STATUS, campaign_id)

    async def read_public(self, campaign_id: str) -> Json:
        return await self._view(Method.PUBLIC, campaign_id)

    async def read_risk(self, campaign_id: str, day: str, after: int, limit: int) -> Json:
        return await self._view(Method.RISK, campaign_id, day, after, limit)

    async def settlement_report(self, campaign_id: str, day: str) -> Json:
        return await self._view(Method.SETTLEMENT, campaign_id, day)

    async def audit_report(self, campaign_id: str) -> Json:
        return await self._view(Method.AUDIT, campaign_id)

    async def evidence_report(self, campaign_id: str, day: str) -> Json:
        return await self._view(Method.EVIDENCE, campaign_id, day)

    async def read_events(self, after: str, limit: int) -> Json:
        """A shard's ids name its node (a sequencer with the order registry, even behind
        a gateway of one ``--shard``): its ``evt_<node><seq>`` is then read as its own."""
        info = self._link_info()
        node = str(info.get("node", "")) if info.get("order_registry") else ""
        return await self._view(Method.EVENTS, after_seq(after, node), limit)

    async def health(self) -> Json:
        return await self._view(Method.HEALTH)

    async def gauges(self) -> Json:
        return await self._view(Method.GAUGES)
