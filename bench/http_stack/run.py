"""Reproduce the HTTP-stack table of docs/http-stack.md.

For every (app, server) pair: start the server (1 worker, pinned to CPU 0 by
default), check it answers correctly (check.py), warm it up, then load it with
wrk (pinned to CPU 1): POST /v1/redemptions with pre-signed requests, unique
nonces (the nonce check stays ON), then GET /healthz. Prints a Markdown table
and writes the raw numbers to JSON.

    .venv/bin/python bench/http_stack/run.py                 # full matrix, ~4 min
    .venv/bin/python bench/http_stack/run.py --apps raw,starlette --servers uvicorn -d 5

Needs: wrk (Debian package `wrk`), taskset (util-linux), and in the venv
fastapi, litestar, granian, uvicorn, uvloop, httptools, msgspec, pydantic, httpx.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import httpx  # noqa: E402
from check import check  # noqa: E402
from gen_requests import generate  # noqa: E402

VENV_BIN = Path(sys.executable).parent
APPS = {
    "raw": ("raw ASGI + msgspec (floor)", "app_raw:app"),
    "starlette": ("Starlette + msgspec", "app_starlette:app"),
    "litestar": ("Litestar (msgspec Struct)", "app_litestar:app"),
    "fastapi": ("FastAPI (pydantic model)", "app_fastapi:app"),
    "fastapi_msgspec": ("FastAPI, lean msgspec route", "app_fastapi_msgspec:app"),
}
RUN_TIMEOUT_S = 60  # hard bound on any single wrk run
STARTUP_TIMEOUT_S = 20


def server_cmd(server: str, target: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            str(VENV_BIN / "uvicorn"),
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    if server == "granian":
        return [
            str(VENV_BIN / "granian"),
            target,
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "warning",
        ]
    raise ValueError(server)


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    seconds: float = 0.0
    wrk_cpu_pct: float = 0.0  # of one core; includes wrk's Lua start-up (reading the request file)
    server_cpu_pct: float = 0.0  # of one core, server process tree
    others_cpu_pct: float = 0.0  # of one core: everything else on the machine (noise)
    steal_pct: float = 0.0  # of one core: hypervisor steal


@dataclass
class Row:
    app: str
    server: str
    post: list[WrkResult] = field(default_factory=list)
    healthz: list[WrkResult] = field(default_factory=list)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]
    return float(m.group(1)) * scale


def parse_wrk(out: str) -> WrkResult:
    def grab(pattern: str) -> str:
        m = re.search(pattern, out, re.MULTILINE)
        if not m:
            raise RuntimeError(f"wrk output lacks {pattern!r}:\n{out}")
        return m.group(1)

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=float(grab(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(grab(r"^\s+50%\s+(\S+)\s*$")),
        p99_ms=_ms(grab(r"^\s+99%\s+(\S+)\s*$")),
        requests=int(grab(r"(\d+) requests in")),
        seconds=_ms(grab(r"\d+ requests in (\S+),")) / 1e3,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )


def _prioritise(args: argparse.Namespace, pid: int) -> None:
    """Give a process we started (the leader of its own session) a higher CPU share.

    With sched_autogroup on (Debian's default) nice only ranks processes within one
    session; between sessions the kernel shares CPU by the session's autogroup nice.
    Other people's test runs on this machine live in other sessions, so we set both.
    """
    if not args.nice:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, args.nice)
        Path(f"/proc/{pid}/autogroup").write_text(str(args.nice))
    except OSError as e:  # not root, or no autogroup: measure anyway, just noisier
        print(f"  (could not raise priority of {pid}: {e})", file=sys.stderr)


def _system_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks summed over all CPUs, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return user + nice + system + irq + softirq, steal


def _tree_cpu_s(pid: int) -> float:
    """utime+stime of pid and all its descendants, in seconds."""
    total = 0.0
    todo = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                todo.extend(int(k) for k in kids)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_wrk(
    args: argparse.Namespace,
    url: str,
    duration_s: int,
    server_pid: int,
    script: Path | None = None,
    reqs_file: str | None = None,
) -> WrkResult:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration_s}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if args.pin:
        cmd = ["taskset", "-c", args.wrk_cpus, *cmd]
    env = dict(os.environ, WRK_THREADS=str(args.threads))
    if reqs_file:
        env["REQS_FILE"] = str(reqs_file)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _tree_cpu_s(server_pid)
    busy_before, steal_before = _system_ticks()
    t0 = time.monotonic()
    wrk = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    _prioritise(args, wrk.pid)
    try:
        out, _ = wrk.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(wrk.pid, signal.SIGKILL)
        wrk.wait()
        raise
    if wrk.returncode != 0:
        raise RuntimeError(f"wrk failed ({wrk.returncode}): {cmd}")
    wall = time.monotonic() - t0
    busy_after, steal_after = _system_ticks()
    server_cpu = _tree_cpu_s(server_pid) - server_before
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = parse_wrk(out)
    wrk_cpu = (
        after_children.ru_utime
        + after_children.ru_stime
        - before_children.ru_utime
        - before_children.ru_stime
    )
    tick = os.sysconf("SC_CLK_TCK")
    busy = (busy_after - busy_before) / tick
    # Denominator: wrk's measured seconds (the server is idle while wrk loads its script).
    secs = result.seconds
    result.wrk_cpu_pct = round(100 * wrk_cpu / secs, 1)
    result.server_cpu_pct = round(100 * server_cpu / secs, 1)
    # Whole-machine figures over the whole wrk process lifetime (start-up included).
    result.others_cpu_pct = round(max(0.0, 100 * (busy - wrk_cpu - server_cpu) / wall), 1)
    result.steal_pct = round(100 * (steal_after - steal_before) / tick / wall, 1)
    if args.verbose:
        print(
            f"wall {wall:.2f}s busy {busy:.2f} wrk {wrk_cpu:.2f} server {server_cpu:.2f}",
            file=sys.stderr,
        )
    if args.verbose:
        print(out, file=sys.stderr)
    return result


def start_server(args: argparse.Namespace, server: str, target: str) -> subprocess.Popen[bytes]:
    cmd = server_cmd(server, target, args.port)
    if args.pin:
        cmd = ["taskset", "-c", args.server_cpus, *cmd]
    proc = subprocess.Popen(
        cmd, cwd=HERE, start_new_session=True, stdout=subprocess.DEVNULL, stderr=None
    )
    _prioritise(args, proc.pid)  # before the app starts its workers: they inherit it
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{server} {target} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{args.port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"{server} {target} did not come up in {STARTUP_TIMEOUT_S}s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group we started (and only it)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def bench_pair(args: argparse.Namespace, app: str, server: str, rnd: int, row: Row) -> None:
    _, target = APPS[app]
    url = f"http://127.0.0.1:{args.port}"
    proc = start_server(args, server, target)
    try:
        check(url)
        reqs = str(Path(args.tmpdir) / "lijian-bench-requests")
        prefix = f"r{rnd}{app[:3]}{server[:2]}"
        generate(args.warmup_requests, reqs, prefix + "w", args.threads)
        warm = run_wrk(args, url + "/", args.warmup, proc.pid, HERE / "post.lua", reqs)
        # Enough unique nonces for the measured run, with a wide margin; a smaller
        # file also keeps wrk's start-up short.
        count = args.requests or max(20_000, int(warm.rps * args.duration * 2))
        generate(count, reqs, prefix + "m", args.threads)
        post = run_wrk(args, url + "/", args.duration, proc.pid, HERE / "post.lua", reqs)
        health = run_wrk(args, url + "/healthz", args.duration, proc.pid)
        for name, r in (("POST", post), ("healthz", health)):
            if r.non_2xx or r.socket_errors:
                # e.g. the request file ran out and nonces were replayed (401): raise --requests
                print(f"  INVALID {name} run for {app}/{server}, not counted: {r}", file=sys.stderr)
                return
        row.post.append(post)
        row.healthz.append(health)
        print(
            f"  round {rnd} {app:16} {server:8} POST {post.rps:8.0f} req/s "
            f"p50 {post.p50_ms:6.2f} ms p99 {post.p99_ms:7.2f} ms "
            f"(cpu: server {post.server_cpu_pct:.0f}%, wrk {post.wrk_cpu_pct:.0f}%, "
            f"others {post.others_cpu_pct:.0f}%, steal {post.steal_pct:.0f}%) | "
            f"healthz {health.rps:8.0f} req/s p99 {health.p99_ms:6.2f} ms "
            f"(cpu: server {health.server_cpu_pct:.0f}%, others {health.others_cpu_pct:.0f}%)",
            file=sys.stderr,
            flush=True,
        )
    finally:
        stop_server(proc)
        for f in Path(args.tmpdir).glob("lijian-bench-requests.*"):
            f.unlink(missing_ok=True)


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def table(rows: list[Row]) -> str:
    """Each cell is the median over rounds, taken per column; ranges are min-max."""
    lines = [
        "| framework | server | POST req/s (min-max) | POST p50 ms | POST p99 ms (worst) "
        "| healthz req/s (min-max) | healthz p99 ms | rounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if not r.post:
            continue
        prps, hrps = [x.rps for x in r.post], [x.rps for x in r.healthz]
        lines.append(
            f"| {APPS[r.app][0]} | {r.server} "
            f"| {_median(prps):,.0f} ({min(prps):,.0f}-{max(prps):,.0f}) "
            f"| {_median([x.p50_ms for x in r.post]):.1f} "
            f"| {_median([x.p99_ms for x in r.post]):.0f} ({max(x.p99_ms for x in r.post):.0f}) "
            f"| {_median(hrps):,.0f} ({min(hrps):,.0f}-{max(hrps):,.0f}) "
            f"| {_median([x.p99_ms for x in r.healthz]):.0f} | {len(r.post)} |"
        )
    return "\n".join(lines)


def load_rows(path: str) -> list[Row]:
    data = json.loads(Path(path).read_text())
    return [
        Row(
            r["app"],
            r["server"],
            [WrkResult(**x) for x in r["post"]],
            [WrkResult(**x) for x in r["healthz"]],
        )
        for r in data["rows"]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--apps", default=",".join(APPS))
    ap.add_argument("--servers", default="uvicorn,granian")
    ap.add_argument(
        "-d", "--duration", type=int, default=8, help="seconds per measured wrk run (<=10)"
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument(
        "--rounds", type=int, default=1, help="repeat the matrix; the table shows the median"
    )
    ap.add_argument(
        "--requests",
        type=int,
        default=0,
        help="pre-signed POSTs per measured run (default: twice what the warm-up rate needs)",
    )
    ap.add_argument("--warmup-requests", type=int, default=40_000)
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin server/wrk to CPUs"
    )
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--wrk-cpus", default="1")
    ap.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="run server and wrk at this nice level, so other work on the machine "
        "disturbs the measurement less (default -10 as root, else 0)",
    )
    ap.add_argument("--tmpdir", default="/tmp")
    ap.add_argument("--json", default=str(HERE / "results.json"))
    ap.add_argument("-v", "--verbose", action="store_true", help="print raw wrk output")
    ap.add_argument("--table-from", metavar="JSON", help="only print the table of a saved run")
    args = ap.parse_args()
    if args.table_from:
        print(table(load_rows(args.table_from)))
        return
    if args.duration > 10:
        ap.error("keep each load run at 10 s or less")
    for tool in ("wrk", *(["taskset"] if args.pin else [])):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install -y wrk util-linux)")

    rows = [Row(a, s) for s in args.servers.split(",") for a in args.apps.split(",")]
    for rnd in range(args.rounds):
        # rotate the order each round, so slow drifts of machine load spread over all pairs
        shift = rnd * max(1, len(rows) // args.rounds)
        for row in rows[shift % len(rows) :] + rows[: shift % len(rows)]:
            bench_pair(args, row.app, row.server, rnd, row)
    Path(args.json).write_text(
        json.dumps(
            {
                "args": vars(args),
                "uname": os.uname()._asdict()
                if hasattr(os.uname(), "_asdict")
                else list(os.uname()),
                "rows": [asdict(r) for r in rows],
            },
            indent=1,
        )
    )
    print(table(rows))


if __name__ == "__main__":
    main()
