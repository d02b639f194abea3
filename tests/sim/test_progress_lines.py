"""The simulator's progress where no terminal shows live bars (a log file, CI): a line
when a bar starts, then at most one every LINE_EVERY_S, so a long run never looks hung."""

from __future__ import annotations

import io

from rich.console import Console

from lijian.sim.progress import LINE_EVERY_S, RichProgress


def test_lines_when_the_output_is_not_a_terminal() -> None:
    out = io.StringIO()
    now = [0.0]
    with RichProgress(Console(file=out, force_terminal=False, width=120), lambda: now[0]) as p:
        p.start("persons", 1_000)
        p.advance("persons", 10)  # within LINE_EVERY_S of the start's line: none
        now[0] = LINE_EVERY_S
        p.advance("persons", 490)
        now[0] += 1.0
        p.advance("persons", 500)  # 1 s later: none
        p.start("day 2025-02-12", 20)  # a new bar's line comes at once
    assert out.getvalue().splitlines() == [
        "  persons: 0/1,000",
        "  persons: 500/1,000",
        "  day 2025-02-12: 0/20",
    ]


def test_no_lines_on_a_terminal() -> None:
    out = io.StringIO()
    with RichProgress(Console(file=out, force_terminal=True, width=120)) as p:
        p.start("persons", 10)
        p.advance("persons", 10)
    assert "persons: 0/10" not in out.getvalue()  # a live bar instead
    assert "persons" in out.getvalue()
