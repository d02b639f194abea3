"""The lease is held through a recovery longer than the lease itself.

A sequencer takes the lease before it replays the log. Its keeper process renews the
lease from that moment (cluster/keeper.py), so a recovery that takes several lease
lengths (here: a ledger of 60,000 grants, recovered in about 2 s, with a 0.5 s lease)
never lets a waiting standby take over. Before the keeper, the lease lapsed mid-recovery,
the standby took it, the first was deposed, and the two took turns without answering
anything.

Then the active sequencer's serving process is killed: its supervisor starts it again,
it takes its own lease back (one new epoch), recovers while the standby waits, and
serves. Then the whole active sequencer dies: the standby takes over (one more epoch),
recovers and serves, and nobody takes the lease from it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import psycopg
import pytest

from lijian.audit import audit_db
from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.order import Address, Item, Location, Order, Person
from lijian.core.settings import parse_settings
from lijian.engine import Engine
from tests.http.harness import Api, campaign_doc, catalog_ndjson, order
from tests.postgres.pgutil import child_pids, cmdline_has, descendant_pids
from tests.postgres.test_pg_failover import Procs, answered_get, wait_for
from tests.support import CID, TIANFU_SQUARE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lease_recovery")]
LEASE_TTL_S = 0.5  # the shortest lease `--lease-ttl` takes
LEDGER_GRANTS = 60_000  # recovered in ~2 s here: about four lease lengths
BATCH = 20_000
BUDGET_FEN = 10**12  # every grant of the test fits in the first tranche
SKUS = [f"JD-{i}" for i in range(1, 21)]
GRANTS_PER_PHASE = 30
WATCH_S = 3.0  # after each phase: this long with the same epoch, the standby waiting


def _doc() -> dict:
    return campaign_doc(campaign={"budget_fen": BUDGET_FEN})


def build_ledger(url: str) -> int:
    """LEDGER_GRANTS held grants through the engine itself (real rules, real store)."""
    settings = parse_settings(_doc())
    clock = parse_clock("manual:2025-02-12T10:00:00+08:00")
    engine = Engine([settings], url, clock, max_batch=8192, background=True)
    try:
        Blocking(engine).catalog_upsert([("jd", sku, "home_textiles") for sku in SKUS])
        Blocking(engine).set_clock(advance_ms=1)
        for start in range(0, LEDGER_GRANTS, BATCH):
            calls = [
                (
                    Order(
                        CID,
                        "jd",
                        f"B-{i}",
                        "unionpay",
                        Person(f"pb-{i}", True),
                        [Item(SKUS[i % len(SKUS)], 1, 12_900)],
                        Location(TIANFU_SQUARE[0], TIANFU_SQUARE[1], "gcj02"),
                        Address("510104"),
                    ),
                    "unionpay",
                    f"b-{i}",
                    "fp",
                )
                for i in range(start, start + BATCH)
            ]
            outs = Blocking(engine).redeem_many(calls)
            assert [o.status for o in outs] == [201] * BATCH, outs[0].body
        return engine.store.last_seq
    finally:
        engine.close()


def lease_row(url: str) -> tuple[int, str]:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT epoch, holder FROM sequencer_lease").fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def grant_some(api: Api, n: int) -> None:
    """``n`` fresh orders, each retried with its key until answered: every one a 201."""
    for _ in range(n):
        body, key = order(), uuid.uuid4().hex
        deadline = time.monotonic() + 120
        while True:
            r = api.redeem(body, key=key)
            if r.status_code == 201:
                break
            assert r.status_code == 503 and time.monotonic() < deadline, r.text
            time.sleep(0.05)


def hold_steady(url: str, procs: Procs, epoch: int, holder: str, standby: int) -> None:
    """For WATCH_S: the lease stays with ``holder`` at ``epoch``; the standby waits."""
    taken_before = _log(procs, standby).count("lease taken")
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        assert lease_row(url) == (epoch, holder), procs.tail()
        time.sleep(0.05)
    assert _log(procs, standby).count("lease taken") == taken_before, procs.tail()


def _log(procs: Procs, i: int) -> str:
    return (procs.workdir / f"sequencer-{i}.log").read_text(errors="replace")


def _started_pid(procs: Procs, i: int) -> int:
    """The pid of sequencer ``i``'s serving process (its supervisor's last "started")."""
    started = [json.loads(line) for line in _log(procs, i).splitlines()
               if line.startswith("{") and '"event":"started"' in line]  # fmt: skip
    return int(started[-1]["pid"])


def test_recovery_longer_than_the_lease_keeps_it_and_takeovers_serve(tmp_path, pg_url):
    entries = build_ledger(pg_url)
    assert entries > LEDGER_GRANTS
    procs = Procs(tmp_path, pg_url, lease_ttl_s=LEASE_TTL_S, doc=_doc())
    api = None
    try:
        # 1. Sequencer 0 takes the lease and recovers; sequencer 1 waits as a standby.
        procs.start_sequencer(0, standby=False)
        wait_for(lambda: _has_lease(pg_url), "the first lease", procs)
        procs.start_sequencer(1, standby=True)
        procs.start_gateway(0)
        procs.start_gateway(1)
        procs.wait_ready()
        wait_for(lambda: procs.waiting(1), "the standby", procs)
        api = Api(*procs.urls)
        assert api.put_catalog(catalog_ndjson()).status_code == 200
        epoch, holder = lease_row(pg_url)
        assert epoch == 1 and procs.active() == 0
        grant_some(api, GRANTS_PER_PHASE)
        hold_steady(pg_url, procs, 1, holder, standby=1)

        # 2. The serving process dies. Its supervisor starts it again; whichever takes
        # the lease next (that new process, or the standby once the short lease lapsed)
        # recovers for several lease lengths holding it, serves, and keeps it while the
        # other waits. (Before the keeper: the lease lapsed mid-recovery, the other took
        # it, the first was deposed, and so on in turn, answering nothing.)
        seq0 = procs.seqs[0]
        assert seq0 is not None
        # The serving process: the one the supervisor logged as started, forked by its
        # fork server (the others: the server, its warm spare if started yet, and
        # multiprocessing's resource tracker).
        serving = [p for p in descendant_pids(seq0.pid) if p == _started_pid(procs, 0)]
        assert len(serving) == 1, serving
        assert [cmdline_has(p, b"lijian.cluster.keeper") for p in child_pids(serving[0])] == [True]
        # The waits are counted from before the kill: the one that does not take the
        # lease may say it waits before this test sees the new epoch (a warm spare that
        # followed the log takes over within a poll of the lease row).
        procs.mark_waits(0)
        procs.mark_waits(1)
        os.kill(serving[0], signal.SIGKILL)
        wait_for(lambda: lease_row(pg_url)[0] == 2, "the next lease", procs)
        active = procs.active()
        wait_for(lambda: procs.waiting(1 - active), "the other one waiting", procs)
        grant_some(api, GRANTS_PER_PHASE)
        hold_steady(pg_url, procs, 2, lease_row(pg_url)[1], standby=1 - active)

        # 3. The whole active sequencer dies: the other one takes over (epoch 3),
        # recovers for several lease lengths holding the lease, and serves.
        procs.kill(procs.seqs[active])
        wait_for(lambda: lease_row(pg_url)[0] == 3, "the takeover", procs)
        assert procs.active() == 1 - active
        grant_some(api, GRANTS_PER_PHASE)
        epoch, holder = lease_row(pg_url)
        assert epoch == 3
        deadline = time.monotonic() + WATCH_S
        while time.monotonic() < deadline:
            assert lease_row(pg_url) == (3, holder), procs.tail()
            time.sleep(0.05)
        status = answered_get(api, f"/v1/campaigns/{CID}/status").json()
        # 3,720 fen for each of the phases' grants, 1,935 for each built one (12,900 × 15%).
        assert status["held_fen"] == 3 * GRANTS_PER_PHASE * 3_720 + LEDGER_GRANTS * 1_935
    finally:
        if api is not None:
            api.close()
        procs.stop_all()
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations


def _has_lease(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as c:
        got = c.execute("SELECT count(*) FROM sequencer_lease").fetchone()
    return bool(got and got[0])
