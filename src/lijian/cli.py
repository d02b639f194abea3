"""The ``lijian`` command line (typer + rich)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lijian.core.money import format_cny
from lijian.core.schedule import Schedule
from lijian.core.settings import SettingsError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="立减 lijian: voucher campaign engine"
)
campaign_app = typer.Typer(no_args_is_help=True, help="Campaign settings files")
app.add_typer(campaign_app, name="campaign")
console = Console()
err = Console(stderr=True)


@campaign_app.command("check")
def campaign_check(file: Annotated[Path, typer.Argument(help="campaign TOML file")]) -> None:
    """Validate a settings file; print its tranche schedule, or every problem."""
    from lijian.engine import load_settings_file

    try:
        s = load_settings_file(file)
    except SettingsError as exc:
        err.print(f"[red]{file}: {len(exc.problems)} problem(s)[/red]")
        for p in exc.problems:
            err.print(f"  {p.path}: {p.message}")
        raise typer.Exit(1) from None
    sched = Schedule(s)
    c = s.campaign
    t = Table(title=f"{c.name} ({c.id})")
    t.add_column("date")
    t.add_column("opens")
    t.add_column("closes")
    t.add_column("tranche (fen)", justify="right")
    t.add_column("CNY", justify="right")
    from lijian.core.views import iso

    for w in sched.windows:
        t.add_row(
            str(w.date),
            iso(w.opens_at_ms, sched.tz),
            iso(w.closes_at_ms, sched.tz),
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


@app.command()
def audit(
    db: Annotated[Path, typer.Option("--db", help="SQLite ledger file")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Replay every stored entry from zero and check every invariant (exit 1 if any fails)."""
    from lijian.audit import audit_db

    try:
        rep = audit_db(db)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        print(
            json.dumps(
                {
                    "ok": rep.ok,
                    "entries": rep.entries,
                    "checks": rep.checks,
                    "violations": rep.violations,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for c in rep.checks:
            mark = "[green]ok[/green]" if c["ok"] else "[red]FAIL[/red]"
            console.print(f"{mark}  {c['name']}")
        for v in rep.violations:
            console.print(f"  [red]violation:[/red] {v}")
        console.print(
            f"audit of {db}: {rep.entries:,} entries replayed, {len(rep.violations)} violation(s)"
        )
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="where the demo ledger goes")] = Path("out/demo.db"),
    persons: Annotated[int, typer.Option(help="synthetic persons")] = 20_000,
) -> None:
    """Run one Chengdu campaign day in-process on the embedded default and audit it."""
    from lijian.demo import run_demo

    sys.exit(run_demo(db, persons, console))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
