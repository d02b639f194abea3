"""The fairness section of a simulation report: ``fairness.json``, a chart, an HTML page.

One row per release variant (``lijian.sim.fairness.VARIANTS``) with what bots got and
what people got; the chart shows the bots' share of the money and the people served
side by side. Self-contained like the main report (the chart inlined as a data: URI).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lijian.core.money import format_cny
from lijian.sim.fairness import RushMeta, VariantResult, as_dicts
from lijian.sim.report import _figure, _img, _png, _table


def chart_fairness(results: list[VariantResult]) -> bytes:
    fig = _figure(9, 4.2)
    left, right = fig.subplots(1, 2)
    names = [r.variant.replace(" + ", "\n+ ") for r in results]
    ys = list(range(len(results)))
    left.barh(ys, [100 * r.bot_share for r in results], color="#c0392b")
    left.set_yticks(ys, names, fontsize=8)
    left.invert_yaxis()
    left.set_xlim(0, 100)
    left.set_xlabel("share of the money that bots got, %")
    right.barh(ys, [100 * r.people_served / max(1, r.people) for r in results], color="#2e86c1")
    right.set_yticks(ys, [""] * len(ys))
    right.invert_yaxis()
    right.set_xlim(0, 100)
    right.set_xlabel("people served, % of those who asked")
    return _png(fig)


def _sold_out(r: VariantResult) -> str:
    return "not sold out" if r.sold_out_after_s is None else f"{r.sold_out_after_s:,.2f} s"


def rows(results: list[VariantResult]) -> list[list[object]]:
    return [
        [
            r.variant,
            f"{100 * r.bot_share:.1f}%",
            format_cny(r.bots_fen),
            f"{r.people_served:,} of {r.people:,}",
            f"{r.bot_accounts_served_per_owner:.1f}",
            f"{r.gini:.3f}",
            _sold_out(r),
        ]
        for r in results
    ]


HEAD = [
    "release",
    "bots' share",
    "bots got",
    "people served",
    "bot accounts served per owner",
    "Gini",
    "sold out after",
]


def write_fairness(results: list[VariantResult], meta: RushMeta, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "fairness_json": out_dir / "fairness.json",
        "fairness_chart": out_dir / "fairness.png",
        "fairness_html": out_dir / "fairness.html",
    }
    doc = {**meta, "variants": as_dicts(results)}
    paths["fairness_json"].write_text(
        json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    png = chart_fairness(results)
    paths["fairness_chart"].write_bytes(png)
    page = [
        "<!doctype html><meta charset='utf-8'><title>lijian: fair release</title>",
        "<style>body{font:14px system-ui,sans-serif;max-width:70em;margin:2em auto}"
        "td,th{padding:.2em .6em;border-bottom:1px solid #ddd}img{max-width:100%}</style>",
        "<h1>Fairness: first come, first served against admission windows</h1>",
        f"<p>{html.escape(meta_line(meta))}</p>",
        _table(HEAD, rows(results)),
        _img(png, "bots' share of the money and people served, per release"),
        "<p>Each row is the same population and seed through the real engine on a fresh "
        "ledger; docs/FAIRNESS.md explains the figures.</p>",
    ]
    paths["fairness_html"].write_text("\n".join(page) + "\n", encoding="utf-8")
    return paths


def meta_line(meta: RushMeta) -> str:
    return (
        f"{meta['people']:,} people and {meta['bot_accounts']:,} bot accounts of "
        f"{meta['bot_owners']:,} owners ({meta['bot_share']:.0%} of accounts), "
        f"{meta['requests']:,} requests in the first {meta['span_s']} s after the open of "
        f"{meta['day']} (tranche {format_cny(meta['tranche_fen'])}), seed {meta['seed']}"
    )


def print_fairness(results: list[VariantResult], meta: RushMeta, console: Console) -> None:
    table = Table(title="fair release", title_justify="left")
    for h in HEAD:
        table.add_column(h, justify="left" if h == "release" else "right")
    for row in rows(results):
        table.add_row(*(str(x) for x in row))
    console.print(meta_line(meta))
    wide = console
    if console.width < TABLE_WIDTH and not console.is_terminal:
        wide = Console(width=TABLE_WIDTH, file=console.file)  # a log: do not wrap
    wide.print(table)


BOT_SHARE_MAX = 0.9
TABLE_WIDTH = 124


def run_fairness_command(
    campaign: Path,
    out_dir: Path,
    people: int,
    seed: int,
    bot_share: float,
    compare: bool,
    console: Console,
) -> int:
    """``lijian simulate --bots SHARE [--compare-release]``: 0 when every run's ledger
    passes ``lijian audit`` (the window's order included), 1 if one does not, 2 for bad
    input."""
    from lijian.audit import audit_db
    from lijian.core.settings import SettingsError
    from lijian.inputs import load_settings_file
    from lijian.progress import on_terminal
    from lijian.sim.fairness import run_comparison

    if not 0 <= bot_share <= BOT_SHARE_MAX:
        console.print(f"[red]--bots must be a share between 0 and {BOT_SHARE_MAX}[/red]")
        return 2
    if people < 1:
        console.print("[red]--persons must be at least 1[/red]")
        return 2
    try:
        settings = load_settings_file(campaign)
    except SettingsError as exc:
        console.print(f"[red]{campaign}: {exc}[/red]")
        return 2
    console.print("the 10:00 rush with bots, through the real engine")
    with on_terminal():
        results, meta = run_comparison(settings, people, bot_share, seed, out_dir, compare)
    paths = write_fairness(results, meta, out_dir)
    print_fairness(results, meta, console)
    console.print(f"fairness report: [bold]{paths['fairness_html']}[/bold]")
    failed = 0
    for k in range(len(results)):
        rep = audit_db(out_dir / f"fairness-{k}.db")
        if not rep.ok:
            failed += 1
            console.print(f"[red]audit of {results[k].variant}: {rep.violations}[/red]")
    console.print(f"lijian audit of {len(results)} ledgers: {'ok' if not failed else 'FAILED'}")
    return 1 if failed else 0
