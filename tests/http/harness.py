"""Real servers for the HTTP tests: ``lijian serve`` in a subprocess on a free loopback
port, a fresh SQLite file, and an httpx client that signs every ``/v1/`` request exactly
as docs/API.md says (over the path and query as they go on the wire).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from lijian.client import Credentials, signature_headers
from tests.support import CID, TIANFU_SQUARE, seed_doc

READY_POLL_S = 0.03  # a server starts in about a second: a coarser poll only adds to it
STARTUP_TIMEOUT_S = 60  # geography and recovery load before the port opens
STOP_TIMEOUT_S = 30
UPLOAD_TIMEOUT_S = 900.0  # a catalogue upload (the gateway waits at most 90 s + 0.6 ms a row)
PORT_ATTEMPTS = 3
LIJIAN = Path(sys.executable).with_name("lijian")
CATEGORIES = seed_doc()["eligibility"]["categories"]
CATALOG_SKUS_PER_PLATFORM = 200

CLIENTS: dict[str, dict[str, Any]] = {
    "unionpay": {"secret": "unionpay-secret", "role": "channel"},
    "jd": {"secret": "jd-platform-secret", "role": "platform", "platform": "jd"},
    "vip": {"secret": "vip-platform-secret", "role": "platform", "platform": "vip"},
    "ops": {"secret": "operator-secret", "role": "operator"},
    "ops2": {"secret": "second-operator-secret", "role": "operator"},  # four eyes
    "audit": {"secret": "auditor-secret", "role": "auditor"},
    "slow": {
        "secret": "slow-channel-secret",
        "role": "channel",
        "requests_per_s": 0.5,
        "burst": 2,
    },
}


def link_credentials(out: Path, gateways: int) -> Path:
    """``lijian certs new``'s directories for the sequencer link (made once per ``out``)."""
    from lijian.cluster.tls import new_set

    if not (out / "sequencer").exists():
        new_set(out, [f"gateway-{i}" for i in range(1, gateways + 1)])
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def dump_toml(doc: Mapping[str, Any]) -> str:
    """Enough TOML for campaign files: tables of scalars, lists and inline tables."""
    out = []
    for section, table in doc.items():
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


