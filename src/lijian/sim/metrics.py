"""From a finished run to the report's figures (``summary.json``).

Two sources, kept apart on purpose:

- the ledger, read once at the end on the engine's loop thread (:func:`collect_figures`):
  tranche balances, redemptions, persons. Money figures come only from here, so the
  report and ``lijian audit`` talk about the same fen.
- the simulator's own log of answers (:class:`~lijian.sim.results.DayLog`): arrivals,
  declines by reason, the first ``sold_out`` answer of each day, the burn-down samples.

Settlement is R19 as the ledger's daybook keeps it (``core.daybook``, what
``core.settlement`` reads): a redemption counts on the local day it was captured, a
clawback on the day of its refund.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from lijian.core.views import iso
from lijian.sim.population import PersonKind
from lijian.sim.rehearsal import rehearsal_days

if TYPE_CHECKING:
    from lijian.core.daybook import Figures as SettleRow
    from lijian.engine import Engine
    from lijian.sim.results import (
        DaySummary,
        FairnessFigures,
        Figures,
        ForecastDay,
        SimRun,
        SpendFigures,
        Summary,
        Totals,
        TrancheFigures,
    )

SETTLE_FIELDS = ("count", "gmv_fen", "discount_fen", "clawback_fen", "net_subsidy_fen")


def collect_figures(engine: Engine, cid: str) -> Figures:
    """Everything the report needs from the ledger (call it on the engine's loop)."""
    led = engine.ledger
    b = led.books[cid]
    by_status: Counter[str] = Counter()
    reached: dict[str, set[str]] = {}
    savings: Counter[str] = Counter()
    spend: dict[str, dict[str, int]] = {}
    capped = 0
    for r in led.redemptions.values():
        if r.campaign_id != cid:
            continue
        by_status[r.status] += 1
        if r.captured_ms is None:
            continue
        reached.setdefault(r.day, set()).add(r.person_id)
        savings[r.person_id] += r.discount_fen - r.clawed_back_fen
        capped += r.capped
        for sku, _, line_fen in r.lines:
            cat = engine.catalog.category_of(r.platform, sku) or "?"
            by_p = spend.setdefault(cat, {})
            by_p[r.platform] = by_p.get(r.platform, 0) + line_fen
    # R19 as the ledger's daybook keeps it (lijian.core.daybook): the days and platforms
    # on which something was captured or clawed back.
    settle = {
        day: {p: _numbers(r.figures()) for p, r in d.settled.items()}
        for day, d in b.daybook.days.items()
        if d.settled
    }
    cap = b.settings.limits.person_savings_cap_fen
    tranches: dict[str, TrancheFigures] = {
        t.day: {
            "released_fen": t.released_fen,
            "granted_fen": t.granted_fen,
            "captured_fen": t.captured_fen,
            "clawed_back_fen": t.clawed_back_fen,
            "held_fen": t.held_fen,
            "available_fen": t.available_fen,
            "rolled_out_fen": t.rolled_out_fen,
            "late_returns_out_fen": t.late_returns_out_fen,
            "state": t.state,
        }
        for t in b.tranches.values()
    }
    return {
        "status": engine.status(cid),
        "tranches": tranches,
        "settlement": {d: dict(sorted(rows.items())) for d, rows in sorted(settle.items())},
        "by_status": dict(sorted(by_status.items())),
        "reached": {d: len(p) for d, p in sorted(reached.items())},
        "savings": dict(savings),
        "persons_at_cap": sum(1 for p in b.persons.values() if p.used_fen + p.held_fen >= cap),
        "capped_grants": capped,
        "spend": {c: dict(sorted(v.items())) for c, v in sorted(spend.items())},
        "lost_fen": b.lost_fen,
        "entries": led.entries_applied,
        "check": engine.check(),
    }


def gini(values: list[int]) -> float:
    """Gini coefficient of non-negative amounts (0 = all equal, → 1 = one has all)."""
    n = len(values)
    total = sum(values)
    if n == 0 or total == 0:
        return 0.0
    xs = sorted(values)
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * weighted) / (n * total) - (n + 1) / n


def ratio(num: int | float, den: int | float, digits: int = 4) -> float | None:
    return round(num / den, digits) if den else None


