"""Write a simulation's report: ``summary.json``, PNG charts and one self-contained HTML.

The HTML inlines its charts as base64 ``data:`` URIs and its style sheet, and refers to
nothing outside itself, so it opens from a file, offline, and can be mailed as it is.
Charts use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from lijian.core.money import format_cny
from lijian.sim.metrics import clock_after

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lijian.sim.results import SimRun, Summary

CHART_DPI = 110
MAX_BURNDOWN_MINUTES = 840  # 10:00 to 24:00


def _figure(w_in: float, h_in: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib.figure import Figure

    return Figure(figsize=(w_in, h_in), dpi=CHART_DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # No "Software" chunk: it would carry matplotlib's web address into the file.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def chart_burndown(run: SimRun) -> bytes:
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    n = max(1, len(run.days) - 1)
    for i, log in enumerate(run.days):
        pts = [(m, 100 * a / r) for m, a, r in log.burndown if r and m < MAX_BURNDOWN_MINUTES]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        ax.step(xs, ys, where="post", color=cmap(i / n), lw=1.2, label=log.date[5:])
    ax.set_xscale("symlog", linthresh=1)  # linear in the first minute, then logarithmic
    ax.set_xlim(0, MAX_BURNDOWN_MINUTES)
    ax.set_ylim(0, 101)
    ax.set_xlabel("minutes after the release (symmetric log scale)")
    ax.set_ylabel("tranche remaining, % of released")
    ax.set_title("Tranche burn-down by minute")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(ncols=2, fontsize=7, title="day", loc="lower left")
    return _png(fig)


def chart_declines(summary: Summary) -> bytes:
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    days = summary["days"]
    codes = sorted({c for d in days for c in d["declines_by_reason"]})
    labels = [d["date"][5:] for d in days]
    bottom = [0] * len(days)
    import matplotlib as mpl

    cmap = mpl.colormaps["tab20"]
    for k, code in enumerate(codes):
        vals = [d["declines_by_reason"].get(code, 0) for d in days]
        ax.bar(labels, vals, bottom=bottom, label=code, color=cmap(k % 20))
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("declines (a decline counts once per reason)")
    ax.set_title("Declines by reason and day")
    ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    ax.legend(fontsize=7)
    return _png(fig)


def chart_spend(summary: Summary) -> bytes:
    fig = _figure(10, 4.5)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(3, 2))
    by_cat: dict[str, dict[str, int]] = summary["spend"]["by_category"]
    cats = sorted(by_cat, key=lambda c: sum(by_cat[c].values()))
    platforms = sorted({p for v in by_cat.values() for p in v})
    left = [0.0] * len(cats)
    # The English names: the chart's font has no Chinese glyphs.
    names = [CATEGORY_NAMES.get(c, (c, c))[1] for c in cats]
    for p in platforms:
        vals = [by_cat[c].get(p, 0) / 1e6 for c in cats]  # fen → 10k CNY
        ax1.barh(names, vals, left=left, label=p)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax1.set_xlabel("GMV of captured orders, 10,000 CNY")
    ax1.set_title("Spend by category and platform")
    ax1.legend()
    by_p = summary["spend"]["by_platform"]
    net = _net_by_platform(summary)
    xs = range(len(platforms))
    ax2.bar([x - 0.2 for x in xs], [by_p.get(p, 0) / 1e6 for p in platforms], 0.4, label="GMV")
    ax2.bar(
        [x + 0.2 for x in xs], [net.get(p, 0) / 1e6 for p in platforms], 0.4, label="net subsidy"
    )
    ax2.set_xticks(list(xs), platforms)
    ax2.set_ylabel("10,000 CNY")
    ax2.set_title("By platform")
    ax2.legend()
    return _png(fig)


def _net_by_platform(summary: Summary) -> dict[str, int]:
    rows = summary["spend"]["settlement_by_platform"]
    return {p: int(r["net_subsidy_fen"]) for p, r in rows.items()}


def chart_daily(summary: Summary) -> bytes:
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    days = summary["days"]
    labels = [d["date"][5:] for d in days]
    xs = list(range(len(days)))
    ax.bar([x - 0.2 for x in xs], [d["released_fen"] / 1e8 for d in days], 0.4, label="released")
    ax.bar([x + 0.2 for x in xs], [d["granted_fen"] / 1e8 for d in days], 0.4, label="granted")
    ax.set_xticks(xs, labels, rotation=60, fontsize=8)
    ax.set_ylabel("million CNY")
    ax2 = ax.twinx()
    sim = [
        (x, d["sold_out_after_s"] / 60)
        for x, d in zip(xs, days, strict=True)
        if d["sold_out_after_s"] is not None
    ]
    if sim:
        ax2.plot(*zip(*sim, strict=True), "kx", label="sold out (simulated)")
    fc = [(x, d["forecast_sold_out_after_s"]) for x, d in zip(xs, days, strict=True)]
    fc_m = [(x, s / 60) for x, s in fc if s is not None]
    if fc_m:
        ax2.plot(*zip(*fc_m, strict=True), "o", mfc="none", color="tab:red", label="forecast")
    ax2.set_ylabel("sold out, minutes after the release")
    ax2.set_yscale("symlog", linthresh=1)
    ax.set_title("Release, grants and sell-out time per day")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
    return _png(fig)


def write_report(
    run: SimRun, summary: Summary, out_dir: Path, extra_html: str = ""
) -> dict[str, Path]:
    """Write summary.json, the charts and report.html into ``out_dir``; return the paths.
    ``extra_html``: a section placed after the per-day figures (a rehearsal's actions)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out_dir / "summary.json", "html": out_dir / "report.html"}
    paths["summary"].write_text(
        json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=False) + "\n", "utf-8"
    )
    charts = {
        "burndown": chart_burndown(run),
        "declines": chart_declines(summary),
        "spend": chart_spend(summary),
        "daily": chart_daily(summary),
    }
    for name, png in charts.items():
        p = paths[name] = out_dir / f"{name}.png"
        p.write_bytes(png)
    paths["html"].write_text(render_html(summary, charts, extra_html), "utf-8")
    return paths


