"""What a commit survives on PostgreSQL: said at start, in /readyz and /metrics; never
weaker than the server's own ``synchronous_commit``; and ``--require-sync-standby``
refusing (503, Retry-After) rather than acknowledging without a synchronous standby.

The test server at 127.0.0.1:5432 has no standby: required, nothing is acknowledged;
not required, it serves and says that no standby is waited for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from lijian.store.pg_durability import DurabilityWatch, SyncCommit
from lijian.store.postgres import PostgresStore
from tests.http.harness import (
    LIJIAN,
    STARTUP_TIMEOUT_S,
    Api,
    Server,
    campaign_doc,
    catalog_ndjson,
    clients_toml,
    dump_toml,
    free_port,
    metric,
    order,
)


def with_options(url: str, setting: str) -> str:
    """The URL with a session default for synchronous_commit, as a server, database or
    role setting would give it (libpq ``options``, after the test's search_path)."""
    return url + f"%20-csynchronous_commit%3D{setting}"


def session_commit(store: PostgresStore) -> str:
    with store.pool.connection() as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize(
    ("server", "synchronous", "in_force"),
    [
        ("remote_apply", "FULL", "remote_apply"),  # a stronger server setting is kept
        ("remote_write", "FULL", "remote_write"),
        ("on", "FULL", "on"),
        ("local", "FULL", "on"),  # raised to what FULL asks
        ("off", "FULL", "on"),
        ("on", "NORMAL", "on"),  # NORMAL never lowers the server's on
        ("off", "NORMAL", "off"),
    ],
)
def test_the_store_never_lowers_the_servers_synchronous_commit(
    pg_url, server, synchronous, in_force
):
    store = PostgresStore(with_options(pg_url, server), synchronous)
    try:
        assert session_commit(store) == in_force
        assert store.commit_mode is SyncCommit[in_force.upper()]
    finally:
        store.close()


def test_the_watch_reads_no_standby_on_a_lone_primary(pg_url):
    store = PostgresStore(pg_url)
    try:
        watch = store.watch_durability()
        assert watch.current is not None
        assert watch.report() == {
            "synchronous_commit": "on",
            "synchronous_standby_names": "",
            "sync_standbys": 0,
            "sync_standby": False,
        }
        refused = watch.refusal()
        assert refused is not None and refused.code == "no_sync_standby"
        assert "synchronous_standby_names is empty" in refused.detail
    finally:
        store.close()
    assert watch._conn is None  # closing the store stopped the watch


def test_an_unreachable_primary_reads_unknown_and_refuses():
    watch = DurabilityWatch("postgresql://postgres@127.0.0.1:1/none", SyncCommit.ON)
    assert watch.read_once() is None
    assert watch.report()["sync_standby"] is False
    refused = watch.refusal()
    assert refused is not None and "unknown" in refused.detail


Served = tuple[subprocess.Popen[bytes], str, Path]


def start_serve(tmp_path: Path, db: str, workers: str, *extra: str) -> Served:
    """``lijian serve`` on ``db``, waited for until it logged "ready" (a refusing
    server answers, but /readyz says 503)."""
    campaign, clients = tmp_path / "campaign.toml", tmp_path / "clients.toml"
    campaign.write_text(dump_toml(campaign_doc()), encoding="utf-8")
    clients.write_text(clients_toml(), encoding="utf-8")
    port = free_port()
    log = tmp_path / "server.log"
    cmd = [str(LIJIAN), "serve", "--campaign", str(campaign), "--clients", str(clients),
           "--db", db, "--clock", "manual:2025-02-12T10:00:00+08:00", "--port", str(port),
           "--workers", workers, *extra]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            answer = httpx.get(url + "/readyz", timeout=1).status_code
            if answer in (200, 503) and '"event":"ready"' in log.read_text():
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return proc, url, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def durability_line(log: Path) -> dict[str, object]:
    lines = [json.loads(x) for x in log.read_text().splitlines() if '"event":"durability"' in x]
    assert lines, log.read_text()
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_required_and_no_standby_nothing_is_acknowledged(tmp_path, pg_url, workers):
    # The catalogue first, by a server that does not require a standby (an upload is
    # acknowledged too: it would be refused).
    Server(tmp_path / "first", db=pg_url, topology="one").close()
    proc, url, log = start_serve(tmp_path, pg_url, workers, "--require-sync-standby")
    api = Api(url)
    try:
        refused_upload = api.put_catalog(catalog_ndjson())
        assert refused_upload.status_code == 503
        r = api.redeem(order(person="p-1"))
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "no_sync_standby"
        assert r.headers["retry-after"] == "1"
        assert "synchronous_standby_names is empty" in r.json()["detail"]
        ready = api.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["durability"] == {
            "synchronous_commit": "on", "synchronous_standby_names": "", "sync_standbys": 0,
            "sync_standby": False, "required": True, "refusing": True,
        }  # fmt: skip
        text = api.http.get("/metrics").text
        assert metric(text, "lijian_postgres_refusing") == 1
        assert metric(text, "lijian_postgres_sync_standby_required") == 1
        assert metric(text, "lijian_postgres_sync_standbys") == 0
        assert metric(text, 'lijian_postgres_synchronous_commit{setting="on"}') == 1
        # Reads still answer: nothing they say can be lost.
        assert api.status()["state"] == "open"
    finally:
        api.close()
        stop(proc)
    line = durability_line(log)
    assert (line["required"], line["sync_standby"], line["sync_standbys"]) == (True, False, 0)
    assert line["synchronous_commit"] == "on"


@pytest.mark.parametrize("topology", ["one", "pg-w2", "pg-2gw"])
def test_not_required_it_serves_and_says_no_standby_is_waited_for(tmp_path, topology):
    if topology == "one":  # "one" is SQLite in the suite; here its PostgreSQL twin
        from tests.http.harness import _new_pg_schema

        schema, db = _new_pg_schema()
        server = Server(tmp_path, db=db, topology="one")
        server._schema = schema
    else:
        server = Server(tmp_path, topology=topology)
    try:
        assert server.api.redeem(order(person="p-1")).status_code == 201
        ready = server.api.http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["durability"] == {
            "synchronous_commit": "on", "synchronous_standby_names": "", "sync_standbys": 0,
            "sync_standby": False, "required": False, "refusing": False,
        }  # fmt: skip
        text = server.api.http.get("/metrics").text
        assert metric(text, "lijian_postgres_sync_standby") == 0
        assert metric(text, "lijian_postgres_refusing") == 0
    finally:
        server.close()
    line = durability_line(server.log_path)
    assert (line["required"], line["sync_standby"]) == (False, False)


@pytest.mark.parametrize("command", [["serve"], ["sequencer", "--listen", "127.0.0.1:1"]])
def test_required_on_sqlite_is_one_line_and_exit_2(tmp_path, command):
    r = subprocess.run(
        [str(LIJIAN), *command, "--campaign", "x.toml", "--clients", "c.toml",
         "--db", str(tmp_path / "l.db"), "--require-sync-standby"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "--require-sync-standby needs a postgresql:// ledger" in r.stderr
    assert "Traceback" not in r.stderr
