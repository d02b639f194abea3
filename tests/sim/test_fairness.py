"""The release comparison: deterministic for a seed, and it measures what it says.

A small rush (200 people, two bot owners of 20 accounts) against a tranche of 5,000 CNY
on the seed campaign, through the real engine, under every variant."""

from __future__ import annotations

from pathlib import Path

import pytest

from lijian.audit import audit_db
from lijian.sim.fairness import VARIANTS, gini, run_comparison
from lijian.sim.fairness_report import write_fairness
from lijian.sim.population_bots import ACCOUNTS_PER_OWNER, bot_accounts_for, build_rush
from tests.support import settings

TRANCHE_FEN = 500_000


@pytest.fixture(scope="module")
def small_campaign():
    return settings(campaign={"budget_fen": 17 * TRANCHE_FEN})


def test_gini_of_known_distributions():
    assert gini([5, 5, 5]) == 0.0
    assert gini([0, 0, 3]) == pytest.approx(2 / 3)
    assert gini([]) == 0.0 and gini([0, 0]) == 0.0


def test_the_rush_population_is_the_same_for_a_seed():
    a, b, c = build_rush(200, 0.2, 1), build_rush(200, 0.2, 1), build_rush(200, 0.2, 2)
    assert a == b and a != c
    assert bot_accounts_for(200, 0.2) == 2 * ACCOUNTS_PER_OWNER
    bots = [x for x in a.accounts if x.is_bot]
    assert len({x.card_hash for x in bots}) == 2  # one card per owner
    assert max(r.offset_ms for r in a.requests if a.accounts[r.account].is_bot) < 100
    assert min(r.offset_ms for r in a.requests if not a.accounts[r.account].is_bot) >= 300


def test_the_comparison_is_deterministic_and_linking_stops_the_bot_accounts(
    tmp_path: Path, small_campaign
):
    first, meta = run_comparison(small_campaign, 200, 0.2, 11, tmp_path / "a")
    again, _ = run_comparison(small_campaign, 200, 0.2, 11, tmp_path / "b")
    assert first == again
    assert [r.variant for r in first] == [v.name for v in VARIANTS]
    by = {r.variant: r for r in first}
    fcfs, linked = by["first come, first served"], by["first come, first served + linking"]
    # First come, first served: the bots fire first, each account takes the whole cap
    # while the tranche lasts (3 x 1,500 CNY of 5,000), the people share the rest.
    assert fcfs.bots_fen == 3 * 150_000 and fcfs.sold_out_after_s is not None
    # Linked by their shared card and devices, each owner is one person: one cap each.
    assert linked.bots_fen == 2 * 150_000 and linked.bot_accounts_served_per_owner == 1.0
    assert linked.people_served > fcfs.people_served
    assert linked.gini < fcfs.gini
    for r in first:
        assert r.granted_fen <= TRANCHE_FEN
    assert meta["bot_owners"] == 2 and meta["tranche_fen"] == TRANCHE_FEN
    for k in range(len(VARIANTS)):  # every ledger passes the audit, draws included
        rep = audit_db(tmp_path / "a" / f"fairness-{k}.db")
        assert rep.ok, rep.violations
    paths = write_fairness(first, meta, tmp_path / "a")
    assert paths["fairness_chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "first come, first served" in paths["fairness_html"].read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("share", "people", "message"), [(0.95, 10, "--bots"), (0.1, 0, "--persons")]
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, share, people, message):
    from rich.console import Console

    from lijian.sim.fairness_report import run_fairness_command
    from tests.support import CAMPAIGN_FILE

    console = Console(record=True, width=200)
    code = run_fairness_command(CAMPAIGN_FILE, tmp_path, people, 1, share, True, console)
    assert code == 2
    text = console.export_text().strip()
    assert text.startswith(message) and "\n" not in text
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written
