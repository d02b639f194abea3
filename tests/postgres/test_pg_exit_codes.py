"""The exit codes of the README's table that need PostgreSQL's lease: 3 for a sequencer
that cannot start because another one serves the ledger; 75 for a sequencer process
whose lease was taken from it, and 70 for one whose commit failed (each read from its
supervisor's ``died`` line, which then starts it again)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.http.harness import Api, catalog_ndjson, order
from tests.postgres.test_pg_failover import Procs, wait_for

pytestmark = pytest.mark.xdist_group("postgres")
LONG_TTL_S = 30.0  # no renewal comes between the theft and the next commit


def http_url(procs: Procs, i: int) -> str:
    cmd = procs.seq_cmds[i]
    return f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}"


def serves(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def died(procs: Procs, i: int) -> list[int]:
    """The exit codes of sequencer i's process, from its supervisor's log."""
    text = (procs.workdir / f"sequencer-{i}.log").read_text(errors="replace")
    lines = [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]
    return [rec["exitcode"] for rec in lines if rec.get("event") == "died"]


def steal_the_lease(db: str) -> None:
    """Another holder with a new epoch, as a takeover writes it."""
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("UPDATE sequencer_lease SET epoch = epoch + 1, holder = 'another:1'")


def test_3_when_another_sequencer_serves_the_ledger(tmp_path: Path, pg_url: str) -> None:
    procs = Procs(tmp_path, pg_url)
    try:
        procs.start_sequencer(0, standby=False)
        wait_for(lambda: serves(http_url(procs, 0)), "the first sequencer", procs)
        procs.start_sequencer(1, standby=False)  # not a standby: it waits 1.5 leases, then
        second = procs.seqs[1]
        assert second is not None
        assert second.wait(60) == 3, procs.tail()
        log = (tmp_path / "sequencer-1.log").read_text(errors="replace")
        assert "lijian sequencer: not started: another sequencer holds the ledger's lease" in log
    finally:
        procs.stop_all()


def test_75_for_a_lost_lease(tmp_path: Path, pg_url: str) -> None:
    """Noticed by the keeper's renewal or by the next commit's fence, whichever comes
    first: either way the process was deposed, and exits 75."""
    procs = Procs(tmp_path, pg_url)
    try:
        procs.start_sequencer(0, standby=False)
        wait_for(lambda: serves(http_url(procs, 0)), "the sequencer", procs)
        steal_the_lease(pg_url)
        wait_for(lambda: died(procs, 0) != [], "the deposed process's exit", procs)
        assert died(procs, 0)[0] == 75, procs.tail()
    finally:
        procs.stop_all()


def test_75_when_a_commit_finds_the_lease_taken(tmp_path: Path, pg_url: str) -> None:
    procs = Procs(tmp_path, pg_url, lease_ttl_s=LONG_TTL_S)  # the keeper renews late
    try:
        procs.start_sequencer(0, standby=False)
        url = http_url(procs, 0)
        wait_for(lambda: serves(url), "the sequencer", procs)
        api = Api(url)
        try:
            assert api.put_catalog(catalog_ndjson()).status_code == 200
            steal_the_lease(pg_url)
            # The grant's commit finds another epoch on the lease row: deposed, unanswered.
            with contextlib.suppress(httpx.TransportError):  # it may exit before answering
                assert api.redeem(order()).status_code != 201
        finally:
            api.close()
        wait_for(lambda: died(procs, 0) != [], "the deposed process's exit", procs)
        assert died(procs, 0)[0] == 75, procs.tail()
    finally:
        procs.stop_all()


def test_70_for_a_failed_commit(tmp_path: Path, pg_url: str) -> None:
    procs = Procs(tmp_path, pg_url, lease_ttl_s=LONG_TTL_S)
    try:
        procs.start_sequencer(0, standby=False)
        url = http_url(procs, 0)
        wait_for(lambda: serves(url), "the sequencer", procs)
        api = Api(url)
        try:
            assert api.put_catalog(catalog_ndjson()).status_code == 200
            with psycopg.connect(pg_url, autocommit=True) as c:  # the log cannot be written
                c.execute("ALTER TABLE entries RENAME TO entries_moved")
            with contextlib.suppress(httpx.TransportError):  # it may exit before answering
                assert api.redeem(order()).status_code != 201
        finally:
            api.close()
        wait_for(lambda: died(procs, 0) != [], "the failed process's exit", procs)
        assert died(procs, 0)[0] == 70, procs.tail()
    finally:
        procs.stop_all()
