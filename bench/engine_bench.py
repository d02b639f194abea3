"""In-process durable grants: group commit vs one grant per transaction, and restart time.

    .venv/bin/python -m bench.engine_bench [--grants 200000] [--persons 200000]

64 asyncio producers call ``Engine.redeem`` (real rules, real geofence, real SQLite file
with WAL + synchronous=FULL). Every grant is acknowledged only after its batch's fsync.
The baseline is the same engine with ``max_batch=1``: one grant per transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import tempfile
import time
from pathlib import Path

from lijian.blocking import Blocking
from lijian.clock import ManualClock, parse_clock
from lijian.core.order import Address, Item, Location, Order, Person
from lijian.core.settings import parse_settings
from lijian.engine import Engine
from lijian.inputs import load_settings_file

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "chengdu-2025-spring.toml"
PRODUCERS = 64


def bench_settings(budget_fen: int = 10**13):  # type: ignore[no-untyped-def]
    """The Chengdu settings with a budget large enough that nothing sells out: this
    benchmark measures grants, not declines."""
    base = load_settings_file(CAMPAIGN)
    doc = copy.deepcopy(dict(base.raw))
    doc["campaign"] = dict(doc["campaign"], budget_fen=budget_fen, id="bench")
    return parse_settings(doc)


def make_orders(n: int, persons: int, tag: str) -> list[Order]:
    return [
        Order(
            "bench",
            "jd",
            f"{tag}-{i}",
            "unionpay",
            Person(f"p-{i % persons}", True),
            [Item(f"SKU-{i % 1000}", 1, 12_900)],
            Location(104.0657, 30.6574, "gcj02"),
            Address("510104"),
        )
        for i in range(n)
    ]


CATALOG = [("jd", f"SKU-{i}", "fresh_food") for i in range(1000)]


def fresh_engine(db: Path, max_batch: int, background: bool) -> Engine:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    clock = parse_clock("manual:2025-02-12T10:00:00+08:00")
    return Engine([bench_settings()], db, clock, max_batch=max_batch, background=background)


async def drive(engine: Engine, orders: list[Order], deadline_s: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    next_i = 0
    granted = 0
    t_end = time.perf_counter() + deadline_s

    async def producer() -> None:
        nonlocal next_i, granted
        while next_i < len(orders) and time.perf_counter() < t_end:
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            out = await engine.redeem(orders[i], "unionpay", f"k-{i}", "fp")
            latencies.append(time.perf_counter() - t0)
            granted += out.status == 201

    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    return granted, latencies


def run_case(db: Path, max_batch: int, orders: list[Order], deadline_s: float) -> dict[str, float]:
    engine = fresh_engine(db, max_batch, background=False)
    cpu_s = [0.0]  # CPU of this process (both threads): robust on a shared machine

    async def case() -> tuple[int, list[float], float]:
        await engine.start()
        try:
            await engine.catalog_upsert(CATALOG)
            await engine.set_clock(advance_ms=1)
            t0, cpu0 = time.perf_counter(), time.process_time()
            granted, lat = await drive(engine, orders, deadline_s)
            cpu_s[0] = time.process_time() - cpu0
            return granted, lat, time.perf_counter() - t0
        finally:
            await engine.aclose()

    granted, lat, wall = asyncio.run(case())
    assert granted == len(lat), "every request in this benchmark must be granted"
    stats = engine.writer.stats
    lat.sort()
    return {
        "grants": granted,
        "grants_per_s": granted / wall,
        "p50_ms": lat[len(lat) // 2] * 1e3,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
        "mean_batch": stats.entries / max(1, stats.batches),
        "cpu_us_per_grant": cpu_s[0] / max(1, granted) * 1e6,
    }


def restart_case(db: Path, entries_target: int) -> dict[str, float]:
    """Fill a ledger with ``entries_target`` entries (holds and captures), then reopen."""
    engine = fresh_engine(db, 8192, background=True)
    Blocking(engine).catalog_upsert(CATALOG)
    Blocking(engine).set_clock(advance_ms=1)
    try:
        n = 0
        i = 0
        while engine.store.last_seq < entries_target:
            orders = make_orders(20_000, 200_000, f"r{i}")
            outs = Blocking(engine).redeem_many(
                [(o, "unionpay", f"r{i}-{j}", "fp") for j, o in enumerate(orders)]
            )
            Blocking(engine).run_many(
                [("capture", o.body["id"]) for o in outs[: len(outs) // 2] if o.status == 201]
            )
            n += len(outs)
            i += 1
        entries = engine.store.last_seq
    finally:
        engine.close()
    t0 = time.perf_counter()
    clock: ManualClock = parse_clock("manual:2025-02-12T10:00:01+08:00")  # type: ignore[assignment]
    e2 = Engine([bench_settings()], db, clock)
    restart_s = time.perf_counter() - t0
    ok = not Blocking(e2).check()
    e2.close()
    return {"entries": entries, "restart_s": restart_s, "invariants_ok": ok}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grants", type=int, default=200_000)
    ap.add_argument("--persons", type=int, default=200_000)
    ap.add_argument("--baseline-s", type=float, default=5.0)
    ap.add_argument("--restart-entries", type=int, default=1_000_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lijian-bench-", dir=os.environ.get("BENCH_DIR")))
    orders = make_orders(args.grants, args.persons, "g")
    print(
        f"engine bench: {PRODUCERS} producers, {args.grants:,} orders, {args.persons:,} persons, "
        f"SQLite WAL synchronous=FULL in {tmp}"
    )
    base = run_case(tmp / "base.db", 1, orders, args.baseline_s)
    group = run_case(tmp / "group.db", 8192, orders, 600.0)
    rows = [("one grant per transaction (baseline)", base), ("group commit", group)]
    print(
        f"{'case':40} {'grants':>9} {'grants/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'batch':>7} "
        f"{'CPU us/grant':>13}"
    )
    for name, r in rows:
        print(
            f"{name:40} {r['grants']:>9,.0f} {r['grants_per_s']:>10,.0f} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['mean_batch']:>7.0f} {r['cpu_us_per_grant']:>13.1f}"
        )
    cpu_bound = 1e6 / group["cpu_us_per_grant"]
    print(f"CPU-bound ceiling of group commit on one core: {cpu_bound:,.0f} grants/s")
    print(f"group commit / baseline = {group['grants_per_s'] / base['grants_per_s']:.1f}x")
    if args.restart_entries:
        rs = restart_case(tmp / "restart.db", args.restart_entries)
        print(
            f"restart after a graceful stop, {rs['entries']:,.0f} entries in the ledger: "
            f"{rs['restart_s']:.2f} s (latest snapshot + tail; invariants ok: "
            f"{rs['invariants_ok']})"
        )


if __name__ == "__main__":
    main()