def campaign_doc(**sections: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(seed_doc())
    for section, values in sections.items():
        doc.setdefault(section, {}).update(values)
    return doc


def clients_toml() -> str:
    lines = []
    for key_id, c in CLIENTS.items():
        lines.append("[[clients]]")
        lines.append(f'key_id = "{key_id}"')
        lines += [f"{k} = {_toml_value(v)}" for k, v in c.items()]
        lines.append("")
    return "\n".join(lines)


def metric(text: str, series: str) -> float:
    """The value of one series (name with its labels) in Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in /metrics")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def order(
    n: str | None = None,
    person: str | dict[str, Any] | None = None,
    price_fen: int = 12_900,
    quantity: int = 2,
    platform_discount_fen: int = 1_000,
    sku: str = "JD-1",
    platform: str = "jd",
    campaign_id: str = CID,
    **kw: Any,
) -> dict[str, Any]:
    """The contract's example order, with a fresh order id and person by default.

    Payable 24,800 fen, discount 3,720 fen at 15%."""
    body: dict[str, Any] = {
        "campaign_id": campaign_id,
        "platform": platform,
        "order_id": n or f"O-{uuid.uuid4().hex[:16]}",
        "payment_channel": "unionpay",
        "person": person
        if isinstance(person, dict)
        else {"id": person or f"p-{uuid.uuid4().hex[:12]}", "real_name_verified": True},
        "device_location": {"lng": TIANFU_SQUARE[0], "lat": TIANFU_SQUARE[1], "crs": "gcj02"},
        "delivery_address": {"adcode": "510104", "text": "四川省成都市锦江区红星路三段1号"},
        "items": [
            {
                "sku": sku,
                "quantity": quantity,
                "unit_price_fen": price_fen,
                "platform_discount_fen": platform_discount_fen,
            }
        ],
        "other_government_subsidy": False,
    }
    body.update(kw)
    return body


def catalog_ndjson(platforms: tuple[str, ...] = ("jd", "vip")) -> bytes:
    lines = [
        json.dumps({"sku": f"{p.upper()}-{i}", "category": CATEGORIES[i % 9], "platform": p})
        for p in platforms
        for i in range(CATALOG_SKUS_PER_PLATFORM)
    ]
    lines.append(json.dumps({"sku": "JD-TOY-GUN", "category": "withdrawn", "platform": "jd"}))
    return ("\n".join(lines) + "\n").encode()


class Api:
    """An httpx client that signs as a given key (``as_``). Given several base URLs (two
    gateways with their own ports), it sends each request to the next one in turn, so
    every step of a scenario is answered by another process than the one before."""

    def __init__(self, base_url: str, *more_urls: str) -> None:
        self.base_url = base_url
        self.https = [httpx.Client(base_url=u, timeout=60.0) for u in (base_url, *more_urls)]
        self._turn = 0

    @property
    def http(self) -> httpx.Client:
        c = self.https[self._turn % len(self.https)]
        self._turn += 1
        return c

    def close(self) -> None:
        for c in self.https:
            c.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        params: Mapping[str, str] | None = None,
        as_: str = "unionpay",
        signed: bool = True,
        secret: str | None = None,
        ts: int | None = None,
        nonce: str | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        body = content if content is not None else b""
        h: dict[str, str | bytes] = {}
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode()
            h["content-type"] = "application/json"
        h.update(headers or {})
        http = self.http
        extra = {} if timeout_s is None else {"timeout": timeout_s}
        req = http.build_request(method, path, content=body, headers=h, params=params, **extra)
        if signed:
            if secret is None:
                secret = CLIENTS[as_]["secret"] if as_ in CLIENTS else "unknown-key-secret"
            # The client library's signer (lijian.client), over the target as sent.
            raw_path = req.url.raw_path.decode("ascii")
            req.headers.update(
                signature_headers(
                    Credentials(as_, secret), method, raw_path, body, ts_s=ts, nonce=nonce
                )
            )
        return http.send(req)

    def signature_headers(
        self, method: str, path_with_query: str, body: bytes, as_: str = "unionpay"
    ) -> dict[str, str]:
        creds = Credentials(as_, CLIENTS[as_]["secret"])
        return signature_headers(creds, method, path_with_query, body)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, json_body=body, **kw)

    # -- the contract's calls, with the checks every test wants
    def redeem(self, body: dict[str, Any], key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Idempotency-Key": key or uuid.uuid4().hex, **kw.pop("headers", {})}
        return self.post("/v1/redemptions", body, headers=headers, **kw)

    def granted(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.redeem(body)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def codes(self, body: dict[str, Any]) -> list[str]:
        r = self.redeem(body)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "declined"
        return [x["code"] for x in r.json()["reasons"]]

    def status(self, cid: str = CID) -> dict[str, Any]:
        r = self.get(f"/v1/campaigns/{cid}/status")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def person(self, pid: str, cid: str = CID) -> dict[str, Any]:
        r = self.get(f"/v1/campaigns/{cid}/persons/{pid}")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def set_clock(self, now: str) -> None:
        r = self.post("/v1/admin/clock", {"now": now}, as_="ops")
        assert r.status_code == 200, r.text

    def put_catalog(self, ndjson: bytes, cid: str = CID, as_: str = "ops") -> httpx.Response:
        return self.request(
            "PUT",
            f"/v1/campaigns/{cid}/catalog",
            content=ndjson,
            headers={"content-type": "application/x-ndjson"},
            as_=as_,
            # A million rows on a loaded machine take minutes: the gateway waits as long
            # as its sequencer says it is storing them (docs/SCALE-OUT.md), and so do we.
            timeout_s=UPLOAD_TIMEOUT_S,
        )


# The topologies every HTTP test runs on (docs/API.md: any number of workers answers like
# one process): one process on SQLite; a sequencer and two gateways on one socket
# (``--workers 2``) on SQLite and on PostgreSQL; and a sequencer with two gateways on
# ports of their own (``lijian sequencer`` + ``lijian gateway``), the client alternating
# between them.
#
# ``pg-shards`` (docs/SCALE-OUT.md, "Sharded campaigns"): two ``lijian sequencer``s, each
# its own ledger (a PostgreSQL schema) and campaigns, one order registry (a third schema),
# and two ``lijian gateway``s routing by campaign. The test's first campaign lives on
# shard ``a``; its other campaigns (or, with one, ``SHARD_B_CID``) on shard ``b``. Not in
# the default list (every HTTP test would run a fifth time): ``make test-shards`` runs the
# one-answer scenarios on it, and tests/cluster/test_shards.py always does.
ALL_TOPOLOGIES = ("one", "sqlite-w2", "pg-w2", "pg-2gw", "pg-shards")
DEFAULT_TOPOLOGIES = ("one", "sqlite-w2", "pg-w2", "pg-2gw")
SHARD_B_CID = "shard-b-2025-spring"
# `make test-fast` runs the HTTP tests on one process only (LIJIAN_TEST_TOPOLOGIES=one).
TOPOLOGIES = tuple(
    t
    for t in os.environ.get("LIJIAN_TEST_TOPOLOGIES", ",".join(DEFAULT_TOPOLOGIES)).split(",")
    if t
)
assert TOPOLOGIES and set(TOPOLOGIES) <= set(ALL_TOPOLOGIES), TOPOLOGIES
DEFAULT_TOPOLOGY = {"name": os.environ.get("LIJIAN_TEST_TOPOLOGY", "one")}
PG_BASE_URL = os.environ.get("LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _new_pg_schema() -> tuple[str, str]:
    import psycopg

    name = f"h_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE_URL, autocommit=True, connect_timeout=5) as c:
        c.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in PG_BASE_URL else "?"
    return name, f"{PG_BASE_URL}{sep}options=-csearch_path%3D{name}"


def _drop_pg_schema(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_BASE_URL, autocommit=True, connect_timeout=5) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


class Server:
    """``lijian serve`` in a subprocess (its own process group, stopped by SIGTERM), or
    for the ``pg-2gw`` topology a ``lijian sequencer`` and two ``lijian gateway``s."""

    def __init__(
        self,
        workdir: Path,
        campaigns: list[dict[str, Any]] | None = None,
        clock: str | None = "manual:2025-02-12T10:00:00+08:00",
        catalog: bool = True,
        extra_args: list[str] | None = None,
        db: Path | str | None = None,
        topology: str | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.topology = topology or DEFAULT_TOPOLOGY["name"]
        assert self.topology in ALL_TOPOLOGIES, self.topology
        self._schema: str | None = None
        if db is None and self.topology.startswith("pg"):
            self._schema, db = _new_pg_schema()
        self.shard_dbs: list[str] = []  # pg-shards: shard b's ledger, the order registry
        self._shard_schemas: list[str] = []
        if self.topology == "pg-shards":
            for _ in range(2):
                schema, url = _new_pg_schema()
                self._shard_schemas.append(schema)
                self.shard_dbs.append(url)
        self.db: Path | str = db or workdir / "lijian.db"
        self.log_path = workdir / "server.log"
        args: list[str] = []
        campaigns = campaigns or [campaign_doc()]
        self.campaign_id: str = campaigns[0]["campaign"]["id"]
        self._shard_b: list[str] = []  # pg-shards: shard b's --campaign arguments
        if self.topology == "pg-shards" and len(campaigns) == 1:
            campaigns = [*campaigns, campaign_doc(campaign={"id": SHARD_B_CID})]
        for i, doc in enumerate(campaigns):
            f = workdir / f"campaign-{i}.toml"
            f.write_text(dump_toml(doc), encoding="utf-8")
            if self.topology == "pg-shards" and i > 0:
                self._shard_b += ["--campaign", str(f)]
            else:
                args += ["--campaign", str(f)]
        clients = workdir / "clients.toml"
        clients.write_text(clients_toml(), encoding="utf-8")
        self.clients_path = clients
        args += ["--clients", str(clients), "--db", str(self.db)]
        if clock:
            args += ["--clock", clock]
        self._args, self._extra = args, list(extra_args or [])
        self.procs: list[subprocess.Popen[bytes]] = []
        # A free port may be taken by another test between choosing and binding it:
        # then choose again (bounded).
        for attempt in range(PORT_ATTEMPTS):
            self._commands(clients)
            self.api = Api(*self.urls)
            try:
                self.start()
                break
            except RuntimeError as exc:
                self.api.close()
                if attempt == PORT_ATTEMPTS - 1 or "address already in use" not in str(exc).lower():
                    raise
        if catalog:
            r = self.api.put_catalog(catalog_ndjson(), cid=self.campaign_id)
            if r.status_code != 200:
                self.close()
                raise RuntimeError(f"catalogue upload failed: {r.text}")

    def _commands(self, clients: Path) -> None:
        """The command lines of the topology, on freshly chosen ports."""
        args, extra = self._args, list(self._extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.urls = [self.url]
        if self.topology == "pg-2gw":
            seq_port, seq_http, gw2 = free_port(), free_port(), free_port()
            self.urls.append(f"http://127.0.0.1:{gw2}")
            tls = link_credentials(self.workdir / "tls", 2)
            seq = [str(LIJIAN), "sequencer", *args, "--listen", f"127.0.0.1:{seq_port}",
                   "--port", str(seq_http), "--tls-dir", str(tls / "sequencer")]  # fmt: skip
            gw = [str(LIJIAN), "gateway", "--sequencer", f"127.0.0.1:{seq_port}",
                  "--clients", str(clients),
                  "--dashboard-url", f"http://127.0.0.1:{seq_http}"]  # fmt: skip
            self.cmds = [
                seq,
                [*gw, "--port", str(self.port), "--tls-dir", str(tls / "gateway-1")],
                [*gw, "--port", str(gw2), "--tls-dir", str(tls / "gateway-2")],
            ]
        elif self.topology == "pg-shards":
            self.cmds = self._shard_commands(clients, args, extra)
        else:
            if self.topology in ("sqlite-w2", "pg-w2"):
                extra += ["--workers", "2"]
            self.cmds = [[str(LIJIAN), "serve", *args, "--port", str(self.port), *extra]]
        self.cmd = self.cmds[-1]

    def _shard_commands(self, clients: Path, args: list[str], extra: list[str]) -> list[list[str]]:
        """Two sequencers (nodes a and b), each its ledger and campaigns, one registry;
        two gateways that know both shards."""
        ports = [free_port() for _ in range(5)]
        gw2 = ports[4]
        self.urls.append(f"http://127.0.0.1:{gw2}")
        tls = link_credentials(self.workdir / "tls", 2)
        b_ledger, registry = self.shard_dbs
        # Shard b: the same options (clients, clock, …) on its own ledger and campaigns.
        rest = [x for i, x in enumerate(args) if x != "--campaign" and args[i - 1] != "--campaign"]
        b_args = [*self._shard_b, *rest]
        b_args[b_args.index("--db") + 1] = b_ledger
        cmds = []
        for node, seq_args, port, http in (("a", args, ports[0], ports[1]),
                                           ("b", b_args, ports[2], ports[3])):  # fmt: skip
            cmds.append([str(LIJIAN), "sequencer", *seq_args, "--listen", f"127.0.0.1:{port}",
                         "--port", str(http), "--tls-dir", str(tls / "sequencer"),
                         "--node", node, "--order-registry", registry, *extra])  # fmt: skip
        gw = [str(LIJIAN), "gateway", "--shard", f"127.0.0.1:{ports[0]}",
              "--shard", f"127.0.0.1:{ports[2]}", "--clients", str(clients),
              "--dashboard-url", f"http://127.0.0.1:{ports[1]}"]  # fmt: skip
        return [
            *cmds,
            [*gw, "--port", str(self.port), "--tls-dir", str(tls / "gateway-1")],
            [*gw, "--port", str(gw2), "--tls-dir", str(tls / "gateway-2")],
        ]

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.procs[-1] if self.procs else None

    def start(self) -> None:
        for cmd in self.cmds:
            log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
            self.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for url in self.urls:
            while True:
                dead = [p for p in self.procs if p.poll() is not None]
                if dead:
                    code = dead[0].returncode
                    self.stop(signal.SIGKILL)  # the others may still be starting
                    raise RuntimeError(f"server exited {code}:\n{self.log()}")
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop(signal.SIGKILL)
                    raise RuntimeError(f"server did not become ready:\n{self.log()}")
                time.sleep(READY_POLL_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal our own children's process groups (gateways first, then the sequencer)
        and wait; returns the exit status of the last one (the serving process)."""
        procs, self.procs = self.procs, []
        code = 0
        for proc in reversed(procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=STOP_TIMEOUT_S)
                    raise
        if procs:
            code = procs[-1].returncode
        return code

    def close(self) -> None:
        self.api.close()
        self.stop()
        if self._schema is not None:
            _drop_pg_schema(self._schema)
            self._schema = None
        for schema in self._shard_schemas:
            _drop_pg_schema(schema)
        self._shard_schemas = []


def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.close()


def pids(server: Server) -> dict[str, int]:
    """The live process of each role, from the supervisors' "started" log lines."""
    out: dict[str, int] = {}
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"event":"started"' in line:
            rec = json.loads(line)
            out[rec["role"]] = rec["pid"]
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
