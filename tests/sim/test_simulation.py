"""A simulation is reproducible, conserves money, and leaves a ledger that audits clean."""

from __future__ import annotations

import json
from collections import Counter

from lijian.audit import audit_db
from lijian.core.entries import ClockMoved
from lijian.core.ledger import Ledger
from lijian.core.settlement import settlement
from lijian.sim.metrics import SETTLE_FIELDS
from lijian.sim.runner import Driver
from lijian.store import open_store
from lijian.store.sqlite import SqliteStore
from tests.sim.conftest import SMALL, Done, simulate


def test_the_same_seed_gives_the_same_summary_json(small_run: Done, tmp_path) -> None:
    again = simulate(tmp_path)
    a = json.dumps(small_run.summary, sort_keys=True)
    b = json.dumps(again.summary, sort_keys=True)
    assert a == b


def test_a_simulation_exercises_the_rules(small_run: Done) -> None:
    t = small_run.summary["totals"]
    reasons = t["declines_by_reason"]
    assert t["grants"] > 0 and t["captures"] > 0 and t["voids"] > 0
    for code in ("sold_out", "location_outside_city", "address_outside_city", "tranche_not_open"):
        assert reasons.get(code, 0) > 0, code
    assert t["errors"] == {}, "the engine answered something unexpected"
    assert t["days_sold_out"] == len(small_run.summary["days"])


def test_per_day_figures_add_up_to_the_ledger(small_run: Done) -> None:
    s, fig = small_run.summary, small_run.run.figures
    days = s["days"]
    assert sum(d["granted_fen"] for d in days) == s["totals"]["granted_fen"]
    assert sum(d["grants"] for d in days) == sum(fig["by_status"].values())
    assert s["totals"]["held_fen"] == 0, "every hold ended by the end of the run"
    settled = sum(d["net_subsidy_fen"] for d in days) + sum(
        o["net_subsidy_fen"] for o in s["settlement_other_days"].values()
    )
    assert settled == s["totals"]["net_subsidy_fen"] == s["totals"]["granted_fen"]
    assert fig["check"] == []


def test_the_report_settlement_is_the_core_settlement(small_run: Done) -> None:
    """The report's one-pass settlement equals core.settlement day by day (R19)."""
    s = small_run.summary
    dates = [d["date"] for d in s["days"]] + sorted(s["settlement_other_days"])
    ledger = Ledger([small_run.settings])  # replayed from the file, read only
    store = open_store(small_run.db)
    try:
        for _, entry in store.iter_entries():
            ledger.apply(entry)
    finally:
        store.close()
    for day in dates:
        core = settlement(ledger, small_run.settings.id, day)["totals"]
        row = next((d for d in s["days"] if d["date"] == day), None)
        mine = (
            {k: row[k] for k in SETTLE_FIELDS if k != "count"} | {"count": row["captured"]}
            if row
            else s["settlement_other_days"][day]
        )
        assert mine == core, day


def test_the_ledger_file_passes_audit(small_run: Done) -> None:
    rep = audit_db(small_run.db)
    assert rep.ok, rep.violations
    assert rep.entries == small_run.summary["ledger"]["entries"]


def test_declines_in_the_report_are_the_answers_the_engine_gave(small_run: Done) -> None:
    by_day = Counter[str]()
    for log in small_run.run.days:
        by_day.update(log.declines_by_reason)
    assert dict(by_day) == small_run.summary["totals"]["declines_by_reason"]
    for d in small_run.summary["days"]:
        assert d["grants"] + d["declines"] == d["arrivals"]


def test_fairness_figures_are_consistent(small_run: Done) -> None:
    f = small_run.summary["fairness"]
    assert f["population"] == SMALL.persons
    assert 0 < f["persons_served"] <= f["persons_tried"] <= f["population"]
    assert 0 <= f["gini_savings_tried"] <= 1
    assert f["by_kind"]["outsider"]["served"] == 0, "outsiders are always declined (R8)"
    assert list(json.loads(json.dumps(f["by_kind"]))) == ["outsider", "resident", "spoofer"]


def test_skipping_the_clock_round_on_quiet_ticks_changes_nothing(
    small_run: Done, tmp_path, monkeypatch
) -> None:
    """The driver moves the clock without a writer round when it knows no timed event is
    due (runner._tick); doing the full round on every tick gives the same summary, but
    for the ledger's entry count: each round records its clock move (a ClockMoved entry,
    so a restart resumes at the time the ledger last saw), the quiet moves do not."""
    monkeypatch.setattr(Driver, "_quiet_until", lambda self, t_ms: False)
    again = simulate(tmp_path)
    moves = [sum(isinstance(e, ClockMoved) for _, e in SqliteStore(db, read_only=True)
                 .iter_entries()) for db in (again.db, small_run.db)]  # fmt: skip
    assert moves[0] > moves[1]
    assert (
        again.summary["ledger"]["entries"] - moves[0]
        == small_run.summary["ledger"]["entries"] - moves[1]
    )
    for s in (again.summary, small_run.summary):
        s["ledger"] = {**s["ledger"], "entries": None}
    assert json.dumps(again.summary, sort_keys=True) == json.dumps(
        small_run.summary, sort_keys=True
    )
