"""A standby that follows the log while it waits for the lease: takeover = lease + tail.

A standby sequencer (``lijian sequencer --standby``, and the warm spare of a supervisor,
``roles.spare_main``) would otherwise hold nothing while it waits and, once it takes
the lease, rebuild the whole ledger: the newest snapshot and every entry after it,
seconds to tens of seconds at a city's size. A :class:`LogFollower` does that rebuild
*before*, on a thread of its own, read-only (``store/pg_reader.py``: no write, no
migration, not even a lease): the newest snapshot and the entries after it, through
the recovery's own code (``engine_recovery.rebuild``), then, every ``poll_s``, at most
``page_max`` new entries through the one replay (``lijian.core.replay``): there is no
second apply. Its gateways' port stays closed and its own HTTP port unserved, exactly
as before: the follower only reads.

At the takeover (:meth:`LogFollower.caught_up`, called by ``engine_recovery.recover``
once the lease is held) it stops following, reads every entry committed since its last
poll, replays them the same way, and hands over the ledger: the takeover costs the
lease and that tail, not a recovery.

Why that is safe, the same argument as a recovery after the lease:

- Nothing is served before the lease is held and the tail after it read: the follower
  runs inside a process that has not built its engine; the engine is built, the ports
  opened, only after ``take_lease`` returned, and the engine's construction is what
  reads the tail (``Engine.__init__`` → ``recover`` → ``caught_up``).
- The tail read after the take holds every batch the old holder committed. Each commit
  reads the lease row ``FOR SHARE`` and checks its epoch in its own transaction
  (``lease.py``); the take updates that row, so it waits for any such transaction to end
  and every later one finds the new epoch and rolls back. So once the lease is taken the
  log is final up to the new holder's own first commit, and the tail read then sees all
  of it; the check below (the followed log ends at the store's own last entry, with
  the same chain) holds it to that.
- No entry is skipped or replayed twice: entries are read in seq order after the last
  one applied, each checked against the hash chain (``pg_reader.LogReader``), so a hole
  or a rewritten entry raises instead of being stepped over.
- What it cannot follow it does not pretend to: an entry that does not decode or
  apply (a newer sequencer's entry type), a schema newer than this code, a chain that
  does not link. The ledger it built is dropped at once (it may be half-applied), an
  error is logged (``standby_follow_failed``), and the takeover rebuilds from the
  store as any start does (``standby_full_recovery``), which then fails loudly too if
  the entry really cannot be applied by this code.

The cost is memory: a following standby holds the whole ledger, as the active does.
"""

from __future__ import annotations

import threading
import time

import psycopg

from lijian.core.replay import replay
from lijian.core.settings import Settings
from lijian.engine_recovery import rebuild
from lijian.http.logs import get_logger
from lijian.store import Store
from lijian.store.pg_reader import LogReader, TailBroken
from lijian.stored_ledger import StoredLedger

FOLLOW_POLL_S = 0.2  # a caught-up follower asks for new entries this often
FOLLOW_PAGE_MAX = 5_000  # entries read and applied per poll (a full page polls again)
RETRY_S = 1.0  # after a database error, the next attempt (the ledger built is kept)
PROGRESS_EVERY_S = 1.0  # the `standby_following` line, at most this often, when it moved


