"""`lijian serve --workers 2` heals itself: a gateway killed with SIGKILL is replaced
while the other keeps serving; a killed sequencer is replaced and rebuilds its ledger
from the log; a PostgreSQL restart makes the sequencer fail-stop, exit and come back.
Every acknowledged grant is still there afterwards and the audit balances.

The PostgreSQL restart uses a private cluster (tests/postgres/torture.py), so the shared
server other tests use is never disturbed.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from lijian.audit import audit_db
from tests.http.harness import Server, alive, metric, order, pids
from tests.postgres.torture import private_cluster

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("torture")]
HEAL_TIMEOUT_S = 60.0


def wait_for(cond, what: str, timeout_s: float = HEAL_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def grant_when_healed(server: Server) -> dict:
    """Redeem until a 201 (503 while the ledger is away); every attempt is new."""

    def attempt():
        try:
            r = server.api.redeem(order())
        except httpx.TransportError:
            return None
        if r.status_code == 503:
            assert r.headers.get("retry-after"), r.text
            return None
        assert r.status_code == 201, r.text
        return r.json()

    return wait_for(attempt, "a grant after the fault")


def assert_served_held(server: Server, granted: list[str], min_restarts: int) -> None:
    """Every acknowledged grant is still held, and the supervisor restarted a process."""
    for rid in granted:
        r = server.api.get(f"/v1/redemptions/{rid}")
        assert r.status_code == 200 and r.json()["status"] == "held", r.text
    text = server.api.get("/metrics", signed=False).text
    assert metric(text, "lijian_supervisor_restarts") >= min_restarts


def assert_audit_balances(url: str, granted: list[str]) -> None:
    """After the server stopped: a replay from zero passes and has every grant's entry."""
    rep = audit_db(url)
    assert rep.ok, rep.violations
    assert rep.entries >= len(granted)


def test_killed_processes_and_a_database_restart_heal_without_losing_a_grant(tmp_path):
    with private_cluster() as pg:
        s = Server(tmp_path, db=pg.url, topology="pg-w2")
        try:
            granted = [s.api.granted(order())["id"] for _ in range(5)]
            first = pids(s)
            assert set(first) == {"sequencer", "gateway-0", "gateway-1"}, first
            # 1. A gateway dies: the other serves on, a new one takes its place.
            os.kill(first["gateway-0"], signal.SIGKILL)
            granted.append(grant_when_healed(s)["id"])
            wait_for(lambda: pids(s)["gateway-0"] != first["gateway-0"]
                     and alive(pids(s)["gateway-0"]), "a replacement gateway")  # fmt: skip
            # 2. The sequencer dies: gateways answer 503 until its replacement recovered.
            os.kill(first["sequencer"], signal.SIGKILL)
            granted.append(grant_when_healed(s)["id"])
            # 3. PostgreSQL restarts under the sequencer.
            pg.restart()
            granted.append(grant_when_healed(s)["id"])
            assert_served_held(s, granted, min_restarts=2)
        finally:
            s.close()
        assert_audit_balances(pg.url, granted)


def test_one_process_on_postgres_heals_from_a_database_restart(tmp_path):
    """`lijian serve` (one process) on PostgreSQL: its parent starts it again after the
    commit that failed when the database went away, and it rebuilds from the log."""
    with private_cluster() as pg:
        s = Server(tmp_path, db=pg.url, topology="one")
        try:
            granted = [s.api.granted(order())["id"] for _ in range(3)]
            pg.restart()
            granted.append(grant_when_healed(s)["id"])
            granted.append(s.api.granted(order())["id"])
            assert_served_held(s, granted, min_restarts=1)
        finally:
            s.close()
        assert_audit_balances(pg.url, granted)
