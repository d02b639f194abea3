"""A rehearsal: scripted operator actions in a simulated campaign, through the engine's
operator path, with exact counts of what they did (same seed, same counts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lijian.audit import audit_db
from lijian.core.entries import (
    AmendmentApplied,
    AmendmentProposed,
    BlockAdded,
    BlockLifted,
    CampaignPaused,
    CampaignResumed,
)
from lijian.core.ledger import Ledger
from lijian.core.settings import Settings
from lijian.sim.config import SimConfig
from lijian.sim.metrics import build_summary
from lijian.sim.rehearsal import BASELINE_FIELDS, OPERATOR_DECLINES, add_baseline
from lijian.sim.rehearsal_report import rehearsal_html
from lijian.sim.runner import campaign_windows, run_simulation, simulation_end_ms
from lijian.sim.runner import rehearse as rehearse_runs
from lijian.sim.script import load_script
from lijian.store import open_store
from tests.sim.conftest import small_settings

# Three days of 50,000 CNY: the rush does not empty the tranche by 10:05, so a pause
# there turns grants into declines (a smaller budget would be sold out already).
BUDGET_FEN = 15_000_000
CFG = SimConfig(persons=3_000, seed=7, days=3, catalog_skus=100, participation=0.2)
SCRIPT = """
[[action]]            # 1: the emergency stop, ten minutes into the rush
day = 1
at = "10:05"
do = "pause"
for_min = 10
reason = "fraud wave under investigation"

[[action]]            # 2: the most redeemed SKU, blocked for four hours
day = 1
at = "11:00"
do = "block"
target = "top_sku"
for_min = 240

[[action]]            # 3: the person with the most redemptions, blocked for good
day = 2
at = "10:01"
do = "block"
target = "top_person"
id = "top"

[[action]]            # 4: a top-up of today's open tranche, four eyes
day = 2
at = "12:00"
do = "budget"
delta_fen = 50_000
days = "today"
by = "ops-li"
approved_by = "ops-wang"

[[action]]            # 5: approved by its own proposer: refused, stays pending
day = 2
at = "12:30"
do = "budget"
delta_fen = 10_000
by = "ops-li"
approved_by = "ops-li"