class LogFollower:
    """The thread that keeps a standby's ledger up with the log (see the module)."""

    def __init__(
        self,
        url: str,
        settings: list[Settings],
        node_id: str = "a",
        poll_s: float = FOLLOW_POLL_S,
        page_max: int = FOLLOW_PAGE_MAX,
    ) -> None:
        assert poll_s > 0 and page_max > 0
        self.settings = settings
        self.node_id = node_id
        self.poll_s = poll_s
        self.page_max = page_max
        self.reader = LogReader(url)
        self.rec: StoredLedger | None = None  # the ledger built so far
        self.followed = 0  # entries applied after the first load
        self.broken: str | None = None  # why it stopped following for good
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = get_logger("lijian.standby")
        self._errors_seen: set[str] = set()
        self._said_s = 0.0
        self._said_seq = -1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lijian-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following: the current step (the first load, or one page) ends first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # ------------------------------------------------------------ the thread
    def _run(self) -> None:
        while not self._stop.is_set():
            full = False
            try:
                self.reader.check_schema()
                if self.rec is None:
                    self._load()
                else:
                    full = self._poll()
            except psycopg.Error as exc:  # the database away: keep what was built, retry
                self._db_error(exc)
                self.reader.close()
                self._stop.wait(RETRY_S)
                continue
            except Exception as exc:  # whatever it is, it cannot follow
                self._give_up(exc)
                return
            if not full:
                self._stop.wait(self.poll_s)

    def _load(self) -> None:
        t0 = time.monotonic()
        self.rec = rebuild(self.reader, self.settings, self.node_id)
        self._log.info(
            "standby_loaded", snapshot_seq=self.rec.snapshot_seq, replayed=self.rec.replayed,
            seq=self.reader.read_seq, load_s=round(time.monotonic() - t0, 3),
        )  # fmt: skip

    def _poll(self) -> bool:
        """At most ``page_max`` new entries applied; True if there may be more."""
        assert self.rec is not None
        led = self.rec.ledger
        before = led.entries_applied
        replay(led, self.reader.iter_bodies(self.reader.read_seq, self.page_max))
        n = led.entries_applied - before
        self.followed += n
        now = time.monotonic()
        if self.reader.read_seq != self._said_seq and now - self._said_s >= PROGRESS_EVERY_S:
            self._said_s, self._said_seq = now, self.reader.read_seq
            self._log.info("standby_following", seq=self.reader.read_seq, followed=self.followed)
        return n >= self.page_max

    def _db_error(self, exc: psycopg.Error) -> None:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if why not in self._errors_seen and len(self._errors_seen) < 100:
            self._errors_seen.add(why)
            self._log.warning("standby_follow_retry", error=why)

    def _give_up(self, exc: BaseException) -> None:
        why = str(exc) if isinstance(exc, TailBroken) else f"{type(exc).__name__}: {exc}"
        self.broken = why
        self.rec = None  # possibly half-applied: never served, and its memory freed
        self.reader.close()
        self._log.error("standby_follow_failed", why=why, seq=self.reader.read_seq,
                        then="a full recovery at the takeover")  # fmt: skip

    # ------------------------------------------------------------ the takeover
    def caught_up(self, store: Store) -> StoredLedger | None:
        """With the lease held: the ledger with every remaining entry applied (see the
        module for why nothing can be missing), or None (then rebuild from the store)."""
        self.stop()
        t0 = time.monotonic()
        rec = self.rec
        self.rec = None
        if rec is None:
            self._full(self.broken or "the standby had not loaded the ledger yet")
            return None
        led = rec.ledger
        before = led.entries_applied
        try:
            replay(led, self.reader.iter_bodies(self.reader.read_seq))
            snapshot_seq = self.reader.snapshot_seq()
        except psycopg.Error as exc:  # the ledger, perhaps part-way, is dropped
            self._full(f"the tail could not be read: {exc}")
            return None
        except Exception as exc:  # a tail it cannot apply
            self._full(f"{type(exc).__name__}: {exc}")
            return None
        finally:
            self.reader.close()
        # The engine's own store (the writer's connection: the primary) was opened after
        # the take, and nobody else writes now: the chain this ledger was built over must
        # be the store's, to the last entry. A follower that read a lagging replica, or
        # entries a promoted replica never received, differs here. Never served then.
        at = store.chain
        if (self.reader.read_seq, self.reader.head) != (store.last_seq, at.head) or (
            at.seq != store.last_seq
        ):
            self._full(f"the followed log ends at seq {self.reader.read_seq}"
                       f" ({self.reader.head.hex()[:16]}…), the store's at {store.last_seq}"
                       f" ({at.head.hex()[:16]}…)")  # fmt: skip
            return None
        tail = led.entries_applied - before
        out = StoredLedger(led, snapshot_seq, tail)  # checked by recover, as any start
        self._log.info(
            "standby_took_over", tail_entries=tail, followed=self.followed,
            seq=self.reader.read_seq, tail_s=round(time.monotonic() - t0, 3),
        )  # fmt: skip
        return out

    def _full(self, why: str) -> None:
        self._log.error("standby_full_recovery", why=why)


def start_follower(db: str, settings: list[Settings], node_id: str) -> LogFollower | None:
    """A follower started for a standby on PostgreSQL (None on SQLite: no standby);
    ``node_id``: the engine's (a sharded sequencer's node), whose ledger it builds."""
    from lijian.store import is_postgres_url

    if not is_postgres_url(db):
        return None
    follower = LogFollower(db, settings, node_id)
    follower.start()
    return follower
