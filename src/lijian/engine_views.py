"""The engine's reads: the views and reports the HTTP layer, the CLI and ``/metrics``
ask of the ledger, and nothing they ask changes it.

A mixin of :class:`lijian.engine.Engine`. The views are answered from memory on the
loop thread (core/views.py shapes them); the reports walk the whole ledger in slices
between requests (lijian/reports.py), so a report never stalls the writer for long.
The ``read_*`` coroutines are the port's (lijian.port): the HTTP layer awaits them,
so it cannot tell this engine from a gateway's client of the sequencer.
"""

from __future__ import annotations

from typing import Any

from lijian import reports
from lijian.core import views
from lijian.core.chain import chain_view
from lijian.core.invariants import check_invariants
from lijian.core.settings import Settings
from lijian.engine_state import EngineState
from lijian.jsonish import Json
from lijian.operations import operations_view
from lijian.risk_report import risk_report


class ViewCalls(EngineState):
    """Redemptions, persons, a campaign's status, its reports, the writer's health."""

    def redemption(self, redemption_id: str) -> Json:
        r = self.ledger.redemption(redemption_id)
        return views.redemption_view(r, self.ledger.books[r.campaign_id].schedule.tz)

    def person(self, campaign_id: str, person_id: str) -> Json:
        return views.person_view(self.ledger, campaign_id, person_id)

    # The simulator reads into the status (today's figures) unchecked.
    def status(self, campaign_id: str) -> dict[str, Any]:
        body = views.status_view(self.ledger, campaign_id, self.now_ms())
        b = self.ledger.book(campaign_id)
        if b.settings.release.admission_window_s:
            body["admission_window"] = self.windows.view(campaign_id)
        if b.settings.identity.link_by:
            body["identity"] = views.identity_view(b)
        return body

    def public_status(self, campaign_id: str) -> Json:
        body = views.public_view(self.ledger, campaign_id, self.now_ms())
        return {**body, **chain_view(self.store.chain, self.store.day_closes, campaign_id)}

    # The reports walk the whole ledger: in slices between requests (lijian/reports.py).
    async def settlement_report(self, campaign_id: str, day: str) -> Json:
        """The settlement of ``day`` (docs/API.md), from the ledger: it holds every redemption."""
        return await reports.settlement_report(self.reports, self._led, campaign_id, day)

    async def read_risk(self, campaign_id: str, day: str, after: int, limit: int) -> Json:
        """A page of a day's risk flags (GET …/risk), from the ledger's index of them."""
        return risk_report(self.ledger, campaign_id, day, after, limit)

    async def evidence_report(self, campaign_id: str, day: str) -> Json:
        """The signed evidence bundle of a closed day (evidence/bundle.py), from this
        ledger: the same payload ``lijian evidence`` writes from the store."""
        return await reports.evidence_report(self.reports, self._led, self.store, campaign_id, day)

    async def campaign_list(self) -> list[Settings]:
        return [b.settings for b in self.ledger.books.values()]

    async def audit_report(self, campaign_id: str) -> Json:
        """The invariant check of the API's audit endpoint, on this engine's ledger."""
        from lijian.audit import invariants_report

        self.settings(campaign_id)
        led, problems = await self.reports.audit(self._led)
        rep = invariants_report(led, problems)
        if not rep.ok:  # audit.failed (once per failure), in the writer's next commit
            self.audits.report(campaign_id, rep.violations)
        return {"campaign_id": campaign_id, "ok": rep.ok, "entries": rep.entries,
                "checks": rep.checks}  # fmt: skip

    def check(self) -> list[str]:
        return check_invariants(self.ledger)

    async def read_operations(self, campaign_id: str, what: str) -> Json:
        return operations_view(self.ledger, campaign_id, what)

    async def read_redemption(self, redemption_id: str) -> Json:
        return self.redemption(redemption_id)

    async def read_person(self, campaign_id: str, person_id: str) -> Json:
        return self.person(campaign_id, person_id)

    async def read_status(self, campaign_id: str) -> Json:
        return self.status(campaign_id)

    async def read_public(self, campaign_id: str) -> Json:
        return self.public_status(campaign_id)

    async def health(self) -> Json:
        """What ``/readyz`` and ``/metrics`` report of the writer."""
        w = self.writer
        st = w.stats
        return {"ok": w.failed is None, "queue_depth": w.queue_depth,
                "last_batch_entries": st.last_batch_size, "max_batch_entries": st.max_batch_size,
                "entries": st.entries, **w.durability_health()}  # fmt: skip

    async def gauges(self) -> Json:
        """The ledger's figures for ``/metrics``: every campaign's status and the writer."""
        return {"status": {c: self.status(c) for c in self.campaign_ids},
                "writer": await self.health(), "events": self._event_gauges()}  # fmt: skip

    def _event_gauges(self) -> Json:
        w = self.webhooks
        receivers = {} if w is None else {
            url: {"delivered": st.delivered, "failures": st.failures, "lag_s": w.lag_s(url)}
            for url, st in w.stats.items()
        }  # fmt: skip
        return {"recorded": self.store.last_event_seq, "dropped": self.events.dropped,
                "receivers": receivers}  # fmt: skip
