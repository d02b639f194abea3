"""How durable an acknowledged commit is on PostgreSQL, and a watch that keeps it known.

A grant is acknowledged after its commit returns. What that commit survives depends on
the server, not on lijian: ``synchronous_commit`` says whether the commit waited for the
local WAL flush only (``local``; ``off`` not even that), or also for a standby
(``remote_write`` < ``on`` < ``remote_apply``); and a standby is waited for only while
``synchronous_standby_names`` names one that is attached (``pg_stat_replication`` shows it
``sync`` or ``quorum``). With none attached, a failover to an asynchronous replica loses
the acknowledged grants it had not received yet.

So lijian never weakens the server's setting (it only raises ``off``/``local`` to ``on``
when the store is opened with ``synchronous = "FULL"``, and keeps any setting that waits
for a standby), says at start what is in force,
reports it in ``/readyz`` and ``/metrics``, and with ``--require-sync-standby`` refuses to
acknowledge (503 ``no_sync_standby``, ``Retry-After``) while no synchronous standby is
attached (``DurabilityWatch``, polled every ``POLL_S``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import TypedDict

import psycopg
from psycopg.rows import TupleRow

from lijian.core.errors import NoSyncStandby

log = logging.getLogger("lijian.durability")

POLL_S = 1.0  # how stale the watch may be: a standby lost is refused within this
CONNECT_TIMEOUT_S = 2  # a poll that cannot connect says "unknown", and the gate closes
STATEMENT_TIMEOUT_MS = 2_000
# A reading older than this (the poll hangs on a dead primary) is no reading at all.
STALE_AFTER_S = 2 * POLL_S + CONNECT_TIMEOUT_S + STATEMENT_TIMEOUT_MS / 1000


class SyncCommit(IntEnum):
    """``synchronous_commit``, weakest first (PostgreSQL's documentation, 20.5.1)."""

    OFF = 0
    LOCAL = 1
    REMOTE_WRITE = 2
    ON = 3
    REMOTE_APPLY = 4

    @classmethod
    def parse(cls, text: str) -> SyncCommit:
        # PostgreSQL also accepts the booleans' spellings for on and off.
        aliases = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}
        word = text.strip().lower()
        return cls[aliases.get(word, word).upper()]

    @property
    def setting(self) -> str:
        return self.name.lower()

    @property
    def waits_for_standby(self) -> bool:
        return self >= SyncCommit.REMOTE_WRITE


def session_commit(server: SyncCommit, wanted: SyncCommit) -> SyncCommit:
    """What lijian's sessions run with: never weaker than the server's own value. A
    server that waits for a standby keeps its choice (``remote_write`` trades a standby's
    OS crash for latency on purpose); ``off`` and ``local`` are raised to ``wanted``."""
    if server.waits_for_standby:
        return server
    return max(server, wanted)


class DurabilityReport(TypedDict):
    """What ``/readyz``, ``/metrics`` and the start's log line show (None: unknown)."""

    synchronous_commit: str | None
    synchronous_standby_names: str | None
    sync_standbys: int | None
    sync_standby: bool


class DurabilityHealth(DurabilityReport):
    """The report with the writer's gate: required, and refusing commands now."""

    required: bool
    refusing: bool


@dataclass(frozen=True, slots=True)
class Durability:
    """One reading of the primary, as lijian's sessions see it."""

    synchronous_commit: SyncCommit  # in force on lijian's connections
    standby_names: str  # synchronous_standby_names
    sync_standbys: int | None  # attached and synchronous; None: not visible to this role

    @property
    def standby_waited_for(self) -> bool:
        """Every commit waits for a standby before it returns."""
        return (
            self.synchronous_commit.waits_for_standby
            and self.standby_names.strip() != ""
            and bool(self.sync_standbys)
        )

    def report(self) -> DurabilityReport:
        return {
            "synchronous_commit": self.synchronous_commit.setting,
            "synchronous_standby_names": self.standby_names,
            "sync_standbys": self.sync_standbys,
            "sync_standby": self.standby_waited_for,
        }


UNKNOWN_REPORT: DurabilityReport = {
    "synchronous_commit": None,
    "synchronous_standby_names": None,
    "sync_standbys": None,
    "sync_standby": False,
}

# pg_stat_replication shows the state of other roles' walsenders only to superusers and
# to members of pg_read_all_stats: for others its columns are NULL (then: unknown).
_READ = (
    "SELECT current_setting('synchronous_commit'), current_setting('synchronous_standby_names'),"
    " (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')),"
    " (SELECT count(*) FROM pg_stat_replication WHERE sync_state IS NULL)"
)


def read_durability(conn: psycopg.Connection[TupleRow]) -> Durability:
    row = conn.execute(_READ).fetchone()
    assert row is not None
    mode, names, synced, hidden = str(row[0]), str(row[1]), int(row[2]), int(row[3])
    return Durability(SyncCommit.parse(mode), names, None if hidden and not synced else synced)


class DurabilityWatch:
    """Reads the primary's durability every ``POLL_S`` on a connection of its own (with
    lijian's ``synchronous_commit``), in a daemon thread; ``current`` is the last reading
    (None: the last poll failed)."""

    def __init__(self, url: str, commit: SyncCommit, poll_s: float = POLL_S) -> None:
        assert poll_s > 0
        self.url = url
        self.commit = commit
        self.poll_s = poll_s
        self.current: Durability | None = None
        self.readings = 0
        self.read_at_s = 0.0  # monotonic time of the last successful reading
        self._stop = threading.Event()
        self._conn: psycopg.Connection[TupleRow] | None = None
        self._thread: threading.Thread | None = None

    def poll(self) -> Durability | None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                )
                self._conn.execute(f"SET synchronous_commit = {self.commit.setting}")
            reading: Durability | None = read_durability(self._conn)
        except psycopg.Error:
            self._close()
            reading = None
        if reading != self.current and self.readings > 0:  # the first is the start's line
            shown = reading.report() if reading else UNKNOWN_REPORT
            log.warning("durability changed: %s", shown)
        self.current = reading
        self.readings += 1
        if reading is not None:
            self.read_at_s = time.monotonic()
        return reading

    def read_once(self) -> Durability | None:
        """One reading without a watch (its connection closed again)."""
        try:
            return self.poll()
        finally:
            self._close()

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="lijian-durability", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def report(self) -> DurabilityReport:
        c = self.current
        return c.report() if c is not None else UNKNOWN_REPORT.copy()

    def refusal(self) -> NoSyncStandby | None:
        """The answer to a command while no synchronous standby is certainly attached."""
        c = self.current
        stale = time.monotonic() - self.read_at_s > STALE_AFTER_S
        if c is not None and c.standby_waited_for and not stale:
            return None
        why = "unknown (the primary could not be read)" if c is None or stale else _why_not(c)
        return NoSyncStandby(f"no synchronous standby: {why}; nothing was done, send again")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + CONNECT_TIMEOUT_S + 1)
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):  # closing a broken connection
                self._conn.close()
            self._conn = None


def _why_not(c: Durability) -> str:
    if not c.standby_names.strip():
        return "synchronous_standby_names is empty"
    if not c.synchronous_commit.waits_for_standby:
        return f"synchronous_commit is {c.synchronous_commit.setting}"
    if c.sync_standbys is None:
        return "pg_stat_replication is not readable by this role (grant pg_monitor)"
    return "none is attached"
