"""The store's own CPU per grant: ``SqliteStore.commit_batch`` alone, on this thread, with
nothing else running in the process (no event loop to share the GIL with).

    .venv/bin/python -m bench.commit_bench [--batch 32] [--batches 400] [--synchronous FULL]

Each batch is what a batch of grants writes: ``--batch`` ``HoldPlaced`` entries (encoded,
chained), the tranche's three balance rows, one person row and one nonce row per grant,
in one transaction with one fsync (``--synchronous FULL``, the server's default). The
batches are built before the clock starts; the figure is this thread's user and system
CPU per grant (``RUSAGE_THREAD``), and the wall time per grant beside it (mostly the
fsync). Compare trees by putting another checkout's ``src`` first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lijian.core.entries import HoldPlaced
from lijian.store.sqlite import SqliteStore

Batch = tuple[list[HoldPlaced], list[tuple[str, int]], list[tuple[str, str, int, int]],
              list[tuple[str, str, int, int]]]  # fmt: skip
T0_MS = 1_741_600_000_000  # a March 2025 morning, as the HTTP benches' clock
DISCOUNT_FEN = 3_720


def batch(b: int, size: int) -> Batch:
    """Batch ``b``: its entries, balances, person rows and nonce rows."""
    entries, persons, nonces = [], [], []
    for i in range(size):
        n = f"g-{b:05d}{i:04d}"
        entries.append(HoldPlaced(
            ts_ms=T0_MS + b, campaign_id="bench-grants", redemption_id=f"rd_a_bench_{n}",
            day="2025-03-10", person_id=f"5f1c2a{n}", platform="jd", order_id=f"9a7c{n}",
            payable_fen=24_800, discount_fen=DISCOUNT_FEN, capped=False,
            expires_at_ms=T0_MS + 600_000, lines=[("SKU-3", 2, 24_800)], client_id="unionpay",
            idempotency_key=f"idem-{n}", fingerprint="0123456789abcdef0123456789abcdef",
        ))  # fmt: skip
        persons.append(("bench-grants", f"5f1c2a{n}", 0, DISCOUNT_FEN))
        nonces.append(("unionpay", f"{n}-nonce-0123456789", T0_MS // 1000, T0_MS + b))
    held = (b + 1) * size * DISCOUNT_FEN
    balances = [("bench-grants/2025-03-10/available", 10**13 - held),
                ("bench-grants/2025-03-10/held", held), ("bench-grants/lost", 0)]  # fmt: skip
    return entries, balances, persons, nonces


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=32, help="grants per batch")
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--synchronous", default="FULL", help="FULL (the default) or OFF")
    args = ap.parse_args()
    assert args.batch > 0 and args.batches > 0
    work = Path(tempfile.mkdtemp(prefix="lijian-commit-bench-"))
    try:
        store = SqliteStore(work / "bench.db", synchronous=args.synchronous)
        batches = [batch(b, args.batch) for b in range(args.batches)]
        r0, w0 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
        for entries, balances, persons, nonces in batches:
            store.commit_batch(entries, balances, persons, nonces=nonces)
        r1, w1 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = args.batch * args.batches
    user_us = 1e6 * (r1.ru_utime - r0.ru_utime) / n
    sys_us = 1e6 * (r1.ru_stime - r0.ru_stime) / n
    print(f"commit_batch, {args.batches} batches of {args.batch} grants, synchronous="
          f"{args.synchronous}: CPU {user_us + sys_us:.1f} µs a grant (user {user_us:.1f}, "
          f"system {sys_us:.1f}); wall {1e6 * (w1 - w0) / n:.1f} µs a grant; "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
