"""The order registry of sharded sequencers (cluster/order_claims.py): claims per second.

    .venv/bin/python -m bench.shard_bench [--seconds 10] [--producers 256]

What a sharded sequencer adds to each redemption: a claim of its order before the
writer holds it (and a release after a decline). Measured on one ``OrderRegistry``
against PostgreSQL (``LIJIAN_TEST_PG``, a fresh schema): ``--producers`` concurrent
redemptions, each a claim of a new order then, for one in two (a decline), its release;
the claims of one loop turn share a round trip. Baseline: the same claims one at a time
(one producer), so the ratio is what batching buys.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
import uuid

import psycopg

from lijian.cluster.order_claims import OrderRegistry

BASE_URL = os.environ.get("LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def run(url: str, seconds: float, producers: int) -> tuple[int, int]:
    reg = OrderRegistry(url, "a")
    await reg.start()
    ids = itertools.count()
    done = 0
    stop = time.perf_counter() + seconds

    async def producer() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            n = next(ids)
            key = ("jd", f"o-{n}")
            assert await reg.claim(key, "A") == "A"
            if n % 2:
                await reg.release([(key, "A")])
            done += 1

    try:
        await asyncio.gather(*(producer() for _ in range(producers)))
    finally:
        await reg.close()
    return done, reg.round_trips


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--producers", type=int, default=256)
    args = ap.parse_args()
    schema = f"b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE_URL, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in BASE_URL else "?"
    url = f"{BASE_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        OrderRegistry(url, "a").register(["A"])
        rates = {}
        for label, producers in (("one at a time", 1), ("concurrent", args.producers)):
            n, trips = asyncio.run(run(url, args.seconds, producers))
            rates[label] = n / args.seconds
            print(f"{label:>14}: {producers:4d} producers, {n / args.seconds:9.0f} claims/s "
                  f"(half released), {trips} round trips, {n / max(trips, 1):.1f} per trip")  # fmt: skip
        print(f"batching: {rates['concurrent'] / rates['one at a time']:.1f}x")
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
