"""Helpers for tests against the real PostgreSQL server: schemas, URLs, tampering."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psycopg

from lijian.core.ledger import Ledger

BASE_URL = os.environ.get("LIJIAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT_S = 5
RESTART_TIMEOUT_S = 60


def reachable() -> bool:
    try:
        with psycopg.connect(BASE_URL, connect_timeout=CONNECT_TIMEOUT_S):
            return True
    except psycopg.OperationalError:
        return False


def schema_url(name: str) -> str:
    sep = "&" if "?" in BASE_URL else "?"
    return f"{BASE_URL}{sep}options=-csearch_path%3D{name}"


def new_schema(name: str) -> str:
    with psycopg.connect(BASE_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c:
        c.execute(f'CREATE SCHEMA "{name}"')
    return schema_url(name)


def drop_schema(name: str) -> None:
    with psycopg.connect(BASE_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def execute(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c:
        cur = c.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def cluster_version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]


def restart_postgres() -> None:
    """Restart the server (fast shutdown: every connection is dropped, WAL is replayed)."""
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            cluster_version(),
            "main",
            "restart",
            "-m",
            "fast",
        ],
        check=True,
        capture_output=True,
        timeout=RESTART_TIMEOUT_S,
    )
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while not reachable():
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.2)


def replay(url: str) -> Ledger:
    """The shared log replayed from zero into a fresh Ledger, as ``lijian audit`` does
    (one snapshot: entries that commit out of seq order are not stepped over)."""
    import json

    from lijian.core.replay import replay as replay_log
    from lijian.core.settings import parse_settings
    from lijian.store.postgres import PostgresStore

    store = PostgresStore(url)
    try:
        settings = [parse_settings(json.loads(raw)) for _, raw in store.campaigns()]
        with store.consistent_reads():
            return replay_log(settings, store.iter_bodies())
    finally:
        store.close()


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid``, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def descendant_pids(pid: int) -> list[int]:
    """The children of ``pid``, theirs, and so on (a supervisor's children are forked by
    its fork server, itself a child: cluster/children.py)."""
    out, todo = [], [pid]
    while todo:
        kids = child_pids(todo.pop())
        out += kids
        todo += kids
    return out


def cmdline_has(pid: int, part: bytes) -> bool:
    try:
        return part in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
