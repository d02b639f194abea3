"""HTTP benchmark of ``lijian serve``: grants/s, sold-out declines/s, and the ceiling.

    .venv/bin/python -m bench.http_bench [--duration 10] [--connections 64] [--no-pin]

Three phases, each on loopback only, each bounded (wrk ``-d`` ≤ 10 s):

1. **grants**: a fresh db, a large-budget copy of the Chengdu campaign (nothing sells
   out), a 1,000-SKU catalogue loaded over ``PUT /v1/campaigns/{id}/catalog``, the
   manual clock at 10:00 so the tranche is open. Requests are pre-signed into a file
   (unique nonce, order id, person and Idempotency-Key each, so the nonce check and the
   idempotency index do real work), then wrk replays them with 64 connections against
   ``POST /v1/redemptions``. Every answer must be 201, and the campaign's held money
   afterwards must equal the number of 201s times the discount.
2. **ceiling**: wrk against ``GET /healthz`` on the same server: what the HTTP stack
   alone (uvicorn + httptools + uvloop + our dispatch) does on this machine.
3. **sold out**: a second fresh server whose tranche holds one discount; one request
   sells it out, then wrk replays signed redemptions: every answer is a 200 decline
   (``sold_out``) served from memory (docs/ARCHITECTURE.md). Then that server's own ceiling.

Each POST phase is compared with the ceiling of its own server, measured right after
it, twice: by req/s, and by server CPU per request (ceiling µs ÷ phase µs), which other
work on the machine disturbs less (it does not count the time the server waited for a
core). The 1-minute load average after each run is printed with it.

The server is pinned to CPU 0 and wrk to CPU 1 when ``taskset`` exists (2-core
machine), both at nice -10 as root, so other work disturbs the figures less. Needs
wrk (Debian package ``wrk``: ``apt-get install -y wrk``).

``--in-process`` measures the application alone, without uvicorn, sockets or wrk: the
same app ``lijian serve`` builds is called as an ASGI callable with pre-built scopes
(pre-signed requests, the same three phases), and the CPU time per request is printed.
On a machine shared with other work this is the steadier figure for our own code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.http_inprocess import in_process
from bench.http_load import (
    DISCOUNT_FEN,
    DURATION_MAX_S,
    LUA,
    Server,
    load_catalog,
    order_body,
    presign,
    run_wrk,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-d", "--duration", type=int, default=10, help="seconds per wrk run (≤10)")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument(
        "--requests",
        type=int,
        default=400_000,
        help="pre-signed POSTs per run (above what 10 s can use)",
    )
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load (0: none)")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--wrk-cpus", default="1")
    ap.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0)
    ap.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                    help="the server logs every request (its default)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--in-process", type=int, default=0, metavar="N",
                    help="no server: call the ASGI app N times per phase, print CPU µs/request")  # fmt: skip
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.in_process:
        return in_process(args.in_process, args.access_log)
    if args.duration > DURATION_MAX_S:
        ap.error(f"keep each load run at {DURATION_MAX_S} s or less")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    if args.pin and not shutil.which("taskset"):
        args.pin = False
    work = Path(tempfile.mkdtemp(prefix="lijian-http-bench-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    try:
        figures = _run(args, work, lua)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    _report(args, figures)
    return 0 if figures["valid"] else 1


def _run(args: argparse.Namespace, work: Path, lua: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {"valid": True}
    # ---- phase 1 and 2: grants, then the ceiling, on one server
    s = Server(args, work / "grants", "bench-http", 10**13)
    try:
        load_catalog(s)
        if args.warmup:
            warm = work / "warm.tsv"
            presign(warm, s.cid, 30_000, "w")
            wargs = argparse.Namespace(**{**vars(args), "duration": args.warmup})
            run_wrk(wargs, s.url + "/", warm, lua)
        reqs = work / "grants.tsv"
        presign(reqs, s.cid, args.requests, "g")
        _, before = s.call("GET", f"/v1/campaigns/{s.cid}/status", b"")
        granted_before = _grants_total(s)
        grants = run_wrk(args, s.url + "/", reqs, lua, _server_pid(s))
        _, after = s.call("GET", f"/v1/campaigns/{s.cid}/status", b"")
        # wrk does not count the requests in flight when it stops (up to one per
        # connection), the server does: check the money against the server's count.
        granted = _grants_total(s) - granted_before
        held = after["held_fen"] - before["held_fen"]
        figures["grants"] = grants
        figures["held_check"] = (held, granted * DISCOUNT_FEN, granted)
        if (
            grants.non_2xx
            or grants.socket_errors
            or held != granted * DISCOUNT_FEN
            or not grants.requests <= granted <= grants.requests + args.connections
        ):
            figures["valid"] = False
        figures["ceiling"] = run_wrk(args, s.url + "/healthz", None, lua, _server_pid(s))
        figures["batch"] = _batch_mean(httpx.get(s.url + "/metrics").text)
    finally:
        s.stop()
    # ---- phase 3: a sold-out tranche
    s = Server(args, work / "soldout", "bench-soldout", DISCOUNT_FEN + 100)
    try:
        load_catalog(s)
        status, first = s.call(
            "POST", "/v1/redemptions", order_body(s.cid, "first").encode(), key="unionpay",
            **{"Content-Type": "application/json", "Idempotency-Key": "first"},
        )  # fmt: skip
        assert status == 201, first
        reqs = work / "soldout.tsv"
        presign(reqs, s.cid, args.requests, "s")
        declines = run_wrk(args, s.url + "/", reqs, lua, _server_pid(s))
        status, probe = s.call(
            "POST", "/v1/redemptions", order_body(s.cid, "probe").encode(), key="unionpay",
            **{"Content-Type": "application/json", "Idempotency-Key": "probe"},
        )  # fmt: skip
        figures["declines"] = declines
        figures["decline_reasons"] = [r["code"] for r in probe.get("reasons", [])]
        if declines.non_2xx or declines.socket_errors or status != 200:
            figures["valid"] = False
        figures["ceiling_soldout"] = run_wrk(args, s.url + "/healthz", None, lua, _server_pid(s))
    finally:
        s.stop()
    return figures


def _server_pid(s: Server) -> int:
    """The ``lijian`` process itself (``nice``/``taskset`` exec it in place)."""
    return s.proc.pid


def _grants_total(s: Server) -> int:
    text = httpx.get(s.url + "/metrics").text
    m = re.search(rf'^lijian_grants_total{{campaign="{s.cid}"}} ([0-9.e+]+)$', text, re.MULTILINE)
    return int(float(m.group(1))) if m else 0


def _batch_mean(metrics_text: str) -> float | None:
    def value(name: str) -> float | None:
        m = re.search(rf"^{name} ([0-9.e+]+)$", metrics_text, re.MULTILINE)
        return float(m.group(1)) if m else None

    total, count = (
        value("lijian_writer_batch_entries_sum"),
        value("lijian_writer_batch_entries_count"),
    )
    return total / count if total is not None and count else None


def _report(args: argparse.Namespace, f: dict[str, Any]) -> None:
    g, c, d, c2 = f["grants"], f["ceiling"], f["declines"], f["ceiling_soldout"]
    cmd = "python -m bench.http_bench " + " ".join(sys.argv[1:])
    lines = [
        f"command: {cmd.strip()}",
        f"wrk: {args.connections} connections, {args.threads} threads, {args.duration} s per run; "
        f"pinned: {args.pin} (server CPU {args.server_cpus}, wrk CPU {args.wrk_cpus}); "
        f"access log: {args.access_log}",
        "",
        "| phase | req/s | p50 ms | p99 ms | requests | non-2xx | vs ceiling "
        "| server CPU µs/request | vs ceiling (CPU) | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.requests:,} "
            f"| {r.non_2xx} | {r.rps / ceil.rps:.2f} | {r.cpu_us_per_request:.0f} "
            f"| {ceil.cpu_us_per_request / r.cpu_us_per_request:.2f} | {r.load1:.1f} |"
            for name, r, ceil in (
                ("POST /v1/redemptions, granted (201)", g, c),
                ("GET /healthz (ceiling, grant server)", c, c),
                ("POST /v1/redemptions, sold out (200 decline)", d, c2),
                ("GET /healthz (ceiling, sold-out server)", c2, c2),
            )
        ),
        "",
        f"held money after the grant phase: {f['held_check'][0]:,} fen; grants counted by the "
        f"server: {f['held_check'][2]:,} × {DISCOUNT_FEN} = {f['held_check'][1]:,} fen: "
        f"{'ok' if f['held_check'][0] == f['held_check'][1] else 'MISMATCH'}",
        f"mean group-commit batch during the grant phase: {f['batch']:.1f} entries"
        if f["batch"]
        else "mean batch: n/a",
        f"decline reasons when sold out: {', '.join(f['decline_reasons'])}",
        "valid run" if f["valid"] else "INVALID RUN: non-2xx answers or a money mismatch",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
