"""A call that raises what nobody expected is that call's answer (500, logged once by
method and place, never with its message or arguments), and the connection answers on.

The sequencer and its engine run in this process on a real SQLite file and a real TCP
socket (TLS with the link's certificates); one entry of its method table is replaced by
one that raises, since no input the checks let through is known to (that is the point
of the checks).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from lijian.clock import ManualClock
from lijian.cluster.sequencer import Sequencer, Served
from lijian.cluster.tls import client_context, server_context
from lijian.engine import Engine
from lijian.http.admission import Admission
from lijian.http.clients import load_clients
from tests.cluster.wire_client import OK, WireClient, connect, ticket
from tests.http.harness import clients_toml, link_credentials
from tests.support import CID, at, settings

SECRET = "13812345678"  # what the failure's message holds: it must not reach the log


def test_a_raising_call_is_a_500_answer_and_the_link_stays_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clients_file = tmp_path / "clients.toml"
    clients_file.write_text(clients_toml(), encoding="utf-8")
    clients = load_clients(clients_file)
    tls = link_credentials(tmp_path / "tls", 1)

    async def scenario() -> None:
        engine = Engine([settings()], tmp_path / "l.db", clock=ManualClock(at("2025-02-12 10:00")),
                        background=False)  # fmt: skip
        await engine.start()
        seq = Sequencer(engine, Admission(clients), {"settings": [], "manual_clock": True},
                        ssl_context=server_context(tls / "sequencer"))  # fmt: skip

        def boom(campaign_id: str) -> None:
            raise RuntimeError(f"person {SECRET} in {campaign_id}")

        async def boom_later(campaign_id: str) -> None:
            await asyncio.sleep(0)
            raise ZeroDivisionError(SECRET)

        seq.methods["status"] = Served(seq.methods["status"].decode, boom)
        seq.methods["audit"] = Served(seq.methods["audit"].decode, boom_later)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        await seq.listen_on(listener)
        try:
            await asyncio.to_thread(talk, listener.getsockname())
        finally:
            await seq.close()
            await engine.aclose()

    def talk(address: tuple[str, int]) -> None:
        c = WireClient(connect(address, tls / "gateway-1"))
        for method in ("status", "audit", "status"):
            assert c.problem(method, [CID], ticket("ops")) == (
                500,
                "internal_error",
                "unexpected server error",
            )
        # The same connection answers what follows.
        a = c.call("person", [CID, "p-1"], ticket("ops"))
        assert a.kind == OK and a.payload["person_id"] == "p-1"
        assert c.ok("health", [])["ok"] is True
        c.close()

    with caplog.at_level(logging.ERROR, logger="lijian.sequencer"):
        asyncio.run(scenario())
    failures = [r.getMessage() for r in caplog.records if r.name == "lijian.sequencer"]
    assert len(failures) == 3, failures  # once per failed call
    assert failures[0].startswith("call status failed: RuntimeError at ")
    assert failures[1].startswith("call audit failed: ZeroDivisionError at ")
    assert all(SECRET not in f and "test_sequencer_errors.py" in f for f in failures)


def test_a_call_resent_after_a_lost_connection_is_admitted_with_its_ticket(
    tmp_path: Path,
) -> None:
    """A gateway's signed call whose answer was lost with the connection is sent again
    with its ticket (marked resent): the sequencer, which took its nonce with the first
    send, answers it, and a plain replay of that ticket is still refused."""
    from lijian.cluster.gateway import RemoteEngine
    from lijian.port import TicketSlot
    from tests.support import CAMPAIGN_FILE

    clients_file = tmp_path / "clients.toml"
    clients_file.write_text(clients_toml(), encoding="utf-8")
    admission = Admission(load_clients(clients_file))
    tls = link_credentials(tmp_path / "tls", 1)

    async def scenario() -> None:
        engine = Engine([settings()], tmp_path / "l.db", clock=ManualClock(at("2025-02-12 10:00")),
                        background=False)  # fmt: skip
        await engine.start()
        hello = {"settings": [CAMPAIGN_FILE.read_text(encoding="utf-8")], "manual_clock": True}
        seq = Sequencer(engine, admission, hello, ssl_context=server_context(tls / "sequencer"))
        dispatch = seq._dispatch
        dropped: list[str] = []

        def drop_first_status(c: Any, link: Any) -> None:
            dispatch(c, link)  # admitted (its nonce taken) and answered into the outbox ...
            if c.method == "status" and not dropped:
                dropped.append(c.method)
                link.out.close()  # ... which the lost connection never delivers
                link.writer.close()

        seq._dispatch = drop_first_status  # type: ignore[method-assign]
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        await seq.listen_on(listener)
        host, port = listener.getsockname()
        remote = RemoteEngine([f"{host}:{port}"], ssl_context=client_context(tls / "gateway-1"),
                              connect_timeout_s=10, call_timeout_s=20)  # fmt: skip
        await remote.start()
        try:
            t = ticket("ops")
            status = await remote.carrier(TicketSlot(t)).read_status(CID)
            assert status["campaign_id"] == CID
            assert dropped == ["status"] and remote.resent == 1 and remote.reconnects == 1
            assert admission.admit(t) is not None  # the ticket itself stays used
        finally:
            await remote.aclose()
            await seq.close()
            await engine.aclose()

    asyncio.run(scenario())
