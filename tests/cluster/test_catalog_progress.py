"""A catalogue upload through a gateway is not given up because the sequencer is slow.

The end of an upload stores every row; while it does, the sequencer sends ``PROGRESS``
every second, and each one gives the gateway's call more time (``CATALOG_STALL_S``, up to
a limit derived from the size). Real processes: ``lijian sequencer`` on PostgreSQL with
two gateways (``Server``'s ``pg-2gw``), and an in-process ``RemoteEngine`` (the gateway's
engine, a stall limit of 1.5 s instead of a minute) on the same TLS link. The
ledger is made slow for certain by holding a lock its commit needs (the catalogue table,
locked from another session), so nothing here depends on the machine's speed. Also: a
peer that ends upload after upload cannot pile them up in the writer's queue.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from lijian.cluster.gateway import RemoteEngine
from lijian.cluster.gateway_policy import SequencerUnavailable
from lijian.cluster.tls import client_context
from lijian.cluster.uploads import STORING_PER_LINK_MAX
from lijian.port import TicketSlot
from tests.cluster.test_wire_checks import sequencer_address, wire
from tests.cluster.wire_client import OK, PROBLEM, ticket
from tests.http.harness import PG_BASE_URL, Server
from tests.http.test_catalog import eligible
from tests.support import CID

# The in-process gateway's CATALOG_STALL_S: 1.5 × the sequencer's PROGRESS_EVERY_S (1 s),
# so a word a second bridges it on a busy machine too (equal to it, one late word was
# a 503 under load).
STALL_S = 1.5
LOCK_HELD_S = 2 * STALL_S  # the ledger's commit waits this long: two stall limits
ROWS = 1_000
WAIT_S = 60.0  # bound on every wait of the test for the processes


@pytest.fixture(scope="module")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("catalog-progress"), topology="pg-2gw")
    try:
        yield s
    finally:
        s.close()


def rows(tag: str, n: int = ROWS) -> list[tuple[str, str, str]]:
    return [("jd", f"JD-P{tag}-{i:05d}", "fresh_food") for i in range(n)]


def locked_catalog(server: Server) -> psycopg.Connection[Any]:
    """A session holding a lock on the ledger's catalogue table that every insert into
    it waits for (SHARE conflicts with an insert's ROW EXCLUSIVE), until it commits."""
    conn = psycopg.connect(PG_BASE_URL, connect_timeout=5)
    conn.execute(f'LOCK TABLE "{server._schema}".catalog IN SHARE MODE')
    return conn


def insert_waits(server: Server) -> bool:
    """Whether the ledger's commit is waiting for the catalogue table's lock."""
    with psycopg.connect(PG_BASE_URL, autocommit=True, connect_timeout=5) as c:
        n = c.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            (f'"{server._schema}".catalog',),
        ).fetchone()
    return bool(n and n[0])


async def upload(server: Server, body: list[tuple[str, str, str]]) -> Any:
    """``body`` through an in-process gateway engine, signed as the operator."""
    tls = server.workdir / "tls" / "gateway-1"
    host, port = sequencer_address(server)
    gw = RemoteEngine([f"{host}:{port}"], ssl_context=client_context(tls), catalog_stall_s=STALL_S)
    await gw.start()
    try:
        signed = gw.carrier(TicketSlot(ticket("ops")))  # its last call takes the ticket
        return await signed.catalog_upsert(body, campaign_id=CID)
    finally:
        await gw.aclose()


def test_a_slow_ledger_keeps_an_upload_alive_past_the_stall_limit(pg_cluster: Server) -> None:
    lock = locked_catalog(pg_cluster)
    released = threading.Timer(LOCK_HELD_S, lock.commit)
    released.start()
    try:
        t0 = time.monotonic()
        assert asyncio.run(upload(pg_cluster, rows(uuid.uuid4().hex[:6]))) == ROWS
        # The rows could not be stored before the lock went: two stall limits, each
        # bridged by the sequencer's word that it was still at it.
        assert time.monotonic() - t0 >= LOCK_HELD_S
    finally:
        released.join()
        lock.close()


