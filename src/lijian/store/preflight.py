"""``--db`` checked before a server starts: one line for what is certainly wrong.

A server that found out only while building its engine printed a traceback (a missing
folder, a folder, a file that is not SQLite), or, on PostgreSQL, mistook a database it
could not reach for one that another sequencer serves. The checks here run in the
process the operator started, once, before anything is written or any child starts;
children do not repeat the PostgreSQL check, since a database that is away while a
supervisor restarts its sequencer is waited for, not an input error.
"""

from __future__ import annotations

from pathlib import Path

from lijian.store import is_postgres_url, shown_db
from lijian.store.ledger_lock import LedgerInUse, LedgerLock
from lijian.store.pg_errors import one_line

CONNECT_TIMEOUT_S = 2  # a typo in a host name or a database is answered within this
SQLITE_MAGIC = b"SQLite format 3\x00"


def db_problem(db: str, require_sync_standby: bool = False) -> str | None:
    """What is certainly wrong with ``--db``, in one line; None when it may be served."""
    if is_postgres_url(db):
        return postgres_problem(db)
    if require_sync_standby:
        return "--require-sync-standby needs a postgresql:// ledger (a SQLite file has no standby)"
    path = Path(db)
    if not path.parent.is_dir():
        return f"--db {db}: no folder {path.parent}"
    if path.is_dir():
        return f"--db {db} is a folder, not a ledger file"
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            return f"--db {db}: cannot read: {exc.strerror}"
        if head and head != SQLITE_MAGIC:
            return f"--db {db} is not a lijian ledger (not a SQLite database)"
    try:
        LedgerLock(path).release()
    except LedgerInUse as exc:
        return f"--db {exc}"
    except OSError as exc:
        return f"--db {db}: cannot write beside it: {exc.strerror}"
    return None


def postgres_problem(url: str) -> str | None:
    """Why ``url`` cannot be connected to, in one line without its password; or None."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True):
            return None
    except psycopg.Error as exc:
        return f"--db {shown_db(url)}: cannot connect: {one_line(exc)}"
