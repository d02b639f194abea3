"""A gateway whose sequencer cannot answer says so within 2 s (503 with Retry-After),
whatever the sequencer's socket does: a sequencer stopped (SIGSTOP) keeps its connection
open and answers nothing; a socket that listens and never accepts (what a supervisor
keeps after its sequencer died) takes connections into its backlog. Resumed, the
stopped sequencer is served again."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx

from tests.cluster.link_support import Gateway, Sequencer
from tests.http.harness import Api, catalog_ndjson, clients_toml, link_credentials, order

PROMISE_S = 2.0  # docs/SCALE-OUT.md: a 503 within 2 s when no sequencer can answer
# The promise, plus what a loaded test machine adds to a request's own way (process
# scheduling of the client, the gateway's loop); the gateway's own bound is PROMISE_S.
SLACK_S = 0.5


def timed(api: Api, body: dict) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = api.redeem(body)
    return r, time.monotonic() - t0


def test_a_stopped_sequencer_gets_503_within_2_s_then_service_again(tmp_path: Path) -> None:
    seq = Sequencer(tmp_path)
    gw = Gateway(tmp_path, "gateway", [seq.address], seq.tls / "gateway-1", seq.clients)
    api = Api(gw.url)
    stopped = False
    try:
        assert api.put_catalog(catalog_ndjson()).status_code == 200
        assert api.redeem(order(person="p-0")).status_code == 201
        os.killpg(seq.proc.pid, signal.SIGSTOP)  # the supervisor and its sequencer
        stopped = True
        # Every call finds a connection that answers nothing, not even a ping: each
        # gets its 503, the connection is kept for when the sequencer answers again.
        for i in range(1, 6):
            r, took_s = timed(api, order(person=f"p-{i}"))
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "sequencer_unavailable"
            assert r.headers["retry-after"] == "1"
            assert took_s < PROMISE_S + SLACK_S, (i, took_s)
            time.sleep(0.5)
        os.killpg(seq.proc.pid, signal.SIGCONT)
        stopped = False
        deadline = time.monotonic() + 30
        while True:  # the gateway connects again (its back-off is at most 5 s)
            r = api.redeem(order(person="p-9"))
            if r.status_code == 201:
                break
            assert r.status_code == 503 and time.monotonic() < deadline, r.text
            time.sleep(0.2)
        assert api.status()["today"] is not None
    finally:
        if stopped:
            os.killpg(seq.proc.pid, signal.SIGCONT)
        api.close()
        gw.close()
        seq.close()
    assert "the sequencer answered nothing for" in gw.text()


def test_a_backlog_that_never_answers_is_503_at_once_and_every_address_is_named(
    tmp_path: Path,
) -> None:
    tls = link_credentials(tmp_path / "tls", 1)
    clients = tmp_path / "clients.toml"
    clients.write_text(clients_toml(), encoding="utf-8")
    backlog = socket.create_server(("127.0.0.1", 0), backlog=16)  # listens, never accepts
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in (backlog, refused)]
    gw = Gateway(tmp_path, "gateway", addresses, tls / "gateway-1", clients, wait=False)
    try:
        deadline = time.monotonic() + 60
        # It serves after its start-up wait for a sequencer, answering 503 meanwhile.
        while "no sequencer answers" not in gw.text() or '"event":"ready"' not in gw.text():
            assert time.monotonic() < deadline and gw.proc.poll() is None, gw.text()
            time.sleep(0.1)
        api = Api(gw.url)
        r, took_s = timed(api, order())
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert took_s < PROMISE_S, took_s
        api.close()
        line = next(x for x in gw.text().splitlines() if "no sequencer answers" in x)
        assert f"{addresses[0]}: no answer" in line, line
        assert f"{addresses[1]}: " in line and "refused" in line.lower(), line
    finally:
        gw.close()
        backlog.close()
        refused.close()
