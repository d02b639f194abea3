"""``lijian campaign check``: a campaign settings file validated, its tranches shown."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from lijian.core.money import format_cny
from lijian.core.schedule import Schedule
from lijian.core.settings import SettingsError

campaign_app = typer.Typer(no_args_is_help=True, help="Campaign settings files")
console = Console()
err = Console(stderr=True)


@campaign_app.command("check")
def campaign_check(file: Annotated[Path, typer.Argument(help="campaign TOML file")]) -> None:
    """Validate a settings file; print its tranche schedule, or every problem (exit 1)."""
    from lijian.inputs import load_settings_file

    if not file.is_file():
        sys.stderr.write(f"lijian campaign check: no file at {file}\n")
        raise typer.Exit(2)
    try:
        s = load_settings_file(file)
    except SettingsError as exc:
        err.print(f"[red]{file}: {len(exc.problems)} problem(s)[/red]")
        for p in exc.problems:
            err.print(f"  {p.path}: {p.message}")
        raise typer.Exit(1) from None
    sched = Schedule(s)
    c = s.campaign
    # Local wall times beside the day (the offset once, in the caption): the table fits
    # 80 columns, and no column is ever cut (no_wrap, no ellipsis).
    offset = dt.datetime.fromtimestamp(sched.windows[0].opens_at_ms / 1000, sched.tz).strftime("%z")
    t = Table(title=f"{c.name} ({c.id})",
              caption=f"times local to {c.timezone} (UTC{offset[:3]}:{offset[3:]})")  # fmt: skip
    for name in ("date", "opens", "closes"):
        t.add_column(name, no_wrap=True)
    t.add_column("tranche (fen)", justify="right", no_wrap=True)
    t.add_column("CNY", justify="right", no_wrap=True)
    for w in sched.windows:
        t.add_row(
            str(w.date),
            wall_time(w.opens_at_ms, w.date, sched.tz),
            wall_time(w.closes_at_ms, w.date, sched.tz),
            f"{w.base_fen:,}",
            format_cny(w.base_fen),
        )
    total = sum(w.base_fen for w in sched.windows)
    t.add_row("total", "", "", f"{total:,}", format_cny(total))
    console.print(t)
    console.print(
        f"budget {c.budget_fen:,} fen = tranche sum {total:,} fen: "
        f"{'[green]exact[/green]' if total == c.budget_fen else '[red]MISMATCH[/red]'}"
    )


def wall_time(ts_ms: int, day: dt.date, tz: ZoneInfo) -> str:
    """``10:00`` on ``day``, ``24:00`` for the midnight that ends it, else the full time."""
    local = dt.datetime.fromtimestamp(ts_ms / 1000, tz)
    if local.date() == day:
        return local.strftime("%H:%M")
    if local.date() == day + dt.timedelta(days=1) and local.time() == dt.time(0):
        return "24:00"
    return local.isoformat(timespec="minutes")
