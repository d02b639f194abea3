"""The rehearsal's part of the report: the operators' actions, the engine's answers, and
their effect per day (HTML section and console table). Figures come from
``summary["rehearsal"]`` (:mod:`lijian.sim.rehearsal`), never recomputed here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from lijian.sim.report import _cny, _table, thousands_cny

if TYPE_CHECKING:
    from lijian.sim.results import Summary


def _answer(step: dict[str, Any]) -> str:
    if step["status"] == 0:
        return f"skipped: {step['detail']}"
    if step["status"] >= 300:
        return f"{step['status']} {step['code']}: {step['detail']}"
    return f"{step['status']} {step.get('id', '')}"


def _hms(iso_text: str | None) -> str:
    return "—" if iso_text is None else iso_text[5:10] + " " + iso_text[11:19]


def _windows_rows(r: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for w in r["windows"]:
        what = "pause" if w["kind"] == "pause" else f"block {w['kind']} {w['subject']}"
        top = sorted(w["declines_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))[:4]
        rows.append(
            [
                what,
                _hms(w["from"]),
                _hms(w["to"]) if w["to"] else "end of run",
                f"{w['arrivals']:,}",
                f"{w['grants']:,}",
                f"{w['declines']:,}",
                ", ".join(f"{k} {v:,}" for k, v in top),
            ]
        )
    return rows


def _money_rows(r: dict[str, Any]) -> list[list[object]]:
    """Each applied amendment: the budget and every day it touched, before → after."""
    rows: list[list[object]] = []
    for s in r["steps"]:
        if "before" not in s:
            continue
        b, a = s["before"], s["after"]
        budget = f"{_cny(b['budget_fen'])} → {_cny(a['budget_fen'])}"
        rows.append([f"{s['id']} ({_hms(s['at'])})", "campaign budget", "", "", budget])
        for day, was in b["days"].items():
            now = a["days"][day]
            rows.append(
                [
                    "",
                    day,
                    f"{was['state']} → {now['state']}",
                    f"{_cny(was['released_fen'])} → {_cny(now['released_fen'])}",
                    f"{_cny(was['free_fen'])} → {_cny(now['free_fen'])}",
                ]
            )
    return rows


def _without(d: dict[str, Any]) -> list[object]:
    b = d.get("baseline")
    if b is None:
        return []
    return [_cny(b["released_fen"]), _cny(b["granted_fen"]), f"{b['grants']:,}"]


def _without_k(d: dict[str, Any]) -> list[str]:
    b = d.get("baseline")
    if b is None:
        return []
    return [thousands_cny(b["released_fen"]), thousands_cny(b["granted_fen"]), f"{b['grants']:,}"]


def rehearsal_html(summary: Summary) -> str:
    """The "Operator actions" section of report.html ("" when the run had no script)."""
    r = summary.get("rehearsal")
    if r is None:
        return ""
    action_rows: list[list[object]] = [
        [a["action"], a["id"], a["date"], a["at"], a["text"]] for a in r["actions"]
    ]
    step_rows: list[list[object]] = [
        [s["action"], _hms(s["at"]), s["op"], s["by"], s.get("subject", ""), _answer(s)]
        for s in r["steps"]
    ]
    day_rows: list[list[object]] = [
        [
            d["date"],
            ", ".join(str(a) for a in d["actions"]) or "—",
            f"{d['campaign_paused']:,}",
            f"{d['person_blocked']:,}",
            f"{d['sku_blocked']:,}",
            _cny(d["first_release_fen"]),
            _cny(d["amended_fen"]),
            _cny(d["withdrawn_fen"]),
            _cny(d["released_fen"]),
            _cny(d["granted_fen"]),
            f"{d['grants']:,}",
            *_without(d),
        ]
        for d in r["days"]
    ]
    base_head = ["released without", "granted without", "grants without"]
    parts = [
        "<h2>Operator actions (rehearsal)</h2>",
        '<p class="muted">Each action went through the engine\'s operator path, as over '
        "the API: a ledger entry decided by the one writer (four eyes for money). "
        "The answers are the engine's.</p>",
        _table(["#", "id", "day", "at", "action"], action_rows, left=5),
        _table(["#", "at", "step", "operator key", "chosen", "answer"], step_rows, left=6),
        "<h3>Effect per day</h3>",
        _table(
            [
                "day",
                "actions",
                "campaign_paused",
                "person_blocked",
                "sku_blocked",
                "first release",
                "amended",
                "withdrawn",
                "released",
                "granted (net)",
                "grants",
                *(base_head if "baseline_totals" in r else []),
            ],
            day_rows,
        ),
        '<p class="muted">declines: answers with that reason (a decline counts once per '
        "reason). first release: the day's share of the settings' budget; amended: what "
        "applied budget amendments added to (or cut from) the day's tranche; withdrawn: "
        "money of a day cut by ending early; released: what the tranche offered in the "
        "end (with rollovers and returns). without: the same day of the baseline, the "
        "same seed and world run without the script (baseline.db).</p>",
    ]
    windows = _windows_rows(r)
    if windows:
        parts += [
            "<h3>While a pause or a block was in force</h3>",
            _table(
                ["what", "from", "to", "arrivals", "grants", "declines", "top reasons"],
                windows,
                left=3,
            ),
        ]
    money = _money_rows(r)
    if money:
        parts += [
            "<h3>Amendments: before and after approval</h3>",
            _table(
                ["amendment", "day", "state", "released", "free (budget)"],
                money,
                left=3,
            ),
            '<p class="muted">free: what the day can still grant (an open tranche\'s '
            "remaining money, a later day's unreleased share), read from the ledger "
            "just before and just after the approval.</p>",
        ]
    return "\n".join(parts)


def rehearsal_table(summary: Summary) -> Table | None:
    """The console's per-day table of a rehearsal (None without a script)."""
    r = summary.get("rehearsal")
    if r is None:
        return None
    table = Table(
        title="operator actions: effect per day (w/o: the same seed without them); "
        "money in thousands of CNY",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    cols = ["day", "acts", "paused", "p.blk", "s.blk", "amended", "rel.", "gr.", "grants"]
    if "baseline_totals" in r:
        cols += ["rel. w/o", "gr. w/o", "grants w/o"]
    for col in cols:
        table.add_column(col, justify="left" if col == "day" else "right", no_wrap=True)
    for d in r["days"]:
        table.add_row(
            d["date"][5:],
            ",".join(str(a) for a in d["actions"]) or "—",
            f"{d['campaign_paused']:,}",
            f"{d['person_blocked']:,}",
            f"{d['sku_blocked']:,}",
            thousands_cny(d["amended_fen"]),
            thousands_cny(d["released_fen"]),
            thousands_cny(d["granted_fen"]),
            f"{d['grants']:,}",
            *_without_k(d),
        )
    lines = [
        f"{s['action']}. {_hms(s['at'])} {s['op']}"
        + (f" {s['subject']}" if s.get("subject") else "")
        + f" by {s['by']}: {_answer(s)}"
        for s in r["steps"]
    ]
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return table
