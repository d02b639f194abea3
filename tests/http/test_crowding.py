"""Oversized heads and crowding networks over real sockets (docs/API.md, "Limits";
docs/SECURITY.md, "HTTP limits"; http/guard.py).

A 64 MiB head gets 431 after its first 16 KiB while ``/healthz`` on another connection
answers at once; the exact boundary; slow connections from several addresses of one /24
are refused beyond the network's limit while another /24 is served; and slow connections
from several networks filling the process make room for a newcomer from elsewhere. On
every topology (with ``--workers 2`` each gateway has its own counts).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lijian.http.guard import HEAD_MAX_BYTES, RESPONSE_431, RESPONSE_503, network_of
from tests.http.harness import Server, metric

pytestmark = pytest.mark.xdist_group("crowding")  # one worker: one server per topology

PER_NETWORK_MAX = 40  # LIJIAN_PER_PREFIX_MAX for this module's server
TOTAL_MAX = 50  # LIJIAN_CONNECTIONS_MAX for this module's server
SERVING_PROCESSES = {"one": 1, "sqlite-w2": 2, "pg-w2": 2, "pg-2gw": 1}
HUGE_HEAD_BYTES = 64 * 1024 * 1024
HEALTHZ_P50_MAX_S = 0.1  # the bound asked of /healthz while a huge head arrives
HEALTHZ_MAX_S = 1.0  # and no probe near the seconds an unbounded head used to cost
ANSWER_WAIT_S = 30.0  # bounds every read below
PROBES_MIN = 10  # /healthz probes from the moment the huge head starts, at least
HELD_WAIT_S = 1.5  # a refused connection is answered at once; a held one hears nothing
GET = b"GET /healthz HTTP/1.1\r\nHost: lijian\r\n"


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    env = {"LIJIAN_PER_PREFIX_MAX": str(PER_NETWORK_MAX), "LIJIAN_CONNECTIONS_MAX": str(TOTAL_MAX)}
    os.environ.update(env)  # the children inherit them
    try:
        s = Server(Path(tmp_path_factory.mktemp(f"crowd-{topology}")), topology=topology)
    finally:
        for k in env:
            del os.environ[k]
    try:
        yield s
    finally:
        s.close()


def _client_from(server: Server, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.url, timeout=ANSWER_WAIT_S, transport=transport)


def _connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), ANSWER_WAIT_S, (source, 0))


def _read_until_closed(c: socket.socket) -> bytes:
    out = b""
    with contextlib.suppress(ConnectionError, TimeoutError):
        while chunk := c.recv(65_536):
            out += chunk
    return out


def _read_one_answer(c: socket.socket) -> bytes:
    """One whole answer on a kept-alive connection (its head and Content-Length body,
    which may come in several reads)."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = c.recv(65_536)
        assert chunk, out
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = c.recv(65_536)
        assert chunk, out
        body += chunk
    assert len(body) == length, out  # nothing else was sent yet
    return head + b"\r\n\r\n" + body


def _send_quietly(c: socket.socket, data: bytes | memoryview) -> None:
    with contextlib.suppress(OSError):  # the server closes once it has answered
        c.sendall(data)


# ----------------------------------------------------------------- head size
def test_a_64_mib_head_gets_431_while_healthz_answers_at_once(crowded: Server) -> None:
    latencies_s: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with _client_from(crowded, "127.0.4.1") as c:
            while not stop.is_set() or len(latencies_s) < PROBES_MIN:
                t0 = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                latencies_s.append(time.perf_counter() - t0)
                time.sleep(0.01)

    huge = memoryview(b"X-Big: " + b"a" * HUGE_HEAD_BYTES)
    with _connect(crowded.port, "127.0.5.1") as c:
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        sender = threading.Thread(target=_send_quietly, args=(c, GET + huge), daemon=True)
        sender.start()
        answer = _read_until_closed(c)
        sender.join(ANSWER_WAIT_S)
        stop.set()
        prober.join(ANSWER_WAIT_S)
    assert answer == RESPONSE_431
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "request_head_too_large"
    assert not sender.is_alive() and not prober.is_alive()
    assert statistics.median(latencies_s) < HEALTHZ_P50_MAX_S, latencies_s
    assert max(latencies_s) < HEALTHZ_MAX_S, latencies_s
    if SERVING_PROCESSES[crowded.topology] == 1:
        text = httpx.get(crowded.url + "/metrics", timeout=ANSWER_WAIT_S).text
        assert metric(text, "lijian_request_heads_too_large") >= 1


def _head_of(size: int, url_size: int = 0, close: bool = False) -> bytes:
    """A complete GET /healthz head of exactly ``size`` bytes (a padded header, and
    ``url_size`` bytes of padding in the query)."""
    start = b"GET /healthz?" + b"q" * url_size + b" HTTP/1.1\r\nHost: lijian\r\n"
    if close:
        start += b"Connection: close\r\n"
    pad = size - len(start) - len(b"X-Pad: \r\n\r\n")
    assert pad >= 0
    return start + b"X-Pad: " + b"p" * pad + b"\r\n\r\n"


