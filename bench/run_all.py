"""`make bench`: every benchmark of the project, one after the other.

Each prints its figures as ratios against a baseline measured in the same run. Benchmarks
whose module is missing are reported as such (never silently skipped).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

BENCHES = [
    ("engine (in-process group commit, restart)", "bench.engine_bench", []),
    ("snapshots while granting (forked encoder, parts)", "bench.snapshot_bench", []),
    (
        "the ledger's memory: bytes per redemption and per person, live and restarted",
        "bench.memory_bench",
        [],
    ),
    ("geofence", "bench.geo_bench", []),
    (
        "a million-line catalogue: parser and import vs csv.reader, then through a gateway",
        "bench.catalog_bench",
        [],
    ),
    (
        "the request signature's HMAC: hmac.new, a copied HMAC, precomputed pads",
        "bench.hmac_bench",
        [],
    ),
    ("CPU per grant with [risk] on and off (rules and the writer)", "bench.risk_bench", []),
    ("the SQLite store's own CPU per grant (commit_batch alone)", "bench.commit_bench", []),
    ("operator events and webhooks on vs off", "bench.webhook_bench", []),
    ("HTTP (wrk against lijian serve)", "bench.http_bench", []),
    (
        "tail latency, one process on SQLite, unpinned: p50/p99/max at 64 and 256 connections",
        "bench.tail_bench",
        [],
    ),
    ("the one Engine on PostgreSQL", "bench.pg_bench", []),
    ("sharded sequencers: the order registry's claims per second", "bench.shard_bench", []),
    (
        "a ledger on PostgreSQL (`--persons 1000000` for a city): memory, restart, a"
        " following standby's takeover, grants across a snapshot",
        "bench.scale_bench",
        [],
    ),
    (
        "the sequencer's ceiling: synthetic gateways over the TLS link, no HTTP",
        "bench.sequencer_bench",
        [],
    ),
    (
        "the sequencer's CPU per forwarded decline, step by step, in one process",
        "bench.sequencer_steps",
        [],
    ),
    # Unpinned first (every process may use both cores, as in a deployment: the headline
    # and its targets), then pinned (servers on CPU 0, wrk on CPU 1: work per core).
    (
        "lijian vs the classic stack (FastAPI + Redis Lua, lean and full), wrk",
        "bench.classic_bench",
        [],
    ),
]


def main() -> int:
    failed = 0
    for title, module, args in BENCHES:
        print(f"\n=== {title}: python -m {module} {' '.join(args)}", flush=True)
        if importlib.util.find_spec(module) is None:
            print(f"missing module {module}")
            failed += 1
            continue
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", module, *args])
        print(f"--- {module}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
