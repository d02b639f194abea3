"""The sequencer's ceiling: what one ``lijian sequencer`` decides per second for gateways
on other machines, driven over its wire protocol with no HTTP in front.

    .venv/bin/python -m bench.sequencer_bench [--duration 5] [--gateways 3] [--window 512]
                                              [--dbs sqlite,pg] [--no-pin]
                                              [--tree before=/path/to/other/src] [--rounds 1]

One real ``lijian sequencer`` (two campaigns: one with a large budget, one whose only
tranche is sold out by one grant first; a 1,000-SKU catalogue each) on a fresh SQLite
file or PostgreSQL database, its link TLS 1.3 with certificates (``lijian certs new``'s
directories). ``--gateways`` synthetic gateway processes (this module, ``--gateway``)
each open the link as ``cluster/gateway.py`` does (its TLS context, the hello) and keep
``--window`` ``redeem`` commands in flight, each carrying a signed request's ``Ticket``
(fresh nonce, order, person and Idempotency-Key per command: the sequencer admits the
nonce, stores it in its next commit and answers only then), encoded ahead of the clock
from one template. Two phases per database:

* **forwarded sold-out declines**: every answer must be a 200 ``sold_out`` decline;
* **durable grants**: every answer must be a 201, and the held money afterwards must
  equal the grants × the discount.

Pinned by default (``taskset``): the sequencer (its supervisor and child) on CPU 0, the
gateways on CPU 1, so the rate is what one sequencer core sustains; the sequencer's CPU
per command (all its threads) is printed too, steadier than a rate on a shared machine.
PostgreSQL runs where the system puts it.

``--tree NAME=SRC`` (repeatable) also runs the sequencer of another checkout (``SRC`` is
its ``src`` directory, put first on ``PYTHONPATH``; the synthetic gateways stay this
checkout's): the trees are run one after the other, ``--rounds`` times, so a before and
an after are measured in one run under the same load. This checkout runs as ``this``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import uvloop

from bench.classic_bench import (
    PG_URL,
    PgDatabase,
    held_fen,
    load_catalog,
    writer_delta,
    writer_figures,
)
from bench.classic_runs import settle, wait_ready
from bench.http_load import (
    CLIENTS_TOML,
    CLOCK,
    DISCOUNT_FEN,
    LIJIAN,
    Server,
    campaign_toml,
    free_port,
    order_body,
)
from lijian.cluster import wire
from lijian.cluster.tls import SEQUENCER_NAME, client_context, new_set
from lijian.core.order import Order
from lijian.port import Ticket

GRANTS_CID, SOLDOUT_CID = "seq-grants", "seq-soldout"
GRANTS_BUDGET_FEN, SOLDOUT_BUDGET_FEN = 10**13, DISCOUNT_FEN + 100
GATEWAYS_MAX = 8  # the certificates made, and the most --gateways may ask for
WINDOW_MAX = 16_384
DURATION_MAX_S = 30
ROUNDS_MAX = 10
START_DELAY_S = 0.5  # from every gateway's hello answered to the common start
READY_TIMEOUT_S = 60.0  # a gateway process starts, connects and says hello within this
DRAIN_TIMEOUT_S = 30.0  # a gateway waits this long for its last answers
ID_WIDTH = 16  # every per-command id is this long: the template's bytes never move
_PLACEHOLDER = "@" * ID_WIDTH
FINGERPRINT = "0" * 64  # a request fingerprint's shape; each command's key is fresh
_HEAD = wire.array_header(4)


# ------------------------------------------------------------------ one gateway
def redeem_template(cid: str) -> list[bytes]:
    """A redeem message after its call id, split where the per-command id goes (its
    nonce, order id, person and Idempotency-Key: each ``ID_WIDTH`` characters)."""
    order = msgspec.json.decode(order_body(cid, _PLACEHOLDER).encode(), type=Order)
    ticket = Ticket("unionpay", "n-" + _PLACEHOLDER, int(time.time()))
    args = (order, "unionpay", "idem-" + _PLACEHOLDER, FINGERPRINT)
    tail = wire.encode("redeem") + wire.encode(ticket) + wire.encode(args)
    return tail.split(_PLACEHOLDER.encode())


def redeem_message(parts: list[bytes], call_id: int, ident: bytes) -> bytes:
    """One ``[call_id, "redeem", ticket, args]`` message from ``redeem_template``."""
    assert len(ident) == ID_WIDTH
    return _HEAD + wire.encode(call_id) + ident.join(parts)


async def _gateway(opts: dict[str, Any]) -> dict[str, Any]:
    ctx = client_context(Path(opts["tls_dir"]))
    host, port = opts["address"]
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ctx, server_hostname=SEQUENCER_NAME
    )
    out = wire.Outbox(writer, wire.REQUEST_FRAME_BYTES_MAX)
    out.put(wire.encode((0, "hello", None, ())))
    hello = wire.decode_answers(await wire.read_frame(reader, wire.ANSWER_FRAME_BYTES_MAX))
    assert hello[0].kind == wire.OK, hello
    parts, tag = redeem_template(opts["campaign"]), opts["tag"]
    window, seconds = opts["window"], opts["seconds"]
    assert len(tag) < ID_WIDTH // 2
    outcomes: Counter[str] = Counter()
    sent = answered = in_window = 0
    cpu0 = time.process_time()

    def send_more() -> None:
        nonlocal sent
        while sent - answered < window:
            sent += 1
            ident = f"{tag}{sent:0{ID_WIDTH - len(tag)}d}".encode()
            out.put(redeem_message(parts, sent, ident))

    # Ready: the parent answers with the common start once every gateway is.
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    await asyncio.sleep(max(0.0, start_at - time.time()))
    t0 = time.monotonic()
    end = t0 + seconds
    send_more()
    while True:
        now = time.monotonic()
        if now >= end and answered == sent:
            break
        frame = wire.read_frame(reader, wire.ANSWER_FRAME_BYTES_MAX)
        try:  # past the window, the last answers are waited for boundedly
            body = await (frame if now < end else asyncio.wait_for(frame, DRAIN_TIMEOUT_S))
        except TimeoutError:
            outcomes["unanswered"] += sent - answered
            break
        now = time.monotonic()
        for a in wire.decode_answers(body):
            answered += 1
            if now <= end:
                in_window += 1
            outcomes[_outcome(a)] += 1
        if now < end:
            send_more()
    writer.close()
    return {"in_window": in_window, "answered": answered, "outcomes": dict(outcomes),
            "cpu_s": time.process_time() - cpu0}  # fmt: skip


def _outcome(a: wire.Answer) -> str:
    if a.kind != wire.OK:
        return f"problem {a.payload[:2]}" if a.kind == wire.PROBLEM else f"error {a.payload}"
    status, body, _replayed = a.payload
    if status == 201:
        return "201"
    codes = sorted(r["code"] for r in body.get("reasons", []))
    return f"{status} {','.join(codes)}"


def _sold_out(outcome: str) -> bool:
    """A 200 decline whose reasons include ``sold_out`` (``_outcome``'s key)."""
    return outcome.startswith("200 ") and "sold_out" in outcome[4:].split(",")


def gateway_main(spec: str) -> None:
    opts = json.loads(spec)
    print(json.dumps(uvloop.run(_gateway(opts))), flush=True)


# ------------------------------------------------------------------ the sequencer
class SequencerServer(Server):
    """``lijian sequencer`` with both campaigns, its HTTP on a free port (for the
    catalogue, the status and /metrics), gateways on ``self.link``."""

    def __init__(
        self, args: argparse.Namespace, d: Path, db: str, tls: Path, src: Path | None = None
    ) -> None:
        self.cid = GRANTS_CID
        self.port, link_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.link = ("127.0.0.1", link_port)
        cmd = [str(LIJIAN), "sequencer"]
        for cid, budget in ((GRANTS_CID, GRANTS_BUDGET_FEN), (SOLDOUT_CID, SOLDOUT_BUDGET_FEN)):
            (d / f"{cid}.toml").write_text(campaign_toml(cid, budget, budget < 10**6))
            cmd += ["--campaign", str(d / f"{cid}.toml")]
        (d / "clients.toml").write_text(CLIENTS_TOML)
        cmd += ["--clients", str(d / "clients.toml"), "--db", db, "--ledger-key",
                str(d / "ledger.key"), "--listen", f"127.0.0.1:{link_port}", "--port",
                str(self.port), "--tls-dir", str(tls / "sequencer"), "--clock", CLOCK,
                "--log-level", "warning"]  # fmt: skip
        if args.pin:
            cmd = ["taskset", "-c", args.sequencer_cpus, *cmd]
        log = d / "sequencer.log"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONPATH=str(src)) if src is not None else None
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)  # fmt: skip
        try:
            wait_ready(self.proc, self.url + "/readyz", log)
        except RuntimeError:
            self.stop()
            raise

    def cpu_s(self) -> float:
        """User + system CPU of every process of the sequencer's group (the supervisor
        idles; the child runs the engine, its writer and committer threads)."""
        total, tick = 0.0, os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == self.proc.pid:  # the process group
                total += (int(fields[11]) + int(fields[12])) / tick
        return total


