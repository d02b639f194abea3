"""The simulator's progress where no terminal shows live bars (a log file, CI): a line
on stderr when a bar starts, then at most one every LINE_EVERY_S, so a long run never
looks hung."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from lijian.sim.progress import LINE_EVERY_S, RichProgress

CAMPAIGN = Path(__file__).resolve().parents[2] / "campaigns" / "chengdu-2025-spring.toml"


def test_lines_when_the_output_is_not_a_terminal() -> None:
    out, err = io.StringIO(), io.StringIO()
    now = [0.0]
    console = Console(file=out, force_terminal=False, width=120)
    with RichProgress(console, lambda: now[0], err) as p:
        p.start("persons", 1_000)
        p.advance("persons", 10)  # within LINE_EVERY_S of the start's line: none
        now[0] = LINE_EVERY_S
        p.advance("persons", 490)
        now[0] += 1.0
        p.advance("persons", 500)  # 1 s later: none
        p.start("day 2025-02-12", 20)  # a new bar's line comes at once
        p.note("2025-02-12: 20 arrivals")  # a note is part of the output: stdout
    assert err.getvalue().splitlines() == [
        "  persons: 0/1,000 (0%)",
        "  persons: 500/1,000 (50%)",
        "  day 2025-02-12: 0/20 (0%)",
    ]
    assert out.getvalue() == "  2025-02-12: 20 arrivals\n"


def test_no_lines_on_a_terminal() -> None:
    out, err = io.StringIO(), io.StringIO()
    with RichProgress(Console(file=out, force_terminal=True, width=120), line_file=err) as p:
        p.start("persons", 10)
        p.advance("persons", 10)
    assert err.getvalue() == ""  # a live bar instead
    assert "persons" in out.getvalue()


def test_lijian_simulate_into_a_file_prints_progress_lines_on_stderr(tmp_path: Path) -> None:
    """The real command with its output in files (no terminal): progress lines on stderr,
    the summary on stdout, and stdout without them."""
    out_dir = tmp_path / "sim"
    proc = subprocess.run(
        [sys.executable, "-m", "lijian.cli", "simulate", "--campaign", str(CAMPAIGN),
         "--persons", "300", "--days", "1", "--out", str(out_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "  population: 0/300 (0%)" in lines
    assert "  day 2025-02-12: 0/68 (0%)" in lines  # 300 × 0.15 × 1.5 arrivals on day one
    assert "population: 0/300" not in proc.stdout
    assert "lijian audit --db" in proc.stdout
