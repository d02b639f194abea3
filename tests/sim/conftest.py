"""Small simulations shared by the simulator's tests (one run per worker, reused)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from lijian.core.settings import Settings, parse_settings
from lijian.sim.config import SimConfig
from lijian.sim.forecast import forecast
from lijian.sim.metrics import build_summary
from lijian.sim.results import SimRun
from lijian.sim.runner import World, build_world, run_simulation
from tests.support import seed_doc

# Three days of 3,000 CNY each: a few thousand persons sell them out at the rush.
SMALL_BUDGET_FEN = 900_000
SMALL = SimConfig(persons=3_000, seed=7, days=2, catalog_skus=1_000, participation=0.2)


def small_settings(budget_fen: int = SMALL_BUDGET_FEN, days: int = 3) -> Settings:
    doc = copy.deepcopy(seed_doc())
    doc["campaign"]["budget_fen"] = budget_fen
    doc["campaign"]["end_date"] = f"2025-02-{11 + days}"
    return parse_settings(doc)


@dataclasses.dataclass
class Done:
    settings: Settings
    cfg: SimConfig
    world: World
    run: SimRun
    summary: dict[str, Any]
    db: Path


def simulate(tmp: Path, cfg: SimConfig = SMALL, settings: Settings | None = None) -> Done:
    settings = settings or small_settings()
    world = build_world(settings, cfg)
    _, fc = forecast(settings, cfg, world, samples=2_000)
    run = run_simulation(settings, cfg, tmp / "sim.db", world=world)
    return Done(settings, cfg, world, run, build_summary(run, fc), tmp / "sim.db")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Done:
    return simulate(tmp_path_factory.mktemp("sim"))