def _start_together(procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every gateway process said it is connected and answered."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for p in procs:
        assert p.stdout is not None
        ready = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
        line = p.stdout.readline().strip() if ready else ""
        if line != "ready":
            raise RuntimeError(f"a synthetic gateway did not connect: {line or 'timeout'}")


@dataclass
class Phase:
    name: str
    rate: float = 0.0  # answers per second, all gateways, within the window
    seq_cpu_us: float = 0.0  # sequencer CPU per answer
    gateway_cpu_us: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    writer: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _drive(args: argparse.Namespace, s: SequencerServer, tls: Path, cid: str, tag: str) -> Phase:
    procs = []
    for i in range(args.gateways):
        spec = {"address": s.link, "tls_dir": str(tls / f"gateway-{i + 1}"), "campaign": cid,
                "tag": f"{tag}{i}", "window": args.window, "seconds": args.duration}  # fmt: skip
        cmd = [sys.executable, "-m", "bench.sequencer_bench", "--gateway", json.dumps(spec)]
        if args.pin:
            cmd = ["taskset", "-c", args.gateway_cpus, *cmd]
        procs.append(
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    try:
        _start_together(procs)
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    start_at = time.time() + START_DELAY_S
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"{start_at}\n")
        p.stdin.flush()  # communicate() closes it
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, w0 = s.cpu_s(), writer_figures(s)
    time.sleep(args.duration)
    cpu1, w1 = s.cpu_s(), writer_figures(s)
    phase = Phase(tag)
    in_window, gw_cpu = 0, 0.0
    timeout_s = args.duration + DRAIN_TIMEOUT_S + 30
    for p in procs:
        stdout, _ = p.communicate(timeout=timeout_s)
        if p.returncode != 0:
            raise RuntimeError(f"a synthetic gateway failed (exit {p.returncode})")
        got = json.loads(stdout.strip().splitlines()[-1])
        in_window += got["in_window"]
        gw_cpu += got["cpu_s"]
        phase.outcomes.update(got["outcomes"])
    phase.rate = in_window / args.duration
    phase.seq_cpu_us = 1e6 * (cpu1 - cpu0) / max(1, in_window)
    phase.gateway_cpu_us = 1e6 * gw_cpu / max(1, sum(phase.outcomes.values()))
    phase.writer = writer_delta(w0, w1, args.duration)
    return phase


@dataclass
class DbRun:
    name: str
    tree: str = "this"
    phases: list[Phase] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    error: str | None = None


def run_db(
    args: argparse.Namespace, d: Path, kind: str, tls: Path, tree: str, src: Path | None
) -> DbRun:
    run = DbRun("SQLite" if kind == "sqlite" else "PostgreSQL", tree)
    d.mkdir()
    pg = None
    try:
        if kind == "pg":
            pg = PgDatabase(args.pg_url, f"lijian_seqbench_{os.getpid()}")
        s = SequencerServer(args, d, pg.url if pg else str(d / "bench.db"), tls, src)
    except (RuntimeError, OSError, psycopg.Error) as exc:
        run.error = str(exc).splitlines()[0]
        if pg is not None:
            pg.drop()
        return run
    try:
        load_catalog(s, GRANTS_CID)
        load_catalog(s, SOLDOUT_CID)
        status, first = s.call(
            "POST", "/v1/redemptions", order_body(SOLDOUT_CID, "first").encode(),
            key="unionpay", **{"Content-Type": "application/json", "Idempotency-Key": "first"},
        )  # fmt: skip
        if status != 201:
            raise RuntimeError(f"the one grant of the sold-out campaign: {status} {first}")
        declines = _drive(args, s, tls, SOLDOUT_CID, "d")
        run.phases.append(declines)
        bad = {k: v for k, v in declines.outcomes.items() if not _sold_out(k)}
        run.checks.append(("FAILED" if bad else "ok") + f": declines {dict(declines.outcomes)}")
        before = settle(lambda: held_fen(s, GRANTS_CID))
        grants = _drive(args, s, tls, GRANTS_CID, "g")
        run.phases.append(grants)
        held = settle(lambda: held_fen(s, GRANTS_CID)) - before
        n = grants.outcomes.get("201", 0)
        bad = {k: v for k, v in grants.outcomes.items() if k != "201"}
        ok = not bad and held == n * DISCOUNT_FEN
        run.checks.append(
            ("ok" if ok else "FAILED") + f": grants {dict(grants.outcomes)}; held money up "
            f"{held:,} fen = {held / DISCOUNT_FEN:,.1f} × {DISCOUNT_FEN} for {n:,} 201s"
        )
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        run.checks.append(f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        s.stop()
        if pg is not None:
            pg.drop()
    return run


def report(args: argparse.Namespace, runs: list[DbRun]) -> None:
    print(f"command: python -m bench.sequencer_bench {' '.join(sys.argv[1:])}".strip())
    pin = (f"sequencer on CPU {args.sequencer_cpus}, gateways on CPU {args.gateway_cpus}"
           if args.pin else "no")  # fmt: skip
    print(f"{args.gateways} synthetic gateways × {args.window} commands in flight, TLS 1.3 "
          f"link, {args.duration} s per phase; pinned: {pin}; {os.cpu_count()} CPUs; load "
          f"average {os.getloadavg()[0]:.1f} at the end\n")  # fmt: skip
    print("| tree | database | phase | commands/s | sequencer CPU µs/command | sequencer CPU s / 1k "
          "commands | ⇒ per sequencer core | gateway CPU µs/command | ledger batches/s | "
          "entries/batch | commit ms |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"d": "forwarded sold-out declines", "g": "durable grants"}
    for run in runs:
        if run.error is not None:
            print(f"| {run.tree} | {run.name} | did not start: {run.error} |||||||||")
        for p in run.phases:
            bps, per, ms = p.writer
            # The writer's histograms count ledger batches: declines store only nonces.
            batches = f"{bps:,.1f} | {per:.0f} | {ms:.1f}" if p.name == "g" else "– | – | –"
            ceiling = 1e6 / p.seq_cpu_us if p.seq_cpu_us else 0.0
            print(f"| {run.tree} | {run.name} | {names[p.name]} | {p.rate:,.0f} | {p.seq_cpu_us:.1f} "
                  f"| {p.seq_cpu_us / 1000:.4f} | {ceiling:,.0f}/s | {p.gateway_cpu_us:.1f} "
                  f"| {batches} |")  # fmt: skip
    for run in runs:
        for c in run.checks:
            print(f"  {run.tree}, {run.name}: {c}")
    bad = [
        f"{r.tree} {r.name}"
        for r in runs
        if r.error or any(c.startswith("FAILED") for c in r.checks)
    ]
    print("\nvalid run" if not bad else f"\nINVALID OR INCOMPLETE: {', '.join(bad)}")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--gateway":
        gateway_main(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-d", "--duration", type=int, default=5, help="seconds per phase")
    ap.add_argument("--gateways", type=int, default=3)
    ap.add_argument("--window", type=int, default=512, help="commands in flight per gateway")
    ap.add_argument("--dbs", default="sqlite,pg", help="sqlite, pg or both")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--sequencer-cpus", default="0")
    ap.add_argument("--gateway-cpus", default="1")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=SRC")
    ap.add_argument("--rounds", type=int, default=1, help="every tree this many times")
    args = ap.parse_args()
    if not 1 <= args.duration <= DURATION_MAX_S:
        ap.error(f"--duration: 1..{DURATION_MAX_S} s")
    if not 1 <= args.gateways <= GATEWAYS_MAX:
        ap.error(f"--gateways: 1..{GATEWAYS_MAX}")
    if not 1 <= args.window <= WINDOW_MAX:
        ap.error(f"--window: 1..{WINDOW_MAX}")
    dbs = [x.strip() for x in args.dbs.split(",") if x.strip()]
    if not dbs or set(dbs) - {"sqlite", "pg"}:
        ap.error("--dbs: sqlite, pg or both")
    trees: list[tuple[str, Path | None]] = []
    for spec in args.tree:
        name, sep, src = spec.partition("=")
        if not sep or not (Path(src) / "lijian" / "__init__.py").is_file():
            ap.error(f"--tree {spec!r}: NAME=SRC where SRC/lijian is a package")
        trees.append((name, Path(src).resolve()))
    trees.append(("this", None))
    if not 1 <= args.rounds <= ROUNDS_MAX:
        ap.error(f"--rounds: 1..{ROUNDS_MAX}")
    if args.pin and not shutil.which("taskset"):
        args.pin = False
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="lijian-sequencer-bench-"))
    try:
        tls = work / "tls"
        new_set(tls, [f"gateway-{i}" for i in range(1, GATEWAYS_MAX + 1)])
        runs = []
        for r in range(args.rounds):
            for name, src in trees:
                for kind in dbs:
                    print(f"{name}: sequencer on {kind} ...", file=sys.stderr, flush=True)
                    runs.append(run_db(args, work / f"{name}-{r}-{kind}", kind, tls, name, src))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, runs)
    ok = all(r.error is None and not any(c.startswith("FAILED") for c in r.checks) for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
