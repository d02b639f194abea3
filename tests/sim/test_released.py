"""The report explains "released": first releases (the budget split over the days) plus
re-released money (rollovers, expired holds, clawbacks), so its total may exceed the
budget while granted never does."""

from __future__ import annotations

from rich.console import Console

from lijian.core.schedule import Schedule
from lijian.sim.commands import summary_table
from lijian.sim.report import render_html
from tests.sim.conftest import Done


def test_released_is_first_releases_plus_re_released(small_run: Done) -> None:
    s = small_run.summary
    t = s["totals"]
    simulated = {d["date"] for d in s["days"]}
    base = {w.date.isoformat(): w.base_fen for w in Schedule(small_run.settings).windows}
    assert [d["first_release_fen"] for d in s["days"]] == [base[d["date"]] for d in s["days"]]
    assert t["first_release_fen"] == sum(base[d] for d in simulated)
    assert t["re_released_fen"] == t["released_fen"] - t["first_release_fen"]
    # The second day offers what the first left over (rollover): more than its own share.
    day2 = s["days"][1]
    assert day2["released_fen"] - day2["first_release_fen"] == s["days"][0]["rolled_out_fen"]
    assert t["granted_fen"] <= small_run.settings.campaign.budget_fen

    console = Console(width=200, record=True)
    console.print(summary_table(s))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "= first releases" in text and "+ re-released" in text
    assert "granted never exceeds the budget" in text
    html = render_html(s, {k: b"" for k in ("burndown", "declines", "spend", "daily")})
    assert "re-released: money an earlier day left over (rollover)" in html
