"""The gateway's read-only calls of the EnginePort: each is one ``_view`` call of the
sequencer, answered from its ledger; which of them are quick or resendable is
lijian.cluster.gateway_policy's to say."""

from __future__ import annotations

from typing import Any


class RemoteViews:
    """Mixed into RemoteEngine, which provides ``_view`` over its link."""

    async def _view(self, method: str, *args: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def read_voucher(self, voucher_id: str) -> dict[str, Any]:
        return await self._view("voucher", voucher_id)

    async def read_vouchers(
        self, campaign_id: str, person_id: str, after: int, limit: int
    ) -> dict[str, Any]:
        return await self._view("vouchers", campaign_id, person_id, after, limit)

    async def read_operations(self, campaign_id: str, what: str) -> dict[str, Any]:
        return await self._view("operations", campaign_id, what)

    async def read_redemption(self, redemption_id: str) -> dict[str, Any]:
        return await self._view("redemption", redemption_id)

    async def read_person(self, campaign_id: str, person_id: str) -> dict[str, Any]:
        return await self._view("person", campaign_id, person_id)

    async def read_status(self, campaign_id: str) -> dict[str, Any]:
        return await self._view("status", campaign_id)

    async def read_public(self, campaign_id: str) -> dict[str, Any]:
        return await self._view("public", campaign_id)

    async def read_risk(self, campaign_id: str, day: str, after: int, limit: int) -> dict[str, Any]:
        return await self._view("risk", campaign_id, day, after, limit)

    async def settlement_report(self, campaign_id: str, day: str) -> dict[str, Any]:
        return await self._view("settlement", campaign_id, day)

    async def audit_report(self, campaign_id: str) -> dict[str, Any]:
        return await self._view("audit", campaign_id)

    async def evidence_report(self, campaign_id: str, day: str) -> dict[str, Any]:
        return await self._view("evidence", campaign_id, day)

    async def read_events(self, after_seq: int, limit: int) -> dict[str, Any]:
        return await self._view("events", after_seq, limit)

    async def health(self) -> dict[str, Any]:
        return await self._view("health")

    async def gauges(self) -> dict[str, Any]:
        return await self._view("gauges")
