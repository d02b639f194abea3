"""lijian against the classic flash-sale stack, both measured in the same run with wrk.

    .venv/bin/python -m bench.classic_bench [--duration 10] [--configs sqlite:1,pg:2] [--no-pin]

The baseline (bench/classic_stack.py): FastAPI + pydantic under uvicorn, 2 worker
processes, one Redis Lua script per grant (check the tranche and the person's cap,
``SET NX`` the order id, ``DECRBY`` the tranche, ``INCRBY`` the person), redis-py's
asyncio client. Nothing there is durable, signed or rule-checked: it is what "just put
it in Redis" costs. Two phases, with the wrk settings of bench/http_bench.py (threads,
connections, duration):

* **classic grants**: wrk's Lua builds each ``POST /redeem`` with a fresh order id and
  person, the tranche large enough not to sell out; every answer must be a 201 and the
  tranche's decrease must equal the grants Redis counted (± the requests in flight when
  wrk stops).
* **classic /noop**: ``GET /noop``, a small JSON: the ceiling of that stack.

Then lijian (``lijian serve``, one fresh SQLite file or PostgreSQL database per
configuration, created as ``lijian_bench_<pid>_<n>`` and dropped afterwards) in each of
the configurations of ``--configs`` (default: SQLite and PostgreSQL, 1 and 2 workers),
with the pre-signed requests of bench/http_bench.py:

* **durable grants**: 201s of ``POST /v1/redemptions`` (each answered after its group
  commit), checked against the campaign's held money afterwards;
* **sold-out declines**: a second campaign of the same server whose tranche holds one
  discount, sold out by one request: every answer must be a 200 ``sold_out`` decline.

Each lijian figure is printed as a ratio to the classic stack's grants/s and to its
``/noop`` req/s. A configuration that does not start is printed with the server's error
line and the others go on (the exit status is then 1).

Pinning as bench/http_bench.py: every server process (all workers) on CPU 0, wrk on
CPU 1, when ``taskset`` exists; Redis and PostgreSQL run where the system puts them.
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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis
from redis.utils import HIREDIS_AVAILABLE

from bench.http_load import (
    CATALOG_SKUS,
    CLIENTS_TOML,
    CLOCK,
    DISCOUNT_FEN,
    DURATION_MAX_S,
    LIJIAN,
    LUA,
    ROOT,
    WRK_TIMEOUT_S,
    Server,
    WrkResult,
    campaign_toml,
    free_port,
    order_body,
    parse_wrk,
    pinned,
    presign,
)

PG_URL = os.environ.get("LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LIJIAN_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CLASSIC_WORKERS = 2
CLASSIC_TRANCHE_FEN = 10**13  # never sells out within a measured window
PERSON_CAP_FEN = 150_000  # the seed campaign's person_savings_cap_fen
GRANTS_CID, SOLDOUT_CID = "bench-grants", "bench-soldout"
GRANTS_BUDGET_FEN, SOLDOUT_BUDGET_FEN = 10**13, DISCOUNT_FEN + 100
DEFAULT_CONFIGS = "sqlite:1,sqlite:2,pg:1,pg:2"
STARTUP_TIMEOUT_S = 30  # a configuration that is not up by then is reported, not waited for
REQUESTS_PER_S = 40_000  # pre-signed lijian POSTs per second of --duration (above the rate)

CLASSIC_LUA = r"""
-- POST /redeem with a fresh order id and person per request: thread i of run RUN_TAG
-- sends orders B-<tag>-<i>-<n> for persons p-<tag>-<i>-<n>, n = 1, 2, ...
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  n = 0
  tag = os.getenv("RUN_TAG") .. "-" .. tid .. "-"
  headers = {["Content-Type"] = "application/json"}
end
function request()
  n = n + 1
  local id = tag .. n
  return wrk.format("POST", "/redeem", headers, BODY_1 .. id .. BODY_2 .. id .. BODY_3)
end
"""


def classic_lua() -> str:
    """The wrk script, with lijian's order body (same size, same fields) as a template."""
    parts = order_body("classic", "@N@").split("@N@")
    assert len(parts) == 3, parts
    consts = "".join(f"BODY_{i + 1} = [==[{p}]==]\n" for i, p in enumerate(parts))
    return consts + CLASSIC_LUA


@dataclass
class Run:
    """One wrk run and the load average right after it."""

    result: WrkResult
    load1: float


@dataclass
class Config:
    name: str
    kind: str  # "sqlite" | "pg"
    workers: int
    error: str | None = None
    grants: Run | None = None
    declines: Run | None = None
    writer: tuple[float, float, float] | None = None  # grants phase: batches/s, entries, ms
    checks: list[str] = field(default_factory=list)  # "ok: ..." or "FAILED: ..."

    @property
    def valid(self) -> bool:
        return self.error is None and not any(c.startswith("FAILED") for c in self.checks)


