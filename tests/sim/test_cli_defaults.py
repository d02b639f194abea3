"""`lijian simulate`'s option defaults are the simulator's own (SimConfig, ArrivalCurve),
which docs/SIMULATOR.md documents: a run from the command line is the documented one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from lijian.cli import simulate
from lijian.sim.config import ArrivalCurve, SimConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "SIMULATOR.md"
SAME_AS = {
    "persons": SimConfig().persons,
    "seed": SimConfig().seed,
    "days": SimConfig().days,
    "catalog_skus": SimConfig().catalog_skus,
    "participation": SimConfig().participation,
    "burst_share": ArrivalCurve().burst_share,
    "burst_tau_s": ArrivalCurve().burst_tau_s,
}


def test_the_command_line_defaults_are_the_simulators_and_the_docs() -> None:
    params = inspect.signature(simulate).parameters
    assert {k: params[k].default for k in SAME_AS} == SAME_AS
    block = DOC.read_text(encoding="utf-8").split("```")[1]  # the usage block
    usage = block[block.index("lijian simulate") : block.index("lijian demo")]
    pairs = re.findall(r"\[--([a-z-]+) ([0-9.]+)\]", usage)
    documented = {name.replace("-", "_"): value for name, value in pairs}
    for name, value in documented.items():
        if name in SAME_AS:
            assert float(value) == float(SAME_AS[name]), name
    assert {"persons", "participation", "burst_share", "burst_tau_s"} <= documented.keys()
