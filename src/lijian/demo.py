"""``make demo``: the whole Chengdu campaign, simulated through the real engine.

From a fresh database: the seed campaign (30,000,000 CNY over 17 days, 10:00 releases,
rollover), a synthetic catalogue of 100,000 SKUs over the nine categories, and a synthetic
population large enough to sell out most days at the 10:00 rush. Requests run in process
on the embedded SQLite ledger with a simulated clock. It ends with the summary table,
where the report is, and the result of ``lijian audit`` on the ledger file.

The population and order sizes are chosen so that the run fits in about two minutes on
a 2-core machine (docs/SIMULATOR.md has the measured numbers); ``--persons`` scales it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from lijian.core.settings import Settings
from lijian.inputs import load_settings_file
from lijian.sim.commands import print_outcome, simulate_and_report
from lijian.sim.config import SimConfig
from lijian.sim.fairness_report import run_fairness_command

# The repository's seed campaign (docs/RULES.md numbers).
CAMPAIGN_FILE = Path(__file__).resolve().parents[2] / "campaigns" / "chengdu-2025-spring.toml"
DEMO_PERSONS = 150_000
DEMO_CATALOG_SKUS = 100_000
# Baskets above the category medians (people buy big when 15% comes off): fewer, larger
# orders burn the 1.76M CNY daily tranche with fewer requests, which keeps the demo
# inside its time budget (mean order ~1,000 CNY, mean discount ~155 CNY). Demand is
# ~1.0-1.9x the tranche: the launch day and the first weekend sell out within minutes of
# 10:00, weekdays later in the day as interest decays, the last day barely not at all.
DEMO_ORDER_VALUE_SCALE = 2.0
DEMO_PARTICIPATION = 0.13
DEMO_DAILY_DECAY = 0.985
DEMO_LAUNCH_BOOST = 1.4
# The fairness comparison: bots' demand (2,220 accounts x 1,500 CNY) above the tranche.
DEMO_RUSH_PEOPLE = 20_000
DEMO_BOT_SHARE = 0.1


def demo_config(persons: int = DEMO_PERSONS, seed: int = 2025) -> SimConfig:
    return SimConfig(
        persons=persons,
        seed=seed,
        catalog_skus=DEMO_CATALOG_SKUS,
        order_value_scale=DEMO_ORDER_VALUE_SCALE,
        participation=DEMO_PARTICIPATION,
        daily_decay=DEMO_DAILY_DECAY,
        launch_boost=DEMO_LAUNCH_BOOST,
    )


def run_demo(out_dir: Path, persons: int, seed: int, console: Console) -> int:
    settings = load_settings_file(CAMPAIGN_FILE)
    cfg = demo_config(persons, seed)
    if problems := cfg.problems():  # before anything runs: one line, exit 2
        sys.stderr.write(f"lijian demo: {'; '.join(problems)}\n")
        return 2
    console.print(
        f"[bold]{settings.campaign.name}[/bold]: {settings.campaign.budget_fen // 100:,} CNY, "
        f"{settings.campaign.start_date} to {settings.campaign.end_date}; "
        f"{cfg.persons:,} synthetic persons, {cfg.catalog_skus:,} SKUs, seed {cfg.seed}"
    )
    out = simulate_and_report(settings, cfg, out_dir, console)
    print_outcome(out, console)
    reconciled = reconcile_one_day(out.paths["db"], settings, out_dir, console)
    # Fair release (docs/FAIRNESS.md): the 10:00 rush with bots under each release.
    fair = run_fairness_command(
        CAMPAIGN_FILE, out_dir / "fairness", DEMO_RUSH_PEOPLE, seed, DEMO_BOT_SHARE, True, console
    )
    return 0 if out.audit.ok and reconciled == 0 and fair == 0 else 1


def reconcile_one_day(db: Path, settings: Settings, out_dir: Path, console: Console) -> int:
    """Daily reconciliation as a bureau runs it: a sample of the payment channel's file
    for the first day (what a channel that agrees with the ledger sends), then ``lijian
    reconcile --date`` on it: that day only, so no other day's redemption is missing."""
    from lijian.progress import on_terminal
    from lijian.reconcile import Days, reconcile_command, replay_db, write_channel_file

    cid, day = settings.campaign.id, settings.campaign.start_date.isoformat()
    channel = out_dir / f"unionpay-{day}.csv"
    with on_terminal():
        ledger = replay_db(db)
    rows = write_channel_file(ledger, cid, day, channel)
    console.print(
        f"sample channel file: [bold]{channel}[/bold] ({rows:,} captured redemptions of {day})\n"
        f"lijian reconcile --db {db} --channel-file {channel} --date {day}",
        highlight=False,
        soft_wrap=True,  # the command stays one line to copy
    )
    return reconcile_command(db, channel, cid, False, console, Days(day, day), ledger)
