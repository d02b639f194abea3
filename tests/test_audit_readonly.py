"""``lijian audit`` reads a SQLite ledger without changing it: the file's bytes and mtime
(and its WAL's) are the same afterwards, after a clean stop, while a server has it open
in WAL mode (its recent commits only in the WAL), and after a kill (a WAL nobody has
folded in yet). A server that starts on the file during the audit is noticed."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.engine import Engine
from lijian.ledger_file import open_ledger
from lijian.store.sqlite import SqliteStore
from tests.support import catalog, order, settings

LIJIAN = [sys.executable, "-m", "lijian.cli"]


def audit(db: Path) -> dict[str, object]:
    r = subprocess.run([*LIJIAN, "audit", "--db", str(db), "--json"], check=False,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    report: dict[str, object] = json.loads(r.stdout)
    return report


def state(db: Path) -> dict[str, tuple[bytes, int] | None]:
    """Bytes and mtime of the file and of its -wal and -shm (None: absent)."""
    out: dict[str, tuple[bytes, int] | None] = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{db}{suffix}")
        out[suffix] = (p.read_bytes(), p.stat().st_mtime_ns) if p.exists() else None
    return out


def fill(e: Engine, n: int) -> None:
    Blocking(e).catalog_upsert(list(catalog().rows()))
    for i in range(n):
        out = Blocking(e).redeem(order(i, person=f"p-{i}"), "unionpay", f"k{i}", f"f{i}")
        assert out.status == 201, out.body


def new_engine(db: Path) -> Engine:
    return Engine([settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))


def test_audit_after_a_clean_stop_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    e = new_engine(db)
    fill(e, 3)
    e.close()
    before = state(db)
    assert before["-wal"] is None  # a clean stop folded the WAL in
    report = audit(db)
    assert report["ok"] is True and report["entries"] == 4  # the tranche opening and 3 holds
    assert state(db) == before  # same bytes, same mtime, and no -wal or -shm left behind


def test_audit_while_a_server_has_the_file_open_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    e = new_engine(db)
    try:
        fill(e, 4)
        (mode,) = (
            sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
            .execute("PRAGMA journal_mode")
            .fetchone()
        )
        assert mode == "wal"
        before = state(db)
        assert before["-wal"] is not None  # the commits so far are in the WAL
        report = audit(db)
        after = state(db)
        # The file and its WAL: not a byte changed. (-shm is SQLite's shared memory where
        # every reader, read-only or not, marks what it reads: not the ledger's data.)
        assert (after[""], after["-wal"]) == (before[""], before["-wal"])
        fill_more = Blocking(e).redeem(order(99, person="p-99"), "unionpay", "k99", "f99")
        assert fill_more.status == 201  # the server writes on, unhindered
    finally:
        e.close()
    assert report["ok"] is True and report["entries"] == 5  # at the audit: the opening, 4 holds


def test_audit_of_a_killed_servers_file_reads_its_wal_and_changes_nothing(
    tmp_path: Path,
) -> None:
    # A server killed -9 leaves its WAL beside the file; a copy of the three files taken
    # while it runs is exactly that.
    live = tmp_path / "live.db"
    e = new_engine(live)
    try:
        fill(e, 2)
        db = tmp_path / "killed.db"
        for suffix in ("", "-wal", "-shm"):
            shutil.copyfile(f"{live}{suffix}", f"{db}{suffix}")
    finally:
        e.close()
    before = state(db)
    report = audit(db)
    assert report["ok"] is True and report["entries"] == 3
    after = state(db)
    assert (after[""], after["-wal"]) == (before[""], before["-wal"])  # the WAL not folded in


def test_a_read_only_open_refuses_what_it_would_have_had_to_change(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    con.commit()
    con.close()
    before = state(db)
    try:
        open_ledger(db)
    except Exception as exc:  # LedgerFileError: one line, exit 2 in the CLI
        assert type(exc).__name__ == "LedgerFileError"
        assert str(exc).startswith(f"cannot open {db}: {db}: not a complete ledger (no ")
    else:
        raise AssertionError("opened a file that is not a complete ledger")
    assert state(db) == before


def test_a_server_starting_during_the_audit_is_noticed(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    e = new_engine(db)
    fill(e, 1)
    e.close()
    store = SqliteStore(db, read_only=True)  # no -wal: nobody has it open, immutable
    try:
        assert store.changed_since_open() is False
        e = new_engine(db)  # a server starts on it meanwhile and writes
        try:
            fill(e, 1)
            assert store.changed_since_open() is True  # lijian audit: exit 2, run it again
        finally:
            e.close()
    finally:
        store.close()
