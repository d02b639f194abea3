"""Tail latency of one ``lijian serve`` process on SQLite: grants and sold-out declines at
64 and 256 connections, unpinned, with p50 / p99 / max and socket errors.

    .venv/bin/python -m bench.tail_bench [--duration 5] [--wide 256] [--phases grants,declines]
                                         [--tree before=/path/to/other/src] [--rounds 1]

The targets: p99 ≤ 50 ms for grants and declines at 64 connections; no socket
errors and p99 ≤ 200 ms at 256. Each server is a fresh SQLite file with the campaign and
pre-signed requests of bench/http_bench.py; every process may use both cores (as in a
deployment), so the figures move with the machine's load (printed beside each run).

``--tree NAME=SRC`` (repeatable) also serves the ``lijian`` package of another checkout
(``SRC`` is its ``src`` directory, put first on ``PYTHONPATH``); the trees are run one
after the other in every round (``--rounds``), so a before/after comparison is measured
in one run under the same load. The tree of this checkout is always run, as ``this``.

Every grant run is checked (the campaign's held money = the server's grants × the
discount; no non-2xx answers) and every decline run too (all 200 ``sold_out``). The
writer's mean group-commit batch and commit time during each run are read from
``/metrics``; server CPU µs per request is the server process's CPU over the run (all
its threads), the loop thread's that of its main thread alone (the event loop: HTTP, the
engine, the writer's task; the rest is mostly the committer thread's, its fsyncs included).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.http_load import (
    DISCOUNT_FEN,
    DURATION_MAX_S,
    LUA,
    Server,
    WrkResult,
    load_catalog,
    order_body,
    presign,
    run_wrk,
)

TARGET_P99_MS = {64: 50.0, 256: 200.0}
REQUESTS_PER_S = 20_000  # pre-signed POSTs per second of a run: above what one process serves
GRANTS_BUDGET_FEN, SOLDOUT_BUDGET_FEN = 10**13, DISCOUNT_FEN + 100


@dataclass
class Row:
    tree: str
    phase: str  # "grants" | "declines"
    connections: int
    wrk: WrkResult
    batch_entries: float  # mean entries per group commit during the run
    commit_ms: float  # mean commit time during the run
    check: str  # "ok" or what failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-d", "--duration", type=int, default=5, help="seconds per wrk run (≤10)")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("--wide", type=int, default=256, help="the second run's connections")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load per server")
    ap.add_argument("--rounds", type=int, default=1, help="every tree this many times")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=SRC")
    ap.add_argument("--phases", default="grants,declines", help="grants, declines or both")
    ap.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.duration > DURATION_MAX_S:
        ap.error(f"keep each load run at {DURATION_MAX_S} s or less")
    if not 1 <= args.rounds <= 5:
        ap.error("--rounds is 1 to 5")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    trees: list[tuple[str, Path | None]] = []
    for spec in args.tree:
        name, sep, src = spec.partition("=")
        if not sep or not (Path(src) / "lijian" / "__init__.py").is_file():
            ap.error(f"--tree {spec!r}: NAME=SRC where SRC/lijian is a package")
        trees.append((name, Path(src).resolve()))
    trees.append(("this", None))
    phases = args.phases.split(",")
    if not phases or not set(phases) <= {"grants", "declines"}:
        ap.error("--phases: grants, declines or both, comma-separated")
    # What bench.http_load's helpers read: unpinned, default niceness.
    args.pin, args.nice, args.server_cpus, args.wrk_cpus = False, 0, "", ""
    work = Path(tempfile.mkdtemp(prefix="lijian-tail-bench-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    rows: list[Row] = []
    try:
        for r in range(args.rounds):
            for name, src in trees:
                if "grants" in phases:
                    rows += _grants(args, work / f"{name}-{r}-g", lua, name, src)
                if "declines" in phases:
                    rows += _declines(args, work / f"{name}-{r}-d", lua, name, src)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _report(args, rows)
    return 0 if all(row.check == "ok" for row in rows) else 1


def _conns(args: argparse.Namespace) -> list[int]:
    return [args.connections, args.wide] if args.wide else [args.connections]


def _grants(
    args: argparse.Namespace, work: Path, lua: Path, tree: str, src: Path | None
) -> list[Row]:
    out: list[Row] = []
    s = Server(args, work, "bench-grants", GRANTS_BUDGET_FEN, src)
    try:
        load_catalog(s)
        _warm(args, s, work, lua)
        for i, conns in enumerate(_conns(args)):
            reqs = work / f"g{i}.tsv"
            presign(reqs, s.cid, REQUESTS_PER_S * args.duration, f"g{i}")
            _, before = s.call("GET", f"/v1/campaigns/{s.cid}/status", b"")
            m0 = _metrics(s)
            res = run_wrk(_with(args, connections=conns), s.url + "/", reqs, lua, s.proc.pid)
            m1 = _metrics(s)
            _, after = s.call("GET", f"/v1/campaigns/{s.cid}/status", b"")
            granted = int(m1.get(f'lijian_grants_total{{campaign="{s.cid}"}}', 0)) - int(
                m0.get(f'lijian_grants_total{{campaign="{s.cid}"}}', 0)
            )
            held = after["held_fen"] - before["held_fen"]
            check = "ok"
            if res.non_2xx:
                check = f"{res.non_2xx} non-2xx answers"
            elif held != granted * DISCOUNT_FEN:
                check = f"held {held} fen ≠ {granted} grants × {DISCOUNT_FEN}"
            elif not res.requests <= granted <= res.requests + conns:
                check = f"server counted {granted} grants, wrk {res.requests} answers"
            out.append(Row(tree, "grants", conns, res, *_writer(m0, m1), check))
    finally:
        s.stop()
    return out


def _declines(
    args: argparse.Namespace, work: Path, lua: Path, tree: str, src: Path | None
) -> list[Row]:
    out: list[Row] = []
    s = Server(args, work, "bench-soldout", SOLDOUT_BUDGET_FEN, src)
    try:
        load_catalog(s)
        hdrs = {"Content-Type": "application/json", "Idempotency-Key": "first"}
        status, first = s.call(
            "POST", "/v1/redemptions", order_body(s.cid, "first").encode(), key="unionpay", **hdrs
        )
        assert status == 201, first
        _warm(args, s, work, lua)
        for i, conns in enumerate(_conns(args)):
            reqs = work / f"d{i}.tsv"
            presign(reqs, s.cid, REQUESTS_PER_S * args.duration, f"d{i}")
            m0 = _metrics(s)
            res = run_wrk(_with(args, connections=conns), s.url + "/", reqs, lua, s.proc.pid)
            m1 = _metrics(s)
            hdrs = {"Content-Type": "application/json", "Idempotency-Key": f"probe-{i}"}
            status, probe = s.call(
                "POST", "/v1/redemptions", order_body(s.cid, f"probe-{i}").encode(),
                key="unionpay", **hdrs,
            )  # fmt: skip
            codes = [r["code"] for r in probe.get("reasons", [])]
            check = "ok"
            if res.non_2xx:
                check = f"{res.non_2xx} non-2xx answers"
            elif status != 200 or "sold_out" not in codes:
                check = f"probe answered {status} {codes}"
            out.append(Row(tree, "declines", conns, res, *_writer(m0, m1), check))
    finally:
        s.stop()
    return out


def _warm(args: argparse.Namespace, s: Server, work: Path, lua: Path) -> None:
    if args.warmup:
        warm = work / "warm.tsv"
        presign(warm, s.cid, REQUESTS_PER_S * args.warmup, "w")
        run_wrk(_with(args, duration=args.warmup), s.url + "/", warm, lua)


def _with(args: argparse.Namespace, **changes: int) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def _metrics(s: Server) -> dict[str, float]:
    text = httpx.get(s.url + "/metrics", timeout=30).text
    out: dict[str, float] = {}
    for m in re.finditer(r"^(lijian_\S+) ([0-9.e+-]+)$", text, re.MULTILINE):
        out[m.group(1)] = float(m.group(2))
    return out


def _writer(m0: dict[str, float], m1: dict[str, float]) -> tuple[float, float]:
    def delta(name: str) -> float:
        return m1.get(name, 0.0) - m0.get(name, 0.0)

    commits = delta("lijian_writer_batch_entries_count")
    if not commits:
        return 0.0, 0.0
    return (
        delta("lijian_writer_batch_entries_sum") / commits,
        1e3 * delta("lijian_writer_commit_seconds_sum") / commits,
    )


def _report(args: argparse.Namespace, rows: list[Row]) -> None:
    cmd = "python -m bench.tail_bench " + " ".join(sys.argv[1:])
    print(f"command: {cmd.strip()}")
    print(
        f"one process, SQLite, unpinned; wrk {args.threads} threads, {args.duration} s a run "
        f"after {args.warmup} s of warm-up; access log: {args.access_log}"
    )
    print()
    print(
        "| tree | phase | conns | req/s | p50 ms | p99 ms | max ms | socket errors "
        "| p99 target | server CPU µs/req | loop thread µs/req | batch | commit ms | load | check |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        w = r.wrk
        target = TARGET_P99_MS.get(r.connections)
        met = ""
        if target is not None:
            ok = w.p99_ms <= target and (r.connections < 256 or w.socket_errors == 0)
            met = f"≤ {target:.0f}: {'met' if ok else 'NOT met'}"
        print(
            f"| {r.tree} | {r.phase} | {r.connections} | {w.rps:,.0f} | {w.p50_ms:.1f} "
            f"| {w.p99_ms:.1f} | {w.max_ms:.0f} | {w.socket_errors} | {met} "
            f"| {w.cpu_us_per_request:.0f} | {w.loop_cpu_us_per_request:.0f} "
            f"| {r.batch_entries:.1f} | {r.commit_ms:.1f} "
            f"| {w.load1:.1f} | {r.check} |"
        )


if __name__ == "__main__":
    sys.exit(main())
