"""The outbox on PostgreSQL: the same threshold and restart cases as on SQLite
(tests/events/test_outbox.py), rows in the batch's transaction."""

from __future__ import annotations

import pytest

from tests.events.test_outbox import run_restart, run_thresholds
from tests.evidence.ledger_days import Tamper

pytestmark = pytest.mark.xdist_group("postgres")


def test_thresholds_fire_once_and_resolve_on_postgres(pg_url):
    run_thresholds(pg_url)
    rows = Tamper(pg_url).run("SELECT seq, type FROM events ORDER BY seq")
    assert [r[1] for r in rows] == [
        "tranche.threshold", "budget.threshold", "tranche.threshold", "budget.threshold",
        "tranche.sold_out",
    ]  # fmt: skip


def test_a_restart_announces_nothing_twice_on_postgres(pg_url):
    run_restart(pg_url)
