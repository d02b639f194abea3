"""Crash test on PostgreSQL: SIGKILL a granting process at random moments.

The child is the SQLite crash test's child (tests/durability/crash_child.py) given a
``postgresql://`` URL instead of a path: the engine is the same, only the store differs.
After every kill, a replay from the database must contain every grant and capture the
child printed (it prints only after the commit returned), and the audit must pass.
"""

from __future__ import annotations

import random

import pytest

from lijian.audit import audit_db
from tests.durability.test_crash import run_and_kill
from tests.postgres.pgutil import replay

pytestmark = pytest.mark.xdist_group("postgres")
KILLS = 6


@pytest.mark.slow
def test_every_acknowledged_grant_survives_sigkill_on_postgres(pg_url):
    rng = random.Random(20250213)
    acked_holds: set[str] = set()
    acked_captures: set[str] = set()
    for round_no in range(KILLS):
        for line in run_and_kill(pg_url, round_no, rng):
            kind, rid = line.split()
            (acked_holds if kind == "H" else acked_captures).add(rid)
        led = replay(pg_url)
        missing = acked_holds - set(led.redemptions)
        assert not missing, f"round {round_no}: acknowledged grants lost: {sorted(missing)[:5]}"
        lost = [r for r in acked_captures if led.redemptions[r].status != "captured"]
        assert not lost, f"round {round_no}: acknowledged captures lost"
    assert len(acked_holds) > KILLS * 200  # the child really was granting under load
    report = audit_db(pg_url)
    assert report.ok, report.violations