def test_a_silent_sequencer_is_a_503_that_says_the_outcome_is_unknown(pg_cluster: Server) -> None:
    seq = pg_cluster.procs[0]
    tag = uuid.uuid4().hex[:6]
    lock = locked_catalog(pg_cluster)
    stopped = False

    async def stop_while_storing() -> None:
        nonlocal stopped
        task = asyncio.ensure_future(upload(pg_cluster, rows(tag)))
        deadline = time.monotonic() + WAIT_S
        while not await asyncio.to_thread(insert_waits, pg_cluster):  # the end is storing
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        os.killpg(seq.pid, signal.SIGSTOP)  # no PROGRESS any more, nor anything else
        stopped = True
        with pytest.raises(SequencerUnavailable) as refused:
            await task
        detail = str(refused.value)
        assert detail.startswith(f"no word from the sequencer on this upload for {STALL_S:g} s"), (
            detail
        )
        assert "may or may not have been stored: sending it again is safe" in detail

    try:
        asyncio.run(stop_while_storing())
    finally:
        if stopped:
            os.killpg(seq.pid, signal.SIGCONT)
        lock.commit()
        lock.close()
    # It was stored after all (the sequencer resumed): sent again, the same rows.
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            assert asyncio.run(upload(pg_cluster, rows(tag))) == ROWS
            break
        except SequencerUnavailable:  # the lease renews after the pause
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_ends_of_uploads_cannot_pile_up_in_the_writer(pg_cluster: Server) -> None:
    """A peer sends two uploads' parts, then three ends in one frame: the third is
    refused (503 overloaded) while the first two are being stored. (The rows of ended
    uploads also stay counted against the sequencer's bound on buffered rows until
    stored: cluster/uploads.py.)"""
    c = wire(pg_cluster)
    tag = uuid.uuid4().hex[:6]
    try:
        for upload_id in (1, 2):
            body = [list(r) for r in rows(f"{tag}{upload_id}", 10)]
            assert c.ok("catalog_rows", [upload_id, body]) == 10
        # One frame: the three ends are taken in turn before any store can begin.
        ends = [[n, "catalog", ticket("ops"), [n, 10 if n < 3 else 0, CID]] for n in (1, 2, 3)]
        c.send(ends)
        got = c.answers(3)
        assert {n: (a.kind, a.payload) for n, a in got.items() if n < 3} == {
            1: (OK, 10),
            2: (OK, 10),
        }
        assert got[3].kind == PROBLEM
        status, code, detail, _errors, headers = got[3].payload
        assert (status, code, headers) == (503, "overloaded", {"Retry-After": "1"})
        assert detail == (
            f"{STORING_PER_LINK_MAX} catalogue uploads of this connection are being stored"
        )
        # Stored: a fourth end is taken again (an empty upload, stored at once).
        assert c.ok("catalog", [4, 0, CID], ticket("ops")) == 0
    finally:
        c.close()


def test_an_upload_through_a_gateway_succeeds_on_a_loaded_machine(pg_cluster: Server) -> None:
    """200,000 lines through a real gateway while every core is busy with a CPU hog."""
    n = 200_000
    tag = uuid.uuid4().hex[:6]
    body = "".join(
        f'{{"sku":"JD-L{tag}-{i:06d}","category":"fresh_food","platform":"jd"}}\n' for i in range(n)
    ).encode()
    hog = "while True: pass"
    hogs = [
        subprocess.Popen([sys.executable, "-c", hog], start_new_session=True)
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        r = pg_cluster.api.put_catalog(body)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": n}
    assert eligible(pg_cluster.api, f"JD-L{tag}-{n - 1:06d}")
    assert not eligible(pg_cluster.api, f"JD-L{tag}-{n:06d}")