# ---------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Noto Sans CJK SC",sans-serif;
margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .45rem;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}.card{border:1px solid #ddd;border-radius:6px;
padding:.5rem .8rem;min-width:9rem}.card b{display:block;font-size:1.15rem}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.muted{color:#777;font-size:.85rem}
"""


# The names the dashboard shows for the categories (dashboard/static/i18n.js, zh and en;
# a test keeps the two equal). A category without one is shown as its id.
CATEGORY_NAMES: dict[str, tuple[str, str]] = {
    "apparel_shoes_hats": ("服饰鞋帽", "Apparel, shoes, hats"),
    "home_textiles": ("家居家纺", "Home textiles"),
    "beauty_skincare": ("美妆护肤", "Beauty, skincare"),
    "fresh_food": ("生鲜食品", "Fresh food"),
    "alcohol_beverages": ("酒水饮料", "Alcohol, beverages"),
    "sports_outdoor": ("运动户外", "Sports, outdoor"),
    "auto_supplies": ("汽车用品", "Auto supplies"),
    "nutrition_health": ("营养保健", "Nutrition, health"),
    "maternal_baby_toys": ("母婴玩具", "Maternal, baby, toys"),
}


def category_name(category: str) -> str:
    zh, en = CATEGORY_NAMES.get(category, (category, ""))
    return f"{zh} {en}" if en else zh


def _e(x: object) -> str:
    return html.escape(str(x))


def _cny(fen: int | None) -> str:
    return "—" if fen is None else format_cny(fen)


def thousands_cny(fen: int) -> str:
    """Thousands of CNY, rounded half up, in integers (a table cell, never parsed)."""
    return f"{(fen + 50_000) // 100_000:,}"


def _table(head: list[str], rows: list[list[object]], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = []
    for r in rows:
        tds = "".join(
            f'<td class="{"l" if i < left else ""}">{_e(v)}</td>' for i, v in enumerate(r)
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def render_html(summary: Summary, charts: dict[str, bytes], extra_html: str = "") -> str:
    c, t, f = summary["campaign"], summary["totals"], summary["fairness"]
    cfg = summary["config"]
    cards = [
        ("budget (CNY)", _cny(c["budget_fen"])),
        ("granted, net (CNY)", _cny(t["granted_fen"])),
        ("GMV (CNY)", _cny(t["gmv_fen"])),
        ("leverage", t["leverage"]),
        ("grants", f"{t['grants']:,}"),
        ("declines", f"{t['declines']:,}"),
        ("days sold out", f"{t['days_sold_out']} / {c['days']}"),
        ("persons served", f"{f['persons_served']:,}"),
        ("share served of tried", f["share_served_of_tried"]),
        ("Gini of savings", f["gini_savings_tried"]),
    ]
    card_html = "".join(f'<div class="card">{_e(k)}<b>{_e(v)}</b></div>' for k, v in cards)
    day_rows: list[list[object]] = [
        [
            d["date"],
            _cny(d["released_fen"]),
            _cny(d["granted_fen"]),
            d["sold_out_at"][11:19] if d["sold_out_at"] else "—",
            clock_after(d["forecast_sold_out_after_s"], c["daily_open_min"] * 60),
            f"{d['arrivals']:,}",
            f"{d['grants']:,}",
            f"{d['declines']:,}",
            f"{d['persons_reached']:,}",
            _cny(d["gmv_fen"]),
            _cny(d["net_subsidy_fen"]),
            d["leverage"] if d["leverage"] is not None else "—",
        ]
        for d in summary["days"]
    ]
    day_rows.append(
        [
            "total",
            _cny(t["released_fen"]),
            _cny(t["granted_fen"]),
            f"{t['days_sold_out']} days",
            "",
            f"{t['arrivals']:,}",
            f"{t['grants']:,}",
            f"{t['declines']:,}",
            "",
            _cny(t["gmv_fen"]),
            _cny(t["net_subsidy_fen"]),
            t["leverage"],
        ]
    )
    days_table = _table(
        [
            "day",
            "released",
            "granted (net)",
            "sold out at",
            "forecast: sold out at",
            "arrivals",
            "grants",
            "declines",
            "persons reached",
            "GMV",
            "net subsidy",
            "leverage",
        ],
        day_rows,
    )
    reasons = t["declines_by_reason"]
    reason_rows: list[list[object]] = [
        [k, f"{v:,}"] for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])
    ]
    kind_rows: list[list[object]] = [
        [k, f"{v['persons']:,}", f"{v['tried']:,}", f"{v['served']:,}", _cny(v["savings_fen"])]
        for k, v in f["by_kind"].items()
    ]
    fair_rows: list[list[object]] = [
        ["population", f"{f['population']:,}"],
        ["persons who tried", f"{f['persons_tried']:,}"],
        ["persons served (kept a discount)", f"{f['persons_served']:,}"],
        ["share served of those who tried", f["share_served_of_tried"]],
        ["share served of the population", f["share_served_of_population"]],
        ["Gini of savings (all who tried)", f["gini_savings_tried"]],
        ["Gini of savings (served only)", f["gini_savings_served"]],
        ["top 1% of triers' share of savings", f["top_1pct_share_of_savings"]],
        ["persons at the savings cap", f"{f['persons_at_cap']:,}"],
        ["spoofers' share of savings", f["spoofer_share_of_savings"]],
    ]
    spend_rows: list[list[object]] = [
        [category_name(cat), *(_cny(v.get(p, 0)) for p in ("jd", "vip")), _cny(sum(v.values()))]
        for cat, v in sorted(summary["spend"]["by_category"].items())
    ]
    money_rows: list[list[object]] = [
        ["captures", f"{t['captures']:,}"],
        ["voids (failed payments)", f"{t['voids']:,}"],
        ["abandoned (holds expired)", f"{t['abandoned']:,}"],
        ["full refunds", f"{t['refunds_full']:,}"],
        ["partial refunds", f"{t['refunds_partial']:,}"],
        ["refunds due after the simulated window (not sent)", f"{t['refunds_after_end']:,}"],
        ["clawed back (CNY)", _cny(t["clawed_back_fen"])],
        ["lost: leftovers after the last day (CNY)", _cny(t["lost_fen"])],
        ["ledger entries", f"{summary['ledger']['entries']:,}"],
        ["ledger invariant problems", len(summary["ledger"]["invariant_problems"])],
    ]
    name = _e(c["name"])
    parts = [
        "<!doctype html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{name}: simulation report</title><style>{_CSS}</style></head><body>",
        f"<h1>{name} — simulation report</h1>",
        f'<p class="muted">campaign {_e(c["id"])}, {_e(c["first_day"])} to '
        f"{_e(c['last_day'])} ({c['days']} days); seed {_e(cfg['seed'])}, "
        f"{cfg['persons']:,} synthetic persons, {cfg['catalog_skus']:,} SKUs. "
        "Every request ran through the real engine on a simulated clock; money figures "
        "come from the ledger. Generated by lijian simulate.</p>",
        f'<div class="cards">{card_html}</div>',
        "<h2>Per day</h2>",
        days_table,
        "<p>"
        + _e(
            f"released: what each day's tranche offered. Its total "
            f"{_cny(t['released_fen'])} is the first releases {_cny(t['first_release_fen'])} "
            f"(the budget split over the days) plus {_cny(t['re_released_fen'])} re-released: "
            "money an earlier day left over (rollover), expired holds and clawbacks, offered "
            "again. Granted money never exceeds the budget (lijian audit checks it)."
        )
        + "</p>",
        '<p class="muted">granted: net of clawbacks, by the tranche it was drawn from. '
        "sold out at: the local clock time (" + _e(c["timezone"]) + ") of the day's first "
        "sold_out answer; forecast: the time the model predicts (docs/SIMULATOR.md). "
        "GMV, net subsidy, leverage: R19 "
        "settlement, by the day of capture (GMV ÷ net subsidy).</p>",
        _img(charts["daily"], "release, grants and sell-out time per day"),
        _img(charts["burndown"], "tranche burn-down by minute"),
        extra_html,
        "<h2>Declines</h2>",
        _table(["reason", "count"], reason_rows),
        _img(charts["declines"], "declines by reason"),
        "<h2>Spend</h2>",
        _table(["category", "jd", "vip", "total"], spend_rows),
        _img(charts["spend"], "spend by category and platform"),
        "<h2>Fairness</h2>",
        _table(["figure", "value"], fair_rows),
        _table(["kind of person", "persons", "tried", "served", "savings"], kind_rows),
        "<h2>Payments and after-sales</h2>",
        _table(["figure", "value"], money_rows),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
