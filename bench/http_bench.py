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
   (``sold_out``) served from memory (design.md §4). Then that server's own ceiling.

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
import asyncio
import copy
import gc
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from lijian.http.auth import sign

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "chengdu-2025-spring.toml"
LIJIAN = Path(sys.executable).with_name("lijian")
CLOCK = "manual:2025-02-12T10:00:00+08:00"
CATALOG_SKUS = 1_000
DISCOUNT_FEN = 3_720  # 15% of the order below (2 × 12,900 − 1,000 = 24,800 fen payable)
SECRETS = {"unionpay": "bench-unionpay-secret", "ops": "bench-operator-secret"}
STARTUP_TIMEOUT_S = 60
WRK_TIMEOUT_S = 60  # hard bound on one wrk process
DURATION_MAX_S = 10

LUA = r"""
-- Replays pre-signed POST /v1/redemptions (one request per line, tab-separated:
-- nonce, timestamp, signature, idempotency key, body). Thread i takes every N-th line,
-- so no two threads send the same nonce; a thread that runs out wraps around and its
-- replayed nonces get 401, which the benchmark reports as an invalid run.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  local nthreads = tonumber(os.getenv("WRK_THREADS"))
  reqs = {}
  local i = 0
  for line in io.lines(os.getenv("REQS_FILE")) do
    if i % nthreads == tid then
      local nonce, ts, sig, idem, body =
        line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/v1/redemptions", {
        ["Content-Type"] = "application/json",
        ["X-Lijian-Key"] = "unionpay",
        ["X-Lijian-Timestamp"] = ts,
        ["X-Lijian-Nonce"] = nonce,
        ["X-Lijian-Signature"] = sig,
        ["Idempotency-Key"] = idem,
      }, body)
    end
    i = i + 1
  end
  idx = 0
end
function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end
"""


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu_s: float = 0.0  # user + system time of the server process (all threads)
    load1: float = 0.0  # the machine's 1-minute load average right after the run

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_s / max(1, self.requests)


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process, all its threads, from /proc (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


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
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if hasattr(v, "isoformat"):
        return str(v.isoformat())
    return json.dumps(v, ensure_ascii=False)


def campaign_toml(cid: str, budget_fen: int, one_day: bool) -> str:
    with open(CAMPAIGN, "rb") as f:
        doc = copy.deepcopy(tomllib.load(f))
    doc["campaign"].update(id=cid, budget_fen=budget_fen)
    if one_day:  # the whole budget in today's tranche: sold out means sold out
        doc["campaign"]["end_date"] = doc["campaign"]["start_date"]
    out = []
    for section, table in doc.items():
        out.append(f"[{section}]")
        out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


CLIENTS_TOML = f"""
[rate_limit]
requests_per_s = 1_000_000_000
burst = 1_000_000_000

[[clients]]
key_id = "unionpay"
secret = "{SECRETS["unionpay"]}"
role = "channel"

[[clients]]
key_id = "ops"
secret = "{SECRETS["ops"]}"
role = "operator"
"""


class Server:
    """``lijian serve`` on a fresh db in ``workdir`` (our own process group)."""

    def __init__(self, args: argparse.Namespace, workdir: Path, cid: str, budget_fen: int):
        workdir.mkdir(parents=True, exist_ok=True)
        self.cid = cid
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "campaign.toml").write_text(campaign_toml(cid, budget_fen, budget_fen < 10**6))
        (workdir / "clients.toml").write_text(CLIENTS_TOML)
        cmd = [str(LIJIAN), "serve", "--campaign", str(workdir / "campaign.toml")]
        cmd += ["--clients", str(workdir / "clients.toml"), "--db", str(workdir / "bench.db")]
        cmd += ["--port", str(self.port), "--clock", CLOCK, "--log-level", "warning"]
        if not args.access_log:
            cmd.append("--no-access-log")
        cmd = _pinned(args, cmd, args.server_cpus)
        self.log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}; see {workdir}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready")

    def call(self, method: str, path: str, body: bytes, key: str = "ops", **h: str) -> Any:
        ts, nonce = str(int(time.time())), os.urandom(12).hex()
        headers = {
            "X-Lijian-Key": key,
            "X-Lijian-Timestamp": ts,
            "X-Lijian-Nonce": nonce,
            "X-Lijian-Signature": sign(SECRETS[key].encode(), method, path, ts, nonce, body),
            **h,
        }
        r = httpx.request(method, self.url + path, content=body, headers=headers, timeout=60)
        return r.status_code, r.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self.log.close()


