"""The supervisor's warm spare on PostgreSQL: a sequencer process started 5 s after the
sequencer serves, that takes nothing (no lease, no log) until its sequencer dies, then
replaces it at once (``"started"`` with ``warm``), with every acknowledged grant kept and
the audit balanced; a new spare follows 5 s after that one serves; a clean stop ends the
spare too.
"""

from __future__ import annotations

import json
import os
import signal

import psycopg
import pytest

from tests.http.harness import Server, alive, order, pids
from tests.postgres.test_pg_cluster import (
    assert_audit_balances,
    assert_served_held,
    grant_when_healed,
    wait_for,
)
from tests.postgres.torture import private_cluster

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("torture")]


def log_records(server: Server, event: str) -> list[dict]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"event":"{event}"' in line:
            out.append(json.loads(line))
    return out


def spares(server: Server) -> list[int]:
    return [r["pid"] for r in log_records(server, "spare") if r["role"] == "sequencer"]


def lease_epoch(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT epoch FROM sequencer_lease WHERE id = 1").fetchone()
    assert row is not None
    return int(row[0])


def test_the_spare_replaces_a_dead_sequencer_at_once_and_takes_nothing_before(tmp_path):
    with private_cluster() as pg:
        s = Server(tmp_path, db=pg.url, topology="pg-w2")
        spare_pids: list[int] = []
        try:
            granted = [s.api.granted(order())["id"] for _ in range(3)]
            spare = wait_for(lambda: spares(s), "a spare")[0]
            spare_pids.append(spare)
            assert alive(spare)
            # Waiting, it holds nothing: the lease is the first sequencer's, epoch 1.
            granted.append(s.api.granted(order())["id"])
            assert lease_epoch(pg.url) == 1
            # 1. The sequencer is killed: the spare is told to go, takes the lease
            # (epoch 2) and rebuilds the ledger from the log.
            os.kill(pids(s)["sequencer"], signal.SIGKILL)
            granted.append(grant_when_healed(s)["id"])
            started = [r for r in log_records(s, "started") if r["role"] == "sequencer"]
            assert started[-1]["pid"] == spare and started[-1].get("warm") is True, started
            assert lease_epoch(pg.url) == 2
            # 2. A new spare follows; PostgreSQL restarts under the sequencer: the
            # commit fails, the process exits, the new spare replaces it.
            second = wait_for(lambda: [p for p in spares(s) if p != spare],
                              "a second spare")[0]  # fmt: skip
            spare_pids.append(second)
            pg.restart()
            granted.append(grant_when_healed(s)["id"])
            started = [r for r in log_records(s, "started") if r["role"] == "sequencer"]
            assert started[-1]["pid"] == second and started[-1].get("warm") is True, started
            assert_served_held(s, granted, min_restarts=2)
        finally:
            s.close()
        # A clean stop ends every spare with the rest (none is left waiting).
        assert not any(alive(p) for p in spare_pids if p != pids(s)["sequencer"])
        assert_audit_balances(pg.url, granted)
