"""The ``lijian simulate`` and ``lijian demo`` pipelines: world → forecast → simulation
→ report → audit, with progress bars and a summary table on the console."""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from lijian.audit import AuditReport, audit_db
from lijian.core.settings import Settings
from lijian.sim.config import SimConfig
from lijian.sim.forecast import SAMPLES_DEFAULT, forecast
from lijian.sim.metrics import build_summary, clock_after
from lijian.sim.progress import RichProgress
from lijian.sim.rehearsal import add_baseline
from lijian.sim.rehearsal_report import rehearsal_html, rehearsal_table
from lijian.sim.report import thousands_cny as _k
from lijian.sim.report import write_report
from lijian.sim.results import Summary
from lijian.sim.runner import (
    build_world,
    campaign_windows,
    rehearse,
    run_simulation,
    simulation_end_ms,
)
from lijian.sim.script import Script, ScriptError, load_script

DB_NAME = "simulation.db"
BASELINE_DB_NAME = "baseline.db"  # a rehearsal's run without its script


@dataclass(slots=True)
class Outcome:
    summary: Summary
    paths: dict[str, Path]
    audit: AuditReport
    wall_s: dict[str, float]  # phase → seconds (console only: never in the report)
    cpu_s: float = 0.0
    sim_cpu_s: float = 0.0  # the simulation phase's CPU time (process, all threads)
    sim_arrivals: int = 0  # arrivals the simulation phase ran (a rehearsal runs two)


def simulate_and_report(
    settings: Settings,
    cfg: SimConfig,
    out_dir: Path,
    console: Console,
    script: Script | None = None,
) -> Outcome:
    cfg.check()
    wall: dict[str, float] = {}
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    db = out_dir / DB_NAME
    with RichProgress(console) as progress:
        world = build_world(settings, cfg, progress)
        wall["world"] = time.perf_counter() - t0
        pa, fc = forecast(settings, cfg, world, SAMPLES_DEFAULT)
        wall["forecast"] = time.perf_counter() - t0 - sum(wall.values())
        cpu_sim0 = time.process_time()
        base = None
        if script is None:
            run = run_simulation(settings, cfg, db, progress, world)
        else:  # twice: with the script's actions and without (the baseline)
            run, base = rehearse(
                settings, cfg, script, db, out_dir / BASELINE_DB_NAME, progress, world
            )
        wall["simulation"] = time.perf_counter() - t0 - sum(wall.values())
        sim_cpu_s = time.process_time() - cpu_sim0
        sim_arrivals = sum(d.arrivals for r in (run, base) if r is not None for d in r.days)
    summary = build_summary(run, fc)
    if base is not None:
        add_baseline(summary, build_summary(base))
    summary["forecast_per_arrival"] = dataclasses.asdict(pa)
    with console.status("charts and report"):
        paths = write_report(run, summary, out_dir, rehearsal_html(summary))
    paths["db"] = db
    wall["report"] = time.perf_counter() - t0 - sum(wall.values())
    # The audit replays the whole ledger into a state of its own: the simulation's world
    # and run (the persons, their orders, the engine's ledger) go first, or the peak
    # memory is both at once.
    del world, run, base
    gc.collect()
    with console.status(f"lijian audit --db {db}"):
        rep = audit_db(db)
    wall["audit"] = time.perf_counter() - t0 - sum(wall.values())
    return Outcome(summary, paths, rep, wall, time.process_time() - cpu0, sim_cpu_s, sim_arrivals)


TABLE_MIN_WIDTH = 112  # ten columns: wider than a CI log's default 80


def print_outcome(out: Outcome, console: Console) -> None:
    wide = console
    if console.width < TABLE_MIN_WIDTH and not console.is_terminal:
        # A log file or a pipe (CI, ``make demo > log``): nothing to wrap at, so do not
        # squeeze the table into rich's default 80 columns.
        wide = Console(width=TABLE_MIN_WIDTH, file=console.file)
    wide.print(summary_table(out.summary))
    acted = rehearsal_table(out.summary)
    if acted is not None:
        wide.print(acted)
    f = out.summary["fairness"]
    console.print(
        f"fairness: {f['persons_served']:,} of {f['persons_tried']:,} persons who tried were "
        f"served ({f['share_served_of_tried']}); Gini of savings {f['gini_savings_tried']}; "
        f"spoofers' share of savings {f['spoofer_share_of_savings']}"
    )
    errors = out.summary["totals"]["errors"]
    if errors:
        console.print(f"[yellow]unexpected engine answers: {errors}[/yellow]")
    console.print(f"report: [bold]{out.paths['html']}[/bold]  (summary: {out.paths['summary']})")
    rep = out.audit
    mark = "[green]ok[/green]" if rep.ok else "[red]FAILED[/red]"
    console.print(
        f"lijian audit --db {out.paths['db']}: {mark} "
        f"({rep.entries:,} entries replayed, {len(rep.violations)} violation(s))"
    )
    for c in rep.checks:
        console.print(f"  {'ok  ' if c['ok'] else 'FAIL'}  {c['name']}")
    for v in rep.violations[:20]:
        console.print(f"  [red]{v}[/red]")
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in out.wall_s.items())
    console.print(
        f"[dim]wall time: {phases}; total {sum(out.wall_s.values()):.1f}s "
        f"(CPU {out.cpu_s:.1f}s)[/dim]"
    )
    # The speed of the simulation phase, by the wall clock and per CPU second (on a
    # shared machine the second is the one that compares between runs).
    arrivals = out.sim_arrivals
    sim_s = out.wall_s.get("simulation", 0.0)
    if arrivals and sim_s > 0 and out.sim_cpu_s > 0:
        console.print(
            f"[dim]simulation: {arrivals:,} arrivals in {sim_s:.1f}s "
            f"({arrivals / sim_s:,.0f}/s; CPU {out.sim_cpu_s:.1f}s, "
            f"{arrivals / out.sim_cpu_s:,.0f}/CPU s)[/dim]"
        )


