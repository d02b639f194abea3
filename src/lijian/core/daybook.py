"""A campaign's daybook: its figures per local day and platform, kept by ``apply``.

Everything that reads "what happened on a day" reads it here: the R19 settlement (the
API, ``lijian settle``, evidence bundles), the dashboard (history, burn-down, grants per
second) and the simulator's report. ``LedgerState.apply`` updates it with each entry, so
no reader walks the redemptions again or repeats the arithmetic of a money movement,
and a replay rebuilds it with the rest of the state.

Per local date (the campaign's zone):

- ``settled``: R19's rows by platform. A capture counts on the local day it happened
  (count, GMV = its payable, its discount); a clawback on the local day of its refund;
  net = discount − clawback.
- for the tranche of that date: holds placed on it (count and money), its first
  sell-out, the peak of holds per second, and its burn-down: the tranche's available
  money at the end of each minute since it opened, as ``apply`` left it.
- claimed vouchers ([claims]): claimed from that date's tranche, used on that date (the
  capture of their order, as R19 counts the discount) and expired unused on it.

And per campaign, holds per second of campaign time over the last ``GRANTS_WINDOW_S``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import TypedDict

import msgspec

GRANTS_WINDOW_S = 300  # holds per second are kept for the last five minutes
MINUTE_MS = 60_000
FIELDS = ("count", "gmv_fen", "discount_fen", "clawback_fen", "net_subsidy_fen")


class Figures(TypedDict):
    """A settlement row's figures, as R19 (and ``docs/API.md``'s settlement) names them."""

    count: int
    gmv_fen: int
    discount_fen: int
    clawback_fen: int
    net_subsidy_fen: int


class PlatformFigures(Figures):
    platform: str  # first in the row: the document is built {"platform": …, **figures}


class Settlement(TypedDict):
    """The R19 settlement of one date: a row per platform, and the totals."""

    campaign_id: str
    date: str
    platforms: list[PlatformFigures]
    totals: Figures


class SettlementRow(msgspec.Struct, array_like=True):
    """One R19 settlement row, without its day and platform."""

    count: int = 0
    gmv_fen: int = 0
    discount_fen: int = 0
    clawback_fen: int = 0

    @property
    def net_subsidy_fen(self) -> int:
        return self.discount_fen - self.clawback_fen

    def add(self, other: SettlementRow) -> None:
        self.count += other.count
        self.gmv_fen += other.gmv_fen
        self.discount_fen += other.discount_fen
        self.clawback_fen += other.clawback_fen

    def figures(self) -> Figures:
        """The row as R19 (and ``docs/API.md``'s settlement) names its fields."""
        return {
            "count": self.count,
            "gmv_fen": self.gmv_fen,
            "discount_fen": self.discount_fen,
            "clawback_fen": self.clawback_fen,
            "net_subsidy_fen": self.net_subsidy_fen,
        }

    def view(self) -> dict[str, object]:
        """The figures with the leverage (GMV ÷ net subsidy), as the dashboard shows them."""
        return {**self.figures(), "leverage": leverage(self.gmv_fen, self.net_subsidy_fen)}


def leverage(gmv_fen: int, net_subsidy_fen: int) -> float | None:
    """GMV ÷ net subsidy (R19, "带动消费"); None while nothing is owed."""
    return round(gmv_fen / net_subsidy_fen, 2) if net_subsidy_fen > 0 else None


class DayFigures(msgspec.Struct, array_like=True):
    """One local date of a campaign: what settled on it, and its tranche's day."""

    day: str
    settled: dict[str, SettlementRow] = msgspec.field(default_factory=dict)  # by platform
    holds: int = 0  # holds placed on this date's tranche (whatever became of them)
    hold_fen: int = 0
    first_sold_out_ms: int | None = None
    peak_grants_per_s: int = 0
    burn: dict[int, int] = msgspec.field(default_factory=dict)  # minute since open → available
    # [claims]: vouchers claimed (or won in a lottery) from this date's tranche, vouchers
    # used (their order captured) and expired unused on this date, and the value expired
    vouchers_claimed: int = 0
    vouchers_used: int = 0
    vouchers_expired: int = 0
    vouchers_expired_fen: int = 0

    def row(self, platform: str) -> SettlementRow:
        r = self.settled.get(platform)
        if r is None:
            r = self.settled[platform] = SettlementRow()
        return r

    def settled_total(self) -> SettlementRow:
        total = SettlementRow()
        for r in self.settled.values():
            total.add(r)
        return total


class DaybookState(msgspec.Struct, array_like=True):
    """A daybook in a snapshot (lijian.core.snapshot)."""

    days: list[DayFigures]
    grants_by_s: list[tuple[int, int]]


class Daybook:
    """One campaign's figures per local date; changed only by ``LedgerState.apply``."""

    def __init__(self, local_date: Callable[[int], dt.date]) -> None:
        self.local_date = local_date
        self.days: dict[str, DayFigures] = {}
        self.grants_by_s: dict[int, int] = {}  # unix s (campaign clock) → holds placed
        self._date_of_minute: dict[int, str] = {}

    # ------------------------------------------------------------------ reading
    def day(self, date: str) -> DayFigures:
        d = self.days.get(date)
        if d is None:
            d = self.days[date] = DayFigures(date)
        return d

    def date_of(self, ts_ms: int) -> str:
        """The local date of ``ts_ms`` (zones shift by whole minutes: cached per minute)."""
        minute = ts_ms // MINUTE_MS
        date = self._date_of_minute.get(minute)
        if date is None:
            if len(self._date_of_minute) >= 4 * 1440:  # a bound: four days of minutes
                self._date_of_minute.clear()
            date = self._date_of_minute[minute] = self.local_date(ts_ms).isoformat()
        return date

    def settlement(self, campaign_id: str, date: str, platforms: Iterable[str]) -> Settlement:
        """The R19 settlement of one date: a row per platform (every platform of the
        campaign, zeros included, in name order) and the totals."""
        d = self.days.get(date)
        rows = {p: SettlementRow() for p in platforms}
        if d is not None:
            rows.update(d.settled)
        total = SettlementRow()
        out: list[PlatformFigures] = []
        for platform, r in sorted(rows.items()):
            total.add(r)
            out.append({"platform": platform, **r.figures()})
        return {"campaign_id": campaign_id, "date": date, "platforms": out,
                "totals": total.figures()}  # fmt: skip

    def totals_by_platform(self, platforms: Iterable[str]) -> dict[str, SettlementRow]:
        """Every date's settlement summed per platform (every campaign platform shown)."""
        out = {p: SettlementRow() for p in platforms}
        for d in self.days.values():
            for p, r in d.settled.items():
                out.setdefault(p, SettlementRow()).add(r)
        return out

    # ------------------------------------------------------ kept by apply only
    def held(self, tranche_day: str, ts_ms: int, discount_fen: int) -> None:
        d = self.day(tranche_day)
        d.holds += 1
        d.hold_fen += discount_fen
        second = ts_ms // 1000
        by_s = self.grants_by_s
        n = by_s[second] = by_s.get(second, 0) + 1
        d.peak_grants_per_s = max(d.peak_grants_per_s, n)
        if len(by_s) > 2 * GRANTS_WINDOW_S:  # a bound: only the last window is shown
            horizon = max(by_s) - GRANTS_WINDOW_S
            for s in [s for s in by_s if s < horizon]:
                del by_s[s]

    def captured(self, ts_ms: int, platform: str, payable_fen: int, discount_fen: int) -> None:
        r = self.day(self.date_of(ts_ms)).row(platform)
        r.count += 1
        r.gmv_fen += payable_fen
        r.discount_fen += discount_fen

    def clawed_back(self, ts_ms: int, platform: str, clawback_fen: int) -> None:
        self.day(self.date_of(ts_ms)).row(platform).clawback_fen += clawback_fen

    def vouchers_claimed(self, tranche_day: str, count: int) -> None:
        self.day(tranche_day).vouchers_claimed += count

    def voucher_used(self, ts_ms: int) -> None:
        self.day(self.date_of(ts_ms)).vouchers_used += 1

    def voucher_expired(self, ts_ms: int, value_fen: int) -> None:
        d = self.day(self.date_of(ts_ms))
        d.vouchers_expired += 1
        d.vouchers_expired_fen += value_fen

    def sold_out(self, tranche_day: str, ts_ms: int) -> None:
        d = self.day(tranche_day)
        if d.first_sold_out_ms is None:
            d.first_sold_out_ms = ts_ms

    def burn_point(
        self, tranche_day: str, opens_at_ms: int, ts_ms: int, available_fen: int
    ) -> None:
        """The tranche's available money at the minute of ``ts_ms`` (the burn-down)."""
        self.day(tranche_day).burn[max(0, (ts_ms - opens_at_ms) // MINUTE_MS)] = available_fen

    # ---------------------------------------------------------------- snapshots
    def to_state(self) -> DaybookState:
        return DaybookState(list(self.days.values()), sorted(self.grants_by_s.items()))

    def restore(self, state: DaybookState) -> None:
        self.days = {d.day: d for d in state.days}
        self.grants_by_s = dict(state.grants_by_s)
