"""The ledger's records: one campaign's book, its tranches, persons and redemptions.

Plain data with a few read-only helpers; nothing here decides or changes anything. The
records are msgspec Structs so that a snapshot (:mod:`lijian.core.snapshot`) encodes them
as they are. Only :meth:`lijian.core.state.LedgerState.apply` changes their figures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import msgspec

from lijian.core.daybook import Daybook
from lijian.core.identity import MEMBERS_LISTED_MAX, IdentityGroups
from lijian.core.schedule import Schedule, TrancheWindow, local_at, to_ms
from lijian.core.settings import Settings
from lijian.core.status import RedemptionStatus, TrancheState

# The tranche states by their short names: they are read on every hold.
SCHEDULED, OPEN, CLOSED = TrancheState.SCHEDULED, TrancheState.OPEN, TrancheState.CLOSED
HELD = RedemptionStatus.HELD


class Tranche(msgspec.Struct, array_like=True):
    day: str
    base_fen: int
    opens_at_ms: int
    closes_at_ms: int
    state: TrancheState = SCHEDULED
    inflow_pending_fen: int = 0  # money sent here before it opened (rollover, returns)
    released_fen: int = 0  # base + every inflow, once open
    available_fen: int = 0
    held_fen: int = 0
    captured_fen: int = 0  # gross captured discounts drawn from this tranche
    clawed_back_fen: int = 0  # clawbacks of redemptions drawn from this tranche
    rolled_out_fen: int = 0  # leftover sent on at close, or lost
    late_returns_out_fen: int = 0  # holds voided/expired after close, sent on or lost
    sold_out_at_ms: int | None = None
    voucher_fen: int = 0  # value of claimed vouchers sitting here (lijian.core.vouchers)
    vouchers_claimed: int = 0  # vouchers claimed from this tranche

    @property
    def granted_fen(self) -> int:
        return self.captured_fen - self.clawed_back_fen

    @property
    def unreleased_fen(self) -> int:
        return self.base_fen + self.inflow_pending_fen if self.state == SCHEDULED else 0


class PendingRestore(msgspec.Struct, order=True, array_like=True, gc=False):
    # Field order is the heap order: by time, then a stable tie-break.
    at_ms: int
    redemption_id: str
    refund_id: str
    amount_fen: int
    done: bool = False


# The records below hold no reference back to a record (no cycle can pass through them),
# so they are not tracked by the collector (gc=False): 16 B less each, and a million of
# them are never walked by a collection.


class Person(msgspec.Struct, array_like=True, gc=False):
    person_id: str
    used_fen: int = 0  # captured discounts, minus quota restored
    held_fen: int = 0
    # Redemptions counted (not voided/expired) per local day, compact: the latest day's
    # count in two fields, the earlier days (a person back on another day) in a dict
    # made only then (a dict per person cost 184 B for what is one day for most persons).
    # Their total is ``count_total``. One copy of each day, whatever the number of persons:
    # apply interns it, a snapshot shares it (lijian.core.person_columns).
    day: str | None = None
    day_count: int = 0
    earlier_days: dict[str, int] | None = None
    restores: list[PendingRestore] | None = None  # made at a person's first restore

    @property
    def count_total(self) -> int:
        """Redemptions counted (not voided or expired), every day's."""
        return self.day_count + (sum(self.earlier_days.values()) if self.earlier_days else 0)

    def count_on(self, day: str) -> int:
        """Redemptions counted on ``day`` (not voided or expired)."""
        if day == self.day:
            return self.day_count
        return self.earlier_days.get(day, 0) if self.earlier_days else 0

    def count_by_day(self) -> dict[str, int]:
        """Every day's count, as a new dict (a linked group starts from it)."""
        out = dict(self.earlier_days) if self.earlier_days else {}
        if self.day is not None:
            out[self.day] = self.day_count
        return out

    def add_count(self, day: str, n: int) -> None:
        """``n`` more redemptions counted on ``day`` (negative: fewer)."""
        if day == self.day or self.day is None:
            self.day, self.day_count = day, self.day_count + n
        elif day > self.day:  # a new latest day: the current one joins the earlier days
            earlier = self.earlier_days if self.earlier_days is not None else {}
            earlier[self.day] = self.day_count
            self.earlier_days = earlier
            self.day, self.day_count = day, n
        else:
            earlier = self.earlier_days if self.earlier_days is not None else {}
            earlier[day] = earlier.get(day, 0) + n
            self.earlier_days = earlier
        assert self.count_on(day) >= 0, "a day's count never goes below zero"


class Draw(msgspec.Struct, array_like=True):
    """A day's draw: its commitment, stored before the open, and its seed once revealed."""

    day: str
    commitment: str
    committed_ms: int
    seed: str | None = None
    revealed_ms: int | None = None
    problem: str | None = None  # a revealed seed that does not match the commitment


class WindowRecord(msgspec.Struct, array_like=True):
    """What applying a ``WindowDecided`` found (lijian.core.window.check_window)."""

    day: str
    decided_ms: int
    arrivals: int
    persons: int  # distinct person keys (groups) among the arrivals
    granted: int
    problems: list[str] = msgspec.field(default_factory=list)


@dataclass(slots=True, frozen=True)
class GroupFigures:
    """A person's figures for the cap and count limits: its whole linked group's."""

    used_fen: int
    held_fen: int
    count_total: int
    count_today: int