def _pinned(args: argparse.Namespace, cmd: list[str], cpus: str) -> list[str]:
    if args.pin:
        cmd = ["taskset", "-c", cpus, *cmd]
    if args.nice:
        cmd = ["nice", "-n", str(args.nice), *cmd]
    return cmd


def order_body(cid: str, n: str, sku_i: int = 0) -> str:
    return json.dumps(
        {
            "campaign_id": cid,
            "platform": "jd",
            "order_id": f"B-{n}",
            "payment_channel": "unionpay",
            "person": {"id": f"p-{n}", "real_name_verified": True},
            "device_location": {"lng": 104.0657, "lat": 30.6574, "crs": "gcj02"},
            "delivery_address": {"adcode": "510104"},
            "items": [
                {
                    "sku": f"SKU-{sku_i % CATALOG_SKUS}",
                    "quantity": 2,
                    "unit_price_fen": 12_900,
                    "platform_discount_fen": 1_000,
                }
            ],
        },
        separators=(",", ":"),
    )


def presign(path: Path, cid: str, count: int, tag: str) -> None:
    """Signed requests, one a line; timestamps are now (use the file within 300 s)."""
    secret = SECRETS["unionpay"].encode()
    ts = str(int(time.time()))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            n = f"{tag}-{i:08d}"
            body = order_body(cid, n, i)
            nonce = f"{tag}-nonce-{i:010d}"
            sig = sign(secret, "POST", "/v1/redemptions", ts, nonce, body.encode())
            f.write(f"{nonce}\t{ts}\t{sig}\tidem-{n}\t{body}\n")


def run_wrk(
    args: argparse.Namespace, url: str, reqs: Path | None, lua: Path, server_pid: int = 0
) -> WrkResult:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    cmd += ["--latency", "--timeout", "5s"]
    if reqs is not None:
        cmd += ["-s", str(lua)]
    cmd = _pinned(args, [*cmd, url], args.wrk_cpus)
    env = dict(os.environ, WRK_THREADS=str(args.threads), REQS_FILE=str(reqs or ""))
    # wrk reads its request file before it starts the clock; the server is idle then, so
    # its CPU over the whole wrk process is the CPU of the measured requests (± the
    # few requests in flight at the end).
    cpu0 = process_cpu_s(server_pid) if server_pid else 0.0
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=WRK_TIMEOUT_S, check=True
    ).stdout
    cpu1 = process_cpu_s(server_pid) if server_pid else 0.0
    if args.verbose:
        print(out, file=sys.stderr)
    result = parse_wrk(out)
    result.server_cpu_s = cpu1 - cpu0
    result.load1 = os.getloadavg()[0]
    return result


def load_catalog(server: Server) -> None:
    body = "".join(
        json.dumps({"sku": f"SKU-{i}", "category": "fresh_food", "platform": "jd"}) + "\n"
        for i in range(CATALOG_SKUS)
    ).encode()
    status, out = server.call(
        "PUT",
        f"/v1/campaigns/{server.cid}/catalog",
        body,
        **{"Content-Type": "application/x-ndjson"},
    )
    assert status == 200 and out == {"upserted": CATALOG_SKUS}, out


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


