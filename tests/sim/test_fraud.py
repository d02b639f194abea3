"""Measured detection (lijian.sim.fraud): a small fixed seed gives exact figures per
pattern, and ``lijian simulate --fraud`` refuses bad input in one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

from lijian.inputs import load_settings_file
from lijian.sim.fraud import PATTERNS, TUNED_RISK, run_fraud
from tests.support import CAMPAIGN_FILE


def test_a_small_seed_gives_exact_figures() -> None:
    res = run_fraud(load_settings_file(CAMPAIGN_FILE), 2000, 7, 0.04, PATTERNS)
    assert res.thresholds == TUNED_RISK  # the seed campaign sets no [risk]: the tuned ones
    assert (res.honest_granted, res.honest_flagged) == (1920, 6)
    # pattern: (granted fen net of clawbacks, caught fen, fraudsters, flagged)
    assert res.patterns == {
        "price_inflation": (124_528, 124_528, 20, 20),
        # the last ring drawn is cut to 2 persons: at most N = 3 on one device, unseen
        "clusters": (510_147, 479_496, 20, 18),
        "refund_rebuy": (54_516, 54_516, 20, 20),
        "velocity": (391_400, 391_400, 20, 20),
    }
    assert res.flags_by_code == {
        "price_above_reference": 38, "velocity": 32, "refund_rebuy": 44,
        "shared_identity_cluster": 12, "category_bulk": 2,
    }  # fmt: skip


def test_bad_fraud_options_are_one_line_and_exit_2(tmp_path: object) -> None:
    base = [sys.executable, "-m", "lijian.cli", "simulate", "--campaign", str(CAMPAIGN_FILE)]
    for extra, says in (
        (["--fraud", "phishing"], "--fraud: one or more of"),
        (["--fraud", "velocity", "--fraud-share", "0.9"], "--fraud-share must be above 0"),
        (["--fraud", "velocity", "--persons", "0"], "--persons must be 1..200000"),
    ):
        cmd = [*base, *extra, "--out", str(tmp_path)]
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        out = (r.stdout + r.stderr).strip()
        assert says in out and len(out.splitlines()) == 1, out
