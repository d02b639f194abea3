"""Real servers for the HTTP tests: ``lijian serve`` in a subprocess on a free loopback
port, a fresh SQLite file, and an httpx client that signs every ``/v1/`` request exactly
as api-v1.md says (over the path and query as they go on the wire).
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

from lijian.http.auth import sign
from tests.support import CID, TIANFU_SQUARE, seed_doc

STARTUP_TIMEOUT_S = 60  # geography and recovery load before the port opens
STOP_TIMEOUT_S = 30
LIJIAN = Path(sys.executable).with_name("lijian")
CATEGORIES = seed_doc()["eligibility"]["categories"]
CATALOG_SKUS_PER_PLATFORM = 200

CLIENTS: dict[str, dict[str, Any]] = {
    "unionpay": {"secret": "unionpay-secret", "role": "channel"},
    "jd": {"secret": "jd-platform-secret", "role": "platform", "platform": "jd"},
    "vip": {"secret": "vip-platform-secret", "role": "platform", "platform": "vip"},
    "ops": {"secret": "operator-secret", "role": "operator"},
    "audit": {"secret": "auditor-secret", "role": "auditor"},
    "slow": {
        "secret": "slow-channel-secret",
        "role": "channel",
        "requests_per_s": 0.5,
        "burst": 2,
    },
}


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
    lines.append(json.dumps({"sku": "JD-TOY-GUN", "category": "weapons", "platform": "jd"}))
    return ("\n".join(lines) + "\n").encode()


class Api:
    """An httpx client that signs as a given key (``as_``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60.0)

    def close(self) -> None:
        self.http.close()

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
    ) -> httpx.Response:
        body = content if content is not None else b""
        h: dict[str, str | bytes] = {}
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode()
            h["content-type"] = "application/json"
        h.update(headers or {})
        req = self.http.build_request(method, path, content=body, headers=h, params=params)
        if signed:
            if secret is None:
                secret = CLIENTS[as_]["secret"] if as_ in CLIENTS else "unknown-key-secret"
            ts_s = str(int(time.time()) if ts is None else ts)
            nonce = nonce or uuid.uuid4().hex
            raw_path = req.url.raw_path.decode("ascii")
            req.headers["X-Lijian-Key"] = as_
            req.headers["X-Lijian-Timestamp"] = ts_s
            req.headers["X-Lijian-Nonce"] = nonce
            req.headers["X-Lijian-Signature"] = sign(
                secret.encode(), method, raw_path, ts_s, nonce, body
            )
        return self.http.send(req)

    def signature_headers(
        self, method: str, path_with_query: str, body: bytes, as_: str = "unionpay"
    ) -> dict[str, str]:
        ts_s, nonce = str(int(time.time())), uuid.uuid4().hex
        secret = CLIENTS[as_]["secret"].encode()
        return {
            "X-Lijian-Key": as_,
            "X-Lijian-Timestamp": ts_s,
            "X-Lijian-Nonce": nonce,
            "X-Lijian-Signature": sign(secret, method, path_with_query, ts_s, nonce, body),
        }

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
        )


class Server:
    """``lijian serve`` in a subprocess (its own process group, stopped by SIGTERM)."""

    def __init__(
        self,
        workdir: Path,
        campaigns: list[dict[str, Any]] | None = None,
        clock: str | None = "manual:2025-02-12T10:00:00+08:00",
        catalog: bool = True,
        extra_args: list[str] | None = None,
        db: Path | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db or workdir / "lijian.db"
        self.log_path = workdir / "server.log"
        args: list[str] = []
        campaigns = campaigns or [campaign_doc()]
        self.campaign_id: str = campaigns[0]["campaign"]["id"]
        for i, doc in enumerate(campaigns):
            f = workdir / f"campaign-{i}.toml"
            f.write_text(dump_toml(doc), encoding="utf-8")
            args += ["--campaign", str(f)]
        clients = workdir / "clients.toml"
        clients.write_text(clients_toml(), encoding="utf-8")
        args += ["--clients", str(clients), "--db", str(self.db), "--port", str(self.port)]
        if clock:
            args += ["--clock", clock]
        self.cmd = [str(LIJIAN), "serve", *args, *(extra_args or [])]
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = Api(self.url)
        self.start()
        if catalog:
            r = self.api.put_catalog(catalog_ndjson(), cid=self.campaign_id)
            if r.status_code != 200:
                self.close()
                raise RuntimeError(f"catalogue upload failed: {r.text}")

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        self.proc = subprocess.Popen(
            self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal our own child's process group and wait; returns its exit status."""
        proc = self.proc
        if proc is None:
            return 0
        self.proc = None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                return proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT_S)
                raise
        return proc.returncode

    def close(self) -> None:
        self.api.close()
        self.stop()


def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.close()
