"""Event streams are bounded: a connection limit, heartbeats, a lifetime, logout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from lijian.clock import parse_clock
from lijian.dashboard import routes
from lijian.dashboard.accounts import Account
from lijian.dashboard.live import EVENT_BYTES_MAX
from lijian.dashboard.routes import SSE_CONNECTIONS_MAX, Dashboard
from lijian.engine import Engine
from tests.support import CID, settings

NO_GEO = {"require_device_in_city": False, "require_address_in_city": False}


def request(cookie: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/dashboard/events",
            "query_string": f"campaign={CID}".encode(),
            "headers": [(b"cookie", f"lijian_session={cookie}".encode())],
        }
    )


@pytest.fixture
def dash(tmp_path):
    e = Engine(
        [settings(eligibility=NO_GEO)],
        tmp_path / "l.db",
        parse_clock("manual:2025-02-12T10:00:00+08:00"),
    )
    d = Dashboard(e, {"ops": Account("ops", "operator", "client", secret=b"secret-1")})
    try:
        yield d
    finally:
        e.call(d.feed.aclose)
        e.close()


def collect(d: Dashboard, cookie: str) -> tuple[int, list[bytes]]:
    async def run() -> tuple[int, list[bytes]]:
        resp: Any = await d.events(request(cookie))
        chunks = []
        if resp.status_code == 200:
            async for chunk in resp.body_iterator:
                chunks.append(chunk)
        return resp.status_code, chunks

    out: tuple[int, list[bytes]] = d.engine.call(run)
    return out


def test_a_stream_sends_a_snapshot_then_heartbeats_and_ends_in_time(dash, monkeypatch):
    monkeypatch.setattr(routes, "SSE_HEARTBEAT_S", 0.2)
    monkeypatch.setattr(routes, "SSE_STREAM_MAX_S", 1.5)
    cookie, _ = dash.signer.issue("ops", "operator")
    status, chunks = collect(dash, cookie)  # returns: the lifetime is bounded
    assert status == 200
    assert chunks[0] == b"retry: 1000\n\n"
    assert chunks[1].startswith(b"event: snapshot\ndata: {")
    assert all(len(c) <= EVENT_BYTES_MAX + 64 for c in chunks)
    # Nothing moves on a manual clock: the rest are heartbeats.
    assert chunks.count(b": heartbeat\n\n") >= 3
    assert dash.streams == 0 and dash.feed.listeners == 0


def test_a_stream_ends_with_logout_when_the_session_ends(dash, monkeypatch):
    monkeypatch.setattr(routes, "SSE_HEARTBEAT_S", 0.2)  # the session is checked each wake
    cookie, s = dash.signer.issue("ops", "operator")
    dash.signer.revoke(s)
    assert collect(dash, cookie)[0] == 401
    cookie, s = dash.signer.issue("ops", "operator")

    async def revoke_soon() -> None:
        await asyncio.sleep(0.3)
        dash.signer.revoke(s)

    tasks = []  # a reference, so the task is not collected before it runs
    dash.engine.call(lambda: tasks.append(asyncio.get_running_loop().create_task(revoke_soon())))
    status, chunks = collect(dash, cookie)
    assert status == 200 and chunks[-1].startswith(b"event: logout")


def test_streams_beyond_the_limit_are_refused(dash):
    cookie, _ = dash.signer.issue("ops", "operator")
    dash.streams = SSE_CONNECTIONS_MAX
    assert collect(dash, cookie)[0] == 503
