"""What one simulated campaign produced: the simulator's log of answers per day, its
counters, and the ledger's figures read at the end.

Its own module, so that the runner (which fills it) and the metrics and report (which
read it) depend on it and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from lijian.core.schedule import TrancheWindow
from lijian.core.settings import Settings
from lijian.jsonish import Json
from lijian.sim.config import SimConfig

if TYPE_CHECKING:
    from lijian.sim.population import PersonKind


class ForecastDay(TypedDict):
    """One day of the forecast (``forecast.json``, and the report's forecast column)."""

    date: str
    arrivals: int
    discount_fen_per_arrival: int
    expected_release_fen: int
    expected_demand_fen: int
    sold_out_after_s: int | None
    expected_captured_fen: int
    expected_rollover_fen: int


class TrancheFigures(TypedDict):
    """One day's tranche as the ledger holds it at the end."""

    released_fen: int
    granted_fen: int
    captured_fen: int
    clawed_back_fen: int
    held_fen: int
    available_fen: int
    rolled_out_fen: int
    late_returns_out_fen: int
    state: str


class Figures(TypedDict):
    """What the report reads from the ledger at the end (``metrics.collect_figures``)."""

    status: dict[str, Any]  # the engine's status body (``Engine.status``), as it is
    tranches: dict[str, TrancheFigures]  # day → its tranche
    settlement: dict[str, dict[str, dict[str, int]]]  # day → platform → R19 figures
    by_status: dict[str, int]
    reached: dict[str, int]  # day → persons with a captured redemption of its tranche
    savings: dict[str, int]  # person → discount kept
    persons_at_cap: int
    capped_grants: int
    spend: dict[str, dict[str, int]]  # category → platform → GMV of order lines
    lost_fen: int
    entries: int
    check: list[str]
    rehearsal: NotRequired[dict[str, Any]]  # a rehearsal's actions (lijian.sim.rehearsal)


class DaySummary(TypedDict):
    date: str
    arrivals: int
    preopen_arrivals: int
    released_fen: int
    first_release_fen: int
    granted_fen: int
    clawed_back_fen: int
    rolled_out_fen: int
    sold_out_at: str | None
    sold_out_after_s: int | None
    forecast_sold_out_after_s: int | None
    grants: int
    declines: int
    declines_by_reason: dict[str, int]
    persons_reached: int
    captured: int
    gmv_fen: int
    discount_fen: int
    clawback_fen: int
    net_subsidy_fen: int
    leverage: float | None


class Totals(TypedDict):
    budget_fen: int
    released_fen: int
    first_release_fen: int
    re_released_fen: int
    granted_fen: int
    held_fen: int
    clawed_back_fen: int
    lost_fen: int
    budget_used_share: float | None
    arrivals: int
    grants: int
    declines: int
    declines_by_reason: dict[str, int]
    days_sold_out: int
    captures: int
    voids: int
    abandoned: int
    refunds_full: int
    refunds_partial: int
    refunds_after_end: int
    redemptions_by_status: dict[str, int]
    capped_grants: int
    gmv_fen: int
    discount_fen: int
    clawback_fen: int
    net_subsidy_fen: int
    leverage: float | None
    errors: dict[str, int]


class CampaignInfo(TypedDict):
    id: str
    name: str
    budget_fen: int
    daily_open_min: int
    timezone: str
    first_day: str
    last_day: str
    days: int


class FairnessFigures(TypedDict):
    population: int
    persons_tried: int
    persons_served: int
    share_served_of_tried: float | None
    share_served_of_population: float | None
    gini_savings_tried: float
    gini_savings_served: float
    top_1pct_share_of_savings: float | None
    persons_at_cap: int
    by_kind: dict[str, dict[str, int]]  # kind → persons, tried, served, savings_fen
    spoofer_share_of_savings: float | None


class SpendFigures(TypedDict):
    by_category: dict[str, dict[str, int]]
    by_platform: dict[str, int]
    settlement_by_platform: dict[str, dict[str, int]]


class LedgerFigures(TypedDict):
    entries: int
    invariant_problems: list[str]


class Summary(TypedDict):
    """``summary.json``: the machine-readable report (deterministic for a seed)."""

    campaign: CampaignInfo
    config: Json
    days: list[DaySummary]
    settlement_other_days: dict[str, dict[str, int]]
    totals: Totals
    fairness: FairnessFigures
    spend: SpendFigures
    ledger: LedgerFigures
    forecast: list[ForecastDay] | None
    rehearsal: NotRequired[dict[str, Any]]  # a rehearsal's actions and their days
    forecast_per_arrival: NotRequired[Json]  # the forecast's model (the CLI adds it)


@dataclass(slots=True)
class DayLog:
    """What the simulator saw on one campaign day (answers, not ledger state)."""

    date: str
    arrivals: int = 0
    preopen_arrivals: int = 0
    grants: int = 0
    declines: int = 0
    declines_by_reason: dict[str, int] = field(default_factory=dict)
    errors: int = 0  # answers other than 200/201 to redemptions: should stay 0
    first_sold_out_ms: int | None = None
    # (minute since opening, available_fen, released_fen), sampled each minute while open
    burndown: list[tuple[int, int, int]] = field(default_factory=list)


@dataclass(slots=True)
class Counters:
    captures: int = 0
    voids: int = 0
    abandoned: int = 0
    refunds_full: int = 0
    refunds_partial: int = 0
    refunds_after_end: int = 0  # due after the simulated window: not sent
    errors: dict[str, int] = field(default_factory=dict)  # unexpected answers, by code


@dataclass(slots=True)
class SimRun:
    settings: Settings
    cfg: SimConfig
    db_path: Path
    windows: list[TrancheWindow]
    days: list[DayLog]
    counters: Counters
    persons_tried: set[str]
    kinds: dict[str, PersonKind]  # person id → their kind
    figures: Figures  # read from the ledger at the end (metrics.collect_figures)
