"""lijian against the classic flash-sale stack, both measured in the same run with wrk.

    .venv/bin/python -m bench.classic_bench [--duration 10] [--configs sqlite:1,pg:2]
                                            [--modes unpinned,pinned] [--wide 256]

The baseline (bench/classic_stack.py, phases in bench/classic_runs.py): FastAPI +
uvicorn, 2 worker processes, one Redis Lua script per grant (check the tranche and the
person's cap, ``SET NX`` the order id, ``DECRBY`` the tranche, ``INCRBY`` the person),
redis-py's asyncio client. Nothing there is durable, signed or rule-checked: it is what
"just put it in Redis" costs. Its **lean** variant (``POST /grant``, a 3-field body: order
id, person, amount) is the one the targets compare with; the **full** one (``POST
/redeem``, lijian's whole order through pydantic models) and ``GET /noop`` (its ceiling)
are printed beside it.

Then lijian (``lijian serve``, one fresh SQLite file or PostgreSQL database per
configuration, created as ``lijian_bench_<pid>_<mode>_<n>`` and dropped afterwards) in
each of the configurations of ``--configs`` (default: SQLite and PostgreSQL, 1 and 2
workers), with the pre-signed requests of bench/http_bench.py:

* **durable grants**: 201s of ``POST /v1/redemptions`` (each answered after its group
  commit), checked against the campaign's held money afterwards;
* **sold-out declines**: a second campaign of the same server whose tranche holds one
  discount, sold out by one request: every answer must be a 200 ``sold_out`` decline;
* in the unpinned pass, both again with ``--wide`` connections (default 256): socket
  errors and p99 when many clients hold connections.

Two passes (``--modes``): **unpinned** first, every process free to use every core as in
a deployment (the headline, with the targets), then **pinned** (every server process on
``--server-cpus``, wrk on ``--wrk-cpus``; Redis and PostgreSQL where the system puts
them), which measures work per core. A configuration that does not start is printed
with the server's error line and the others go on (the exit status is then 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from bench.classic_report import report
from bench.classic_runs import Config, Run, run_classic, run_wrk, settle, wait_ready
from bench.http_load import (
    CATALOG_SKUS,
    CLIENTS_TOML,
    CLOCK,
    DISCOUNT_FEN,
    DURATION_MAX_S,
    LIJIAN,
    LUA,
    Server,
    campaign_toml,
    free_port,
    order_body,
    pinned,
    presign,
)

PG_URL = os.environ.get("LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LIJIAN_BENCH_REDIS", "redis://127.0.0.1:6379/0")
GRANTS_CID, SOLDOUT_CID = "bench-grants", "bench-soldout"
GRANTS_BUDGET_FEN, SOLDOUT_BUDGET_FEN = 10**13, DISCOUNT_FEN + 100
DEFAULT_CONFIGS = "sqlite:1,sqlite:2,pg:1,pg:2"
MODES = ("unpinned", "pinned")
REQUESTS_PER_S = 40_000  # pre-signed lijian POSTs per second of --duration (above the rate)
WIDE_CONNECTIONS = 256


# ------------------------------------------------------------------ lijian
class LijianServer(Server):
    """``lijian serve`` with both bench campaigns, on ``db``, with ``workers`` processes."""

    def __init__(self, args: argparse.Namespace, workdir: Path, db: str, workers: int):
        workdir.mkdir(parents=True, exist_ok=True)
        self.cid = GRANTS_CID
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(LIJIAN), "serve"]
        for cid, budget in ((GRANTS_CID, GRANTS_BUDGET_FEN), (SOLDOUT_CID, SOLDOUT_BUDGET_FEN)):
            (workdir / f"{cid}.toml").write_text(campaign_toml(cid, budget, budget < 10**6))
            cmd += ["--campaign", str(workdir / f"{cid}.toml")]
        (workdir / "clients.toml").write_text(CLIENTS_TOML)
        cmd += ["--clients", str(workdir / "clients.toml"), "--db", db]
        cmd += ["--ledger-key", str(workdir / "ledger.key")]  # PostgreSQL needs it named
        cmd += ["--workers", str(workers), "--port", str(self.port), "--clock", CLOCK]
        cmd += ["--log-level", "warning"]
        if not args.access_log:
            cmd.append("--no-access-log")
        log = workdir / "server.log"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            pinned(args, cmd, args.server_cpus), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_ready(self.proc, self.url + "/readyz", log)
        except RuntimeError:
            self.stop()
            raise


def load_catalog(s: Server, cid: str) -> None:
    body = "".join(
        json.dumps({"sku": f"SKU-{i}", "category": "fresh_food", "platform": "jd"}) + "\n"
        for i in range(CATALOG_SKUS)
    ).encode()
    status, out = s.call(
        "PUT", f"/v1/campaigns/{cid}/catalog", body, **{"Content-Type": "application/x-ndjson"}
    )
    if status != 200 or out != {"upserted": CATALOG_SKUS}:
        raise RuntimeError(f"catalog upload for {cid}: {status} {out}")


_HIST = re.compile(r"^(lijian_writer_(?:batch_entries|commit_seconds)_(?:sum|count)) (\S+)$", re.M)


def writer_figures(s: Server) -> dict[str, float]:
    """The group-commit writer's histograms (sums and counts) from ``/metrics``: through a
    gateway they are the sequencer's."""
    text = httpx.get(s.url + "/metrics", timeout=30).text
    return {k: float(v) for k, v in _HIST.findall(text)}


