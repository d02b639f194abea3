"""Receivers that try to hold or exhaust the ledger's process (events/delivery.py;
docs/SECURITY.md, "Webhooks"): real HTTP receivers on asyncio servers of their own, a
real ``lijian serve``.

- an endless 200 body: the delivery reads at most 4 KiB of it, drops the connection and
  counts the event delivered; the serving process's RSS stays flat although the
  receiver would send 500 MiB;
- a body trickled one byte every 4 s: each attempt is cut at the attempt deadline and
  the event is tried again by the usual back-off, then delivered once the receiver
  answers properly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from lijian.events.delivery import ATTEMPT_DEADLINE_S, BACKOFF_FIRST_S
from tests.events.receiver import webhooks_toml
from tests.http import harness
from tests.http.harness import Server, campaign_doc, free_port, metric, order

pytestmark = pytest.mark.xdist_group("webhooks")
ALERTS = {"tranche_remaining_pct": [50]}
SMALL = {"budget_fen": 170_000}  # 10,000 fen a day; each grant 3,720
ENDLESS_BYTES = 500 * 1024 * 1024  # what the endless receiver is ready to send
CHUNK_BYTES = 1024 * 1024
RSS_GROWTH_MAX_BYTES = 50 * 1024 * 1024
SENT_BEFORE_DROP_MAX_BYTES = 64 * 1024 * 1024  # socket buffers, far below 500 MiB
TRICKLE_EVERY_S = 4.0
TRICKLED_ATTEMPTS = 2  # then the receiver answers 204
LATE_MAX_S = 3.0  # an attempt's end or the next start may lag this much on a loaded box
WAIT_S = 90.0


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Coroutine[Any, Any, None]]


class AsyncReceiver:
    """An HTTP receiver on its own event loop in a thread: reads each request (head and
    Content-Length body), then lets ``handler`` answer; notes what happened."""

    def __init__(self, handler: Handler) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.handler = handler
        self.attempts: list[float] = []  # monotonic time each request arrived
        self.ended: list[float] = []  # monotonic time each connection was dropped
        self.sent: list[int] = []  # body bytes sent per answer until the drop
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.attempts.append(time.monotonic())
                await self.handler(reader, writer, len(self.attempts))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended.append(time.monotonic())
            writer.close()

    def __enter__(self) -> AsyncReceiver:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def serving(tmp: Path, url: str, mp: pytest.MonkeyPatch) -> Iterator[Server]:
    plain = harness.clients_toml
    hooks = webhooks_toml(url, events=["tranche.threshold"])
    mp.setattr(harness, "clients_toml", lambda: plain() + "\n" + hooks)
    try:
        server = Server(tmp, [campaign_doc(campaign=SMALL, alerts=ALERTS)], topology="one")
    finally:
        mp.setattr(harness, "clients_toml", plain)
    try:
        yield server
    finally:
        server.close()


def webhook_figures(server: Server, url: str) -> tuple[float, float]:
    text = server.api.get("/metrics", signed=False).text
    return (
        metric(text, f'lijian_webhook_deliveries_total{{receiver="{url}"}}'),
        metric(text, f'lijian_webhook_failures_total{{receiver="{url}"}}'),
    )


def wait_until(what: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not what():
        assert time.monotonic() < deadline
        time.sleep(0.1)


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % ENDLESS_BYTES)
    sent, chunk = 0, b"x" * CHUNK_BYTES
    try:
        while sent < ENDLESS_BYTES:
            writer.write(chunk)
            await writer.drain()
            sent += CHUNK_BYTES
    finally:
        receiver_sent.append(sent)


receiver_sent: list[int] = []


def test_an_endless_200_body_keeps_the_ledger_process_flat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver_sent.clear()
    with AsyncReceiver(endless) as receiver, serving(tmp_path, receiver.url, monkeypatch) as s:
        assert s.proc is not None
        before = rss_bytes(s.proc.pid)
        s.api.granted(order())
        s.api.granted(order())  # 2,560 left: under 50 %, one event
        wait_until(lambda: webhook_figures(s, receiver.url)[0] >= 1)
        wait_until(lambda: len(receiver_sent) >= 1)  # the receiver saw the drop
        after = rss_bytes(s.proc.pid)
        delivered, failures = webhook_figures(s, receiver.url)
    assert (delivered, failures) == (1.0, 0.0)
    assert len(receiver.attempts) == 1
    assert receiver_sent[0] < SENT_BEFORE_DROP_MAX_BYTES, receiver_sent
    assert after - before < RSS_GROWTH_MAX_BYTES, (before, after)


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    if n > TRICKLED_ATTEMPTS:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        writer.write(b"x")
        await writer.drain()
        with contextlib.suppress(TimeoutError):  # the client closing ends the wait
            if not await asyncio.wait_for(reader.read(1), TRICKLE_EVERY_S):
                raise ConnectionError("dropped by the delivery")
    raise AssertionError("never reached: the delivery gives up first")


def test_a_trickling_receiver_is_cut_at_the_deadline_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AsyncReceiver(trickle) as receiver, serving(tmp_path, receiver.url, monkeypatch) as s:
        s.api.granted(order())
        s.api.granted(order())  # under 50 %: one event
        wait_until(lambda: webhook_figures(s, receiver.url)[0] >= 1)
        delivered, failures = webhook_figures(s, receiver.url)
    assert (delivered, failures) == (1.0, float(TRICKLED_ATTEMPTS))
    starts = receiver.attempts
    assert len(starts) == TRICKLED_ATTEMPTS + 1
    for i in range(TRICKLED_ATTEMPTS):
        # Cut at the deadline (the trickle alone would take 4,000 s)...
        held_s = receiver.ended[i] - starts[i]
        assert ATTEMPT_DEADLINE_S - LATE_MAX_S <= held_s <= ATTEMPT_DEADLINE_S + LATE_MAX_S
        # ...then tried again after the back-off.
        gap_s = starts[i + 1] - starts[i]
        low_s = ATTEMPT_DEADLINE_S + BACKOFF_FIRST_S - LATE_MAX_S
        assert low_s <= gap_s <= ATTEMPT_DEADLINE_S + 1.0 + LATE_MAX_S, gap_s  # back-off ≤ 0.5 s
