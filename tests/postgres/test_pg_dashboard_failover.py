"""The dashboard through a gateway across a failover: an active sequencer and a standby
on PostgreSQL, a gateway given both sequencers and both dashboard URLs. After the
active one is killed and the standby took the lease, the dashboard through the gateway
serves again (a new login: each sequencer signs its own sessions); with the killed one
back as a standby (its port bound and silent) it still does."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.test_dashboard_urls import log_in
from tests.postgres.test_pg_failover import HEAL_TIMEOUT_S, Procs, wait_for

pytestmark = pytest.mark.xdist_group("postgres")


def serves(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def home_page(url: str, procs: Procs) -> httpx.Response:
    """The dashboard's page after a login, asked again while no sequencer serves it."""
    deadline = time.monotonic() + HEAL_TIMEOUT_S
    while True:
        try:
            return log_in(url)
        except AssertionError:
            assert time.monotonic() < deadline, procs.tail()
            time.sleep(0.2)


def test_dashboard_through_a_gateway_after_a_failover(tmp_path: Path, pg_url: str) -> None:
    procs = Procs(tmp_path, pg_url)
    http = [f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}" for cmd in procs.seq_cmds]
    procs.gw_cmds[0] += [a for u in http for a in ("--dashboard-url", u)]
    gw = procs.urls[0]
    try:
        procs.start_sequencer(0, standby=False)
        wait_for(lambda: serves(http[0]), "the active sequencer", procs)
        procs.start_sequencer(1, standby=True)
        procs.start_gateway(0)
        wait_for(lambda: serves(gw), "the gateway", procs)
        assert "立减" in home_page(gw, procs).text
        procs.kill(procs.seqs[0])  # its HTTP port closes with it
        wait_for(lambda: procs.active() == 1 and serves(http[1]), "the takeover", procs)
        home = home_page(gw, procs)
        assert home.status_code == 200 and "立减" in home.text, home.text[:300]
        # The killed one back as the standby: its port is bound but silent.
        procs.start_sequencer(0, standby=True)
        wait_for(lambda: procs.waiting(0), "the new standby", procs)
        home = home_page(gw, procs)
        assert home.status_code == 200 and "立减" in home.text, home.text[:300]
    finally:
        procs.stop_all()
