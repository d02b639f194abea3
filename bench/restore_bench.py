"""CPU seconds to restore a snapshot of N captured redemptions, and to apply and show them.

    PYTHONPATH=TREE/src .venv/bin/python -m bench.restore_bench [--redemptions 200000]

The memory bench's ledger without the engine around it (so that two source trees can be
compared in a minute, alternating): the bench campaign, N/2 persons with two captured
grants each, each request's own order id, Idempotency-Key and hex SHA-256 fingerprint,
one unit of one of 1,000 SKUs. Built by ``apply`` (HoldPlaced, HoldCaptured), then the
snapshot encoded once and restored ``--rounds`` times into a fresh ledger, the collector
off as recovery runs it (lijian.stored_ledger). Prints the CPU seconds of each restore,
of applying the holds and the captures, and of every redemption's view.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import time
from zoneinfo import ZoneInfo

from bench.engine_bench import bench_settings
from lijian.core.entries import HoldCaptured, HoldPlaced
from lijian.core.ledger import Ledger
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.views import redemption_view

OPENS_MS = 1_739_325_600_000  # 2025-02-12 10:00 Asia/Shanghai: the bench tranche is open
HOLD_TTL_MS = 900_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redemptions", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.redemptions
    s = bench_settings()
    ledger = Ledger([s])
    ledger.advance(OPENS_MS)
    ledger.take_pending()
    holds = []
    for i in range(n):
        payable_fen = 12_900 + i % 7
        holds.append(
            HoldPlaced(
                OPENS_MS, "bench", f"rd_a{i + 1:010d}", "2025-02-12", f"p-{i % (n // 2)}",
                "jd", f"one-{i}", payable_fen, 1_935, False, OPENS_MS + HOLD_TTL_MS,
                [(f"SKU-{i % 1000}", 1, payable_fen)], "unionpay", f"one-one-{i}",
                hashlib.sha256(f"one-one-{i}".encode()).hexdigest(),
            )
        )  # fmt: skip
    captures = [HoldCaptured(OPENS_MS + 1, h.redemption_id) for h in holds]
    gc.disable()
    t0 = time.process_time()
    for h in holds:
        ledger.apply(h)
    t1 = time.process_time()
    for c in captures:
        ledger.apply(c)
    t2 = time.process_time()
    tz = ZoneInfo("Asia/Shanghai")
    for r in ledger.redemptions.values():
        redemption_view(r, tz)
    t3 = time.process_time()
    gc.enable()
    blob = encode_snapshot(ledger, ledger.entries_applied)
    del ledger, holds, captures
    gc.collect()
    restores = []
    for _ in range(args.rounds):
        fresh = Ledger([s])
        gc.disable()
        c0 = time.process_time()
        restore_snapshot(fresh, blob)
        restores.append(time.process_time() - c0)
        gc.enable()
        assert len(fresh.redemptions) == n, "every redemption restored"
        del fresh
        gc.collect()
    print(
        f"{n:,} redemptions: snapshot {len(blob) / n:.0f} B each; restore CPU s "
        + " ".join(f"{x:.2f}" for x in restores)
        + f"; apply holds {t1 - t0:.2f}, captures {t2 - t1:.2f}, views {t3 - t2:.2f} CPU s",
        flush=True,
    )


if __name__ == "__main__":
    main()
