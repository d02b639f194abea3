"""A standby sequencer follows the active one's grants while it waits, and its takeover
replays only the tail (cluster/follower.py), with two real sequencers on PostgreSQL.

The standby (``lijian sequencer --standby``) says in its log how far it has applied the
log (``standby_following``); the test waits until that is the active's last committed
entry, kills the whole active sequencer (kill -9 of its process group), and grants
again through gateways that know both. The standby took over from the ledger it had
followed (``standby_took_over``, never ``standby_full_recovery``), every acknowledged
grant is there under the id it was answered with, no id was given to two orders, and
the audit balances.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest

from lijian.audit import audit_db
from tests.http.harness import Api, catalog_ndjson, order
from tests.postgres.test_pg_failover import Procs, answered_get, wait_for
from tests.support import CID

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("standby_follows")]
LEASE_TTL_S = 1.0
ANSWER_TIMEOUT_S = 120.0
GRANTS_BEFORE = 40
GRANTS_AFTER = 20
DISCOUNT_FEN = 3_720  # of harness.order(): payable 24,800 fen at 15%


def _events(procs: Procs, i: int, event: str) -> list[dict]:
    text = (procs.workdir / f"sequencer-{i}.log").read_text(errors="replace")
    out = []
    for line in text.splitlines():
        if line.startswith("{") and f'"event":"{event}"' in line:
            out.append(json.loads(line))
    return out


def _last_seq(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
    assert row is not None
    return int(row[0])


def _epoch(url: str) -> int:
    """The lease's epoch (0: not taken yet, or its table not made yet)."""
    with psycopg.connect(url, autocommit=True) as c:
        try:
            row = c.execute("SELECT epoch FROM sequencer_lease").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def _grant(api: Api, granted: dict[str, str]) -> None:
    """One fresh order, retried with its key until answered (a 201)."""
    body, key = order(), uuid.uuid4().hex
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:
        r = api.redeem(body, key=key)
        if r.status_code == 201:
            granted[body["order_id"]] = r.json()["id"]
            return
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        time.sleep(0.05)


def test_the_standby_follows_the_grants_and_takes_over_with_the_tail(tmp_path, pg_url):
    procs = Procs(tmp_path, pg_url, lease_ttl_s=LEASE_TTL_S)
    api = None
    granted: dict[str, str] = {}  # order id -> the redemption id it was answered
    try:
        procs.start_sequencer(0, standby=False)
        wait_for(lambda: _epoch(pg_url) == 1, "the first lease", procs)
        procs.start_sequencer(1, standby=True)
        procs.start_gateway(0)
        procs.start_gateway(1)
        procs.wait_ready()
        wait_for(lambda: procs.waiting(1), "the standby", procs)
        api = Api(*procs.urls)
        assert api.put_catalog(catalog_ndjson()).status_code == 200
        for _ in range(GRANTS_BEFORE):
            _grant(api, granted)

        # The standby applied every grant while it waited: its log says so.
        last = _last_seq(pg_url)
        wait_for(
            lambda: any(e["seq"] >= last for e in _events(procs, 1, "standby_following")),
            f"the standby to follow the log up to seq {last}",
            procs,
        )
        loaded = _events(procs, 1, "standby_loaded")
        assert len(loaded) == 1, procs.tail()
        assert _events(procs, 1, "standby_took_over") == []
        assert procs.active() == 0

        procs.kill(procs.seqs[0])
        for _ in range(GRANTS_AFTER):
            _grant(api, granted)
        assert _epoch(pg_url) == 2 and procs.active() == 1

        took = _events(procs, 1, "standby_took_over")
        assert len(took) == 1, procs.tail()
        assert took[0]["seq"] >= last and took[0]["followed"] > 0
        assert _events(procs, 1, "standby_full_recovery") == []
        assert _events(procs, 1, "standby_follow_failed") == []

        # Every acknowledged grant is there, under the id it was answered with.
        for order_id, rid in granted.items():
            got = answered_get(api, f"/v1/redemptions/{rid}").json()
            assert got["order_id"] == order_id and got["status"] == "held"
        assert len(set(granted.values())) == GRANTS_BEFORE + GRANTS_AFTER  # no id twice
        status = answered_get(api, f"/v1/campaigns/{CID}/status").json()
        assert status["held_fen"] == (GRANTS_BEFORE + GRANTS_AFTER) * DISCOUNT_FEN
    finally:
        if api is not None:
            api.close()
        procs.stop_all()
    rep = audit_db(pg_url)
    assert rep.ok, rep.violations
