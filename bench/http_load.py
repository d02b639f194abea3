"""What the HTTP benchmarks share: the campaign and clients they serve, ``lijian serve``
started as a subprocess, pre-signed requests for wrk, and wrk's output parsed.

``bench.http_bench`` (lijian alone), ``bench.http_inprocess`` (the app without a server)
and ``bench.classic_bench`` (the FastAPI + Redis baseline, same wrk settings) use these,
so every figure they print comes from the same requests and the same load.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
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
    max_ms: float = 0.0  # the slowest answer wrk saw
    server_cpu_s: float = 0.0  # user + system time of the server process (all threads)
    # ... of its main thread alone: the event loop (HTTP, the engine, the writer's task);
    # the rest is other threads', the committer's above all
    server_loop_cpu_s: float = 0.0
    load1: float = 0.0  # the machine's 1-minute load average right after the run

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_s / max(1, self.requests)

    @property
    def loop_cpu_us_per_request(self) -> float:
        return 1e6 * self.server_loop_cpu_s / max(1, self.requests)


def process_cpu_s(pid: int, main_thread_only: bool = False) -> float:
    """utime + stime of a process, all its threads (or its main thread: the thread whose
    id is the process's), from /proc (Linux)."""
    path = f"/proc/{pid}/task/{pid}/stat" if main_thread_only else f"/proc/{pid}/stat"
    try:
        stat = Path(path).read_text()
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
    latency = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.MULTILINE)
    return WrkResult(
        rps=float(grab(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(grab(r"^\s+50%\s+(\S+)\s*$")),
        p99_ms=_ms(grab(r"^\s+99%\s+(\S+)\s*$")),
        requests=int(grab(r"(\d+) requests in")),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
        max_ms=_ms(latency.group(3)) if latency else 0.0,
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

    def __init__(
        self,
        args: argparse.Namespace,
        workdir: Path,
        cid: str,
        budget_fen: int,
        src: Path | None = None,
    ):
        """``src``: serve the ``lijian`` package found there (another checkout's ``src``,
        put first on ``PYTHONPATH``) instead of the installed one, for before/after runs."""
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
        cmd = pinned(args, cmd, args.server_cpus)
        self.log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONPATH=str(src)) if src is not None else None
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env
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

    def call(
        self, method: str, path: str, body: bytes, key: str = "ops", timeout_s: float = 60, **h: str
    ) -> Any:
        ts, nonce = str(int(time.time())), os.urandom(12).hex()
        headers = {
            "X-Lijian-Key": key,
            "X-Lijian-Timestamp": ts,
            "X-Lijian-Nonce": nonce,
            "X-Lijian-Signature": sign(SECRETS[key].encode(), method, path, ts, nonce, body),
            **h,
        }
        r = httpx.request(method, self.url + path, content=body, headers=headers, timeout=timeout_s)
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


def pinned(args: argparse.Namespace, cmd: list[str], cpus: str) -> list[str]:
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
    cmd = pinned(args, [*cmd, url], args.wrk_cpus)
    env = dict(os.environ, WRK_THREADS=str(args.threads), REQS_FILE=str(reqs or ""))
    # wrk reads its request file before it starts the clock; the server is idle then, so
    # its CPU over the whole wrk process is the CPU of the measured requests (± the
    # few requests in flight at the end).
    cpu0 = process_cpu_s(server_pid) if server_pid else 0.0
    loop0 = process_cpu_s(server_pid, main_thread_only=True) if server_pid else 0.0
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=WRK_TIMEOUT_S, check=True
    ).stdout
    cpu1 = process_cpu_s(server_pid) if server_pid else 0.0
    loop1 = process_cpu_s(server_pid, main_thread_only=True) if server_pid else 0.0
    if args.verbose:
        print(out, file=sys.stderr)
    result = parse_wrk(out)
    result.server_cpu_s = cpu1 - cpu0
    result.server_loop_cpu_s = loop1 - loop0
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
