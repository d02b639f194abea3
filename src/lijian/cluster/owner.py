"""The process that owns a ledger: the lease first, then the engine.

On PostgreSQL, whatever process builds the engine first takes the ledger's lease
(``lease.py``), *before* recovery, so that its replay of the log sees every batch the
previous holder committed. A keeper process of its own (``keeper.py``) takes the lease
and renews it from that moment on, through a recovery of any length; the engine fences
every commit with the lease's epoch and releases the lease after its final commit on a
clean stop so that a standby takes over at once. On SQLite there is no lease: the file
has one process by construction.

Without ``--standby`` a process waits for a lease held by someone else at most a little
longer than one TTL (the previous holder was killed and its lease lapses), then gives up
with one line (exit 2). With ``--standby`` it waits as long as it takes.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from lijian.cluster import LEASE_TTL_S
from lijian.cluster.keeper import KeptLease, LeaseRefused
from lijian.http.logs import get_logger
from lijian.http.server import ServeError
from lijian.store import is_postgres_url

EXIT_DEPOSED = 75  # EX_TEMPFAIL: another sequencer took the lease; start again as standby
LEASE_TTL_S_RANGE = (0.5, 60.0)


@dataclass(frozen=True, slots=True)
class LeaseOptions:
    standby: bool = False  # wait for the lease as long as it takes
    ttl_s: float = LEASE_TTL_S
    holder: str = ""  # who takes it; empty: this process, under a name of its own


def new_holder() -> str:
    """A name no other process uses: machine, pid, and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def check_lease_options(db: str, lopts: LeaseOptions) -> None:
    lo, hi = LEASE_TTL_S_RANGE
    if not lo <= lopts.ttl_s <= hi:
        raise ServeError(f"--lease-ttl must be {lo:g}..{hi:g} seconds")
    if lopts.standby and not is_postgres_url(db):
        raise ServeError("--standby needs a postgresql:// ledger (a SQLite file has one process)")


def take_lease(db: str, address: str, lopts: LeaseOptions,
               log_level: str = "info") -> KeptLease | None:  # fmt: skip
    """The ledger's lease on PostgreSQL (None on SQLite), taken before the engine exists
    and renewed from then on by the keeper process."""
    if not is_postgres_url(db):
        return None
    lease = KeptLease(db, lopts.holder or new_holder(), address, lopts.ttl_s)
    try:
        lease.take(None if lopts.standby else lopts.ttl_s * 1.5 + 1.0, log_level)
    except LeaseRefused as exc:
        raise ServeError(str(exc)) from None
    # Lost before the engine exists (during recovery): nothing was answered yet, and a
    # standby owns the ledger now; exit as a deposed sequencer does.
    lease.on_deposed = _exit_deposed
    return lease


def _exit_deposed(why: str) -> None:
    get_logger().error("lease_lost", why=why)
    os._exit(EXIT_DEPOSED)


def exit_if_deposed(failure: BaseException | None) -> None:
    """An engine that failed because a commit found the lease taken (its fence raised
    ``Deposed`` before the keeper's next renewal noticed) was deposed, not broken: it
    exits as a deposed sequencer does, so its supervisor starts it again as a standby."""
    from lijian.cluster.lease import Deposed

    if isinstance(failure, Deposed):
        _exit_deposed(str(failure))


def hold(engine: Any, lease: KeptLease) -> None:
    """Fence the engine's commits with the lease and keep it renewed; if it is lost the
    process exits at once (it must not answer from memory another sequencer now owns)."""
    engine.store.fence = lease.fence
    lease.on_deposed = _exit_deposed
    lease.keep()
