"""Grants/s with operator events and webhooks on vs off, in the same run.

    .venv/bin/python -m bench.webhook_bench [--grants 100000] [--rounds 2]

The engine bench's setup (64 producers, real rules and geofence, SQLite WAL
synchronous=FULL), twice per round, in alternating order: *off* has no ``[alerts]`` and no
receiver; *on* has tranche and budget thresholds and a decline-spike factor, and a real
HTTP receiver (its own process) on 127.0.0.1 that gets every event while the grants run (the day's tranche
is sized so that the run crosses seven thresholds). Medians over the rounds, this
process's CPU per grant (less disturbed by other load than grants/s), and the noise: the
spread of the *off* rounds, against which on / off is to be read.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import multiprocessing
import os
import statistics
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.engine_bench import CAMPAIGN, CATALOG, drive, make_orders
from lijian.clock import parse_clock
from lijian.core.settings import parse_settings
from lijian.engine import Engine
from lijian.events.receivers import Receiver
from lijian.inputs import load_settings_file

GRANT_FEN = 1_935  # 15% of 12,900 fen, each bench order
THRESHOLDS = [90, 80, 70, 60, 50, 40, 30]


def settings(grants: int, alerts: bool) -> Any:
    doc = copy.deepcopy(dict(load_settings_file(CAMPAIGN).raw))
    # A tranche the run uses ~75% of, so that the thresholds above it are crossed.
    tranche = grants * GRANT_FEN * 4 // 3
    doc["campaign"] = dict(doc["campaign"], budget_fen=tranche * 17, id="bench")
    if alerts:
        doc["alerts"] = {"tranche_remaining_pct": THRESHOLDS, "budget_remaining_pct": [99],
                         "decline_spike_factor": 10}  # fmt: skip
    return parse_settings(doc)


def _serve_sink(port: Any, count: Any) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver (not one TCP per post)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            with count.get_lock():
                count.value += 1
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port.value = server.server_address[1]
    server.serve_forever()


class Sink:
    """A receiver in its own process (as a real one is: not sharing the engine's GIL)
    that answers 204 and counts."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._count = ctx.Value("i", 0)
        port = ctx.Value("i", 0)
        self.proc = ctx.Process(target=_serve_sink, args=(port, self._count), daemon=True)
        self.proc.start()
        deadline = time.monotonic() + 30
        while port.value == 0:
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port.value}/hook"

    @property
    def count(self) -> int:
        return int(self._count.value)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


def run(db: Path, grants: int, on: bool, sink: Sink) -> dict[str, float]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    clock = parse_clock("manual:2025-02-12T10:00:00+08:00")
    engine = Engine([settings(grants, on)], db, clock, background=False)
    if on:
        engine.enable_webhooks([Receiver(sink.url, b"bench-hook-secret", frozenset(
            ("tranche.threshold", "budget.threshold", "tranche.sold_out", "declines.spike")))])  # fmt: skip
    orders = make_orders(grants, grants, "w")
    before = sink.count
    cpu_s = [0.0]  # this process's CPU (the receiver is another): robust on a busy machine

    async def case() -> tuple[int, float, int]:
        await engine.start()
        try:
            await engine.catalog_upsert(CATALOG)
            await engine.set_clock(advance_ms=1)
            t0, cpu0 = time.perf_counter(), time.process_time()
            granted, _ = await drive(engine, orders, 600.0)
            wall = time.perf_counter() - t0
            cpu_s[0] = time.process_time() - cpu0
            deadline = time.monotonic() + 30
            while on and sink.count - before < engine.store.last_event_seq:
                assert time.monotonic() < deadline, "events not delivered"
                await asyncio.sleep(0.05)
            return granted, wall, engine.store.last_event_seq
        finally:
            await engine.aclose()

    granted, wall, events = asyncio.run(case())
    assert granted == grants
    return {"grants_per_s": granted / wall, "cpu_us_per_grant": cpu_s[0] / granted * 1e6,
            "events": events, "delivered": sink.count - before}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grants", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lijian-bench-", dir=os.environ.get("BENCH_DIR")))
    sink = Sink()
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for i in range(args.rounds):
        for on in (False, True) if i % 2 == 0 else (True, False):  # cancel order effects
            results[on].append(run(tmp / f"w{int(on)}.db", args.grants, on, sink))
    print(f"webhook bench: {args.grants:,} grants per case, {args.rounds} rounds, SQLite FULL")
    print(f"{'case':34} {'grants/s (median)':>18} {'each round':>24} {'CPU us/grant':>13} "
          f"{'events':>7}")  # fmt: skip
    med: dict[bool, dict[str, float]] = {}
    for on in (False, True):
        rs = results[on]
        med[on] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        each = " ".join(f"{r['grants_per_s']:,.0f}" for r in rs)
        name = "events + webhooks on" if on else "off (no [alerts], no receiver)"
        print(f"{name:34} {med[on]['grants_per_s']:>18,.0f} {each:>24} "
              f"{med[on]['cpu_us_per_grant']:>13.1f} {rs[-1]['events']:>7.0f}")  # fmt: skip
    # The noise: how far apart two rounds of the same case (off) are, the largest gap.
    offs = [r["grants_per_s"] for r in results[False]]
    noise = (max(offs) - min(offs)) / statistics.median(offs) if len(offs) > 1 else 0.0
    print(f"on / off = {med[True]['grants_per_s'] / med[False]['grants_per_s']:.3f} grants/s, "
          f"{med[True]['cpu_us_per_grant'] / med[False]['cpu_us_per_grant']:.3f} CPU per grant; "
          f"noise (off rounds, (max - min) / median) = {noise:.1%}; every event delivered: "
          f"{all(r['delivered'] == r['events'] for r in results[True])}")  # fmt: skip
    sink.stop()


if __name__ == "__main__":
    main()
