"""Slow and idle clients over real sockets (docs/API.md, "Limits"; http/guard.py).

A flood of slow-header connections from one address (127.0.2.2) while the test's own
client (127.0.0.1, another /24) keeps redeeming; half a head, half a body and a silent
connection cut off at the deadline; an idle kept-alive connection closed; nine networks
of 1,000 slow connections each, past the process's total, while another network is
served. On every topology: with ``--workers 2`` the gateways serve the public socket,
each with its own limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lijian.http.guard import (
    BODY_TIMEOUT_S,
    CONNECTIONS_PER_PREFIX_MAX,
    HEAD_TIMEOUT_S,
    RESPONSE_408,
    RESPONSE_503,
    Limits,
    limits_from_env,
)
from tests.http.harness import LIJIAN, Api, Server, clients_toml, metric, order
from tests.support import CAMPAIGN_FILE

pytestmark = pytest.mark.xdist_group("slow-clients")  # one worker: one server per topology

FLOOD_CONNECTIONS = 9_000  # past the global limit of 8,192 of one process
CONNECTING_MAX = 500  # connection attempts in flight at once (the listen backlog is 4,096)
HEADER_LINE_EVERY_S = 1.0  # the slow client: one header line a second, never the end
REFUSED_WAIT_S = 3.0  # a refused connection is answered before it sends anything
REFUSED_LATE = b"refused after the wait"
FLOOD_BOUND_S = 30.0  # the whole flood ends within this (head deadline 10 s)
ORDINARY_REQUESTS = 20
PROBES = 3
KEEP_ALIVE_S = 2  # shortened for this module (LIJIAN_KEEP_ALIVE_S); the rest are defaults
DISCOUNT_FEN = 3_720  # 15% of the example order's 24,800 fen payable
# Processes that accept on the port the flood hits: the one process, or each gateway.
SERVING_PROCESSES = {"one": 1, "sqlite-w2": 2, "pg-w2": 2, "pg-2gw": 1}
# Connections are counted per /24 (http/guard.py): the attacker, the bystander and the
# test's own client (127.0.0.1) are each in a network of their own.
ATTACKER, BYSTANDER = "127.0.2.2", "127.0.3.3"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    os.environ["LIJIAN_KEEP_ALIVE_S"] = str(KEEP_ALIVE_S)  # the children inherit it
    try:
        s = Server(Path(tmp_path_factory.mktemp(f"slow-{topology}")), topology=topology)
    finally:
        del os.environ["LIJIAN_KEEP_ALIVE_S"]
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module", autouse=True)
def _many_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD_CONNECTIONS + 2_000
    assert hard == resource.RLIM_INFINITY or hard >= wanted, f"RLIMIT_NOFILE hard {hard}"
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _probe(port: int) -> bytes:
    """A connection from the attacker's address that sends nothing: what it is told."""
    with socket.create_connection(("127.0.0.1", port), FLOOD_BOUND_S, (ATTACKER, 0)) as c:
        out = b""
        with contextlib.suppress(ConnectionError):
            while chunk := c.recv(65_536):
                out += chunk
        return out


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _read_all(reader: asyncio.StreamReader, bound_s: float) -> bytes:
    """What the server sends until it closes (a reset counts as a close)."""
    out = b""
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(bound_s):
            while chunk := await reader.read(65_536):
                out += chunk
    return out


