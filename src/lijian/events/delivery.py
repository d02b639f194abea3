"""The delivery task: every receiver gets every event it subscribed to, in event order.

One asyncio task per receiver, on the engine's loop (the process that owns the ledger:
``lijian serve``, or the sequencer of a cluster). It reads the stored events after the
receiver's cursor in pages (a thread, its own read connection: the writer never waits),
posts each one signed like a request (docs/API.md: the four ``X-Lijian-*`` headers with the
receiver's secret and key id ``lijian``), and on any failure (no connection, timeout,
a status outside 2xx) waits and tries the same event again: back-off doubling from
``BACKOFF_FIRST_S`` to the receiver's ``backoff_max_s``, without end, so nothing is
lost and order holds (an event is never skipped to deliver a later one). A receiver is
trusted with nothing it could use to hold the ledger's process: each attempt (connect,
send, status and headers, body) has one total deadline, ``ATTEMPT_DEADLINE_S``, so a
receiver that answers a byte every few seconds is cut off at it and tried again like one
that is down; and only the first ``RESPONSE_BODY_MAX_BYTES`` of an answer are read, the
connection is dropped after them (a 2xx counts as delivered), so an endless body costs
nothing. After each delivery the cursor moves in memory and the writer commits it with
its next commit; a crash before that commit means that event comes again, with the same
id.

Grants never wait on this: the task only reads committed rows and hands the cursor to
the writer, which writes it along with whatever it commits anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import httpx

from lijian.events.model import StoredEvent
from lijian.events.outbox import Outbox
from lijian.events.receivers import SIGNING_KEY_ID, Receiver
from lijian.http.auth import sign

PAGE_EVENTS = 100  # events read per round trip
POLL_S = 1.0  # without a wake-up, look for new events this often
# One attempt, from connecting to the end of the answer's body, whatever the receiver
# does: the per-read timeouts of an HTTP client restart at every byte, so a receiver
# trickling one byte every 4 s would hold a delivery for ever under them alone.
ATTEMPT_DEADLINE_S = 10.0
CONNECT_TIMEOUT_S = 5.0  # within the deadline; a receiver that is down fails sooner
# An answer's body is not used: read this much (so a small one leaves the connection
# reusable), then drop the connection. Reading whole bodies let an endless one grow the
# ledger process without bound.
RESPONSE_BODY_MAX_BYTES = 4 * 1024
BACKOFF_FIRST_S = 0.2
STOP_TIMEOUT_S = 2.0


@dataclass(slots=True)
class ReceiverStats:
    delivered: int = 0
    failures: int = 0
    oldest_pending_ms: int | None = None  # the event being delivered, if any


class WebhookDelivery:
    def __init__(
        self,
        receivers: list[Receiver],
        read_events: Callable[[int, int], list[StoredEvent]],
        outbox: Outbox,
        tz_of: Callable[[str], ZoneInfo],
        now_ms: Callable[[], int],
    ) -> None:
        self.receivers = receivers
        self.read_events = read_events
        self.outbox = outbox
        self.tz_of = tz_of
        self.now_ms = now_ms
        self.stats = {r.url: ReceiverStats() for r in receivers}
        # A shard's node (``EventCalls.name_events``, before start): named in each
        # delivered id, as in the listing, so receivers of several shards de-duplicate.
        self.node = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        if not self.receivers:
            return
        # Imported now, before any request is served: httpx loads its async backend on
        # its first request, which would stall the loop ~30 ms (measured: first post 37 ms
        # of loop CPU, later ones 5 ms) at the very moment a threshold is crossed in a rush.
        importlib.import_module("anyio._backends._asyncio")
        timeout = httpx.Timeout(ATTEMPT_DEADLINE_S, connect=CONNECT_TIMEOUT_S)
        self._client = httpx.AsyncClient(timeout=timeout)
        loop = asyncio.get_running_loop()
        for r in self.receivers:
            wake = asyncio.Event()
            self.outbox.wakers.append(wake)
            self._tasks.append(loop.create_task(self._run(r, wake), name=f"webhook {r.url}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, STOP_TIMEOUT_S)
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def lag_s(self, url: str) -> float:
        """Age of the oldest event this receiver has not got yet (0 when it is caught up)."""
        pending = self.stats[url].oldest_pending_ms
        return 0.0 if pending is None else max(0, self.now_ms() - pending) / 1000

    async def _run(self, r: Receiver, wake: asyncio.Event) -> None:
        st = self.stats[r.url]
        cursor = self.outbox.cursors.get(r.url, 0)
        while True:
            wake.clear()  # before reading: a commit after the read wakes us again
            page = await asyncio.to_thread(self.read_events, cursor, PAGE_EVENTS)
            if not page:
                st.oldest_pending_ms = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL_S)
                continue
            for ev in page:
                if ev.type in r.events:
                    st.oldest_pending_ms = ev.occurred_ms
                    await self._deliver(r, ev, st)
                cursor = ev.seq
                self.outbox.ack(r.url, cursor)

    async def _deliver(self, r: Receiver, ev: StoredEvent, st: ReceiverStats) -> None:
        assert self._client is not None
        sent = ev.body(self.tz_of(ev.campaign_id), self.node)
        body = json.dumps(sent, ensure_ascii=False).encode()
        path = r.path_with_query
        wait_s = BACKOFF_FIRST_S
        while True:
            ts, nonce = str(int(time.time())), uuid.uuid4().hex
            headers = {
                "content-type": "application/json",
                "X-Lijian-Key": SIGNING_KEY_ID,
                "X-Lijian-Timestamp": ts,
                "X-Lijian-Nonce": nonce,
                "X-Lijian-Signature": sign(r.secret, "POST", path, ts, nonce, body),
            }
            if await self._attempt(r.url, body, headers):
                st.delivered += 1
                return
            st.failures += 1
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, r.backoff_max_s)

    async def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        """One post under one deadline: True when the receiver answered 2xx and the first
        ``RESPONSE_BODY_MAX_BYTES`` of its body (or all of a shorter one) arrived in time."""
        assert self._client is not None
        try:
            async with asyncio.timeout(ATTEMPT_DEADLINE_S):
                req = self._client.build_request("POST", url, content=body, headers=headers)
                resp = await self._client.send(req, stream=True)
                try:
                    read = 0
                    async for chunk in resp.aiter_raw():
                        read += len(chunk)
                        if read >= RESPONSE_BODY_MAX_BYTES:
                            break  # the rest is not read: closing drops the connection
                finally:
                    await resp.aclose()
                return 200 <= resp.status_code < 300
        except (httpx.HTTPError, TimeoutError):
            return False
