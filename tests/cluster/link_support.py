"""What the sequencer-link tests share: a real `lijian sequencer` and `lijian gateway`
with the link's certificates, wire-level clients that speak the protocol by hand, and
stand-ins for the sequencer (a rogue with another CA's certificate, a plain one, one
that accepts and drops)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from lijian.cluster import wire
from lijian.cluster.tls import CA_FILE, CERT_FILE, KEY_FILE, SEQUENCER_NAME
from tests.http.harness import (
    LIJIAN,
    campaign_doc,
    clients_toml,
    dump_toml,
    free_port,
    link_credentials,
)

READY_TIMEOUT_S = 60.0
REFUSED_READ_TIMEOUT_S = 10.0  # a refused peer is dropped well within this


def inputs(workdir: Path) -> tuple[Path, Path]:
    camp = workdir / "campaign.toml"
    camp.write_text(dump_toml(campaign_doc()), encoding="utf-8")
    clients = workdir / "clients.toml"
    clients.write_text(clients_toml(), encoding="utf-8")
    return camp, clients


def spawn(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready:\n{log.read_text(errors='replace')[-3000:]}")


class Sequencer:
    """`lijian sequencer` on SQLite, gateways on TCP loopback."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tls = link_credentials(workdir / "tls", 4)
        self.camp, self.clients = inputs(workdir)
        self.port, self.http_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = workdir / "sequencer.log"
        self.proc = spawn(
            [str(LIJIAN), "sequencer", "--campaign", str(self.camp), "--clients",
             str(self.clients), "--db", str(workdir / "l.db"), "--listen", self.address,
             "--port", str(self.http_port), "--tls-dir", str(self.tls / "sequencer"),
             "--clock", "manual:2025-02-12T10:00:00+08:00"],
            self.log,
        )  # fmt: skip
        wait_ready(f"http://127.0.0.1:{self.http_port}", self.proc, self.log)

    def close(self) -> None:
        stop(self.proc)


class Gateway:
    def __init__(self, workdir: Path, name: str, addresses: list[str], tls_dir: Path,
                 clients: Path, wait: bool = True) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        addrs = [a for x in addresses for a in ("--sequencer", x)]
        self.proc = spawn(
            [str(LIJIAN), "gateway", *addrs, "--clients", str(clients), "--port",
             str(self.port), "--tls-dir", str(tls_dir), "--no-access-log"],
            self.log,
        )  # fmt: skip
        if wait:
            wait_ready(self.url, self.proc, self.log)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        stop(self.proc)


# ------------------------------------------------------------- wire-level clients
def client_context(ca_dir: Path | None, own: Path | None) -> ssl.SSLContext:
    """A TLS client trusting ``ca_dir``'s CA (or nothing: no verification), presenting
    ``own``'s certificate (or none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_dir is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(str(ca_dir / CA_FILE))
    if own is not None:
        ctx.load_cert_chain(str(own / CERT_FILE), str(own / KEY_FILE))
    return ctx


def call_frame(*calls: tuple[int, str, list[Any]]) -> bytes:
    return wire.frame([wire.encode((cid, method, None, args)) for cid, method, args in calls])


def open_link(address: tuple[str, int] | str, ctx: ssl.SSLContext | None) -> socket.socket:
    if isinstance(address, str):
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(REFUSED_READ_TIMEOUT_S)
        raw.connect(address)
    else:
        raw = socket.create_connection(address, timeout=REFUSED_READ_TIMEOUT_S)
    if ctx is None:
        return raw
    return ctx.wrap_socket(raw, server_hostname=SEQUENCER_NAME)


def read_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_answers(s: socket.socket) -> list[wire.Answer]:
    (n,) = wire._LEN.unpack(read_exact(s, 4))
    return wire.decode_answers(read_exact(s, n))


def everything_until_closed(s: socket.socket) -> bytes:
    """What the peer sends before it closes (an SSL alert ends it too)."""
    got = b""
    try:
        while chunk := s.recv(65_536):
            got += chunk
    except (ssl.SSLError, ConnectionError):
        pass
    return got


def hello_refused(address: tuple[str, int] | str, ctx: ssl.SSLContext | None) -> bytes:
    """Connect, send a hello, and return whatever came back until the sequencer closed
    the connection (it must: a refusal is never silence forever)."""
    try:
        s = open_link(address, ctx)
    except (ssl.SSLError, ConnectionError):
        return b""  # refused during the handshake
    with s:
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            s.sendall(call_frame((1, "hello", []), (2, "public", ["chengdu-2025-spring"])))
        return everything_until_closed(s)


# ------------------------------------------------------------ sequencer stand-ins
class StandIn:
    """Something listening where a gateway expects its sequencer: counts the TCP
    connections it accepts and the calls it could read; with ``ctx`` (a TLS server
    context) it answers every call as a sequencer that grants everything would."""

    def __init__(self, ctx: ssl.SSLContext | None, texts: list[str] | None = None,
                 drop_at_once: bool = False) -> None:  # fmt: skip
        self.ctx = ctx
        self.texts = texts or []
        self.drop_at_once = drop_at_once
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = int(self.sock.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self.accepted_at: list[float] = []
        self.calls = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted_at.append(time.monotonic())
            if self.drop_at_once:
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(REFUSED_READ_TIMEOUT_S)
        try:
            s = conn if self.ctx is None else self.ctx.wrap_socket(conn, server_side=True)
            while True:
                (n,) = wire._LEN.unpack(read_exact(s, 4))
                if n > wire.REQUEST_FRAME_BYTES_MAX:
                    return  # not a frame (a TLS ClientHello read as plain bytes)
                calls = wire.decode_calls(read_exact(s, n))
                self.calls += len(calls)
                out = []
                for c in calls:
                    if c.method == "hello":
                        payload: Any = {"settings": self.texts, "manual_clock": True}
                    else:  # "granted", with an id recorded nowhere
                        payload = (201, {"id": "r-rogue", "status": "held"}, False)
                    out.append(wire.encode((c.call_id, wire.OK, payload)))
                s.sendall(wire.frame(out))
        except Exception:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()
