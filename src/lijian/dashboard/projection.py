"""The dashboard's live figures, derived incrementally from committed ledger entries.

Why entries and not a scan of ``engine.ledger`` every second: the ledger keeps every
redemption, and one pass over a million of them costs about 0.6 s of the event loop
(measured), the loop that serves the grants. Entries arrive in order, so applying the
new ones costs O(new entries) per tick whatever the size of the campaign, and a replay
from seq 1 rebuilds the same figures after a restart.

For each campaign the projection keeps:

- per tranche day: a shadow of the tranche's ``available_fen`` (the arithmetic of
  ``Ledger.apply``: open, hold, release, clawback into the same tranche, inflows, close)
  and its value at the end of each minute since the release: the burn-down;
- holds placed per second of campaign time (the last ``GRANTS_WINDOW_S``) and each day's
  peak;
- per day and platform, R19's settlement figures with R19's rules (a capture counts on
  its local day with its payable and discount, a clawback on the day of its refund), so
  the history and the leverage (GMV ÷ net subsidy) need no scan;
- net subsidy by category: each captured discount, and each clawback, is shared among
  the order's lines in proportion to their payable (the ledger keeps discounts per order,
  not per line, so this split is the dashboard's, not the settlement's).

Entries carry what was decided; static facts of a redemption (its tranche day, discount,
platform, lines) are read from ``engine.ledger.redemptions``, which already holds every
committed redemption. Everything here runs on the engine's event loop.

Self-check: when the projection has applied exactly as many entries as the engine
(``seq == ledger.entries_applied``) its shadow tranches must equal the engine's; a
difference is reported on the dashboard, never silently absorbed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lijian.core.book import CLOSED, OPEN, SCHEDULED, Book, Redemption
from lijian.core.entries import (
    CHANGE_ENTRIES,
    AmendmentApplied,
    AnyEntry,
    HoldCaptured,
    HoldPlaced,
    HoldReleased,
    QuotaRestored,
    RefundRecorded,
    SoldOut,
    TrancheClosed,
    TrancheOpened,
)
from lijian.core.invariants import NO_BALANCE
from lijian.core.ledger import Ledger
from lijian.core.status import AmendmentKind

GRANTS_WINDOW_S = 300  # holds per second are kept for the last five minutes
MINUTE_MS = 60_000
UNKNOWN_CATEGORY = "unknown"  # a SKU the catalogue no longer knows


@dataclass(slots=True)
class Money:
    """One settlement row (R19), without its platform."""

    count: int = 0
    gmv_fen: int = 0
    discount_fen: int = 0
    clawback_fen: int = 0

    @property
    def net_subsidy_fen(self) -> int:
        return self.discount_fen - self.clawback_fen

    def add(self, other: Money) -> None:
        self.count += other.count
        self.gmv_fen += other.gmv_fen
        self.discount_fen += other.discount_fen
        self.clawback_fen += other.clawback_fen

    def view(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "gmv_fen": self.gmv_fen,
            "discount_fen": self.discount_fen,
            "clawback_fen": self.clawback_fen,
            "net_subsidy_fen": self.net_subsidy_fen,
            "leverage": leverage(self.gmv_fen, self.net_subsidy_fen),
        }


def leverage(gmv_fen: int, net_subsidy_fen: int) -> float | None:
    """GMV ÷ net subsidy (R19, "带动消费"); None while nothing is owed."""
    return round(gmv_fen / net_subsidy_fen, 2) if net_subsidy_fen > 0 else None


@dataclass(slots=True)
class DayLive:
    """One local date of a campaign: its tranche (if any) and what settled on it."""

    opens_at_ms: int | None  # None: a day without a tranche (a capture after the end)
    state: str = SCHEDULED
    available_fen: int = 0
    released_at_open_fen: int = 0
    burn: dict[int, int] = field(default_factory=dict)  # minute since open → available
    holds: int = 0
    hold_fen: int = 0
    first_sold_out_ms: int | None = None
    peak_grants_per_s: int = 0
    settled: dict[str, Money] = field(default_factory=dict)  # by platform

    def record(self, ts_ms: int) -> None:
        """Note the available amount at the minute of ``ts_ms`` (the burn-down)."""
        if self.opens_at_ms is not None:
            self.burn[max(0, (ts_ms - self.opens_at_ms) // MINUTE_MS)] = self.available_fen


@dataclass(slots=True)
class CampaignLive:
    book: Book
    days: dict[str, DayLive] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)  # net subsidy fen
    grants_by_s: dict[int, int] = field(default_factory=dict)  # unix s (campaign clock)

    def day(self, date: str) -> DayLive:
        d = self.days.get(date)
        if d is None:
            t = self.book.tranches.get(date)
            d = self.days[date] = DayLive(t.opens_at_ms if t else None)
        return d

    def settled_row(self, ts_ms: int, platform: str) -> Money:
        d = self.day(self.book.schedule.local_date(ts_ms).isoformat())
        m = d.settled.get(platform)
        if m is None:
            m = d.settled[platform] = Money()
        return m

    def totals_by_platform(self) -> dict[str, Money]:
        out = {p: Money() for p in self.book.settings.campaign.platforms}
        for d in self.days.values():
            for p, m in d.settled.items():
                out.setdefault(p, Money()).add(m)
        return out


CategoryOf = Callable[[str, str], str | None]


class Projection:
    """Applies entries in seq order; ``seq`` is the last applied."""

    def __init__(self, ledger: Ledger, category_of: CategoryOf) -> None:
        self.ledger = ledger
        self.category_of = category_of
        self.campaigns = {cid: CampaignLive(b) for cid, b in ledger.books.items()}
        self.seq = 0  # the store's seq of the last entry applied
        self.applied = 0  # entries applied: equals ledger.entries_applied when caught up
        self.unknown_redemptions = 0  # entries naming a redemption the engine lacks

    # ---------------------------------------------------------------- apply
    def follow(self, seq: int, e: AnyEntry) -> None:
        assert seq > self.seq, f"entries out of order: {seq} after {self.seq}"
        self.seq = seq
        self.applied += 1
        if isinstance(e, HoldPlaced):
            self._hold(e)
        elif isinstance(e, HoldCaptured):
            self._capture(e)
        elif isinstance(e, HoldReleased):
            self._release(e)
        elif isinstance(e, RefundRecorded):
            self._refund(e)
        elif isinstance(e, TrancheOpened):
            c = self.campaigns[e.campaign_id]
            d = c.day(e.day)
            d.state, d.available_fen, d.released_at_open_fen = OPEN, e.amount_fen, e.amount_fen
            d.record(e.ts_ms)
        elif isinstance(e, TrancheClosed):
            c = self.campaigns[e.campaign_id]
            d = c.day(e.day)
            d.record(e.ts_ms)  # the line ends at the leftover, not at zero
            d.state, d.available_fen = CLOSED, 0
            self._send(c, e.to_day, e.leftover_fen, e.ts_ms)
        elif isinstance(e, SoldOut):
            d = self.campaigns[e.campaign_id].day(e.day)
            if d.first_sold_out_ms is None:
                d.first_sold_out_ms = e.ts_ms
        elif isinstance(e, AmendmentApplied):
            # An open day's share of a budget amendment moves its remaining at once; a
            # later day's comes in its TrancheOpened amount; an end moves nothing open.
            c = self.campaigns[e.campaign_id]
            a = self.ledger.changes.amendments.get(e.amendment_id)
            budget = a is not None and a.kind == AmendmentKind.BUDGET
            for day, fen in e.split if budget else ():
                shown = c.days.get(day)
                if shown is not None and shown.state == OPEN:
                    shown.available_fen += fen
                    shown.record(e.ts_ms)
        else:
            # Persons, seeds, windows, identities, clock moves and operators' other
            # changes (pauses, proposals, blocks): no money moves, nothing shown here.
            assert isinstance(e, (QuotaRestored, *NO_BALANCE, *CHANGE_ENTRIES))

    def _redemption(self, rid: str) -> tuple[CampaignLive, Redemption] | None:
        r = self.ledger.redemptions.get(rid)
        if r is None:
            self.unknown_redemptions += 1
            return None
        return self.campaigns[r.campaign_id], r

    def _hold(self, e: HoldPlaced) -> None:
        c = self.campaigns[e.campaign_id]
        d = c.day(e.day)
        d.available_fen -= e.discount_fen
        d.holds += 1
        d.hold_fen += e.discount_fen
        d.record(e.ts_ms)
        second = e.ts_ms // 1000
        n = c.grants_by_s[second] = c.grants_by_s.get(second, 0) + 1
        d.peak_grants_per_s = max(d.peak_grants_per_s, n)
        if len(c.grants_by_s) > 2 * GRANTS_WINDOW_S:
            horizon = max(c.grants_by_s) - GRANTS_WINDOW_S
            for s in [s for s in c.grants_by_s if s < horizon]:
                del c.grants_by_s[s]

    def _capture(self, e: HoldCaptured) -> None:
        found = self._redemption(e.redemption_id)
        if found is None:
            return
        c, r = found
        m = c.settled_row(e.ts_ms, r.platform)
        m.count += 1
        m.gmv_fen += r.payable_fen
        m.discount_fen += r.discount_fen
        self._by_category(c, r, r.discount_fen)

    def _release(self, e: HoldReleased) -> None:
        found = self._redemption(e.redemption_id)
        if found is None:
            return
        c, r = found
        d = c.day(r.day)
        if d.state == OPEN:  # the money never left the tranche: free again
            d.available_fen += r.discount_fen
            d.record(e.ts_ms)
        else:
            self._send(c, e.to_day, r.discount_fen, e.ts_ms)

    def _refund(self, e: RefundRecorded) -> None:
        found = self._redemption(e.redemption_id)
        if found is None:
            return
        c, r = found
        c.settled_row(e.ts_ms, r.platform).clawback_fen += e.clawback_fen
        self._by_category(c, r, -e.clawback_fen)
        if e.clawback_to_same:
            d = c.day(r.day)
            d.available_fen += e.clawback_fen
            d.record(e.ts_ms)
        else:
            self._send(c, e.clawback_to_day, e.clawback_fen, e.ts_ms)

    def _send(self, c: CampaignLive, day: str | None, amount_fen: int, ts_ms: int) -> None:
        """Money sent on (rollover, late return, clawback): only an open day shows it now;
        a scheduled one gets it in its TrancheOpened amount."""
        if day is None or not amount_fen:
            return
        d = c.day(day)
        if d.state == OPEN:
            d.available_fen += amount_fen
            d.record(ts_ms)

    def _by_category(self, c: CampaignLive, r: Redemption, amount_fen: int) -> None:
        for category, share in split_by_lines(r, amount_fen, self.category_of).items():
            c.by_category[category] = c.by_category.get(category, 0) + share

    # ----------------------------------------------------------- self-check
    def drift(self) -> list[str]:
        """Differences from the engine's tranches; only meaningful when caught up."""
        out = []
        for cid, c in self.campaigns.items():
            for day, t in c.book.tranches.items():
                d = c.days.get(day)
                state = d.state if d else SCHEDULED
                avail = d.available_fen if d else 0
                if state != t.state or (t.state == OPEN and avail != t.available_fen):
                    out.append(
                        f"{cid} {day}: dashboard {state}/{avail} fen, "
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
