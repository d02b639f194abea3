"""The ``[risk]`` thresholds of the detectors over the ledger (lijian.core.detectors).

Kept apart from core/settings.py, which reads them through ``read_detectors`` with its
own table reader, so that the settings module only holds one field for them. Every
threshold is optional: an absent one turns its detector off, and a campaign without any
behaves exactly as before the detectors existed (no entry, no index, no cost).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

CLUSTER_PERSONS_MAX = 1_000  # persons on one address or device before a flag
REFUND_REBUY_DAYS_MAX = 90
VELOCITY_REDEMPTIONS_MAX = 1_000
VELOCITY_WINDOW_MIN_MAX = 24 * 60  # one day: a longer window is a count limit ([limits])
CATEGORY_BULK_FACTOR_MAX = 1_000
CATEGORY_BULK_MIN_PERSONS_MAX = 1_000_000
CATEGORY_BULK_MIN_PERSONS_DEFAULT = 50  # a median of fewer persons says little


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    # shared_identity_cluster: more than N persons on one delivery address text or device
    cluster_persons_max: int | None = None
    # refund_rebuy: a SKU bought again within N days of its refund
    refund_rebuy_days: int | None = None
    # velocity: more than N redemptions by one person (or linked group) within M minutes
    velocity_redemptions_max: int | None = None
    velocity_window_min: int | None = None
    # category_bulk: a person's spend in one category above factor × the campaign's
    # median per person in it, once at least min_persons persons bought in it
    category_bulk_factor: int | None = None
    category_bulk_min_persons: int = CATEGORY_BULK_MIN_PERSONS_DEFAULT

    @property
    def on(self) -> bool:
        """A detector over the ledger is on (the writer's hook is skipped otherwise)."""
        return (
            self.cluster_persons_max is not None
            or self.refund_rebuy_days is not None
            or self.velocity_redemptions_max is not None
            or self.category_bulk_factor is not None
        )

    @property
    def notes(self) -> bool:
        """A grant needs a RiskNoted entry (what HoldPlaced does not carry)."""
        return self.cluster_persons_max is not None or self.category_bulk_factor is not None


class TableReader(Protocol):
    """What core/settings.py's reader of one table offers (get, problem, doc)."""

    doc: Mapping[str, object]

    def get(self, key: str, kind: type[int], default: int | None,
            check: Callable[[int], str | None]) -> int: ...  # fmt: skip

    def problem(self, key: str, message: str) -> None: ...


def _within(low: int, high: int) -> Callable[[int], str | None]:
    return lambda v: None if low <= v <= high else f"must be {low}..{high}"


def read_detectors(r: TableReader) -> DetectorSettings:
    """The detectors' thresholds of a ``[risk]`` table; problems go to ``r``."""

    def opt(key: str, low: int, high: int) -> int | None:
        return r.get(key, int, 0, _within(low, high)) if key in r.doc else None

    cluster = opt("cluster_persons_max", 1, CLUSTER_PERSONS_MAX)
    rebuy = opt("refund_rebuy_days", 1, REFUND_REBUY_DAYS_MAX)
    vel_n = opt("velocity_redemptions_max", 1, VELOCITY_REDEMPTIONS_MAX)
    vel_m = opt("velocity_window_min", 1, VELOCITY_WINDOW_MIN_MAX)
    if (vel_n is None) != (vel_m is None):
        missing = "velocity_window_min" if vel_m is None else "velocity_redemptions_max"
        r.problem(missing, "is required with the other velocity threshold")
    factor = opt("category_bulk_factor", 2, CATEGORY_BULK_FACTOR_MAX)
    least = opt("category_bulk_min_persons", 1, CATEGORY_BULK_MIN_PERSONS_MAX)
    if least is not None and factor is None:
        r.problem("category_bulk_min_persons", "needs category_bulk_factor")
    return DetectorSettings(
        cluster, rebuy, vel_n, vel_m, factor,
        CATEGORY_BULK_MIN_PERSONS_DEFAULT if least is None else least,
    )  # fmt: skip
