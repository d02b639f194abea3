"""The engine's calls for claimed vouchers ([claims] mode = "claim"): a claim, decided by
the one writer in arrival order, and the reads of vouchers.

A mixin of :class:`lijian.engine.Engine`: the claim's stateless reasons (real name,
device location) are found here on the loop thread, as an order's are, and the claim
itself goes on the writer's queue (lijian.core.claims.decide_claim).
"""

from __future__ import annotations

from lijian.core.book import Book
from lijian.core.claims import ClaimRequest, claim_reasons, decide_claim
from lijian.core.errors import CampaignNotFound
from lijian.core.ledger import Ledger
from lijian.core.order import Order
from lijian.core.rules import CatalogPort, Evaluation, reason
from lijian.core.status import VoucherStatus
from lijian.core.views import declined_view
from lijian.core.voucher_views import (
    claimed_view,
    find_voucher,
    person_vouchers_view,
    registered_view,
    voucher_view,
)
from lijian.jsonish import Json
from lijian.new_campaigns import CampaignGeo
from lijian.outcome import Outcome
from lijian.writer import BatchContext, GroupCommitWriter


def voucher_category(
    ledger: Ledger, catalog: CatalogPort, b: Book, order: Order, ev: Evaluation
) -> Evaluation:
    """An order paying with a voucher of one category ([claims] per_category): every
    item must be of it (``voucher_category_mismatch``). Stateless once the voucher is
    known (its category never changes); an unknown voucher is the writer's to decline."""
    if order.voucher_id is None or not b.settings.claims.per_category:
        return ev
    v = ledger.vouchers.by_id.get(order.voucher_id)
    if v is None or v.category is None or v.campaign_id != b.id:
        return ev
    if any(catalog.category_of(order.platform, i.sku) != v.category for i in order.items):
        ev.reasons.append(reason("voucher_category_mismatch"))
    return ev


class ClaimCalls:
    ledger: Ledger
    writer: GroupCommitWriter
    geo: CampaignGeo

    async def claim(
        self, campaign_id: str, req: ClaimRequest, client_id: str, key: str, fingerprint: str
    ) -> Outcome:
        """``POST /v1/campaigns/{id}/claims``: 201 a claimed voucher, or 200 declined."""
        try:
            b = self.ledger.book(campaign_id)
        except CampaignNotFound:
            return Outcome(200, declined_view([reason("campaign_not_found")]))
        stateless = claim_reasons(req, b, self.geo[b.id])

        def run(ctx: BatchContext) -> Outcome:
            out = decide_claim(ctx.ledger, campaign_id, req, stateless, ctx.now_ms, client_id,
                               key, fingerprint)  # fmt: skip
            if out.voucher is None:
                return Outcome(200, declined_view(out.reasons))
            if out.voucher.status == VoucherStatus.REGISTERED:  # a lottery's: 202
                return Outcome(202, registered_view(out.voucher, b), out.replayed)
            return Outcome(201, claimed_view(out.voucher, b), out.replayed)

        result: Outcome = await self.writer.submit(run)
        return result

    async def read_voucher(self, voucher_id: str) -> Json:
        v = find_voucher(self.ledger.vouchers, voucher_id)
        return voucher_view(v, self.ledger.books[v.campaign_id])

    async def read_vouchers(self, campaign_id: str, person_id: str, after: int, limit: int) -> Json:
        b = self.ledger.book(campaign_id)
        return person_vouchers_view(self.ledger.vouchers, b, person_id, after, limit)