class Flood:
    """The attacker's side, on its own event loop in a thread: counts what it sees."""

    def __init__(self, port: int, processes: int) -> None:
        self.port = port
        self.full_at = CONNECTIONS_PER_PREFIX_MAX * processes
        self.held = 0  # connections not refused, trickling their head
        self.timed_out = 0  # connections the server closed at the head deadline
        self.refused_late = 0  # accepted by the server only after REFUSED_WAIT_S
        self.filled = threading.Event()  # every serving process holds its full share
        self.answers: list[bytes] = []

    async def client(self, gate: asyncio.Semaphore) -> bytes:
        """Connect, then trickle a head that never ends; what the server answered."""
        async with gate:
            reader, writer = await _open(self.port, ATTACKER)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFUSED_WAIT_S):
                    try:
                        first = await reader.read(65_536)
                    except ConnectionError:
                        return b"reset before any answer"
                    return first + await _read_all(reader, FLOOD_BOUND_S)
            self.held += 1
            if self.held - self.timed_out - self.refused_late >= self.full_at:
                self.filled.set()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: lijian\r\n")
            answer = asyncio.ensure_future(_read_all(reader, FLOOD_BOUND_S))
            i = 0
            while not answer.done():
                await asyncio.wait([answer], timeout=HEADER_LINE_EVERY_S)
                with contextlib.suppress(ConnectionError):
                    writer.write(b"X-Slow-%d: %s\r\n" % (i, b"x" * 32))
                i += 1
            got = await answer
            if got == RESPONSE_408:
                self.timed_out += 1
                return got
            # Connected, but left in the listen queue past REFUSED_WAIT_S (a loaded
            # machine), then refused: the 503, or a reset that overtook it because the
            # head had been sent meanwhile. A refusal either way.
            self.refused_late += 1
            return REFUSED_LATE if got in (RESPONSE_503, b"") else got
        finally:
            writer.close()

    async def run(self) -> None:
        gate = asyncio.Semaphore(CONNECTING_MAX)
        async with asyncio.timeout(FLOOD_BOUND_S + 15):  # a loaded machine opens slowly
            clients = [self.client(gate) for _ in range(FLOOD_CONNECTIONS)]
            self.answers = list(await asyncio.gather(*clients))


@pytest.mark.slow  # thousands of slow sockets; make test runs it
def test_a_slow_header_flood_from_one_address_starves_no_one(
    guarded: Server, topology: str
) -> None:
    """9,000 slow-header connections from 127.0.2.2: at most the per-network limit of
    them are held (per serving process), the others are refused at once with 503, the
    held ones get 408 at the head deadline; meanwhile every ordinary request from
    127.0.0.1 is answered exactly."""
    api = guarded.api
    before = api.status()["today"]["held_fen"]
    counted = _guard_figures(guarded)
    flood = Flood(guarded.port, SERVING_PROCESSES[topology])
    thread = threading.Thread(target=asyncio.run, args=(flood.run(),), daemon=True)
    thread.start()
    assert flood.filled.wait(FLOOD_BOUND_S), f"only {flood.held} slow connections held"
    # Now every process holds its limit of this address's connections: one more is
    # refused at once, before it sends anything.
    for _ in range(PROBES):
        assert _probe(guarded.port) == RESPONSE_503
    for _ in range(ORDINARY_REQUESTS):
        r = api.redeem(order())
        assert r.status_code == 201, r.text
        assert r.json()["discount_fen"] == DISCOUNT_FEN
        q = api.post("/v1/quotes", order())
        assert q.status_code == 200, q.text
        assert q.json()["discount_fen"] == DISCOUNT_FEN
    # The premise: all of that was answered while the flood held its connections.
    assert flood.timed_out == 0
    thread.join(FLOOD_BOUND_S + 20)
    assert not thread.is_alive(), "the flood did not end"
    answers = Counter(flood.answers)
    held, refused = answers[RESPONSE_408], answers[RESPONSE_503] + answers[REFUSED_LATE]
    assert held + refused == FLOOD_CONNECTIONS, {a[:40]: n for a, n in answers.items()}
    assert held == flood.timed_out >= flood.full_at
    assert answers[REFUSED_LATE] == flood.refused_late
    assert api.status()["today"]["held_fen"] == before + ORDINARY_REQUESTS * DISCOUNT_FEN
    if SERVING_PROCESSES[topology] == 1:  # else each gateway has its own figures
        after = _guard_figures(guarded)
        assert after["lijian_connections_refused"] - counted["lijian_connections_refused"] == (
            refused + PROBES
        )
        assert after["lijian_requests_timed_out"] - counted["lijian_requests_timed_out"] == held