[[action]]            # 6: end after day 2: day 3 is withdrawn
day = 2
at = "20:00"
do = "end"
last_day = 2
"""


def _settings() -> Settings:
    return small_settings(BUDGET_FEN, days=3)


def rehearse(tmp: Path, text: str = SCRIPT, name: str = "script.toml") -> dict[str, Any]:
    settings = _settings()
    windows = campaign_windows(settings, CFG)
    path = tmp / name
    path.write_text(text, "utf-8")
    script = load_script(path, windows, settings.tz, simulation_end_ms(settings, windows))
    run, base = rehearse_runs(settings, CFG, script, tmp / "sim.db", tmp / "baseline.db")
    summary = build_summary(run)
    add_baseline(summary, build_summary(base))
    return summary


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("rehearsal")
    return rehearse(tmp), tmp / "sim.db"


def _steps(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in summary["rehearsal"]["steps"]}


def _window(summary: dict[str, Any], step: str) -> dict[str, Any]:
    return next(w for w in summary["rehearsal"]["windows"] if w["step"] == step)


def test_every_step_got_the_engines_answer(rehearsal: tuple[dict[str, Any], Path]) -> None:
    steps = _steps(rehearsal[0])
    got = {name: (s["op"], s["status"], s.get("id") or s.get("code")) for name, s in steps.items()}
    assert got == {
        "a1": ("pause", 200, "ch_00000001"),
        "a1:resume": ("resume", 200, "ch_00000002"),
        "a2": ("block", 201, "bl_000001"),
        "a2:lift": ("lift", 200, "bl_000001"),
        "top": ("block", 201, "bl_000002"),
        "a4": ("propose", 201, "am_000001"),
        "a4:approve": ("approve", 200, "am_000001"),
        "a5": ("propose", 201, "am_000002"),
        "a5:approve": ("approve", 403, "four_eyes_required"),
        "a6": ("propose", 201, "am_000003"),
        "a6:approve": ("approve", 200, "am_000003"),
    }
    assert steps["a4"]["by"] == "ops-li" and steps["a4:approve"]["by"] == "ops-wang"
    amendments = {a["id"]: a["status"] for a in rehearsal[0]["rehearsal"]["amendments"]}
    assert amendments == {"am_000001": "applied", "am_000002": "proposed", "am_000003": "applied"}


def test_the_pause_window_grants_nothing(rehearsal: tuple[dict[str, Any], Path]) -> None:
    s = rehearsal[0]
    w = _window(s, "a1")
    assert (w["from"], w["to"]) == ("2025-02-12T10:05:00+08:00", "2025-02-12T10:15:00+08:00")
    assert (w["arrivals"], w["grants"], w["declines"]) == (121, 0, 121)
    assert w["declines_by_reason"]["campaign_paused"] == 121
    assert "sold_out" not in w["declines_by_reason"], "the tranche had money: the pause held it"
    day1 = s["rehearsal"]["days"][0]
    assert (day1["campaign_paused"], day1["actions"]) == (121, [1, 2])
    assert s["days"][0]["declines_by_reason"]["campaign_paused"] == 121
    assert sum(d["campaign_paused"] for d in s["rehearsal"]["days"]) == 121


def test_the_top_up_raises_todays_release_by_exactly_delta(
    rehearsal: tuple[dict[str, Any], Path],
) -> None:
    s = rehearsal[0]
    step = _steps(s)["a4:approve"]
    before, after = step["before"], step["after"]
    assert after["budget_fen"] - before["budget_fen"] == 50_000
    assert list(before["days"]) == list(after["days"]) == ["2025-02-13"]
    was, now = before["days"]["2025-02-13"], after["days"]["2025-02-13"]
    assert (was["state"], now["state"]) == ("open", "open")
    assert now["released_fen"] - was["released_fen"] == 50_000
    assert now["free_fen"] - was["free_fen"] == 50_000
    assert now["granted_fen"] == was["granted_fen"]
    days = {d["date"]: d for d in s["rehearsal"]["days"]}
    assert [days[d]["amended_fen"] for d in sorted(days)] == [0, 50_000, 0]
    # The refused amendment moved nothing; the budget is the settings' plus the top-up.
    assert s["days"][1]["released_fen"] == days["2025-02-13"]["released_fen"]
    assert s["ledger"]["invariant_problems"] == []


def test_ending_early_withdraws_the_last_day(rehearsal: tuple[dict[str, Any], Path]) -> None:
    s = rehearsal[0]
    step = _steps(s)["a6:approve"]
    free_before = step["before"]["days"]["2025-02-14"]["free_fen"]
    assert step["after"]["days"]["2025-02-14"]["free_fen"] == 0
    day3 = s["rehearsal"]["days"][2]
    assert day3["withdrawn_fen"] == free_before == 5_003_567  # base + day one's rollover
    assert (day3["released_fen"], day3["granted_fen"], day3["grants"]) == (0, 0, 0)
    d3 = s["days"][2]
    assert d3["declines_by_reason"]["campaign_ended"] == d3["arrivals"] == d3["declines"]


def test_the_blocked_person_gets_no_grant_after_the_block(
    rehearsal: tuple[dict[str, Any], Path],
) -> None:
    s, db = rehearsal
    w = _window(s, "top")
    person = w["subject"]
    assert (w["arrivals"], w["grants"], w["declines"]) == (23, 0, 23)
    assert w["declines_by_reason"]["person_blocked"] == 23
    assert [d["person_blocked"] for d in s["rehearsal"]["days"]] == [0, 9, 14]
    led = _replay(db)
    block_ms = led.changes.blocks["bl_000002"].at_ms
    mine = [r for r in led.redemptions.values() if r.person_id == person]
    before = [r for r in mine if r.created_ms < block_ms]
    # Chosen by the rule: nobody had more redemptions (not voided or expired) at 10:01.
    assert before and all(r.created_ms < block_ms for r in mine)
    counts: dict[str, int] = {}
    for r in led.redemptions.values():
        if r.created_ms < block_ms and r.status not in ("voided", "expired"):
            counts[r.person_id] = counts.get(r.person_id, 0) + 1
    assert counts[person] == max(counts.values())


def _replay(db: Path) -> Ledger:
    led = Ledger([_settings()])
    store = open_store(db)
    try:
        for _, entry in store.iter_entries():
            led.apply(entry)
    finally:
        store.close()
    return led


def test_the_sku_block_declines_orders_holding_it(rehearsal: tuple[dict[str, Any], Path]) -> None:
    s, db = rehearsal
    w = _window(s, "a2")
    assert (w["from"], w["to"]) == ("2025-02-12T11:00:00+08:00", "2025-02-12T15:00:00+08:00")
    assert w["subject"] == "vip/VIP-00000055"
    assert (w["arrivals"], w["grants"], w["declines"]) == (3, 0, 3)
    assert w["declines_by_reason"] == {"sku_blocked": 3}
    assert [d["sku_blocked"] for d in s["rehearsal"]["days"]] == [3, 0, 0]
    led = _replay(db)
    block = led.changes.blocks["bl_000001"]
    counts: dict[tuple[str, str], int] = {}
    for r in led.redemptions.values():
        if r.created_ms < block.at_ms:
            for key in {(r.platform, sku) for sku, _, _ in r.lines}:
                counts[key] = counts.get(key, 0) + 1
    assert counts[(block.platform, block.sku)] == max(counts.values())
    assert block.lifted_ms is not None
    held = [
        r
        for r in led.redemptions.values()
        if block.at_ms <= r.created_ms < block.lifted_ms
        and r.platform == block.platform
        and block.sku in {x for x, _, _ in r.lines}
    ]
    assert held == [], "no grant while the SKU was blocked"


def test_every_action_is_a_ledger_entry_and_the_audit_is_clean(
    rehearsal: tuple[dict[str, Any], Path],
) -> None:
    s, db = rehearsal
    rep = audit_db(db)
    assert rep.ok, rep.violations
    kinds = (CampaignPaused, CampaignResumed, AmendmentProposed, AmendmentApplied, BlockAdded,
             BlockLifted)  # fmt: skip
    store = open_store(db)
    try:
        names = [type(e).__name__ for _, e in store.iter_entries() if isinstance(e, kinds)]
    finally:
        store.close()
    assert names == [
        "CampaignPaused", "CampaignResumed", "BlockAdded", "BlockLifted", "BlockAdded",
        "AmendmentProposed", "AmendmentApplied", "AmendmentProposed", "AmendmentProposed",
        "AmendmentApplied",
    ]  # fmt: skip
    assert len(s["rehearsal"]["changes"]) == len(names)


def test_the_report_shows_the_actions(rehearsal: tuple[dict[str, Any], Path]) -> None:
    page = rehearsal_html(rehearsal[0])
    assert "Operator actions (rehearsal)" in page
    assert "403 four_eyes_required" in page
    assert "pause for 10 min" in page
    assert rehearsal_html({}) == ""


def test_a_json_script_gives_the_same_rehearsal(
    rehearsal: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    """Same seed and the same actions written as JSON: the same figures, fen for fen."""
    import tomllib

    doc = tomllib.loads(SCRIPT)
    again = rehearse(tmp_path, json.dumps(doc), "script.json")
    assert json.dumps(again, sort_keys=True) == json.dumps(rehearsal[0], sort_keys=True)


def test_the_baseline_is_the_same_run_without_the_script(
    rehearsal: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    s = rehearsal[0]
    base = {d["date"]: d["baseline"] for d in s["rehearsal"]["days"]}
    assert base == {
        "2025-02-12": {"released_fen": 5_000_000, "granted_fen": 4_942_912, "grants": 608,
                       "declines": 292},
        "2025-02-13": {"released_fen": 5_038_054, "granted_fen": 4_103_675, "grants": 527,
                       "declines": 55},
        "2025-02-14": {"released_fen": 5_931_831, "granted_fen": 3_597_499, "grants": 497,
                       "declines": 68},
    }  # fmt: skip
    plain = build_summary(run_simulation(_settings(), CFG, tmp_path / "plain.db"))
    assert {d["date"]: {k: d[k] for k in BASELINE_FIELDS} for d in plain["days"]} == base
    assert all(code not in d["declines_by_reason"] for d in plain["days"]
               for code in OPERATOR_DECLINES)  # fmt: skip