# ------------------------------------------------------------------ --in-process
class _Sink:
    """The ``send`` of one in-process request: keeps the status and the body."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def __call__(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            self.status = msg["status"]
        else:
            self.body = msg.get("body", b"")


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        "scheme": "http", "method": method, "root_path": "", "path": path,
        "raw_path": path.encode(), "query_string": b"", "headers": headers, "state": {},
    }  # fmt: skip


def _signed(method: str, path: str, body: bytes, key: str, nonce: str, **extra: str) -> Any:
    ts = str(int(time.time()))
    sig = sign(SECRETS[key].encode(), method, path, ts, nonce, body)
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    headers += [(b"x-lijian-key", key.encode()), (b"x-lijian-timestamp", ts.encode()),
                (b"x-lijian-nonce", nonce.encode()), (b"x-lijian-signature", sig.encode())]  # fmt: skip
    return _scope(method, path, headers), body


def _redemption(cid: str, n: str) -> Any:
    return _signed("POST", "/v1/redemptions", order_body(cid, n).encode(), "unionpay",
                   f"{n}-nonce-0123456789", **{"Content-Type": "application/json",
                   "Idempotency-Key": f"idem-{n}"})  # fmt: skip


async def _call(app: Any, reqs: list[Any], expect: int) -> None:
    sink = _Sink()
    for scope, body in reqs:
        msg = {"type": "http.request", "body": body, "more_body": False}

        async def receive(msg: dict[str, Any] = msg) -> dict[str, Any]:
            return msg

        await app(scope, receive, sink)
        if sink.status != expect:
            raise RuntimeError(f"{scope['path']}: {sink.status} {sink.body[:300]!r}")


async def _in_process_phase(work: Path, phase: str, n: int, access_log: bool) -> float:
    from lijian.http.server import ServeOptions, build_app

    cid = f"bench-{phase}"
    budget = DISCOUNT_FEN + 100 if phase == "soldout" else 10**13
    d = work / phase
    d.mkdir()
    (d / "campaign.toml").write_text(campaign_toml(cid, budget, budget < 10**6))
    (d / "clients.toml").write_text(CLIENTS_TOML)
    opts = ServeOptions([d / "campaign.toml"], d / "clients.toml", str(d / "bench.db"),
                        clock=CLOCK, log_level="warning", access_log=access_log,
                        extensions=("lijian.dashboard:mount",))  # fmt: skip
    app = build_app(opts)
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(msg: dict[str, Any]) -> None:
        started.set()

    await lifespan.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, lifespan_send))
    await started.wait()
    try:
        catalog = "".join(
            json.dumps({"sku": f"SKU-{i}", "category": "fresh_food", "platform": "jd"}) + "\n"
            for i in range(CATALOG_SKUS)
        ).encode()
        put = _signed("PUT", f"/v1/campaigns/{cid}/catalog", catalog, "ops",
                      "catalog-nonce-0123456789", **{"Content-Type": "application/x-ndjson"})  # fmt: skip
        await _call(app, [put], 200)
        if phase == "soldout":  # the one grant, then the decline that records the sell-out
            await _call(app, [_redemption(cid, "first")], 201)
            await _call(app, [_redemption(cid, "second")], 200)
        if phase == "healthz":
            reqs = [(_scope("GET", "/healthz", [(b"host", b"127.0.0.1:8000")]), b"")] * n
        else:
            reqs = [_redemption(cid, f"{phase}-{i:08d}") for i in range(n)]
        expect = {"healthz": 200, "soldout": 200, "grants": 201}[phase]
        warm, reqs = reqs[: n // 10], reqs[n // 10 :]
        await _call(app, warm, expect)
        # The pre-built requests are the bench's, not the server's: out of the collector's
        # sight, as the server freezes what it built at start-up (engine._tune_gc).
        gc.collect()
        gc.freeze()
        c0 = time.process_time()
        if phase == "grants":  # 64 callers in flight, like wrk's connections
            k = len(reqs) // 64
            await asyncio.gather(*(_call(app, reqs[i * k : (i + 1) * k], 201) for i in range(64)))
            done = 64 * k
        else:
            await _call(app, reqs, expect)
            done = len(reqs)
        return 1e6 * (time.process_time() - c0) / done
    finally:
        gc.unfreeze()
        await lifespan.put({"type": "lifespan.shutdown"})
        await task


def in_process(n: int, access_log: bool) -> int:
    import uvloop

    from lijian.http.logs import configure

    configure("warning")  # what the wrk phases run with
    work = Path(tempfile.mkdtemp(prefix="lijian-http-inproc-"))
    try:
        rows = [(p, uvloop.run(_in_process_phase(work, p, n, access_log)))
                for p in ("healthz", "soldout", "grants")]  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"in-process, {n:,} calls per phase (the first tenth as warm-up); CPU µs per request")
    print("(both threads of the process: the grants include the writer and its commits)\n")
    print("| phase | CPU µs/request |\n|---|---:|")
    names = {"healthz": "GET /healthz", "soldout": "POST /v1/redemptions, sold out (200)",
             "grants": "POST /v1/redemptions, granted (201)"}  # fmt: skip
    for phase, us in rows:
        print(f"| {names[phase]} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
