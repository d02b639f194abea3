"""What one simulated campaign produced: the simulator's log of answers per day, its
counters, and the ledger's figures read at the end.

Its own module, so that the runner (which fills it) and the metrics and report (which
read it) depend on it and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from lijian.core.schedule import TrancheWindow
from lijian.core.settings import Settings
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
    figures: dict[str, Any]  # read from the ledger at the end (metrics.collect_figures)
