"""The fault suite in CI: 20 runs of tests/postgres/torture.py (``make torture`` runs 100).

Each run: the engine process (the sequencer's Engine on PostgreSQL) through a rush,
SIGKILLed at random moments and restarted,
PostgreSQL restarted once (a private cluster, so the shared server other tests use is
never disturbed); then the audit balances to the fen, nothing is overspent, no cap is
exceeded, and every acknowledged grant, capture and void is in the ledger.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.postgres.torture import private_cluster, run_once

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("torture")]
RUNS = int(os.environ.get("LIJIAN_TORTURE_RUNS", "20"))
DURATION_S = 5.0


def _can_run_a_private_cluster() -> bool:
    return os.path.isdir("/usr/lib/postgresql") and (
        os.geteuid() != 0 or shutil.which("runuser") is not None
    )


def test_kills_and_database_restarts_never_lose_or_overspend_a_fen():
    if not _can_run_a_private_cluster():
        pytest.skip("no PostgreSQL server binaries to run a private cluster")
    results = []
    with private_cluster() as c:
        for i in range(RUNS):
            r = run_once(c.url, 1000 + i, DURATION_S, 1, c.restart)
            assert not r.problems, f"seed {r.seed}: {r.problems[:10]}"
            results.append(r)
    assert sum(r.kills for r in results) >= 2 * RUNS
    assert sum(r.pg_restarts for r in results) == RUNS
    busy = [r for r in results if r.grants > 50 and r.captures > 5 and r.voids > 5]
    assert len(busy) >= RUNS // 2, [(r.seed, r.grants) for r in results]  # real load
