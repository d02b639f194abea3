"""A city's ledger on PostgreSQL: memory, restart, takeover, and grants across a snapshot.

    .venv/bin/python -m bench.scale_bench [--persons 20000] [--tail 300] [--lease-ttl 5]
    .venv/bin/python -m bench.scale_bench --persons 200000 --restarts 3 \
        [--tree before=/work/main/src --tree after=src] [--reuse DIR]

1. Builds a ledger of N persons with one grant each, in-process through the engine
   itself (real rules, real store, batches of 8,192: no HTTP), then times grants one
   after another before and while a snapshot is taken (the max latency across it).
   Its graceful stop writes the newest snapshot.
2. **Restart**: ``lijian sequencer`` started on it; from the process's start to its
   ``/readyz`` answering 200 (the key's preflight, the newest snapshot, the entries
   after it, the catalogue, the first serve). Resident memory of its serving process.
3. A standby (``lijian sequencer --standby``) that follows the log while it waits
   (cluster/follower.py): the time to its first load, its memory; then ``--tail``
   grants through the active's HTTP port, which it follows.
4. **Takeover**: kill -9 of the whole active sequencer; from the kill to the standby's
   first 201 (the lease's lapse, at most ``--lease-ttl``, then the tail), with where the
   time went: the lease taken, the tail replayed.
5. **Restart after a crash**: the standby killed too, and a new sequencer started once
   its lease lapsed: the newest snapshot plus every entry since (the tail above).

``--restarts N``: only step 2, N times per tree (``--tree NAME=SRC``, the source tree
put first on the sequencer's PYTHONPATH; alternating), each stopped gracefully, with
where the time went from its log: the supervisor's start to the serving process's
first line, to the lease, to ready.

The URL defaults to the CI server (``LIJIAN_TEST_PG`` overrides); a fresh schema is
used and dropped afterwards. Every process runs at this one's niceness.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

import lijian.writer
from bench.http_load import CLIENTS_TOML, CLOCK, LIJIAN, SECRETS, campaign_toml, free_port
from bench.http_load import order_body as http_order_body
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.order import Address, Item, Location, Order, Person
from lijian.engine import Engine
from lijian.http.auth import sign
from lijian.inputs import load_settings_file

BASE_URL = os.environ.get("LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CID = "bench"
CHUNK = 8_192
CATALOG = [("jd", f"SKU-{i}", "fresh_food") for i in range(1000)]
PROBE_BASE = 300  # grants timed with no snapshot running
READY_TIMEOUT_S = 900.0
GRANT_THREADS = 16


def _orders(start: int, n: int, tag: str) -> list[Order]:
    return [
        Order(CID, "jd", f"{tag}-{i}", "unionpay", Person(f"p-{tag}-{i}", True),
              [Item(f"SKU-{i % 1000}", 1, 12_900)], Location(104.0657, 30.6574, "gcj02"),
              Address("510104"))
        for i in range(start, start + n)
    ]  # fmt: skip


def _p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) >= 100 else max(xs)


def _timed(e: Engine, orders: list[Order], stop: threading.Event | None) -> list[float]:
    out: list[float] = []
    for o in orders:
        if stop is not None and stop.is_set():
            break
        t0 = time.perf_counter()
        assert Blocking(e).redeem(o, "unionpay", f"t-{o.order_id}", "fp").status == 201
        out.append(time.perf_counter() - t0)
    return out


def build(url: str, campaign: Path, key: Path, persons: int) -> None:
    lijian.writer.SNAPSHOT_EVERY_ENTRIES = 10**12  # only the snapshot timed here
    settings = load_settings_file(campaign)
    e = Engine([settings], url, parse_clock(CLOCK), max_batch=CHUNK, key_file=key)
    try:
        Blocking(e).catalog_upsert(CATALOG)
        t0 = time.perf_counter()
        for i in range(0, persons, CHUNK):
            part = _orders(i, min(CHUNK, persons - i), "fill")
            outs = Blocking(e).redeem_many([(o, "unionpay", f"k-{o.order_id}", "fp") for o in part])
            assert all(o.status == 201 for o in outs), outs[0].body
        print(f"ledger: {persons:,} persons with one grant each, {e.store.last_seq:,} entries,"
              f" built in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        probe = _orders(0, 20_000, "probe")
        base = _timed(e, probe[:PROBE_BASE], None)
        done = threading.Event()

        async def snap() -> None:
            running = e.writer._start_snapshot()
            assert running is not None
            running.add_done_callback(lambda _: done.set())

        t1 = time.perf_counter()
        e.call(snap)
        during = _timed(e, probe[PROBE_BASE:], done)
        done.wait(900)
        took = time.perf_counter() - t1
        print(f"snapshot: stored in {took:.2f} s, {len(during)} grants answered meanwhile")
        print(f"grant latency, no snapshot:     max {max(base) * 1e3:8.1f} ms, "
              f"p99 {_p99(base) * 1e3:7.2f} ms")  # fmt: skip
        print(f"grant latency, across snapshot: max {max(during) * 1e3:8.1f} ms, "
              f"p99 {_p99(during) * 1e3:7.2f} ms", flush=True)  # fmt: skip
    finally:
        e.close()  # the graceful stop writes the newest snapshot


class Seq:
    """One ``lijian sequencer`` (a supervisor and its serving child), its own group."""

    def __init__(self, work: Path, name: str, base: list[str], standby: bool,
                 src: str | None = None) -> None:  # fmt: skip
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / f"{name}.log"
        cmd = [str(LIJIAN), "sequencer", *base, "--listen", f"127.0.0.1:{free_port()}",
               "--port", str(self.port)]  # fmt: skip
        if standby:
            cmd.append("--standby")
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join([src, *env.get("PYTHONPATH", "").split(os.pathsep)])
        self.started_s = time.monotonic()
        self.started_wall_s = time.time()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=env)  # fmt: skip

    def events(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"event":"{event}"' in line:
                out.append(json.loads(line))
        return out

    def wait_event(self, event: str, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not (got := self.events(event)):
            self._alive()
            assert time.monotonic() < deadline, f"{self.name}: no {event}"
            time.sleep(0.05)
        return got[-1]

    def wait_ready(self) -> float:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            self._alive()
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic()
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{self.name} not ready"
            time.sleep(0.02)

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{tail}")

    def rss_mb(self) -> float:
        """Resident memory of the serving child (the supervisor's last "started")."""
        pid = int(self.events("started")[-1]["pid"])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the serving child has spent so far: what a start
        costs, less sensitive than the wall clock to other work on the machine."""
        pid = int(self.events("started")[-1]["pid"])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> float:
        t = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(60)
        return t

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.kill()


def redeem(url: str, tag: str) -> int:
    body = http_order_body(CID, tag).encode()
    ts, nonce = str(int(time.time())), uuid.uuid4().hex
    headers = {
        "X-Lijian-Key": "unionpay", "X-Lijian-Timestamp": ts, "X-Lijian-Nonce": nonce,
        "X-Lijian-Signature": sign(SECRETS["unionpay"].encode(), "POST", "/v1/redemptions",
                                   ts, nonce, body),
        "Idempotency-Key": f"idem-{tag}", "Content-Type": "application/json",
    }  # fmt: skip
    try:
        return httpx.post(
            url + "/v1/redemptions", content=body, headers=headers, timeout=30
        ).status_code
    except httpx.TransportError:
        return 0


def grant_many(url: str, n: int, tag: str) -> None:
    def run(k: int) -> None:
        for i in range(k, n, GRANT_THREADS):
            assert redeem(url, f"{tag}-{i}") == 201

    threads = [threading.Thread(target=run, args=(k,)) for k in range(GRANT_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def last_seq(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
    return int(row[0]) if row else 0


def measure(url: str, work: Path, base: list[str], tail: int, ttl_s: float) -> None:
    procs: list[Seq] = []
    try:
        _measure(url, work, base, tail, ttl_s, procs)
    finally:
        for p in procs:
            p.stop()


def _measure(url: str, work: Path, base: list[str], tail: int, ttl_s: float,
             procs: list[Seq]) -> None:  # fmt: skip
    run = uuid.uuid4().hex[:8]  # new orders on a kept ledger too (not replays of the last)
    active = Seq(work, "active", base, standby=False)
    procs.append(active)
    ready = active.wait_ready()
    print(f"restart (snapshot, no tail): {ready - active.started_s:.2f} s from the process's "
          f"start to /readyz 200; serving process {active.rss_mb():,.0f} MB resident", flush=True)  # fmt: skip
    standby = Seq(work, "standby", base, standby=True)
    procs.append(standby)
    loaded = standby.wait_event("standby_loaded")
    print(f"standby: loaded the newest snapshot and the log after it in {loaded['load_s']:.2f} s"
          f" (seq {loaded['seq']:,}); {standby.rss_mb():,.0f} MB resident", flush=True)  # fmt: skip
    t0 = time.monotonic()
    grant_many(active.url, tail, f"tail-{run}")
    print(f"{tail:,} grants through the active's port in {time.monotonic() - t0:.1f} s", flush=True)
    target = last_seq(url)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not any(e["seq"] >= target for e in standby.events("standby_following")):
        assert time.monotonic() < deadline, "the standby did not follow"
        time.sleep(0.05)
    print(f"standby followed to seq {target:,}; {standby.rss_mb():,.0f} MB resident", flush=True)
    killed = active.kill()
    n = 0
    while redeem(standby.url, f"after-{run}-{n}") != 201:
        n += 1
        time.sleep(0.02)
        assert time.monotonic() - killed < READY_TIMEOUT_S, "no takeover"
    first = time.monotonic()
    took = standby.wait_event("standby_took_over")
    print(f"takeover: kill -9 of the active to the standby's first 201: {first - killed:.2f} s "
          f"(lease TTL {ttl_s:g} s; tail replayed: {took['tail_entries']} entries in "
          f"{took['tail_s']:.3f} s; followed {took['followed']:,})", flush=True)  # fmt: skip
    assert standby.events("standby_full_recovery") == []
    grant_many(standby.url, 200, f"more-{run}")
    crashed = standby.kill()
    time.sleep(max(0.0, ttl_s + 0.5 - (time.monotonic() - crashed)))  # its lease lapses
    again = Seq(work, "again", base, standby=False)
    procs.append(again)
    ready = again.wait_ready()
    after = last_seq(url)
    print(f"restart after a crash (snapshot + {after - target:,} entries since it): "
          f"{ready - again.started_s:.2f} s to /readyz 200; {again.rss_mb():,.0f} MB resident",
          flush=True)  # fmt: skip
    again.stop()


def _wall_s(line: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(line["ts"]).replace("Z", "+00:00")).timestamp()


def restarts(work: Path, base: list[str], trees: list[tuple[str, str | None]], n: int) -> None:
    """Step 2 alone, ``n`` times per tree, alternating; each stop writes the snapshot."""
    took: dict[str, list[float]] = {name: [] for name, _ in trees}
    cpus: dict[str, list[float]] = {name: [] for name, _ in trees}
    for i in range(n):
        for name, src in trees:
            seq = Seq(work, f"restart-{name}-{i}", base, standby=False, src=src)
            try:
                ready = seq.wait_ready()
                rss, cpu = seq.rss_mb(), seq.cpu_s()
            finally:
                seq.stop()
            took[name].append(ready - seq.started_s)
            cpus[name].append(cpu)
            lines = [json.loads(x) for x in seq.log_path.read_text().splitlines()
                     if x.startswith("{")]  # fmt: skip
            at = {str(x.get("event", "")).split(":")[0]: _wall_s(x) for x in reversed(lines)}
            t0 = seq.started_wall_s
            steps = ", ".join(f"{k} +{at[k] - t0:.2f}" for k in ("started", "lease taken",
                              "standby_loaded", "durability") if k in at)  # fmt: skip
            print(f"restart {name} #{i + 1}: {ready - seq.started_s:.2f} s to /readyz 200 "
                  f"({steps}); serving process {cpu:.2f} CPU s, {rss:,.0f} MB resident", flush=True)  # fmt: skip
    for name, xs in took.items():
        print(f"restart {name}: median {statistics.median(xs):.2f} s of {len(xs)}"
              f" (min {min(xs):.2f}, max {max(xs):.2f}); serving process CPU median"
              f" {statistics.median(cpus[name]):.2f} s")  # fmt: skip


def _build(url: str, work: Path, key: Path, persons: int) -> None:
    (work / "campaign.toml").write_text(campaign_toml(CID, 10**13, False))
    (work / "clients.toml").write_text(CLIENTS_TOML)
    from lijian.cluster.tls import new_set

    new_set(work / "tls", ["gateway-1"])
    # In a process of its own: the bench's own memory stays small beside the sequencers.
    builder = multiprocessing.get_context("spawn").Process(
        target=build, args=(url, work / "campaign.toml", key, persons)
    )
    builder.start()
    builder.join()
    assert builder.exitcode == 0, f"the build failed ({builder.exitcode})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--tail", type=int, default=300, help="grants the standby follows")
    ap.add_argument("--lease-ttl", type=float, default=5.0)
    ap.add_argument("--keep", action="store_true", help="keep the schema and the logs")
    ap.add_argument("--reuse", metavar="DIR", help="a kept run's directory: its ledger again")
    ap.add_argument(
        "--restarts", type=int, default=0, help="only restarts, this many per tree (alternating)"
    )
    ap.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="a source tree the restarts run (repeat to compare)",
    )
    args = ap.parse_args()
    if args.reuse:  # steps 2-5 again on a kept ledger (its schema named in DIR/schema)
        work = Path(args.reuse)
        schema = (work / "schema").read_text().strip()
    else:
        schema = f"scale_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(BASE_URL, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
        work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
        (work / "schema").write_text(schema)
    sep = "&" if "?" in BASE_URL else "?"
    url = f"{BASE_URL}{sep}options=-csearch_path%3D{schema}"
    key = work / "ledger.key"
    try:
        if not args.reuse:
            _build(url, work, key, args.persons)
        base = ["--campaign", str(work / "campaign.toml"), "--clients", str(work / "clients.toml"),
                "--db", url, "--ledger-key", str(key), "--clock", CLOCK,
                "--lease-ttl", str(args.lease_ttl), "--tls-dir", str(work / "tls" / "sequencer"),
                "--log-level", "info"]  # fmt: skip
        if args.restarts:
            trees = [(t.split("=", 1)[0], t.split("=", 1)[1]) for t in args.tree]
            restarts(work, base, trees or [("this", None)], args.restarts)
        else:
            measure(url, work, base, args.tail, args.lease_ttl)
    finally:
        if args.keep:
            print(f"kept: schema {schema}, logs in {work}")
        else:
            with psycopg.connect(BASE_URL, autocommit=True) as c:
                c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
