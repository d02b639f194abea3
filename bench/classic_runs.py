"""The classic stack's side of ``bench.classic_bench``, and the wrk runs both sides share.

Three phases on one ``bench.classic_stack`` (uvicorn, 2 workers), each checked:

* **lean grants**: ``POST /grant`` with a 3-field body (order id, person, amount), a
  fresh order and person per request: what one would build for this job alone;
* **full grants**: ``POST /redeem`` with lijian's whole order (same fields and size),
  parsed by pydantic models, the discount computed from the items;
* **/noop**: ``GET /noop``, a small JSON: the ceiling of that stack.

Both grant phases must answer only 201s, and the tranche's decrease must equal the
grants Redis counted (± the requests in flight when wrk stops). ``Run`` and ``Config``
hold what both sides measured, for the report (bench/classic_report.py).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.http_load import (
    DISCOUNT_FEN,
    ROOT,
    WRK_TIMEOUT_S,
    WrkResult,
    free_port,
    order_body,
    parse_wrk,
    pinned,
)

CLASSIC_WORKERS = 2
CLASSIC_TRANCHE_FEN = 10**13  # never sells out within a measured window
PERSON_CAP_FEN = 150_000  # the seed campaign's person_savings_cap_fen
STARTUP_TIMEOUT_S = 30  # a server that is not up by then is reported, not waited for
CLEANUP_BATCH = 10_000  # Redis keys unlinked per call

# Thread i of run RUN_TAG sends order ids B-<tag>-<i>-<n> for persons p-<tag>-<i>-<n>.
_FRESH_IDS_LUA = r"""
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
  return wrk.format("POST", PATH, headers, BODY_1 .. id .. BODY_2 .. id .. BODY_3)
end
"""


def _fresh_ids_lua(path: str, body_template: str) -> str:
    """wrk's script for ``path``, the body's two ``@N@`` replaced per request."""
    parts = body_template.split("@N@")
    assert len(parts) == 3, parts
    consts = "".join(f"BODY_{i + 1} = [==[{p}]==]\n" for i, p in enumerate(parts))
    return f'PATH = "{path}"\n' + consts + _FRESH_IDS_LUA


def full_lua() -> str:
    """``POST /redeem`` with lijian's order body (same size, same fields)."""
    return _fresh_ids_lua("/redeem", order_body("classic", "@N@"))


def lean_lua() -> str:
    """``POST /grant``: order id, person, amount (the discount lijian grants per order)."""
    body = f'{{"order_id":"L-@N@","person":"p-@N@","amount":{DISCOUNT_FEN}}}'
    return _fresh_ids_lua("/grant", body)


@dataclass
class Run:
    """One wrk run and the load average right after it."""

    result: WrkResult
    load1: float
    connections: int


@dataclass
class Config:
    name: str
    kind: str  # "sqlite" | "pg"
    workers: int
    error: str | None = None
    grants: Run | None = None
    declines: Run | None = None
    grants_wide: Run | None = None  # with --wide connections (unpinned pass only)
    declines_wide: Run | None = None
    writer: tuple[float, float, float] | None = None  # grants phase: batches/s, entries, ms
    checks: list[str] = field(default_factory=list)  # "ok: ..." or "FAILED: ..."

    @property
    def valid(self) -> bool:
        return self.error is None and not any(c.startswith("FAILED") for c in self.checks)


def run_wrk(
    args: argparse.Namespace,
    url: str,
    script: Path | None,
    env: dict[str, str],
    seconds: int,
    connections: int,
) -> Run:
    cmd = ["wrk", f"-t{args.threads}", f"-c{connections}", f"-d{seconds}s"]
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
    return Run(parse_wrk(out), os.getloadavg()[0], connections)


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


def _grant_phase(
    args: argparse.Namespace, r: redis.Redis, prefix: str, url: str, script: Path, tag: str
) -> tuple[Run, list[str]]:
    """One grants run, and its checks: only 201s; the tranche down by exactly the grants."""
    tranche = lambda: int(r.get(prefix + "tranche") or 0)  # noqa: E731
    before = settle(tranche)
    g = run_wrk(args, url + "/", script, {"RUN_TAG": tag}, args.duration, args.connections)
    after = settle(tranche)
    taken = before - after
    granted = taken // DISCOUNT_FEN
    checks = [
        ("ok" if g.result.non_2xx == 0 and g.result.socket_errors == 0 else "FAILED")
        + f": {g.result.non_2xx} non-2xx, {g.result.socket_errors} socket errors"
    ]
    in_range = (
        taken % DISCOUNT_FEN == 0
        and g.result.requests <= granted <= g.result.requests + args.connections
        and after >= DISCOUNT_FEN
    )
    checks.append(
        ("ok" if in_range else "FAILED")
        + f": tranche down {taken:,} fen = {granted:,} grants × {DISCOUNT_FEN} "
        f"for {g.result.requests:,} answers (not sold out: {after:,} fen left)"
    )
    return g, checks


def run_classic(args: argparse.Namespace, work: Path, mode: str) -> dict[str, Any]:
    """Lean grants, full grants, then /noop, on one classic stack; its Redis keys are
    deleted afterwards. ``mode`` names the pass (its files and keys)."""
    out: dict[str, Any] = {"checks": []}
    prefix = f"classic:bench:{os.getpid()}:{mode}:"
    r = redis.Redis.from_url(args.redis_url)
    scripts = {"lean": work / f"lean-{mode}.lua", "full": work / f"full-{mode}.lua"}
    scripts["lean"].write_text(lean_lua())
    scripts["full"].write_text(full_lua())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / f"classic-{mode}.log"
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
            for name in ("lean", "full"):
                if args.warmup:
                    env_w = {"RUN_TAG": f"w{name}"}
                    run_wrk(args, url + "/", scripts[name], env_w, args.warmup, args.connections)
                run, checks = _grant_phase(args, r, prefix, url, scripts[name], name)
                out[name] = run
                out["checks"] += [f"{name} grants {c}" for c in checks]
            out["noop"] = run_wrk(args, url + "/noop", None, {}, args.duration, args.connections)
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
    for key in r.scan_iter(match=prefix + "*", count=CLEANUP_BATCH):
        batch.append(key)
        if len(batch) >= CLEANUP_BATCH:
            n += r.unlink(*batch)
            batch = []
    if batch:
        n += r.unlink(*batch)
    return n
