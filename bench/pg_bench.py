"""Durable grants per second of the one Engine (the sequencer's) on PostgreSQL, in-process.

    .venv/bin/python -m bench.pg_bench [--seconds 15] [--profile]

The Engine is driven by 256 asyncio producers calling ``Engine.redeem`` with real rules
and the real geofence; a grant counts when its batch committed (``synchronous_commit =
on``: WAL flushed). The budget is large and persons many, so nothing sells out: this
measures the path, not the pool. The same engine on SQLite (``bench.engine_bench``) is
the baseline of the same `make bench` run; over HTTP with gateways see ``bench.http_bench``.

Where the time goes is measured, not guessed: CPU seconds of the Python process and of
PostgreSQL's backends over the window (from /proc), WAL records/bytes/syncs
(``pg_stat_wal``), and with ``--profile`` the top functions (cProfile).

The URL defaults to the CI server (``LIJIAN_TEST_PG`` overrides); each run uses a fresh
schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing
import os
import pstats
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench.engine_bench import CATALOG, bench_settings

BASE_URL = os.environ.get("LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PRODUCERS = 256  # concurrent requests per process: a rush, not a trickle
PERSONS = 200_000
WARMUP_S = 3.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _node(
    worker: int, workers: int, url: str, start_at: float, seconds: float, plain: bool,
    profile: bool, out: Any, producers: int = PRODUCERS,
) -> None:  # fmt: skip
    from lijian.clock import parse_clock
    from lijian.engine import Engine

    clock = parse_clock("manual:2025-02-12T10:00:00+08:00")
    s = [bench_settings()]

    async def main() -> tuple[int, dict[str, float]]:
        assert plain and workers == 1, "one ledger has one writer"
        # A throwaway ledger in a fresh schema: any key (a PostgreSQL ledger needs one).
        e = Engine(s, url, clock, background=False, ledger_key=bytes(32))
        await e.start()
        if worker == 0:
            await e.catalog_upsert(CATALOG)
        else:
            e.catalog.upsert(CATALOG)
        orders = _orders(400_000, f"n{worker}-{uuid.uuid4().hex[:6]}")
        granted, window_granted = 0, 0
        next_i = 0
        t_end = start_at + seconds

        async def producer() -> None:
            nonlocal next_i, granted, window_granted
            while time.time() < t_end and next_i < len(orders):
                i = next_i
                next_i += 1
                out_ = await e.redeem(orders[i], "unionpay", f"k-{worker}-{i}", "fp")
                if out_.status == 201:
                    granted += 1
                    if time.time() >= start_at:
                        window_granted += 1

        prof = cProfile.Profile() if profile and worker == 0 else None
        if prof:
            prof.enable()
        await asyncio.gather(*(producer() for _ in range(producers)))
        if prof:
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
            Path("out").mkdir(exist_ok=True)
            Path(f"out/pg_bench_profile_{workers}.txt").write_text(buf.getvalue())
        phases = dict(getattr(e.writer, "phase_s", {}))
        phases["batches"] = e.writer.stats.batches
        await e.aclose()
        return window_granted, phases

    n, phases = asyncio.run(main())
    out.put((worker, n, phases))


def _orders(n: int, tag: str) -> list[Any]:
    """Orders whose persons are this node's own (``<tag>-p-<i>``): person rows are then
    never contended between nodes, as with many real people; order ids are unique."""
    from lijian.core.order import Address, Item, Location, Order, Person

    return [
        Order(
            "bench",
            "jd",
            f"{tag}-{i}",
            "unionpay",
            Person(f"{tag}-p-{i % PERSONS}", True),
            [Item(f"SKU-{i % 1000}", 1, 12_900)],
            Location(104.0657, 30.6574, "gcj02"),
            Address("510104"),
        )
        for i in range(n)
    ]


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(f[11]) + int(f[12])) / CLK_TCK  # utime + stime
        except (FileNotFoundError, IndexError, ValueError):
            continue
    return out


def _cpu_delta_s(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings; a process born in between counts whole
    (backends the pools opened), one that died in between is lost (rare: pools keep theirs)."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def _postgres_pids() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def _wal(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def run(
    workers: int, seconds: float, plain: bool, profile: bool, producers: int = PRODUCERS
) -> dict[str, float]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(BASE_URL, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{BASE_URL}?options=-csearch_path%3D{schema}"
    try:
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        start_at = time.time() + WARMUP_S + 4.0  # spawn + imports + geofence load
        procs = [
            ctx.Process(
                target=_node,
                args=(i, workers, url, start_at, seconds, plain, profile, q, producers),
            )
            for i in range(workers)
        ]
        for p in procs:
            p.start()
        time.sleep(max(0.0, start_at - time.time()))
        py_pids = [p.pid or 0 for p in procs]
        py0, pg0, wal0 = _cpu_by_pid(py_pids), _cpu_by_pid(_postgres_pids()), _wal(BASE_URL)
        time.sleep(seconds)
        py1, pg1, wal1 = _cpu_by_pid(py_pids), _cpu_by_pid(_postgres_pids()), _wal(BASE_URL)
        results = [q.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
        grants = sum(n for _, n, _ in results)
        phases: dict[str, float] = {}
        for _, _, ph in results:
            for k, v in ph.items():
                phases[k] = phases.get(k, 0.0) + v
        batches = max(1.0, phases.pop("batches", 1.0))
        return {
            "grants_per_s": grants / seconds,
            "py_cpu_s_per_s": _cpu_delta_s(py0, py1) / seconds,
            "pg_cpu_s_per_s": _cpu_delta_s(pg0, pg1) / seconds,
            **{f"ms_per_batch_{k}": 1000 * v / batches for k, v in phases.items()},
            "wal_records_per_grant": (wal1[0] - wal0[0]) / max(1, grants),
            "wal_bytes_per_grant": (wal1[1] - wal0[1]) / max(1, grants),
            "wal_syncs_per_s": (wal1[2] - wal0[2]) / seconds,
        }
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--plain", action="store_true", help="(the only mode; kept for scripts)")
    ap.add_argument("--profile", action="store_true", help="cProfile the engine (out/…txt)")
    ap.add_argument("--producers", type=int, default=PRODUCERS, help="requests in flight")
    a = ap.parse_args()
    if not 1 <= a.producers <= 10_000:
        ap.error("--producers must be 1..10000")
    rows = [("Engine on PostgreSQL, 1 process", run(1, a.seconds, True, a.profile, a.producers))]
    print(
        f"{'configuration':32} {'grants/s':>9} {'py cpu/s':>9} {'pg cpu/s':>9}"
        f" {'wal rec/g':>9} {'wal B/g':>8} {'syncs/s':>8}"
    )
    for name, r in rows:
        print(
            f"{name:32} {r['grants_per_s']:9.0f} {r['py_cpu_s_per_s']:9.2f}"
            f" {r['pg_cpu_s_per_s']:9.2f} {r['wal_records_per_grant']:9.1f}"
            f" {r['wal_bytes_per_grant']:8.0f} {r['wal_syncs_per_s']:8.0f}"
        )
    for name, r in rows:
        ph = {k[13:]: v for k, v in r.items() if k.startswith("ms_per_batch_")}
        if ph:
            print(f"{name}: ms per batch " + ", ".join(f"{k} {v:.1f}" for k, v in ph.items()))


if __name__ == "__main__":
    main()
