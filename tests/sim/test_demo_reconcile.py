"""`make demo`'s daily reconciliation: a sample channel file for the first day of a
simulated ledger, then `lijian reconcile --date` on it: that day's captured redemptions
only (the other day's are not reported missing), 0 mismatches. And the same file read
back by the command in a separate process."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from lijian.core.status import SETTLED
from lijian.demo import reconcile_one_day
from lijian.reconcile import replay_db
from tests.sim.conftest import Done

LIJIAN = [sys.executable, "-m", "lijian.cli"]


def test_the_demo_reconciles_its_first_day(small_run: Done, tmp_path: Path) -> None:
    text = io.StringIO()
    code = reconcile_one_day(small_run.db, small_run.settings, tmp_path,
                             Console(file=text, width=200))  # fmt: skip
    assert code == 0, text.getvalue()
    channel = tmp_path / "unionpay-2025-02-12.csv"
    with open(channel, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    ledger = replay_db(small_run.db)
    captured = {r.day: 0 for r in ledger.redemptions.values()}
    for r in ledger.redemptions.values():
        if r.status in SETTLED:
            captured[r.day] += 1
    assert len(rows) == captured["2025-02-12"] > 0
    assert captured.get("2025-02-13", 0) > 0  # another day, left out of the file and the check
    out = text.getvalue()
    assert f"({len(rows):,} captured redemptions of 2025-02-12)" in out
    assert "day 2025-02-12: 0 mismatch(es) (clean)" in out
    command = next(ln for ln in out.splitlines() if ln.startswith("lijian reconcile "))
    r = subprocess.run([*LIJIAN, *command.split()[1:]], capture_output=True, text=True,
                       timeout=120, check=False)  # fmt: skip
    assert r.returncode == 0 and "0 mismatch(es)" in r.stderr, r.stdout + r.stderr
