"""The torture campaign: small enough to sell out in seconds, with tight person caps."""

from __future__ import annotations

from lijian.core.settings import Settings
from tests.support import settings

START = "2025-02-12T10:00:00+08:00"
DAY = "2025-02-12"
TRANCHE_FEN = 600_000  # per day, 17 equal days
PERSONS = 150  # × cap 6,000 fen = 900,000 fen of demand for 600,000: both limits bite
CAP_FEN = 6_000
HOLD_TTL_S = 20  # with the clock moving 2 s per round, holds expire during the run
CLOCK_STEP_MS = 2_000
BATCH = 25
MAX_ROUNDS = 100_000  # a bound: the supervisor kills the node long before


def campaign() -> Settings:
    return settings(
        campaign={"budget_fen": TRANCHE_FEN * 17},
        limits={"person_savings_cap_fen": CAP_FEN, "hold_ttl_s": HOLD_TTL_S},
    )
