"""The ledger's memory: bytes per redemption and per person, live and after a restart.

    .venv/bin/python -m bench.memory_bench [--persons 100000] [--stores sqlite,postgres]

Through the real engine (in-process, real rules, a real SQLite file or a fresh
PostgreSQL schema at ``LIJIAN_TEST_PG``), measured with tracemalloc (every Python
allocation the process still holds, after a full collection):

1. N persons, one captured grant each: bytes per redemption *with* its person;
2. the same N persons, one more captured grant each: bytes per redemption alone
   (the persons exist already); per person = (1) − (2);
3. the same 2N redemptions as a restart finds them (``open_stored_ledger``): from the
   newest snapshot plus the tail, and replayed from zero (what ``lijian audit`` does):
   bytes per redemption with the persons amortised, as (1) + (2) are live; and how
   long each takes (tracemalloc off); the snapshot's encoded size per redemption.

A warm-up of WARM_UP grants comes first, so that what is built once (caches) is not
counted as if it grew with the ledger.

The expiry heap is drained (the clock moved past every hold's expiry) before each
figure, as a live ledger's is once its holds' time has passed. (No RSS figure: with
tracemalloc on, its own bookkeeping is most of the process's growth.)
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from bench.engine_bench import CATALOG, bench_settings, fresh_engine, make_orders
from lijian.blocking import Blocking
from lijian.core.order import Order
from lijian.core.snapshot import encode_snapshot
from lijian.engine import Engine
from lijian.store import open_store
from lijian.stored_ledger import open_stored_ledger

PG_URL = os.environ.get("LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 8_192
WARM_UP = 2_000  # grants before the measure: what is built once (caches) is not counted
HOLD_TTL_MS = 900_000 + 1_000  # the bench campaign's hold_ttl_s, and a second


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _requests(n: int, tag: str) -> list[tuple[Order, str, str, str]]:
    """N redemption requests whose every string is its own object, as the engine gets
    them from a decoded body (HTTP) or frame (the sequencer): the order decoded from its
    JSON, the client's id decoded, a fingerprint (hex SHA-256) of each request."""
    decode = msgspec.json.Decoder(Order).decode
    client = msgspec.json.encode("unionpay")
    out = []
    for o in make_orders(n, n, tag):
        key = f"{tag}-{o.order_id}"
        fp = hashlib.sha256(key.encode()).hexdigest()
        out.append((decode(msgspec.json.encode(o)), msgspec.json.decode(client), key, fp))
    return out


def _grant_and_capture(e: Engine, n: int, tag: str) -> None:
    requests = _requests(n, tag)
    for i in range(0, n, CHUNK):
        outs = Blocking(e).redeem_many(requests[i : i + CHUNK])
        assert all(o.status == 201 for o in outs), "every grant of this bench is granted"
        caps = Blocking(e).run_many([("capture", str(o.body["id"])) for o in outs])
        assert all(o.status == 200 for o in caps), "every capture of this bench succeeds"
    del requests
    Blocking(e).set_clock(advance_ms=HOLD_TTL_MS)  # the expiry heap drained


@contextmanager
def _ledger_url(store: str, d: str) -> Iterator[str]:
    if store == "sqlite":
        yield str(Path(d) / "memory.db")
        return
    import psycopg

    schema = f"bench_mem_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _engine(store: str, url: str) -> Engine:
    if store == "sqlite":
        return fresh_engine(Path(url), max_batch=CHUNK, background=True)
    from lijian.clock import parse_clock

    clock = parse_clock("manual:2025-02-12T10:00:00+08:00")
    return Engine([bench_settings()], url, clock, max_batch=CHUNK, ledger_key=bytes(32))


def _restart_bytes(url: str, from_snapshot: bool) -> tuple[int, int]:
    """(bytes the recovered ledger holds, its redemptions)."""
    store = open_store(url)
    try:
        base = _traced()
        opened = open_stored_ledger(store, from_snapshot=from_snapshot)
        held = _traced() - base
        return held, len(opened.ledger.redemptions)
    finally:
        store.close()


def _encoded(e: Engine) -> bytes:
    return encode_snapshot(e.ledger, e.store.last_seq)


def _restart_s(url: str, from_snapshot: bool) -> float:
    store = open_store(url)
    try:
        t0 = time.perf_counter()
        open_stored_ledger(store, from_snapshot=from_snapshot)
        return time.perf_counter() - t0
    finally:
        store.close()


def measure(store: str, n: int, out: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory() as d, _ledger_url(store, d) as url:
        e = _engine(store, url)
        try:
            Blocking(e).catalog_upsert(CATALOG)
            Blocking(e).set_clock(advance_ms=1)
            _grant_and_capture(e, WARM_UP, "warm")  # caches filled once, not counted
            base, t0 = _traced(), time.perf_counter()
            _grant_and_capture(e, n, "one")
            after_one = _traced()
            _grant_and_capture(e, n, "two")
            after_two = _traced()
            took_s = time.perf_counter() - t0
            with_person = (after_one - base) / n
            alone = (after_two - after_one) / n
            out(f"{store}: {n:,} persons, 2 captured grants each, in {took_s:.0f} s")
            out(f"  live: {with_person:7.0f} B per redemption with its person")
            out(f"  live: {alone:7.0f} B per redemption alone")
            out(f"  live: {with_person - alone:7.0f} B per person")
            blob_bytes = len(e.call(_encoded, e))
            out(f"  snapshot: {blob_bytes / (2 * n):7.0f} B per redemption (encoded)")
            e.call(e.writer.snapshot)  # restart (3) from it, plus an empty tail
        finally:
            e.close()
        del e
        for from_snapshot in (True, False):
            held, count = _restart_bytes(url, from_snapshot)
            how = "snapshot + tail" if from_snapshot else "replay from zero"
            out(f"  restart ({how}): {held / count:7.0f} B per redemption, "
                f"persons amortised (live: {(after_two - base) / count:.0f})")  # fmt: skip
        tracemalloc.stop()  # the times without tracemalloc's cost per allocation
        try:
            for from_snapshot in (True, False):
                how = "snapshot + tail" if from_snapshot else "replay from zero"
                out(f"  restart ({how}): {_restart_s(url, from_snapshot):.2f} s")
        finally:
            tracemalloc.start()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--stores", default="sqlite,postgres")
    args = ap.parse_args()
    tracemalloc.start()
    for store in args.stores.split(","):
        assert store in ("sqlite", "postgres"), f"unknown store {store!r}"
        measure(store, args.persons, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