@dataclass(slots=True)
class Book:
    """One campaign's state."""

    settings: Settings
    schedule: Schedule
    tranches: dict[str, Tranche]
    order_days: list[str]
    persons: dict[str, Person] = field(default_factory=dict)
    lost_fen: int = 0  # expired leftovers + forfeited clawbacks + late returns with nowhere to go
    next_transition: int = 0  # index into order_days of the next tranche to open/close
    draws: dict[str, Draw] = field(default_factory=dict)  # day → its draw
    # Days whose commitment is stored and seed not yet revealed, in date order.
    unrevealed: list[str] = field(default_factory=list)
    identity: IdentityGroups = field(default_factory=IdentityGroups)
    windows: dict[str, WindowRecord] = field(default_factory=dict)  # day → decided window
    # Operator changes (lijian.core.changes): only their entries' apply sets these.
    paused: bool = False
    budget_delta_fen: int = 0  # applied budget amendments, net
    withdrawn_fen: int = 0  # unreleased money of days an "end" amendment cancelled
    last_day: str | None = None  # an "end" amendment's last date; None = the settings'
    # Figures per local day and platform (lijian.core.daybook), kept by apply.
    daybook: Daybook = field(init=False)
    # The money of the tranches not yet open (each one's ``unreleased_fen``), kept by
    # apply: the budget left is read on every decline for want of money, and summing
    # the campaign's tranches there cost more than the rest of the decision.
    unreleased_fen: int = field(init=False)

    def __post_init__(self) -> None:
        self.daybook = Daybook(self.schedule.local_date)
        self.recount_unreleased()

    def recount_unreleased(self) -> None:
        """``unreleased_fen`` from the tranches (a new book, a snapshot's tranches)."""
        self.unreleased_fen = sum(t.unreleased_fen for t in self.tranches.values())

    @property
    def id(self) -> str:
        return self.settings.campaign.id

    def open_tranche(self) -> Tranche | None:
        """The tranche that is open now, in O(1): transitions alternate open, close."""
        i = self.next_transition
        return self.tranches[self.order_days[i // 2]] if i % 2 == 1 else None

    def tranche_at(self, now_ms: int) -> Tranche | None:
        w = self.schedule.window_at(now_ms)
        return self.tranches[w.date.isoformat()] if w else None

    def next_open_after(self, now_ms: int) -> Tranche | None:
        w = self.schedule.next_window_after(now_ms)
        return self.tranches[w.date.isoformat()] if w and self.serves(w.date.isoformat()) else None

    def serves(self, day: str) -> bool:
        """Whether ``day`` is still a day of the campaign (not cut by an "end" amendment)."""
        return self.last_day is None or day <= self.last_day

    @property
    def budget_fen(self) -> int:
        """The budget now: the settings' plus every applied budget amendment."""
        return self.settings.campaign.budget_fen + self.budget_delta_fen

    @property
    def ends_at_ms(self) -> int:
        """The end of the campaign: the settings', or midnight after an amended last day."""
        if self.last_day is None:
            return self.schedule.ends_at_ms
        day = dt.date.fromisoformat(self.last_day)
        return to_ms(local_at(day, 1440, self.schedule.tz))

    def first_not_closed(self) -> Tranche | None:
        # Transitions alternate open, close per day: index i // 2 is the first day that
        # is not closed (it is open when i is odd, scheduled when i is even).
        i = self.next_transition // 2
        return self.tranches[self.order_days[i]] if i < len(self.order_days) else None

    def group_figures(self, keys: list[str], day: str) -> GroupFigures:
        """The figures of the groups of these (distinct) keys together: each group's
        running totals, a person never linked its own figures. O(len(keys)), whatever
        the groups' sizes."""
        used = held = total = today = 0
        for key in keys:
            t = self.identity.totals(key)
            if t is not None:
                used += t.used_fen
                held += t.held_fen
                total += t.count_total
                today += t.count_by_day.get(day, 0)
                continue
            p = self.persons.get(key)
            if p is not None:
                used += p.used_fen
                held += p.held_fen
                total += p.count_total
                today += p.count_on(day)
        return GroupFigures(used, held, total, today)

    def figures_of(self, person_id: str) -> tuple[int, int, int, dict[str, int]]:
        """A person's own figures, as a group starts from them (lijian.core.identity)."""
        p = self.persons.get(person_id)
        if p is None:
            return (0, 0, 0, {})
        return (p.used_fen, p.held_fen, p.count_total, p.count_by_day())

    def members(self, person_id: str) -> list[str]:
        """The persons counted together with ``person_id`` ([identity] link_by), the
        first one first (at most MEMBERS_LISTED_MAX of them)."""
        if not self.settings.identity.link_by:
            return [person_id]
        return self.identity.members(person_id, MEMBERS_LISTED_MAX)

    def remaining_total_fen(self) -> int:
        """The money not yet granted or held: the open tranche's available and what is
        not released yet (only an open tranche has available money: an invariant,
        core/invariants.py, which also checks this figure against every tranche's)."""
        t = self.open_tranche()
        return self.unreleased_fen + (t.available_fen if t is not None else 0)


def tranche_from_window(w: TrancheWindow) -> Tranche:
    return Tranche(w.date.isoformat(), w.base_fen, w.opens_at_ms, w.closes_at_ms)
