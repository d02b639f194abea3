"""A signed request accepted once is refused when replayed byte for byte after the ledger
process was killed with SIGKILL (one process; the sequencer of `--workers 2` and of
separate gateways, on SQLite and PostgreSQL): its nonce was stored in the commit that
carried it, or before its answer left. And the manual clock a client saw stays where it
was moved: it is a ledger entry, replayed by the next process.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.http.harness import CLIENTS, Server, alive, order, pids
from tests.support import CID

HEAL_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Captured:
    """A signed request exactly as it went on the wire (what an eavesdropper keeps)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def send(self, url: str) -> httpx.Response:
        return httpx.request(self.method, url + self.path, headers=self.headers,
                             content=self.body, timeout=60.0)  # fmt: skip


def capture(method: str, path: str, body: bytes, as_: str, ctype: str) -> Captured:
    from lijian.client import Credentials, signature_headers

    creds = Credentials(as_, CLIENTS[as_]["secret"])
    h = {"content-type": ctype, **signature_headers(creds, method, path, body)}
    if path == "/v1/redemptions":
        h["Idempotency-Key"] = "replayed-key-0001"
    return Captured(method, path, h, body)


def catalogue(sku: str, category: str) -> bytes:
    return (json.dumps({"sku": sku, "category": category, "platform": "jd"}) + "\n").encode()


def kill_the_ledger_process(s: Server) -> None:
    """SIGKILL the process that holds the ledger; the same topology serves again after."""
    if s.topology == "one":
        s.stop(signal.SIGKILL)
        s.start()
        return
    before = pids(s)["sequencer"]
    os.kill(before, signal.SIGKILL)  # its supervisor starts another, which replays the log
    deadline = time.monotonic() + HEAL_TIMEOUT_S
    while time.monotonic() < deadline:
        now = pids(s).get("sequencer")
        # Every gateway must have found the new sequencer (each reconnects on its own
        # jittered back-off): the steps after this one go to each of them in turn.
        if now != before and now is not None and alive(now) and all(map(_answers, s.urls)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no sequencer again after {HEAL_TIMEOUT_S} s:\n{s.log()}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5.0).status_code == 200
    except httpx.TransportError:
        return False


def test_requests_accepted_before_a_kill_are_refused_after_it(tmp_path: Path) -> None:
    s = Server(tmp_path)
    try:
        url = s.url
        ndjson = "application/x-ndjson"
        put = f"/v1/campaigns/{CID}/catalog"
        # The SKU joins the campaign, then is withdrawn; the first upload is captured.
        add = capture("PUT", put, catalogue("JD-R1", "fresh_food"), "ops", ndjson)
        assert add.send(url).status_code == 200
        withdraw = capture("PUT", put, catalogue("JD-R1", "withdrawn"), "ops", ndjson)
        assert withdraw.send(url).status_code == 200
        grant = capture("POST", "/v1/redemptions", json.dumps(order()).encode(), "unionpay",
                        "application/json")  # fmt: skip
        assert grant.send(url).status_code == 201
        read = capture("GET", f"/v1/campaigns/{CID}/status", b"", "ops", "application/json")
        assert read.send(url).status_code == 200
        move = json.dumps({"now": "2025-02-12T10:10:00+08:00"}).encode()
        clock = capture("POST", "/v1/admin/clock", move, "ops", "application/json")
        r = clock.send(url)
        assert r.status_code == 200 and r.json()["now"] == "2025-02-12T10:10:00+08:00", r.text

        kill_the_ledger_process(s)

        for c in (add, withdraw, grant, read, clock):
            r = c.send(s.urls[-1])
            assert r.status_code == 401, (c.method, c.path, r.text)
            assert r.json()["code"] == "nonce_reused", r.text
        # The withdrawn SKU stayed withdrawn, the clock stayed at the acknowledged 10:10.
        assert "not_campaign_goods" in s.api.codes(order(sku="JD-R1"))
        assert s.api.status()["now"] == "2025-02-12T10:10:00+08:00"
    finally:
        s.close()