def writer_delta(
    a: dict[str, float], b: dict[str, float], seconds: float
) -> tuple[float, float, float]:
    """Batches per second, mean entries per batch, mean commit ms between two readings."""
    n = b.get("lijian_writer_batch_entries_count", 0.0) - a.get(
        "lijian_writer_batch_entries_count", 0.0
    )
    if n <= 0:
        return (0.0, 0.0, 0.0)
    entries = b["lijian_writer_batch_entries_sum"] - a.get("lijian_writer_batch_entries_sum", 0.0)
    commit_s = b["lijian_writer_commit_seconds_sum"] - a.get(
        "lijian_writer_commit_seconds_sum", 0.0
    )
    return (n / seconds, entries / n, 1000 * commit_s / n)


def held_fen(s: Server, cid: str) -> int:
    status, out = s.call("GET", f"/v1/campaigns/{cid}/status", b"")
    if status != 200:
        raise RuntimeError(f"status of {cid}: {status} {out}")
    return int(out["held_fen"])


class PgDatabase:
    """A scratch database on the PostgreSQL server of ``base_url``, dropped on close."""

    def __init__(self, base_url: str, name: str):
        self.base_url, self.name = base_url, name
        with psycopg.connect(base_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(base_url)
        self.url = urlunsplit(parts._replace(path="/" + name))

    def drop(self) -> None:
        with psycopg.connect(self.base_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def run_lijian(
    args: argparse.Namespace, work: Path, cfg: Config, index: str, lua: Path, wide: int
) -> None:
    d = work / f"{cfg.kind}-{cfg.workers}-{index}"
    d.mkdir()
    pg: PgDatabase | None = None
    try:
        if cfg.kind == "pg":
            pg = PgDatabase(args.pg_url, f"lijian_bench_{os.getpid()}_{index}")
            db = pg.url
        else:
            db = str(d / "bench.db")
        s = LijianServer(args, d, db, cfg.workers)
    except (RuntimeError, OSError, psycopg.Error) as exc:
        cfg.error = str(exc).splitlines()[0]
        if pg is not None:
            pg.drop()
        return
    try:
        _measure_lijian(args, d, s, cfg, lua, wide)
    except (RuntimeError, OSError, httpx.HTTPError, subprocess.SubprocessError) as exc:
        cfg.checks.append(f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        s.stop()
        if pg is not None:
            try:
                pg.drop()
            except psycopg.Error as exc:
                cfg.checks.append(f"FAILED: drop database {pg.name}: {exc}")


def _grants(
    args: argparse.Namespace, d: Path, s: LijianServer, lua: Path, conns: int, tag: str
) -> tuple[Run, list[str], tuple[float, float, float]]:
    """One durable-grants run and its checks: only 201s, held money = grants × discount."""
    reqs = d / f"grants-{tag}.tsv"
    presign(reqs, GRANTS_CID, args.requests, tag)
    before = settle(lambda: held_fen(s, GRANTS_CID))
    w0 = writer_figures(s)
    g = run_wrk(args, s.url + "/", lua, {"REQS_FILE": str(reqs)}, args.duration, conns)
    held = settle(lambda: held_fen(s, GRANTS_CID)) - before
    writer = writer_delta(w0, writer_figures(s), args.duration)
    reqs.unlink()
    r = g.result
    checks = [
        ("ok" if r.non_2xx == 0 and r.socket_errors == 0 else "FAILED")
        + f": grants at {conns} connections: {r.non_2xx} non-2xx, {r.socket_errors} socket errors"
    ]
    granted = held // DISCOUNT_FEN
    money_ok = held % DISCOUNT_FEN == 0 and r.requests <= granted <= r.requests + conns
    checks.append(
        ("ok" if money_ok else "FAILED")
        + f": held money up {held:,} fen = {held / DISCOUNT_FEN:,.1f} grants × {DISCOUNT_FEN} "
        f"for {r.requests:,} answers"
    )
    return g, checks, writer


def _declines(
    args: argparse.Namespace, d: Path, s: LijianServer, lua: Path, conns: int, tag: str
) -> tuple[Run, list[str]]:
    """One sold-out run and its checks: only 200s, and a probe afterwards says sold_out."""
    reqs = d / f"soldout-{tag}.tsv"
    presign(reqs, SOLDOUT_CID, args.requests, tag)
    dcl = run_wrk(args, s.url + "/", lua, {"REQS_FILE": str(reqs)}, args.duration, conns)
    reqs.unlink()
    status, probe = s.call(
        "POST", "/v1/redemptions", order_body(SOLDOUT_CID, f"probe-{tag}").encode(),
        key="unionpay",
        **{"Content-Type": "application/json", "Idempotency-Key": f"probe-{tag}"},
    )  # fmt: skip
    reasons = [r["code"] for r in probe.get("reasons", [])] if status == 200 else []
    r = dcl.result
    ok = r.non_2xx == 0 and r.socket_errors == 0 and "sold_out" in reasons
    checks = [
        ("ok" if ok else "FAILED")
        + f": declines at {conns} connections: {r.non_2xx} non-2xx, {r.socket_errors} socket "
        f"errors; probe {status} {', '.join(reasons) or probe}"
    ]
    return dcl, checks


def _measure_lijian(
    args: argparse.Namespace, d: Path, s: LijianServer, cfg: Config, lua: Path, wide: int
) -> None:
    load_catalog(s, GRANTS_CID)
    load_catalog(s, SOLDOUT_CID)
    if args.warmup:
        warm = d / "warm.tsv"
        presign(warm, GRANTS_CID, 30_000, "w")
        run_wrk(args, s.url + "/", lua, {"REQS_FILE": str(warm)}, args.warmup, args.connections)
    cfg.grants, checks, cfg.writer = _grants(args, d, s, lua, args.connections, "g")
    cfg.checks += checks
    if wide:
        cfg.grants_wide, checks, _ = _grants(args, d, s, lua, wide, "gw")
        cfg.checks += checks
    status, first = s.call(
        "POST", "/v1/redemptions", order_body(SOLDOUT_CID, "first").encode(), key="unionpay",
        **{"Content-Type": "application/json", "Idempotency-Key": "first"},
    )  # fmt: skip
    if status != 201:
        raise RuntimeError(f"the one grant of the sold-out campaign: {status} {first}")
    cfg.declines, checks = _declines(args, d, s, lua, args.connections, "s")
    cfg.checks += checks
    if wide:
        cfg.declines_wide, checks = _declines(args, d, s, lua, wide, "sw")
        cfg.checks += checks


def parse_configs(text: str) -> list[Config]:
    out = []
    for item in text.split(","):
        kind, _, n = item.strip().partition(":")
        if kind not in {"sqlite", "pg"} or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(f"bad configuration {item!r} (sqlite:N or pg:N)")
        label = "SQLite" if kind == "sqlite" else "PostgreSQL"
        out.append(Config(f"{label}, {n} worker{'s' if int(n) > 1 else ''}", kind, int(n)))
    return out


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise argparse.ArgumentTypeError(f"modes are {', '.join(MODES)}")
    return modes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-d", "--duration", type=int, default=10, help="seconds per wrk run (≤10)")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("--wide", type=int, default=WIDE_CONNECTIONS,
                    help="connections of the unpinned pass's second runs (0: none)")  # fmt: skip
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=0,
                    help=f"pre-signed lijian POSTs per run (default {REQUESTS_PER_S:,} × duration)")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load (0: none)")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS,
                    help=f"lijian configurations, kind:workers (default {DEFAULT_CONFIGS})")  # fmt: skip
    ap.add_argument("--modes", type=parse_modes, default=list(MODES),
                    help="passes, in order: unpinned (the headline), pinned")  # fmt: skip
    ap.add_argument("--no-pin", dest="modes", action="store_const", const=["unpinned"],
                    help="the unpinned pass only")  # fmt: skip
    ap.add_argument("--no-classic", dest="classic", action="store_false",
                    help="skip the baseline (ratios print n/a)")  # fmt: skip
    ap.add_argument("--pg-url", default=PG_URL, help="server and db that scratch dbs are made from")
    ap.add_argument("--redis-url", default=REDIS_URL)
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--wrk-cpus", default="1")
    ap.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0)
    ap.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                    help="lijian logs every request (its default)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    try:
        parse_configs(args.configs)
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    if not 1 <= args.duration <= DURATION_MAX_S:
        ap.error(f"keep each load run at 1..{DURATION_MAX_S} s")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    args.requests = args.requests or REQUESTS_PER_S * args.duration
    can_pin = shutil.which("taskset") is not None
    # SIGTERM (make, CI) unwinds like Ctrl-C: servers stopped, scratch dbs and keys dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="lijian-classic-bench-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    passes: list[tuple[str, dict[str, Any], list[Config]]] = []
    try:
        for mode in args.modes:
            args.pin = mode == "pinned" and can_pin
            if mode == "pinned" and not can_pin:
                print("pinned pass skipped: no taskset", file=sys.stderr)
                continue
            classic: dict[str, Any] = {"checks": []}
            if args.classic:
                print(f"{mode}: classic stack ...", file=sys.stderr, flush=True)
                classic = run_classic(args, work, mode)
            configs = parse_configs(args.configs)
            wide = args.wide if mode == "unpinned" else 0
            for i, cfg in enumerate(configs):
                print(f"{mode}: lijian, {cfg.name} ...", file=sys.stderr, flush=True)
                run_lijian(args, work, cfg, f"{mode}_{i}", lua, wide)
            passes.append((mode, classic, configs))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    report(args, passes)
    ok = all(
        "error" not in classic and not any(c.startswith("FAILED") for c in classic["checks"])
        and all(c.valid for c in configs)
        for _, classic, configs in passes
    )  # fmt: skip
    return 0 if ok and passes else 1


if __name__ == "__main__":
    sys.exit(main())