def run_wrk(
    args: argparse.Namespace, url: str, script: Path | None, env: dict[str, str], seconds: int
) -> Run:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s"]
    cmd += ["--latency", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd = pinned(args, [*cmd, url], args.wrk_cpus)
    env = dict(os.environ, WRK_THREADS=str(args.threads), **env)
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=WRK_TIMEOUT_S, check=True
    ).stdout
    if args.verbose:
        print(out, file=sys.stderr)
    return Run(parse_wrk(out), os.getloadavg()[0])


def error_line(log: Path) -> str:
    """The line of a server's log that says why it did not start."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln) for ln in lines]
    for ln in reversed(lines):
        if "lijian serve:" in ln or "Error" in ln or "error" in ln:
            return ln
    return lines[-1] if lines else "(empty)"


def settle(read: Any, quiet_s: float = 0.3, timeout_s: float = 10.0) -> int:
    """``read()`` once it stopped changing for ``quiet_s``: the requests that were in
    flight when wrk stopped (the server finishes them after wrk closed its sockets)."""
    value, since = read(), time.monotonic()
    deadline = since + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return int(value)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exit {proc.returncode}: {error_line(log)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {STARTUP_TIMEOUT_S} s; its log: {error_line(log)}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


# ------------------------------------------------------------------ classic stack
def run_classic(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Grants, then /noop, on one classic stack; its Redis keys are deleted afterwards."""
    out: dict[str, Any] = {"checks": []}
    prefix = f"classic:bench:{os.getpid()}:"
    r = redis.Redis.from_url(args.redis_url)
    script = work / "classic.lua"
    script.write_text(classic_lua())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "classic.log"
    env = dict(
        os.environ,
        CLASSIC_REDIS_URL=args.redis_url,
        CLASSIC_PREFIX=prefix,
        CLASSIC_PERSON_CAP_FEN=str(PERSON_CAP_FEN),
    )
    cmd = [sys.executable, "-m", "bench.classic_stack", "--port", str(port)]
    cmd += ["--workers", str(CLASSIC_WORKERS)]
    try:
        r.set(prefix + "tranche", CLASSIC_TRANCHE_FEN)
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                pinned(args, cmd, args.server_cpus), cwd=ROOT, env=env, stdout=f,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_ready(proc, url + "/noop", log)
            if args.warmup:
                run_wrk(args, url + "/", script, {"RUN_TAG": "w"}, args.warmup)
            tranche = lambda: int(r.get(prefix + "tranche") or 0)  # noqa: E731
            before = settle(tranche)
            g = run_wrk(args, url + "/", script, {"RUN_TAG": "g"}, args.duration)
            after = settle(tranche)
            out["grants"] = g
            taken = before - after
            granted = taken // DISCOUNT_FEN
            out["checks"].append(
                ("ok" if g.result.non_2xx == 0 and g.result.socket_errors == 0 else "FAILED")
                + f": {g.result.non_2xx} non-2xx, {g.result.socket_errors} socket errors"
            )
            in_range = (
                taken % DISCOUNT_FEN == 0
                and g.result.requests <= granted <= g.result.requests + args.connections
                and after >= DISCOUNT_FEN
            )
            out["checks"].append(
                ("ok" if in_range else "FAILED")
                + f": tranche down {taken:,} fen = {granted:,} grants × {DISCOUNT_FEN} "
                f"for {g.result.requests:,} answers (not sold out: {after:,} fen left)"
            )
            out["noop"] = run_wrk(args, url + "/noop", None, {}, args.duration)
            n = out["noop"].result
            if n.non_2xx or n.socket_errors:
                out["checks"].append(f"FAILED: /noop {n.non_2xx} non-2xx, {n.socket_errors} errors")
        finally:
            stop_group(proc)
    except (RuntimeError, OSError, redis.RedisError, subprocess.SubprocessError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        try:
            deleted = _delete_prefix(r, prefix)
            out["checks"].append(f"ok: {deleted:,} Redis keys of this run deleted")
        except redis.RedisError as exc:
            out["checks"].append(f"FAILED: Redis clean-up: {exc}")
        r.close()
    return out


def _delete_prefix(r: redis.Redis, prefix: str) -> int:
    n, batch = 0, []
    for key in r.scan_iter(match=prefix + "*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            n += r.unlink(*batch)
            batch = []
    if batch:
        n += r.unlink(*batch)
    return n


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


def run_lijian(args: argparse.Namespace, work: Path, cfg: Config, index: int, lua: Path) -> None:
    d = work / f"{cfg.kind}-{cfg.workers}"
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
        _measure_lijian(args, d, s, cfg, lua)
    except (RuntimeError, OSError, httpx.HTTPError, subprocess.SubprocessError) as exc:
        cfg.checks.append(f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        s.stop()
        if pg is not None:
            try:
                pg.drop()
            except psycopg.Error as exc:
                cfg.checks.append(f"FAILED: drop database {pg.name}: {exc}")


def _measure_lijian(
    args: argparse.Namespace, d: Path, s: LijianServer, cfg: Config, lua: Path
) -> None:
    load_catalog(s, GRANTS_CID)
    load_catalog(s, SOLDOUT_CID)
    # ---- durable grants
    if args.warmup:
        warm = d / "warm.tsv"
        presign(warm, GRANTS_CID, 30_000, "w")
        run_wrk(args, s.url + "/", lua, {"REQS_FILE": str(warm)}, args.warmup)
    reqs = d / "grants.tsv"
    presign(reqs, GRANTS_CID, args.requests, "g")
    before = settle(lambda: held_fen(s, GRANTS_CID))
    w0 = writer_figures(s)
    g = run_wrk(args, s.url + "/", lua, {"REQS_FILE": str(reqs)}, args.duration)
    held = settle(lambda: held_fen(s, GRANTS_CID)) - before
    cfg.writer = writer_delta(w0, writer_figures(s), args.duration)
    cfg.grants = g
    reqs.unlink()
    cfg.checks.append(
        ("ok" if g.result.non_2xx == 0 and g.result.socket_errors == 0 else "FAILED")
        + f": grants {g.result.non_2xx} non-2xx, {g.result.socket_errors} socket errors"
    )
    granted = held // DISCOUNT_FEN
    money_ok = (
        held % DISCOUNT_FEN == 0
        and g.result.requests <= granted <= g.result.requests + args.connections
    )
    cfg.checks.append(
        ("ok" if money_ok else "FAILED")
        + f": held money up {held:,} fen = {held / DISCOUNT_FEN:,.1f} grants × {DISCOUNT_FEN} "
        f"for {g.result.requests:,} answers"
    )
    # ---- sold-out declines
    status, first = s.call(
        "POST", "/v1/redemptions", order_body(SOLDOUT_CID, "first").encode(), key="unionpay",
        **{"Content-Type": "application/json", "Idempotency-Key": "first"},
    )  # fmt: skip
    if status != 201:
        raise RuntimeError(f"the one grant of the sold-out campaign: {status} {first}")
    reqs = d / "soldout.tsv"
    presign(reqs, SOLDOUT_CID, args.requests, "s")
    dcl = run_wrk(args, s.url + "/", lua, {"REQS_FILE": str(reqs)}, args.duration)
    reqs.unlink()
    cfg.declines = dcl
    status, probe = s.call(
        "POST", "/v1/redemptions", order_body(SOLDOUT_CID, "probe").encode(), key="unionpay",
        **{"Content-Type": "application/json", "Idempotency-Key": "probe"},
    )  # fmt: skip
    reasons = [r["code"] for r in probe.get("reasons", [])] if status == 200 else []
    ok = dcl.result.non_2xx == 0 and dcl.result.socket_errors == 0 and "sold_out" in reasons
    cfg.checks.append(
        ("ok" if ok else "FAILED")
        + f": declines {dcl.result.non_2xx} non-2xx, {dcl.result.socket_errors} socket errors; "
        f"probe {status} {', '.join(reasons) or probe}"
    )


# ------------------------------------------------------------------ report
def _report(args: argparse.Namespace, classic: dict[str, Any], configs: list[Config]) -> None:
    cmd = "python -m bench.classic_bench " + " ".join(sys.argv[1:])
    print(f"command: {cmd.strip()}")
    pin = f"servers on CPU {args.server_cpus}, wrk on CPU {args.wrk_cpus}" if args.pin else "no"
    print(
        f"wrk: {args.connections} connections, {args.threads} threads, {args.duration} s per "
        f"run (warm-up {args.warmup} s); pinned: {pin}; lijian access log: {args.access_log}; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"\nclassic stack: FastAPI + pydantic, uvicorn {CLASSIC_WORKERS} workers, "
        f"redis-py asyncio (hiredis parser: {HIREDIS_AVAILABLE}), one Lua script per grant "
        "(not durable)\n"
    )
    if not args.classic:
        print("skipped (--no-classic)")
    if "error" in classic:
        print(f"classic stack FAILED: {classic['error']}")
    print("| phase | req/s | p50 ms | p99 ms | requests | non-2xx | load |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, key in (("POST /redeem, granted (201)", "grants"), ("GET /noop", "noop")):
        if key in classic:
            r, load = classic[key].result, classic[key].load1
            print(
                f"| {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.requests:,} "
                f"| {r.non_2xx} | {load:.1f} |"
            )
    for c in classic["checks"]:
        print(f"  {c}")
    cg = classic["grants"].result.rps if "grants" in classic else None
    cn = classic["noop"].result.rps if "noop" in classic else None

    def ratio(x: float, base: float | None) -> str:
        return f"{x / base:.2f}" if base else "n/a"

    print("\nlijian serve (durable grants: answered after the group commit)\n")
    print(
        "| configuration | grants/s | ÷ classic grants/s | ÷ classic /noop | p99 ms "
        "| sold-out declines/s | ÷ classic grants/s | ÷ classic /noop | p99 ms | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in configs:
        if cfg.error is not None:
            print(f"| {cfg.name} | did not start: {cfg.error} |||||||||")
            continue
        cells = []
        for run in (cfg.grants, cfg.declines):
            if run is None:
                cells += ["n/a"] * 4
            else:
                r = run.result
                cells += [f"{r.rps:,.0f}", ratio(r.rps, cg), ratio(r.rps, cn), f"{r.p99_ms:.2f}"]
        loads = "/".join(f"{r.load1:.1f}" for r in (cfg.grants, cfg.declines) if r is not None)
        print(f"| {cfg.name} | {' | '.join(cells)} | {loads or 'n/a'} |")
    print("\nthe writer during the grants run (what bounds a closed loop: in-flight ÷ cycle)\n")
    print("| configuration | batches/s | mean entries per batch | mean commit ms |")
    print("|---|---:|---:|---:|")
    for cfg in configs:
        if cfg.writer is not None:
            bps, per, ms = cfg.writer
            print(f"| {cfg.name} | {bps:,.0f} | {per:.1f} | {ms:.2f} |")
    for cfg in configs:
        if cfg.error is not None:
            print(f"  {cfg.name}: FAILED to start: {cfg.error}")
        for c in cfg.checks:
            print(f"  {cfg.name}: {c}")
    bad = [c.name for c in configs if not c.valid]
    if "error" in classic or any(c.startswith("FAILED") for c in classic["checks"]):
        bad.insert(0, "classic stack")
    print("\nvalid run" if not bad else f"\nINVALID OR INCOMPLETE: {', '.join(bad)}")


def parse_configs(text: str) -> list[Config]:
    out = []
    for item in text.split(","):
        kind, _, n = item.strip().partition(":")
        if kind not in {"sqlite", "pg"} or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(f"bad configuration {item!r} (sqlite:N or pg:N)")
        label = "SQLite" if kind == "sqlite" else "PostgreSQL"
        out.append(Config(f"{label}, {n} worker{'s' if int(n) > 1 else ''}", kind, int(n)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-d", "--duration", type=int, default=10, help="seconds per wrk run (≤10)")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=0,
                    help=f"pre-signed lijian POSTs per run (default {REQUESTS_PER_S:,} × duration)")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load (0: none)")
    ap.add_argument("--configs", type=parse_configs, default=parse_configs(DEFAULT_CONFIGS),
                    help=f"lijian configurations, kind:workers (default {DEFAULT_CONFIGS})")  # fmt: skip
    ap.add_argument("--no-classic", dest="classic", action="store_false",
                    help="skip the baseline (ratios print n/a)")  # fmt: skip
    ap.add_argument("--pg-url", default=PG_URL, help="server and db that scratch dbs are made from")
    ap.add_argument("--redis-url", default=REDIS_URL)
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--wrk-cpus", default="1")
    ap.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0)
    ap.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                    help="lijian logs every request (its default)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if not 1 <= args.duration <= DURATION_MAX_S:
        ap.error(f"keep each load run at 1..{DURATION_MAX_S} s")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    args.requests = args.requests or REQUESTS_PER_S * args.duration
    if args.pin and not shutil.which("taskset"):
        args.pin = False
    # SIGTERM (make, CI) unwinds like Ctrl-C: servers stopped, scratch dbs and keys dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="lijian-classic-bench-"))
    lua = work / "post.lua"
    lua.write_text(LUA)
    try:
        classic: dict[str, Any] = {"checks": []}
        if args.classic:
            print("classic stack ...", file=sys.stderr, flush=True)
            classic = run_classic(args, work)
        for i, cfg in enumerate(args.configs):
            print(f"lijian, {cfg.name} ...", file=sys.stderr, flush=True)
            run_lijian(args, work, cfg, i, lua)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    _report(args, classic, args.configs)
    ok = "error" not in classic and not any(c.startswith("FAILED") for c in classic["checks"])
    return 0 if ok and all(c.valid for c in args.configs) else 1


if __name__ == "__main__":
    sys.exit(main())
