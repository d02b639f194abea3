"""What a snapshot costs the grants around it, at a size given by ``--grants``.

    .venv/bin/python -m bench.snapshot_bench [--grants 100000]

Builds a ledger of N persons with one grant each (in-process engine, real SQLite file,
WAL + synchronous=FULL), then, one grant after another from one caller:
- the baseline: the latency of grants with no snapshot running;
- the same grants while a snapshot is taken (forked encoder, saved in parts:
  snapshot_fork.py), from its start to its end;
- what the snapshot would stop the writer for if it were encoded on the writer's loop
  (the encode alone, timed on the loop: the old way's stall).
Prints max and p99 of each and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import lijian.writer
from bench.engine_bench import CATALOG, fresh_engine, make_orders
from lijian.blocking import Blocking
from lijian.core.snapshot import encode_snapshot

CHUNK = 8_192


def _p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) >= 100 else max(xs)


def _timed_grants(e, orders, stop: threading.Event | None, n_max: int) -> list[float]:  # type: ignore[no-untyped-def]
    out: list[float] = []
    for o in orders[:n_max]:
        if stop is not None and stop.is_set():
            break
        t0 = time.perf_counter()
        assert Blocking(e).redeem(o, "unionpay", f"t-{o.order_id}", "fp").status == 201
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grants", type=int, default=100_000)
    n = ap.parse_args().grants
    lijian.writer.SNAPSHOT_EVERY_ENTRIES = 10**12  # only the snapshot measured here
    with tempfile.TemporaryDirectory() as d:
        e = fresh_engine(Path(d) / "snap.db", max_batch=8_192, background=True)
        try:
            Blocking(e).catalog_upsert(CATALOG)
            t0 = time.perf_counter()
            orders = make_orders(n, n, "fill")
            for i in range(0, n, CHUNK):
                part = orders[i : i + CHUNK]
                Blocking(e).redeem_many([(o, "unionpay", f"k-{o.order_id}", "fp") for o in part])
            print(f"ledger: {n:,} persons with one grant each, built in "
                  f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
            probe = make_orders(20_000, 20_000, "probe")
            base = _timed_grants(e, probe[:500], None, 500)
            encode_s = e.call(lambda: _encode_time(e))
            done = threading.Event()
            t1 = time.perf_counter()
            running = e.call(e.writer._start_snapshot)
            assert running is not None
            running.add_done_callback(lambda _: done.set())
            during = _timed_grants(e, probe[500:], done, len(probe) - 500)
            done.wait(600)
            took_s = time.perf_counter() - t1
            st = e.writer.stats
            assert st.snapshots == 1
        finally:
            e.close()
    print(f"snapshot: fork {st.last_snapshot_fork_ms:.1f} ms, stored in {took_s:.2f} s; "
          f"{len(during)} grants answered meanwhile")  # fmt: skip
    print(f"grant latency, no snapshot:     max {max(base) * 1e3:7.1f} ms, "
          f"p99 {_p99(base) * 1e3:6.2f} ms")  # fmt: skip
    print(f"grant latency, during snapshot: max {max(during) * 1e3:7.1f} ms, "
          f"p99 {_p99(during) * 1e3:6.2f} ms")  # fmt: skip
    print(f"the encode alone on the loop (the stall of an inline snapshot): "
          f"{encode_s * 1e3:.0f} ms")  # fmt: skip
    print(f"ratio max during / encode inline: {max(during) / encode_s:.3f}")


def _encode_time(e) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    encode_snapshot(e.ledger, e.store.last_seq)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