def _clock(ts_ms: int | None, tz: ZoneInfo) -> str | None:
    return None if ts_ms is None else iso(ts_ms, tz)


def _numbers(f: SettleRow) -> dict[str, int]:
    """A settlement row as summary.json writes it (its keys in SETTLE_FIELDS' order)."""
    row = {
        "count": f["count"],
        "gmv_fen": f["gmv_fen"],
        "discount_fen": f["discount_fen"],
        "clawback_fen": f["clawback_fen"],
        "net_subsidy_fen": f["net_subsidy_fen"],
    }
    assert tuple(row) == tuple(SETTLE_FIELDS)
    return row


def settle_totals(rows: dict[str, dict[str, int]]) -> dict[str, int]:
    tot = dict.fromkeys(SETTLE_FIELDS, 0)
    for r in rows.values():
        for k in SETTLE_FIELDS:
            tot[k] += r[k]
    return tot


def build_summary(run: SimRun, forecast: list[ForecastDay] | None = None) -> Summary:
    """The machine-readable report. Deterministic for a seed: no wall-clock anything."""
    s = run.settings
    fig = run.figures
    tz = s.tz
    days: list[DaySummary] = []
    fc = {f["date"]: f for f in forecast or []}
    for w, log in zip(run.windows, run.days, strict=True):
        day = w.date.isoformat()
        t = fig["tranches"][day]
        st = settle_totals(fig["settlement"].get(day, {}))
        sold_after = (
            None
            if log.first_sold_out_ms is None
            else (log.first_sold_out_ms - w.opens_at_ms) // 1000
        )
        days.append(
            {
                "date": day,
                "arrivals": log.arrivals,
                "preopen_arrivals": log.preopen_arrivals,
                "released_fen": t["released_fen"],
                # The day's own share of the budget; the rest of released_fen was offered
                # before (rollovers, returned holds and clawbacks) and is offered again.
                "first_release_fen": w.base_fen,
                "granted_fen": t["granted_fen"],
                "clawed_back_fen": t["clawed_back_fen"],
                "rolled_out_fen": t["rolled_out_fen"],
                "sold_out_at": _clock(log.first_sold_out_ms, tz),
                "sold_out_after_s": sold_after,
                "forecast_sold_out_after_s": fc[day]["sold_out_after_s"] if day in fc else None,
                "grants": log.grants,
                "declines": log.declines,
                "declines_by_reason": dict(sorted(log.declines_by_reason.items())),
                "persons_reached": fig["reached"].get(day, 0),
                "captured": st["count"],
                "gmv_fen": st["gmv_fen"],
                "discount_fen": st["discount_fen"],
                "clawback_fen": st["clawback_fen"],
                "net_subsidy_fen": st["net_subsidy_fen"],
                "leverage": ratio(st["gmv_fen"], st["net_subsidy_fen"], 2),
            }
        )
    window_days = {d["date"] for d in days}
    other = {
        d: settle_totals(rows) for d, rows in fig["settlement"].items() if d not in window_days
    }
    all_settle = settle_totals(
        {f"{d}/{p}": r for d, rows in fig["settlement"].items() for p, r in rows.items()}
    )
    reasons: Counter[str] = Counter()
    for log in run.days:
        reasons.update(log.declines_by_reason)
    c = run.counters
    status = fig["status"]
    totals: Totals = {
        "budget_fen": s.campaign.budget_fen,
        "released_fen": sum(d["released_fen"] for d in days),
        "first_release_fen": sum(d["first_release_fen"] for d in days),
        "re_released_fen": sum(d["released_fen"] - d["first_release_fen"] for d in days),
        "granted_fen": status["granted_fen"],
        "held_fen": status["held_fen"],
        "clawed_back_fen": status["clawed_back_fen"],
        "lost_fen": fig["lost_fen"],
        "budget_used_share": ratio(status["granted_fen"], s.campaign.budget_fen),
        "arrivals": sum(d["arrivals"] for d in days),
        "grants": sum(d["grants"] for d in days),
        "declines": sum(d["declines"] for d in days),
        "declines_by_reason": dict(sorted(reasons.items())),
        "days_sold_out": sum(1 for d in days if d["sold_out_after_s"] is not None),
        "captures": c.captures,
        "voids": c.voids,
        "abandoned": c.abandoned,
        "refunds_full": c.refunds_full,
        "refunds_partial": c.refunds_partial,
        "refunds_after_end": c.refunds_after_end,
        "redemptions_by_status": fig["by_status"],
        "capped_grants": fig["capped_grants"],
        "gmv_fen": all_settle["gmv_fen"],
        "discount_fen": all_settle["discount_fen"],
        "clawback_fen": all_settle["clawback_fen"],
        "net_subsidy_fen": all_settle["net_subsidy_fen"],
        "leverage": ratio(all_settle["gmv_fen"], all_settle["net_subsidy_fen"], 2),
        "errors": dict(sorted(c.errors.items())),
    }
    summary: Summary = {
        "campaign": {
            "id": s.id,
            "name": s.campaign.name,
            "budget_fen": s.campaign.budget_fen,
            "daily_open_min": s.campaign.daily_open_min,
            "timezone": s.campaign.timezone,
            "first_day": days[0]["date"],
            "last_day": days[-1]["date"],
            "days": len(days),
        },
        "config": run.cfg.as_dict(),
        "days": days,
        "settlement_other_days": other,
        "totals": totals,
        "fairness": fairness(run),
        "spend": spend(fig["spend"], fig["settlement"]),
        "ledger": {
            "entries": fig["entries"],
            "invariant_problems": fig["check"],
        },
        "forecast": forecast,
    }
    acted = fig.get("rehearsal")
    if acted is not None:  # a rehearsal: the operators' actions and their effect per day
        summary["rehearsal"] = acted | {"days": rehearsal_days(acted, days)}
    return summary


