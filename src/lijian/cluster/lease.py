"""The sequencer lease: one writer per ledger in PostgreSQL, and fencing.

A ledger in PostgreSQL may be served by one sequencer at a time. The right to do so is
the one row of ``sequencer_lease`` (migration 0009): whoever holds an unexpired lease
is the sequencer; a standby (``lijian sequencer --standby``) waits until the lease
lapses, takes it, rebuilds the ledger from the log, and serves.

Safety does not rest on clocks. Each takeover adds one to ``epoch``, and every batch
the writer commits first reads the row ``FOR SHARE`` in its own transaction and
refuses to commit under any other epoch (``fence``). The row lock orders the two: a
batch that locked the row first commits before the takeover can bump the epoch (so the
new sequencer's replay sees it), and a batch after the bump sees the new epoch and
fails. A deposed sequencer therefore never commits; its writer fails and the process
exits (the supervisor's watchdog), and what it had acknowledged was committed before.

Liveness rests on PostgreSQL's clock only: ``expires_at`` is ``now()`` on the server
plus ``ttl_s``. The holder renews every ``ttl_s / RENEW_DIVISOR``. Locally it treats its
lease as valid only until ``ttl_s * VALID_FRACTION`` after the *start* of the last
successful renewal (monotonic clock), so it stops answering reads from memory before
any standby may take over, even if this machine's clock runs slow.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from lijian.cluster import LEASE_TTL_S
from lijian.store.migrations import apply_migrations
from lijian.store.pg_errors import one_line
from lijian.store.sqlite import StoreError

log = logging.getLogger("lijian.lease")

RENEW_DIVISOR = 3  # renewals per TTL: two may fail before the lease lapses
# While the database cannot be reached (a failover: the old primary gone, the new one not
# promoted yet, or read-only), ask this often: the lease is taken soon after promotion.
UNREACHABLE_POLL_S = 0.2
UNREACHABLE_LOG_EVERY_S = 5.0  # the same reason again is logged at most this often
# A take whose statement ran long (its commit waited for a synchronous standby) starts
# with little validity left: renewed at once, a few times at most, until this much of
# the TTL is ahead (else the sequencer would begin by answering 503).
FRESH_FRACTION = 0.5
FRESHEN_ATTEMPTS_MAX = 3
VALID_FRACTION = 0.8  # of the TTL: the holder's own view ends before the row's expiry
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5_000  # a renewal that hangs is a failed renewal


class Deposed(StoreError):
    """Another sequencer took the lease: this one must not commit, and stops."""


@dataclass(frozen=True, slots=True)
class Holder:
    """The lease row as read: who holds it, where, until when (database time)."""

    epoch: int
    holder: str
    address: str
    expires_at: datetime
    expired: bool


_ACQUIRE = (
    "INSERT INTO sequencer_lease AS l (id, epoch, holder, address, expires_at)"
    " VALUES (1, 1, %(holder)s, %(address)s, now() + make_interval(secs => %(ttl)s))"
    " ON CONFLICT (id) DO UPDATE SET epoch = l.epoch + 1, holder = excluded.holder,"
    " address = excluded.address, acquired_at = now(), expires_at = excluded.expires_at"
    # A lapsed lease may be taken by anyone; a live one only by its own holder (a
    # supervisor restarting its sequencer after reaping the dead one).
    " WHERE l.expires_at < now() OR l.holder = excluded.holder"
    " RETURNING epoch"
)
_RENEW = (
    "UPDATE sequencer_lease SET expires_at = now() + make_interval(secs => %s)"
    " WHERE id = 1 AND epoch = %s RETURNING 1"
)
_RELEASE = (
    "UPDATE sequencer_lease SET expires_at = now() - interval '1 second'"
    " WHERE id = 1 AND epoch = %s"
)
_READ = (
    "SELECT epoch, holder, address, expires_at, expires_at < now()"
    " FROM sequencer_lease WHERE id = 1"
)
_FENCE = "SELECT epoch FROM sequencer_lease WHERE id = 1 FOR SHARE"


class Lease:
    """One process's claim on the lease of the ledger at ``url``."""

    def __init__(self, url: str, holder: str, address: str, ttl_s: float = LEASE_TTL_S) -> None:
        assert ttl_s > 0
        self.url = url
        self.holder = holder
        self.address = address
        self.ttl_s = ttl_s
        self.epoch: int | None = None
        self._valid_until_s = 0.0
        self.last_started_s = 0.0  # monotonic start of the last statement that took or renewed
        self._stop = threading.Event()

    # ------------------------------------------------------------- database
    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            options=_with_timeout(self.url),
        )

    def read(self) -> Holder | None:
        with self._connect() as conn:
            row = conn.execute(_READ).fetchone()
        if row is None:
            return None
        return Holder(int(row[0]), str(row[1]), str(row[2]), row[3], bool(row[4]))

    def try_acquire(self) -> int | None:
        """Take the lease if it is free, lapsed or already ours; the new epoch, or None."""
        started_s = time.monotonic()
        with self._connect() as conn:
            row = conn.execute(
                _ACQUIRE, {"holder": self.holder, "address": self.address, "ttl": self.ttl_s}
            ).fetchone()
        if row is None:
            return None
        self.epoch = int(row[0])
        self.last_started_s = started_s
        self._valid_until_s = started_s + self.ttl_s * VALID_FRACTION
        return self.epoch

    def acquire(self, wait_s: float | None) -> int:
        """Take the lease, polling while another holds it: at most ``wait_s`` (None: as
        long as it takes, for a standby). Raises ``Deposed`` when the wait ran out."""
        deadline_s = None if wait_s is None else time.monotonic() + wait_s
        poll_s = self.ttl_s / RENEW_DIVISOR
        said: tuple[str, int] | None = None
        unreachable = ("", 0.0)  # what was last said about an unreachable database, when
        migrated = False
        while not self._stop.is_set():
            try:
                if not migrated:  # the lease row's table comes with the schema
                    with self._connect() as conn:
                        apply_migrations(conn)
                    migrated = True
                epoch = self.try_acquire()
            except psycopg.OperationalError as exc:
                why = _first_line(exc)
                now_s = time.monotonic()
                if why != unreachable[0] or now_s - unreachable[1] >= UNREACHABLE_LOG_EVERY_S:
                    log.warning("lease: database unreachable (%s); retrying", why)
                    unreachable = (why, now_s)
                if deadline_s is not None and now_s + UNREACHABLE_POLL_S > deadline_s:
                    raise Deposed(f"the database cannot be reached ({why})") from None
                self._stop.wait(UNREACHABLE_POLL_S)
                continue
            if epoch is not None:
                log.warning("lease taken: epoch %d, holder %s", epoch, self.holder)
                self._freshen()
                return epoch
            held = self._read_quietly()
            if held is not None and said != (held.holder, held.epoch):
                said = (held.holder, held.epoch)
                log.warning(
                    "lease held by %s at %s (epoch %d); waiting for it to lapse",
                    held.holder,
                    held.address,
                    held.epoch,
                )
            if deadline_s is not None and time.monotonic() + poll_s > deadline_s:
                who = f"{held.holder} at {held.address}" if held else "another sequencer"
                raise Deposed(
                    f"the ledger is served by {who}; start this one with --standby to wait"
                )
            self._stop.wait(poll_s)
        raise Deposed("stopped while waiting for the lease")

    def _freshen(self) -> None:
        """Renew a just-taken lease whose take was slow, so that it is valid from the
        start (the row's expiry counts from the statement's start, not its commit)."""
        for _ in range(FRESHEN_ATTEMPTS_MAX):
            ahead_s = self._valid_until_s - time.monotonic()
            if ahead_s >= self.ttl_s * VALID_FRACTION * FRESH_FRACTION:
                return
            try:
                if not self.renew():
                    return  # taken over meanwhile: the keeper's renewals will say so
            except psycopg.Error as exc:
                log.warning("lease: renewing the new lease failed (%s)", _first_line(exc))
                return

    def _read_quietly(self) -> Holder | None:
        with contextlib.suppress(psycopg.Error):
            return self.read()
        return None

    def renew(self) -> bool:
        """Extend the lease; False when another sequencer holds it now."""
        assert self.epoch is not None
        started_s = time.monotonic()
        with self._connect() as conn:
            ok = conn.execute(_RENEW, (self.ttl_s, self.epoch)).fetchone() is not None
        if ok:
            self.last_started_s = started_s
            self._valid_until_s = started_s + self.ttl_s * VALID_FRACTION
        return ok

    def stop(self) -> None:
        """End a wait for the lease or the renewals (from another thread)."""
        self._stop.set()

    def release(self) -> None:
        """Let a standby take over at once (after the final commit of a clean stop)."""
        self._stop.set()
        if self.epoch is None:
            return
        with contextlib.suppress(psycopg.Error), self._connect() as conn:
            conn.execute(_RELEASE, (self.epoch,))
        self._valid_until_s = 0.0

    # ------------------------------------------------------------ fencing
    def fence(self, conn: psycopg.Connection[Any]) -> None:
        """Inside a commit's transaction: refuse unless the lease is still this epoch."""
        row = conn.execute(_FENCE).fetchone()
        epoch = int(row[0]) if row is not None else None
        if epoch != self.epoch:
            raise Deposed(
                f"the lease moved to epoch {epoch} (this sequencer held {self.epoch}): "
                "another sequencer serves the ledger"
            )

    def valid(self) -> bool:
        """Whether this process may still answer from its memory (see the module doc)."""
        return time.monotonic() < self._valid_until_s

    # --------------------------------------------------------- renewal
    def renew_until_stopped(self, renewed: Callable[[float], None]) -> str | None:
        """Renew every TTL/RENEW_DIVISOR until ``_stop`` is set (None) or the lease is
        lost (why). ``renewed`` hears the start of each successful renewal. The lease
        keeper process runs this (``keeper.py``), so no work of the sequencer's can
        delay it."""
        every_s = self.ttl_s / RENEW_DIVISOR
        while not self._stop.wait(every_s):
            try:
                if self.renew():
                    renewed(self.last_started_s)
                    continue
                why = "another sequencer took the lease"
            except psycopg.Error as exc:
                if self.valid():
                    log.warning("lease renewal failed (%s); retrying", _first_line(exc))
                    continue
                why = f"the lease could not be renewed in time ({_first_line(exc)})"
            log.error("lease lost: %s", why)
            return why
        return None


def _with_timeout(url: str) -> str:
    """libpq ``options`` for the lease's own connections: a statement timeout, plus the
    URL's own options (a test's search_path) which libpq would otherwise replace."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    own = str(info.get("options") or "")
    return f"{own} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()


def _first_line(exc: BaseException) -> str:
    """One line naming every host tried (a multi-host URL), without a password."""
    return one_line(exc)