@pytest.mark.parametrize("url_size", [0, 12_000])
def test_the_head_limit_is_exact_in_a_header_and_in_the_url(crowded: Server, url_size: int) -> None:
    got = {}
    for size in (HEAD_MAX_BYTES, HEAD_MAX_BYTES + 1):
        with _connect(crowded.port, "127.0.5.2") as c:
            _send_quietly(c, _head_of(size, url_size, close=True))
            got[size] = _read_until_closed(c)
    assert got[HEAD_MAX_BYTES].startswith(b"HTTP/1.1 200 OK\r\n"), got[HEAD_MAX_BYTES][:200]
    assert got[HEAD_MAX_BYTES + 1] == RESPONSE_431


def test_a_second_request_on_a_kept_alive_connection_is_counted_afresh(crowded: Server) -> None:
    with _connect(crowded.port, "127.0.5.3") as c:
        c.sendall(_head_of(HEAD_MAX_BYTES - 100))
        first = _read_one_answer(c)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n"), first
        _send_quietly(c, GET + b"X-Big: " + b"a" * HEAD_MAX_BYTES)
        assert _read_until_closed(c) == RESPONSE_431


# ------------------------------------------------------- networks and totals
def test_network_of_counts_ipv4_by_24_and_ipv6_by_64() -> None:
    assert network_of("203.0.113.7") == "203.0.113.0/24"
    assert network_of("203.0.113.250") == network_of("203.0.113.1")
    assert network_of("203.0.114.1") != network_of("203.0.113.1")
    assert network_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert network_of("2001:db8:1:2::1") == network_of("2001:db8:1:2:ffff::9")
    assert network_of("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert network_of("fe80::1%eth0") == "fe80::/64"
    assert network_of("::ffff:198.51.100.9") == "198.51.100.0/24"  # IPv4-mapped
    assert network_of("::1") == "::/64"
    assert network_of("") == ""  # a Unix socket's peer: its own


def _hold(port: int, sources: list[str], each: int) -> tuple[list[socket.socket], int]:
    """``each`` connections from every source, each sending half a head; the ones the
    server did not refuse at once (returned, still open) and the number refused (503)."""
    held, refused = [], 0
    for source in sources:
        for _ in range(each):
            c = _connect(port, source)
            c.sendall(GET)
            held.append(c)
    time.sleep(HELD_WAIT_S)
    still = []
    for c in held:
        c.setblocking(False)
        try:
            got = c.recv(65_536)
        except BlockingIOError:
            still.append(c)
            continue
        c.setblocking(True)
        c.settimeout(ANSWER_WAIT_S)
        got += _read_until_closed(c)
        assert got == RESPONSE_503, got[:200]
        refused += 1
        c.close()
    return still, refused


def test_slow_connections_from_one_24_are_refused_beyond_its_limit(crowded: Server) -> None:
    processes = SERVING_PROCESSES[crowded.topology]
    sources = ["127.0.6.1", "127.0.6.2", "127.0.6.3"]  # one /24, three addresses
    held, refused = _hold(crowded.port, sources, PER_NETWORK_MAX)
    try:
        attempts = len(sources) * PER_NETWORK_MAX
        assert len(held) + refused == attempts
        if processes == 1:
            assert len(held) == PER_NETWORK_MAX and refused == attempts - PER_NETWORK_MAX
        else:  # each gateway counts its own share; the kernel spreads the connections
            assert PER_NETWORK_MAX <= len(held) <= PER_NETWORK_MAX * processes
        # Another /24 is served meanwhile, a fresh connection per request.
        for i in range(10):
            with _client_from(crowded, f"127.0.7.{i + 1}") as c:
                assert c.get("/healthz").status_code == 200
    finally:
        for c in held:
            c.close()


def test_slow_connections_from_several_networks_make_room_for_another(crowded: Server) -> None:
    processes = SERVING_PROCESSES[crowded.topology]
    sources = [f"127.0.{n}.1" for n in range(10, 14)]  # four networks, all slow
    text = httpx.get(crowded.url + "/metrics", timeout=ANSWER_WAIT_S).text
    displaced_before = metric(text, "lijian_connections_displaced")
    held, _ = _hold(crowded.port, sources, PER_NETWORK_MAX)
    try:
        assert len(held) <= TOTAL_MAX * processes  # the rest refused or displaced
        for i in range(10):
            with _client_from(crowded, f"127.0.14.{i + 1}") as c:
                assert c.get("/healthz").status_code == 200
    finally:
        for c in held:
            c.close()
    if processes == 1:  # the process was full: the first newcomer displaced a slow one
        text = httpx.get(crowded.url + "/metrics", timeout=ANSWER_WAIT_S).text
        assert metric(text, "lijian_connections_displaced") > displaced_before