def summary_table(summary: Summary) -> Table:
    c, t = summary["campaign"], summary["totals"]
    table = Table(
        title=f"{c['name']} ({c['id']}): simulated; money in thousands of CNY",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in (
        "day",
        "released",
        "granted",
        "sold out",
        "forecast",
        "grants",
        "declines",
        "persons",
        "GMV",
        "leverage",
    ):
        table.add_column(col, justify="left" if col == "day" else "right", no_wrap=True)
    for d in summary["days"]:
        table.add_row(
            d["date"][5:],
            _k(d["released_fen"]),
            _k(d["granted_fen"]),
            d["sold_out_at"][11:19] if d["sold_out_at"] else "—",
            clock_after(d["forecast_sold_out_after_s"], c["daily_open_min"] * 60),
            f"{d['grants']:,}",
            f"{d['declines']:,}",
            f"{d['persons_reached']:,}",
            _k(d["gmv_fen"]),
            f"{d['leverage']}",
        )
    table.add_section()
    table.add_row(
        "total",
        _k(t["released_fen"]),
        _k(t["granted_fen"]),
        f"{t['days_sold_out']}/{c['days']} d",
        "",
        f"{t['grants']:,}",
        f"{t['declines']:,}",
        f"{summary['fairness']['persons_served']:,}",
        _k(t["gmv_fen"]),
        f"{t['leverage']}",
        style="bold",
    )
    # "released" counts money each time it is offered: a day's own share plus what earlier
    # days rolled over or got back. The total is therefore above the budget.
    table.caption = (
        f"released {_k(t['released_fen'])} = first releases {_k(t['first_release_fen'])} "
        f"+ re-released {_k(t['re_released_fen'])} (rollovers, expired holds, clawbacks); "
        "granted never exceeds the budget"
    )
    table.caption_justify = "left"
    return table


def forecast_only(settings: Settings, cfg: SimConfig, out_dir: Path, console: Console) -> int:
    """``lijian simulate --forecast``: no requests, only the model (docs/SIMULATOR.md)."""
    cfg.check()
    with RichProgress(console) as progress:
        world = build_world(settings, cfg, progress)
    with console.status("forecast"):
        pa, days = forecast(settings, cfg, world, SAMPLES_DEFAULT)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "campaign_id": settings.id,
        "config": cfg.as_dict(),
        "per_arrival": dataclasses.asdict(pa),
        "days": days,
    }
    path = out_dir / "forecast.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", "utf-8")
    table = Table(
        title=f"{settings.campaign.name}: forecast; money in thousands of CNY",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("day", "arrivals", "CNY/arrival", "release", "demand", "sold out", "rollover"):
        table.add_column(col, justify="left" if col == "day" else "right", no_wrap=True)
    open_s = settings.campaign.daily_open_min * 60
    for d in days:
        table.add_row(
            d["date"],
            f"{d['arrivals']:,}",
            f"{d['discount_fen_per_arrival'] / 100:.2f}",
            _k(d["expected_release_fen"]),
            _k(d["expected_demand_fen"]),
            clock_after(d["sold_out_after_s"], open_s),
            _k(d["expected_rollover_fen"]),
        )
    console.print(table)
    console.print(
        f"expected discount per arriving order: {pa.discount_fen_per_arrival / 100:.2f} CNY "
        f"({pa.eligible_share:.1%} of {pa.samples:,} sampled orders eligible)"
    )
    console.print(f"forecast: [bold]{path}[/bold]")
    return 0


def run_simulate_command(
    campaign: Path,
    out_dir: Path,
    forecast_mode: bool,
    console: Console,
    script_path: Path | None = None,
    **knobs: Any,
) -> int:
    """``lijian simulate``: exit 0 when the simulation ran and the audit passed."""
    from lijian.core.settings import SettingsError
    from lijian.inputs import load_settings_file
    from lijian.sim.config import ArrivalCurve
    from lijian.sim.shapes_report import is_claims_file, run_shapes_command

    if campaign.is_dir() or is_claims_file(campaign):  # claim campaigns: lijian.sim.shapes
        return run_shapes_command(campaign, out_dir, console, knobs["persons"], knobs["seed"],
                                  knobs["days"])  # fmt: skip
    try:
        settings = load_settings_file(campaign)
    except SettingsError as exc:
        # One line on stderr (exit 2), like every command's input errors.
        what = "; ".join(
            p.message if p.path == str(campaign) else f"{p.path}: {p.message}" for p in exc.problems
        )
        sys.stderr.write(f"lijian simulate: {campaign}: {what}\n")
        return 2
    curve = ArrivalCurve(burst_share=knobs.pop("burst_share"), burst_tau_s=knobs.pop("burst_tau_s"))
    try:
        cfg = SimConfig(curve=curve, **knobs).check()
    except ValueError as exc:
        sys.stderr.write(f"lijian simulate: {exc}\n")
        return 2
    script = None
    if script_path is not None:
        if forecast_mode:
            sys.stderr.write(
                "lijian simulate: --script runs requests; it does not go with --forecast\n"
            )
            return 2
        windows = campaign_windows(settings, cfg)
        try:
            script = load_script(
                script_path, windows, settings.tz, simulation_end_ms(settings, windows)
            )
        except ScriptError as exc:
            sys.stderr.write(f"lijian simulate: {script_path}: {exc}\n")
            return 2
    if forecast_mode:
        return forecast_only(settings, cfg, out_dir, console)
    out = simulate_and_report(settings, cfg, out_dir, console, script)
    print_outcome(out, console)
    return 0 if out.audit.ok else 1
