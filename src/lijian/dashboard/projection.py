"""The dashboard's live figures: the ledger's daybook, and net subsidy by category.

The figures per day and platform (R19 settlement, holds, sell-outs, grants per second,
the burn-down of each tranche) are the core's: ``LedgerState.apply`` keeps them in each
campaign's daybook (``lijian.core.daybook``) and the page reads them from the engine's
ledger, on the engine's event loop, without a scan and without repeating any arithmetic.

What only the dashboard shows is net subsidy by category: each captured discount, and
each clawback, shared among the order's lines in proportion to their payable (the
ledger keeps discounts per order, not per line, and categories belong to the catalogue,
so this split is the dashboard's, not the settlement's). It follows the committed
entries (``tail.py``) in seq order: applying the new ones costs O(new entries) per tick
whatever the size of the campaign, and reading from seq 1 rebuilds the same figures
after a restart. Static facts of a redemption (platform, lines) are read from
``engine.ledger.redemptions``, which already holds every committed redemption.

Self-check: when the feed has followed exactly as many entries as the engine applied
(``applied == ledger.entries_applied``) the last burn-down point of an open tranche must
be its available money; a difference is reported on the dashboard, never absorbed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lijian.core.book import OPEN, Book
from lijian.core.daybook import DayFigures, SettlementRow
from lijian.core.entries import AnyEntry, HoldCaptured, RefundRecorded
from lijian.core.ledger import Ledger
from lijian.core.redemption import Redemption

UNKNOWN_CATEGORY = "unknown"  # a SKU the catalogue no longer knows


@dataclass(slots=True)
class CampaignLive:
    book: Book
    by_category: dict[str, int] = field(default_factory=dict)  # net subsidy fen

    @property
    def days(self) -> dict[str, DayFigures]:
        """The campaign's figures per local date (the ledger's daybook)."""
        return self.book.daybook.days

    @property
    def grants_by_s(self) -> dict[int, int]:
        """Holds placed per second of campaign time, the last few minutes (daybook)."""
        return self.book.daybook.grants_by_s

    def totals_by_platform(self) -> dict[str, SettlementRow]:
        return self.book.daybook.totals_by_platform(self.book.settings.campaign.platforms)


CategoryOf = Callable[[str, str], str | None]


class Projection:
    """Follows entries in seq order; ``seq`` is the last followed."""

    def __init__(self, ledger: Ledger, category_of: CategoryOf) -> None:
        self.ledger = ledger
        self.category_of = category_of
        self.campaigns = {cid: CampaignLive(b) for cid, b in ledger.books.items()}
        self.seq = 0  # the store's seq of the last entry followed
        self.applied = 0  # entries followed: equals ledger.entries_applied when caught up
        self.unknown_redemptions = 0  # entries naming a redemption the engine lacks

    def follow(self, seq: int, e: AnyEntry) -> None:
        assert seq > self.seq, f"entries out of order: {seq} after {self.seq}"
        self.seq = seq
        self.applied += 1
        if isinstance(e, HoldCaptured):
            found = self._redemption(e.redemption_id)
            if found is not None:
                self._by_category(*found, found[1].discount_fen)
        elif isinstance(e, RefundRecorded):
            found = self._redemption(e.redemption_id)
            if found is not None:
                self._by_category(*found, -e.clawback_fen)

    def campaign(self, cid: str) -> CampaignLive:
        """The campaign's figures; one created over the API since the start gets its
        entry when first asked for (KeyError: the ledger has no such campaign)."""
        c = self.campaigns.get(cid)
        if c is None:
            c = self.campaigns[cid] = CampaignLive(self.ledger.books[cid])
        return c

    def _redemption(self, rid: str) -> tuple[CampaignLive, Redemption] | None:
        r = self.ledger.redemptions.get(rid)
        if r is None:
            self.unknown_redemptions += 1
            return None
        return self.campaign(r.campaign_id), r

    def _by_category(self, c: CampaignLive, r: Redemption, amount_fen: int) -> None:
        for category, share in split_by_lines(r, amount_fen, self.category_of).items():
            c.by_category[category] = c.by_category.get(category, 0) + share

    # ----------------------------------------------------------- self-check
    def drift(self) -> list[str]:
        """Burn-down lines that do not end at their open tranche's available money; only
        meaningful when caught up."""
        out = []
        for cid, c in self.campaigns.items():
            for day, t in c.book.tranches.items():
                d = c.days.get(day)
                if t.state != OPEN or d is None or not d.burn:
                    continue
                last = d.burn[max(d.burn)]
                if last != t.available_fen:
                    out.append(
                        f"{cid} {day}: burn-down ends at {last} fen, "
                        f"ledger {t.state}/{t.available_fen} fen"
                    )
        return out


def split_by_lines(r: Redemption, amount_fen: int, category_of: CategoryOf) -> dict[str, int]:
    """Share ``amount_fen`` among the order's lines by payable, exactly (largest remainder)."""
    total = sum(lp for _, _, lp in r.lines)
    out: dict[str, int] = {}
    if not amount_fen:
        return out
    if total <= 0:
        return {UNKNOWN_CATEGORY: amount_fen}
    sign, amount = (1, amount_fen) if amount_fen > 0 else (-1, -amount_fen)
    shares = [(amount * lp // total, (amount * lp) % total, sku) for sku, _, lp in r.lines]
    left = amount - sum(s for s, _, _ in shares)
    # The fen lost to flooring go to the lines with the largest remainders.
    order = sorted(range(len(shares)), key=lambda i: -shares[i][1])
    bonus = set(order[:left])
    for i, (share, _, sku) in enumerate(shares):
        cat = category_of(r.platform, sku) or UNKNOWN_CATEGORY
        out[cat] = out.get(cat, 0) + sign * (share + (1 if i in bonus else 0))
    return out
