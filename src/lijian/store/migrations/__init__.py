"""Versioned schema migrations for the PostgreSQL store.

Each ``NNNN_name.sql`` file in this package is one migration; ``NNNN`` is its version.
``apply_migrations`` runs, in version order, every migration not yet recorded in the
``schema_migrations`` table, each in its own transaction together with its record, so
a migration is either wholly applied and recorded or not at all. A session-level
advisory lock keyed on the current schema serialises concurrent starters: the second
one waits, then finds everything recorded and does nothing (idempotent).

Migrations are append-only: never edit a released file, add the next number.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass

import psycopg

# Advisory-lock class id ("lijian" in the first 4 bytes); the second key is the hash of
# the schema name, so tests in separate schemas of one database do not wait on each other.
MIGRATION_LOCK_CLASS = 0x6C696A69
MAX_MIGRATIONS = 1_000
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order (gap-free from 1)."""
    out: list[Migration] = []
    for res in importlib.resources.files(__package__).iterdir():
        found = _NAME.match(res.name)
        if found:
            out.append(Migration(int(found[1]), found[2], res.read_text("utf-8")))
    out.sort(key=lambda m: m.version)
    assert len(out) <= MAX_MIGRATIONS
    for i, mig in enumerate(out, start=1):
        assert mig.version == i, f"migration versions must be 1..n without gaps: {mig.version}"
    return out


def apply_migrations(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Bring the connection's current schema up to date. Returns the versions applied.

    The connection must be in autocommit mode (each migration opens its own transaction).
    """
    assert conn.autocommit, "apply_migrations manages its own transactions"
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()))", (MIGRATION_LOCK_CLASS,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
        done = {int(str(r[0])) for r in rows}
        known = load_migrations()
        newest = known[-1].version if known else 0
        if done and max(done) > newest:
            raise RuntimeError(
                f"database schema is at version {max(done)}, newer than this code ({newest})"
            )
        applied: list[int] = []
        for m in known:
            if m.version in done:
                continue
            with conn.transaction():
                conn.execute(m.sql.encode())  # a script: several statements, no parameters
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (m.version, m.name),
                )
            applied.append(m.version)
        return applied
    finally:
        conn.execute(
            "SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (MIGRATION_LOCK_CLASS,)
        )
