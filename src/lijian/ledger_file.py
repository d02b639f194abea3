"""The ``--db`` of the offline tools (audit, settle, reconcile): a SQLite ledger file or
a ``postgresql://`` URL, checked before any store opens it.

A store opened read-write on a path creates its schema there, so an empty file, another
program's SQLite database or a typo would be *written to* by a tool that only reads. This
module looks first, read-only: the path exists, is a SQLite file, and holds a ledger (its
``entries`` table); then the store opens it read-only too (``mode=ro``). Every refusal
is a :class:`LedgerFileError`, one line, exit 2.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lijian.store import Store, is_postgres_url, open_store, shown_db
from lijian.store.preflight import postgres_problem
from lijian.store.sqlite import read_only_uri

SQLITE_HEADER = b"SQLite format 3\x00"


class LedgerFileError(Exception):
    """The ``--db`` is not a ledger this tool can read (printed, exit status 2)."""


def db_arg(db: str | Path) -> str | Path:
    """A ``postgresql://`` URL stays a string (a ``Path`` would collapse its ``//``)."""
    text = str(db)
    for scheme in ("postgresql:/", "postgres:/"):
        if text.startswith(scheme) and not text.startswith(scheme + "/"):
            text = scheme + "/" + text[len(scheme) :]
    return text if is_postgres_url(text) else Path(db)


def check_ledger(db: str | Path) -> str | Path:
    """The checked ``--db``; LedgerFileError if it is not a readable ledger."""
    db = db_arg(db)
    if isinstance(db, str):
        return db
    if not db.exists():
        raise LedgerFileError(f"no database at {db}")
    if not db.is_file():
        raise LedgerFileError(f"{db} is not a file")
    try:
        with open(db, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise LedgerFileError(f"{db}: cannot read: {exc.strerror}") from None
    if not head:
        raise LedgerFileError(f"{db} is not a lijian ledger (an empty file)")
    if head != SQLITE_HEADER:
        raise LedgerFileError(f"{db} is not a lijian ledger (not a SQLite database)")
    try:
        # mode=ro: this look never creates or changes anything (not even SQLite's -wal and
        # -shm beside a file nobody has open: immutable then).
        con = sqlite3.connect(read_only_uri(db)[0], uri=True)
        try:
            found = con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'"
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise LedgerFileError(f"{db}: not a readable SQLite database: {exc}") from None
    if found is None:
        raise LedgerFileError(f"{db} is not a lijian ledger (a SQLite database without its tables)")
    return db


def open_ledger(db: str | Path) -> Store:
    """A store on a checked ledger (SQLite or PostgreSQL). A SQLite file is opened
    read-only (``mode=ro``): these tools never change a byte of it, even while a server
    has it open in WAL mode."""
    target = check_ledger(db)
    if isinstance(target, str) and (problem := postgres_problem(target)) is not None:
        raise LedgerFileError(problem)  # one line in seconds, not a pool's 30 s of retries
    try:
        if isinstance(target, Path):
            from lijian.store.sqlite import SqliteStore

            return SqliteStore(target, read_only=True)
        return open_store(target)
    except Exception as exc:  # a driver's own errors (psycopg, sqlite3): one line
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise LedgerFileError(f"cannot open {shown_db(target)}: {reason}") from None


def ledger_time_ms(db: str | Path) -> int | None:
    """The time of an existing ledger's last entry; None when there is no ledger there
    yet (or it cannot be read: the server's own start reports that)."""
    from lijian.core.entries import decode

    try:
        store = open_ledger(db)
    except LedgerFileError:
        return None
    try:
        if store.last_seq == 0:
            return None
        bodies = store.range_bodies(store.last_seq - 1, store.last_seq)
        return decode(bodies[-1]).ts_ms if bodies else None
    finally:
        store.close()