NETWORKS = 9  # the attacker's /24s, each just under its own limit
PER_NETWORK = 1_000  # slow connections each keeps open (the limit is 1,024)
CROWD_PROBES = 20
CROWD_HEAD_TIMEOUT_S = 90


class Crowd:
    """Slow connections from several networks, each kept at ``PER_NETWORK``: a
    connection the server closes (408, or 503 refused or displaced) is opened again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = asyncio.Event()
        self.open = 0
        self.connected = 0  # connections that connected at least once
        self.answers: Counter[bytes] = Counter()

    async def one(self, source: str, gate: asyncio.Semaphore) -> None:
        first = True
        while not self.stop.is_set():
            async with gate:
                try:
                    reader, writer = await _open(self.port, source)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
            self.open += 1
            if first:
                first, self.connected = False, self.connected + 1
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: lijian\r\n")  # never ends
                closed = asyncio.ensure_future(_read_all(reader, FLOOD_BOUND_S))
                stop = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait([closed, stop], return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if closed.done():
                    self.answers[closed.result()[:12]] += 1
                else:
                    closed.cancel()
            finally:
                self.open -= 1
                writer.close()

    async def run(self, full: threading.Event) -> None:
        gate = asyncio.Semaphore(CONNECTING_MAX)
        sources = [f"127.0.{30 + n}.1" for n in range(NETWORKS)]
        tasks = [asyncio.ensure_future(self.one(s, gate)) for s in sources
                 for _ in range(PER_NETWORK)]  # fmt: skip
        # Every one of them has reached the server: past its total (and uvicorn's 8,192,
        # beyond which it used to answer 503 to every request).
        while self.connected < NETWORKS * PER_NETWORK and not self.stop.is_set():
            await asyncio.sleep(0.1)
        full.set()
        await self.stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.slow  # thousands of slow sockets; make test runs it
def test_slow_connections_from_nine_networks_starve_no_one(tmp_path: Path) -> None:
    """9 networks × 1,000 slow connections, each network under its limit, together past
    the process's total of 8,000: another network's requests, each on a new connection,
    are all answered (they take the place of the crowd's slowest). The head deadline is
    a minute here, so that the crowd, opened at a few hundred connections a second on a
    loaded machine, is all there at once."""
    os.environ["LIJIAN_HEAD_TIMEOUT_S"] = str(CROWD_HEAD_TIMEOUT_S)
    try:
        server = Server(tmp_path, catalog=False)
    finally:
        del os.environ["LIJIAN_HEAD_TIMEOUT_S"]
    crowd = Crowd(server.port)
    full = threading.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(crowd.run(full),))
    thread.start()
    statuses = []
    try:
        assert full.wait(CROWD_HEAD_TIMEOUT_S), f"only {crowd.connected} slow connections made"
        for i in range(CROWD_PROBES):
            transport = httpx.HTTPTransport(local_address=f"127.0.40.{i + 1}")
            with httpx.Client(base_url=server.url, transport=transport, timeout=30) as c:
                statuses.append(c.get("/healthz").status_code)
    finally:
        loop.call_soon_threadsafe(crowd.stop.set)
        thread.join(FLOOD_BOUND_S + 30)
        server.close()
    assert not thread.is_alive()
    assert statuses == [200] * CROWD_PROBES, (statuses, crowd.answers)


def _guard_figures(server: Server) -> dict[str, float]:
    """The guard's figures of the process serving ``server.url`` (its /metrics)."""
    text = httpx.get(server.url + "/metrics", timeout=30).text
    names = ("lijian_connections_open", "lijian_connections_refused", "lijian_requests_timed_out")
    return {n: metric(text, n) for n in names}


async def _cut_off(port: int) -> dict[str, bytes]:
    """Each way of being slow, at once, from one address; what the server sent on each
    until it closed."""
    bound_s = HEAD_TIMEOUT_S + BODY_TIMEOUT_S + 10

    async def half_head() -> bytes:
        reader, writer = await _open(port, BYSTANDER)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: lijian\r\nX-Half: ")
        return await _read_all(reader, bound_s)

    async def half_body() -> bytes:
        # Signed for the whole body, so the server reads it; a third of it comes.
        body = json.dumps(order()).encode()
        signed = Api(f"http://127.0.0.1:{port}").signature_headers("POST", "/v1/quotes", body)
        head = "".join(f"{k}: {v}\r\n" for k, v in signed.items()).encode()
        reader, writer = await _open(port, BYSTANDER)
        writer.write(
            b"POST /v1/quotes HTTP/1.1\r\nHost: lijian\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n%s\r\n%s" % (len(body), head, body[: len(body) // 3])
        )
        return await _read_all(reader, bound_s)

    async def silent() -> bytes:
        reader, _ = await _open(port, BYSTANDER)
        return await _read_all(reader, bound_s)

    async def idle_after_an_answer() -> bytes:
        reader, writer = await _open(port, BYSTANDER)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: lijian\r\n\r\n")
        return await _read_all(reader, bound_s)

    async def second_head_half() -> bytes:
        reader, writer = await _open(port, BYSTANDER)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: lijian\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        first = head + await reader.readexactly(length)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: lijian\r\n")  # and never the end
        return first + b"|" + await _read_all(reader, bound_s)

    names = ["half_head", "half_body", "silent", "idle_after_an_answer", "second_head_half"]
    ways = [half_head(), half_body(), silent(), idle_after_an_answer(), second_head_half()]
    return dict(zip(names, await asyncio.gather(*ways), strict=True))


def test_half_a_head_half_a_body_and_silence_are_cut_off(guarded: Server) -> None:
    """408 and a close at the head deadline (also for the second request on a kept-alive
    connection), at the body deadline, and for a connection that sends nothing; a
    kept-alive connection left idle after its answer is closed without a word."""
    got = asyncio.run(_cut_off(guarded.port))
    assert got["half_head"] == RESPONSE_408
    assert got["half_body"] == RESPONSE_408
    assert got["silent"] == RESPONSE_408
    ok = guarded.api.http.get("/healthz")
    assert ok.status_code == 200
    answer = got["idle_after_an_answer"]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(ok.content)
    first, _, rest = got["second_head_half"].partition(b"|")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(ok.content)
    assert rest == RESPONSE_408
    # Served as usual afterwards, from that address too.
    assert asyncio.run(_one_healthz(guarded.port)).endswith(ok.content)


async def _one_healthz(port: int) -> bytes:
    reader, writer = await _open(port, BYSTANDER)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: lijian\r\nConnection: close\r\n\r\n")
    return await _read_all(reader, HEAD_TIMEOUT_S)


def test_the_limits_come_from_the_environment_and_a_bad_one_stops_serve(
    tmp_path: Path,
) -> None:
    base = Limits(keep_alive_s=30)
    env = {"LIJIAN_HEAD_TIMEOUT_S": "2.5", "LIJIAN_PER_PREFIX_MAX": "64",
           "LIJIAN_HEAD_MAX_BYTES": "8192", "LIJIAN_CONNECTIONS_MAX": "500"}  # fmt: skip
    assert limits_from_env(base, env) == Limits(
        head_timeout_s=2.5, per_prefix_max=64, keep_alive_s=30, head_max_bytes=8192,
        connections_max=500,
    )  # fmt: skip
    for bad in ("0", "-1", "ten"):
        with pytest.raises(ValueError, match="LIJIAN_BODY_TIMEOUT_S"):
            limits_from_env(base, {"LIJIAN_BODY_TIMEOUT_S": bad})
    clients = tmp_path / "clients.toml"
    clients.write_text(clients_toml(), encoding="utf-8")
    cmd = [str(LIJIAN), "serve", "--campaign", str(CAMPAIGN_FILE), "--clients", str(clients),
           "--db", str(tmp_path / "l.db"), "--port", "1"]  # fmt: skip
    done = subprocess.run(
        cmd, check=False, env={**os.environ, "LIJIAN_PER_PREFIX_MAX": "many"},
        capture_output=True,
        timeout=120, text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "LIJIAN_PER_PREFIX_MAX: expected a positive number, got 'many'" in done.stderr
    assert "Traceback" not in done.stderr
