"""``make demo`` for now: one Chengdu campaign day, in-process, on the embedded SQLite.

A fresh ledger, a synthetic catalogue, persons paying at 10:00 in bursts; most payments
succeed (capture), some fail (void); then the summary and the audit of the file.
"""

from __future__ import annotations

import random
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lijian.audit import audit_db
from lijian.clock import parse_clock
from lijian.core.money import format_cny
from lijian.core.order import Address, Item, Location, Order, Person
from lijian.engine import Engine, load_settings_file

# The repository's seed campaign (campaign-spec.md numbers).
CAMPAIGN_FILE = Path(__file__).resolve().parents[2] / "campaigns" / "chengdu-2025-spring.toml"
CATEGORIES = (
    "apparel_shoes_hats",
    "home_textiles",
    "beauty_skincare",
    "fresh_food",
    "alcohol_beverages",
    "sports_outdoor",
    "auto_supplies",
    "nutrition_health",
    "maternal_baby_toys",
)
BATCH = 2_000


def run_demo(db: Path, persons: int, console: Console) -> int:
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    settings = load_settings_file(CAMPAIGN_FILE)
    rng = random.Random(2025)
    engine = Engine([settings], db, parse_clock("manual:2025-02-12T09:59:00+08:00"))
    try:
        skus = [
            ("jd" if i % 2 else "vip", f"SKU-{i:06d}", CATEGORIES[i % 9]) for i in range(100_000)
        ]
        engine.catalog_upsert_sync(skus)
        engine.set_clock_sync(advance_ms=60_000)  # 10:00:00, the tranche opens
        granted = declined = 0
        with Progress(console=console) as bar:
            task = bar.add_task("10:00 rush", total=persons)
            for start in range(0, persons, BATCH):
                reqs = []
                for i in range(start, min(persons, start + BATCH)):
                    platform, sku, _ = skus[rng.randrange(len(skus))]
                    price = int(rng.lognormvariate(10.3, 0.8))
                    order = Order(
                        settings.id,
                        platform,
                        f"O-{i}",
                        "unionpay",
                        Person(f"p-{i % (persons * 9 // 10)}", True),
                        [Item(sku, 1, price)],
                        Location(
                            104.0657 + rng.uniform(-0.1, 0.1),
                            30.6574 + rng.uniform(-0.1, 0.1),
                            "gcj02",
                        ),
                        Address("510104"),
                    )
                    reqs.append((order, "unionpay", f"k-{i}", f"fp-{i}"))
                outs = engine.redeem_many_sync(reqs)
                calls = []
                for o in outs:
                    if o.status == 201:
                        granted += 1
                        calls.append(("capture" if rng.random() < 0.95 else "void", o.body["id"]))
                    else:
                        declined += 1
                engine.run_many_sync(calls)
                engine.set_clock_sync(advance_ms=1_000)
                bar.advance(task, len(reqs))
        st = engine.status(settings.id)
    finally:
        engine.close()
    t = Table(title="Chengdu 2025-02-12, one day")
    t.add_column("figure")
    t.add_column("value", justify="right")
    today = st["today"]
    t.add_row("released (CNY)", format_cny(today["released_fen"]))
    t.add_row("granted, captured (CNY)", format_cny(today["granted_fen"]))
    t.add_row("remaining (CNY)", format_cny(today["remaining_fen"]))
    t.add_row("grants", f"{granted:,}")
    t.add_row("declines", f"{declined:,}")
    console.print(t)
    rep = audit_db(db)
    console.print(
        f"ledger: {db}; audit: {'[green]ok[/green]' if rep.ok else '[red]FAILED[/red]'} "
        f"({rep.entries:,} entries replayed)"
    )
    for v in rep.violations:
        console.print(f"  [red]{v}[/red]")
    return 0 if rep.ok else 1