def fairness(run: SimRun) -> FairnessFigures:
    savings: dict[str, int] = run.figures["savings"]
    tried = sorted(run.persons_tried)
    served = [p for p in tried if savings.get(p, 0) > 0]
    values = [savings.get(p, 0) for p in tried]
    top_n = max(1, len(tried) // 100)
    top = sum(sorted(values, reverse=True)[:top_n])
    by_kind: dict[PersonKind, dict[str, int]] = {}
    for kind in run.kinds.values():
        k = by_kind.setdefault(kind, {"persons": 0, "tried": 0, "served": 0, "savings_fen": 0})
        k["persons"] += 1
    for pid in tried:
        k = by_kind[run.kinds[pid]]
        k["tried"] += 1
        k["served"] += savings.get(pid, 0) > 0
        k["savings_fen"] += savings.get(pid, 0)
    total_savings = sum(values)
    return {
        "population": len(run.kinds),
        "persons_tried": len(tried),
        "persons_served": len(served),
        "share_served_of_tried": ratio(len(served), len(tried)),
        "share_served_of_population": ratio(len(served), len(run.kinds)),
        "gini_savings_tried": round(gini(values), 4),
        "gini_savings_served": round(gini([savings[p] for p in served]), 4),
        "top_1pct_share_of_savings": ratio(top, total_savings),
        "persons_at_cap": run.figures["persons_at_cap"],
        "by_kind": dict(sorted(by_kind.items())),
        "spoofer_share_of_savings": ratio(
            by_kind.get(PersonKind.SPOOFER, {}).get("savings_fen", 0), total_savings
        ),
    }


def spend(
    raw: dict[str, dict[str, int]], settlement: dict[str, dict[str, dict[str, int]]]
) -> SpendFigures:
    """GMV by category and platform (order lines), and R19 settlement by platform."""
    by_platform: Counter[str] = Counter()
    for per_p in raw.values():
        by_platform.update(per_p)
    settle: dict[str, dict[str, int]] = {}
    for rows in settlement.values():
        for platform, r in rows.items():
            acc = settle.setdefault(platform, dict.fromkeys(SETTLE_FIELDS, 0))
            for k in SETTLE_FIELDS:
                acc[k] += r[k]
    return {
        "by_category": raw,
        "by_platform": dict(sorted(by_platform.items())),
        "settlement_by_platform": dict(sorted(settle.items())),
    }


def clock_after(seconds: int | None, open_s: int) -> str:
    """The local clock time ``seconds`` after the opening at ``open_s`` (display only):
    a forecast shown as the time of day it names, like the simulated sell-out beside it."""
    if seconds is None:
        return "—"
    s = open_s + int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
