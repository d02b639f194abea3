"""The sequencer link's bounds with real processes: idle connections without credentials
do not keep a real gateway out; a gateway whose sequencer accepts and drops backs off
(counted at the stand-in, against the back-off schedule) and logs little; `serve
--workers 2` keeps its link private and carries a large catalogue in parts."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import httpx

from lijian.cluster.gateway_policy import RECONNECT_LOG_EVERY_S, attempts_at_most
from tests.cluster.link_support import (
    Gateway,
    Sequencer,
    StandIn,
    client_context,
    hello_refused,
)
from tests.http.harness import CATEGORIES, Api, Server, catalog_ndjson, order

IDLE_CONNECTIONS = 300  # more than the sequencer's connection bound (128)
WINDOW_S = 15.0


def test_idle_connections_do_not_starve_a_real_gateway(tmp_path: Path) -> None:
    seq = Sequencer(tmp_path)
    stop = threading.Event()
    held: list[socket.socket] = []
    dropped = [0]

    def flood() -> None:
        """Keep IDLE_CONNECTIONS plain connections open, opening a new one for each the
        sequencer drops, for as long as the test runs."""
        while not stop.is_set():
            while len(held) < IDLE_CONNECTIONS:
                try:
                    held.append(socket.create_connection(("127.0.0.1", seq.port), timeout=5))
                except OSError:
                    break
            for s in list(held):
                s.setblocking(False)
                try:
                    gone = s.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    held.remove(s)
                    s.close()
                    dropped[0] += 1
            time.sleep(0.05)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    gw = None
    try:
        time.sleep(1.0)  # the flood is in place before the gateway connects
        gw = Gateway(tmp_path, "gateway", [seq.address], seq.tls / "gateway-1", seq.clients)
        api = Api(gw.url)
        assert api.put_catalog(catalog_ndjson()).status_code == 200
        for _ in range(20):
            api.granted(order())
        # The idle ones are dropped (the handshake deadline) and replaced, so the flood
        # never stopped: more than a full set of them came and went.
        deadline = time.monotonic() + 60
        while dropped[0] < IDLE_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dropped[0] >= IDLE_CONNECTIONS, dropped[0]
        api.granted(order())
        # Refused handshakes are not logged one by one (no log flood).
        refused_lines = [x for x in seq.log.read_text(errors="replace").splitlines()
                         if "handshake" in x.lower() or "refused" in x.lower()]  # fmt: skip
        assert len(refused_lines) <= 2, refused_lines[:5]
        api.close()
    finally:
        stop.set()
        flooder.join(10)
        for s in held:
            s.close()
        if gw is not None:
            gw.close()
        seq.close()


def test_a_gateway_backs_off_while_its_sequencer_drops_every_connection(
    tmp_path: Path,
) -> None:
    """The worst case: a TCP connection is accepted and closed at once (a sequencer that
    is full, or broken). The gateway retries with back-off from its first attempt,
    serves 503 meanwhile, logs a line per period at most, and never exits."""
    from tests.http.harness import clients_toml, link_credentials

    tls = link_credentials(tmp_path / "tls", 1)
    clients = tmp_path / "clients.toml"
    clients.write_text(clients_toml(), encoding="utf-8")
    dropper = StandIn(None, drop_at_once=True)
    gw = Gateway(tmp_path, "gateway", [dropper.address], tls / "gateway-1", clients, wait=False)
    try:
        deadline = time.monotonic() + 30
        while not dropper.accepted_at:
            assert time.monotonic() < deadline and gw.proc.poll() is None, gw.text()
            time.sleep(0.05)
        t0 = dropper.accepted_at[0]
        time.sleep(WINDOW_S + 0.5)
        in_window = [t for t in dropper.accepted_at if t - t0 <= WINDOW_S]
        bound = attempts_at_most(WINDOW_S)
        assert 3 <= len(in_window) <= bound, (len(in_window), bound)
        assert gw.proc.poll() is None, gw.text()
        r = httpx.get(gw.url + "/readyz", timeout=5)
        assert r.status_code == 503
        api = Api(gw.url)
        assert api.redeem(order()).status_code == 503
        api.close()
        text = gw.text()
        assert "Traceback" not in text
        lines = text.count("sequencer link:")
        elapsed_s = time.monotonic() - t0
        assert 1 <= lines <= elapsed_s / RECONNECT_LOG_EVERY_S + 1, (lines, elapsed_s)
    finally:
        gw.close()
        dropper.close()


def _cluster_paths(server: Server) -> tuple[Path, Path]:
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"event":"cluster"' in line:
            sock = Path(json.loads(line)["sequencer"])
            return sock.parent, sock
    raise AssertionError(server.log())


def test_serve_workers_keeps_its_link_private_and_uploads_in_parts(tmp_path: Path) -> None:
    server = Server(tmp_path, topology="sqlite-w2")
    try:
        run_dir, sock = _cluster_paths(server)
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
        keys = sorted(run_dir.glob("tls/*/key.pem"))
        assert [k.parent.name for k in keys] == ["gateway-0", "gateway-1", "sequencer"]
        assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
        assert not list(run_dir.rglob("ca-key.pem"))  # the CA's key was never written
        # The Unix socket is TLS with client certificates too.
        plain = hello_refused(str(sock), None)
        assert (plain == b"" or plain[0] == 0x15) and len(plain) < 64, plain[:64]
        assert hello_refused(str(sock), client_context(run_dir / "tls" / "sequencer", None)) == b""
        # A catalogue far larger than one part (about 7,000 such rows a part).
        n = 60_000
        rows = [{"sku": f"BULK-{i}", "category": CATEGORIES[i % 9], "platform": "jd"}
                for i in range(n)]  # fmt: skip
        body = catalog_ndjson() + "".join(json.dumps(r) + "\n" for r in rows).encode()
        r = server.api.put_catalog(body)
        assert r.status_code == 200, r.text
        assert r.json()["upserted"] == n + 401
        assert server.api.redeem(order(sku=f"BULK-{n - 1}")).status_code == 201
        declined = server.api.redeem(order(sku="BULK-X"))
        assert [x["code"] for x in declined.json()["reasons"]] == ["not_campaign_goods"]
    finally:
        server.close()
    assert not os.path.exists(run_dir)  # removed at exit, credentials with it
