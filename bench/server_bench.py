"""lijian's own app under uvicorn (``lijian serve``) and under Granian, in one run.

    .venv/bin/pip install granian   # not a dependency of lijian: only this bench uses it
    .venv/bin/python -m bench.server_bench --duration 5 [--servers uvicorn,granian]

The same app, campaigns, clients and SQLite ledger in one process each: ``uvicorn`` is
``lijian serve`` itself (uvloop, httptools with the slow-client guard of
``http/guard.py``); ``granian`` is ``granian --interface asgi`` (its Rust HTTP/1 server,
uvloop, one worker, no access log) on the app ``bench/server_app.py`` builds the same
way. For each, as ``bench.classic_bench`` does: the catalogue loaded, a warm-up, durable
grants (wrk, pre-signed, ``--connections``), then sold-out declines, each run checked
(only 2xx, held money = grants × 3,720 fen, the probe says ``sold_out``). Unpinned; the
load average is printed with each run. Whether Granian could replace uvicorn is not
only speed: see docs/PERFORMANCE.md ("Granian against uvicorn").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.classic_bench import (
    GRANTS_BUDGET_FEN,
    GRANTS_CID,
    SOLDOUT_BUDGET_FEN,
    SOLDOUT_CID,
    LijianServer,
    _declines,
    _grants,
    load_catalog,
)
from bench.classic_runs import Run, run_wrk, wait_ready
from bench.http_load import (
    CLIENTS_TOML,
    CLOCK,
    DURATION_MAX_S,
    LUA,
    Server,
    campaign_toml,
    free_port,
    order_body,
    presign,
)
from bench.server_app import ENV

SERVERS = ("uvicorn", "granian")
REQUESTS_PER_S = 40_000  # pre-signed requests per second of --duration (above the rate)


class GranianServer(Server):
    """The app under ``granian --interface asgi``, one worker, on a fresh SQLite file."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.cid = GRANTS_CID
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        campaigns = []
        for cid, budget in ((GRANTS_CID, GRANTS_BUDGET_FEN), (SOLDOUT_CID, SOLDOUT_BUDGET_FEN)):
            (workdir / f"{cid}.toml").write_text(campaign_toml(cid, budget, budget < 10**6))
            campaigns.append(str(workdir / f"{cid}.toml"))
        (workdir / "clients.toml").write_text(CLIENTS_TOML)
        spec = {"campaigns": campaigns, "clients": str(workdir / "clients.toml"),
                "db": str(workdir / "bench.db"), "clock": CLOCK}  # fmt: skip
        cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--loop", "uvloop", "--no-ws", "--log-level", "warning", "--no-access-log",
               "--backlog", "4096", "bench.server_app:app"]  # fmt: skip
        log = workdir / "server.log"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, **{ENV: json.dumps(spec)})
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)  # fmt: skip
        try:
            wait_ready(self.proc, self.url + "/readyz", log)
        except RuntimeError:
            self.stop()
            raise


def measure(args: argparse.Namespace, d: Path, s: Server, lua: Path) -> tuple[Run, Run, list[str]]:
    load_catalog(s, GRANTS_CID)
    load_catalog(s, SOLDOUT_CID)
    if args.warmup:
        warm = d / "warm.tsv"
        presign(warm, GRANTS_CID, 30_000, "w")
        run_wrk(args, s.url + "/", lua, {"REQS_FILE": str(warm)}, args.warmup, args.connections)
    grants, checks, _ = _grants(args, d, s, lua, args.connections, "g")  # type: ignore[arg-type]
    status, first = s.call(
        "POST", "/v1/redemptions", order_body(SOLDOUT_CID, "first").encode(), key="unionpay",
        **{"Content-Type": "application/json", "Idempotency-Key": "first"},
    )  # fmt: skip
    if status != 201:
        raise RuntimeError(f"the one grant of the sold-out campaign: {status} {first}")
    declines, more = _declines(args, d, s, lua, args.connections, "s")  # type: ignore[arg-type]
    return grants, declines, checks + more


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-d", "--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load (0: none)")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.set_defaults(access_log=False, pin=False, nice=0, server_cpus="0", wrk_cpus="1")
    args = ap.parse_args()
    servers = [x for x in args.servers.split(",") if x]
    if not servers or set(servers) - set(SERVERS):
        ap.error(f"--servers: some of {', '.join(SERVERS)}")
    if not 1 <= args.duration <= DURATION_MAX_S:
        ap.error(f"keep each load run at 1..{DURATION_MAX_S} s")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    if "granian" in servers and importlib.util.find_spec("granian") is None:
        sys.exit("granian not installed: .venv/bin/pip install granian")
    args.requests = REQUESTS_PER_S * args.duration
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="lijian-server-bench-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    rows, failed = [], False
    try:
        for name in servers:
            d = work / name
            print(f"{name} ...", file=sys.stderr, flush=True)
            s: Server = (LijianServer(args, d, str(d / "bench.db"), 1) if name == "uvicorn"
                         else GranianServer(d))  # fmt: skip
            try:
                grants, declines, checks = measure(args, d, s, lua)
            finally:
                s.stop()
            failed |= any(c.startswith("FAILED") for c in checks)
            rows.append((name, grants, declines, checks))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"one process, SQLite, {args.connections} connections, {args.duration} s runs, unpinned")
    print(f"{'server':10} {'grants/s':>9} {'p99 ms':>7} {'load':>5} "
          f"{'declines/s':>11} {'p99 ms':>7} {'load':>5}")  # fmt: skip
    for name, g, dcl, _ in rows:
        print(f"{name:10} {g.result.rps:9,.0f} {g.result.p99_ms:7.1f} {g.load1:5.1f} "
              f"{dcl.result.rps:11,.0f} {dcl.result.p99_ms:7.1f} {dcl.load1:5.1f}")  # fmt: skip
    for name, _, _, checks in rows:
        for c in checks:
            print(f"  {name}: {c}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
