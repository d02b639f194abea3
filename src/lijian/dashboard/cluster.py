"""The dashboard when several escrow nodes share one PostgreSQL ledger (``--workers N``).

Each worker process is an escrow node (``lijian.escrow.node.EscrowEngine``) and serves
the dashboard on the shared socket, so a browser's requests land on any of them. Two
things differ from one engine:

1. **Figures.** A node's ledger is its *view*: the shared log replayed at its start,
   then only what it decides or imports, with its open tranche sized to its own escrow
   lease. Its tranches, its redemptions (settlement) and its balances (audit) are that
   node's, not the campaign's. The dashboard therefore replays the shared log itself
   (``live.py``: a ``Ledger`` fed by the tail, entry by entry, like ``lijian audit``)
   and takes every figure from that replay, checked against the escrow rows. What only
   a node knows is shown as the node's, labelled: its own sold-out state and the
   declines it answered (process counters).
2. **Sessions.** A login on one worker must hold on the next request, which may reach
   another: the workers derive one session key (``session_key``) from the dashboard's
   credentials and the identity of the ``lijian serve`` process that started them, and
   a logout is sent to the other workers over the tail's connection (LISTEN/NOTIFY).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lijian.core.ledger import CLOSED, OPEN, Book
from lijian.dashboard.accounts import Account

CHANNEL = "lijian_dashboard"  # LISTEN/NOTIFY channel of the workers' notices


def node_of(engine: Any) -> tuple[str, int] | None:
    """(node name, nodes) when ``engine`` is an escrow node, else None (one engine whose
    ledger is the whole truth: SQLite, or PostgreSQL with one process)."""
    try:
        from lijian.escrow.node import EscrowEngine
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(engine, EscrowEngine):
        return engine.node_name, engine.nodes
    return None


def run_id() -> str:
    """What the workers of one ``lijian serve`` share and a restart changes: the parent
    process (all workers are its children) and its start time (Linux; elsewhere the pid
    alone, which a later run may reuse)."""
    ppid = os.getppid()
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        started = Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        boot, started = "", ""
    return f"{boot}:{ppid}:{started}"


def session_key(accounts: Iterable[Account], run: str) -> bytes:
    """One session key for every worker of one run.

    From the dashboard's credentials (each account's secret or password hash): whoever
    could forge a cookie with it could log in anyway, and an HMAC never gives the
    secrets back. With the run's identity, so a restart still ends every session, as a
    single process does by drawing a fresh key. No key file to leak or rotate.
    """
    material = hashlib.sha256()
    for a in sorted(accounts, key=lambda a: a.username):
        secret = a.secret if a.secret is not None else (a.password_hash or "").encode()
        for part in (a.username.encode(), a.role.encode(), secret):
            material.update(len(part).to_bytes(4, "big") + part)
    return hmac.new(
        material.digest(), f"lijian-dashboard-session\n{run}".encode(), "sha256"
    ).digest()


def cluster_state(b: Book, now_ms: int) -> str:
    """The campaign's state (api-v1 names) from the clock and the shared log.

    The shared log opens a day when a node first draws on it and closes it once every
    lease is back, so it may lag the schedule: the window decides open and closed, the
    log decides sold out (remaining zero) and a close already written."""
    s = b.schedule
    if now_ms >= s.ends_at_ms:
        return "ended"
    w = s.window_at(now_ms)  # the latest window opened by now, maybe closed since
    if w is None:
        return "scheduled"
    t = b.tranches[w.date.isoformat()]
    if now_ms >= w.closes_at_ms or t.state == CLOSED:
        return "closed_for_day"
    return "sold_out" if t.state == OPEN and t.available_fen == 0 else "open"


def day_state(state: str, opens_at_ms: int, closes_at_ms: int, now_ms: int) -> str:
    """A day's state for the history: the log's, or the schedule's where the log lags."""
    if state == CLOSED or now_ms < opens_at_ms:
        return state
    return CLOSED if now_ms >= closes_at_ms else OPEN


def logout_notice(key: bytes, sid: str, expires_s: int) -> str:
    """A logout for the other workers, tagged with the key's fingerprint: only workers of
    the same run act on it (the channel is per database, not per schema or run)."""
    return f"logout {_tag(key)} {sid} {expires_s}"


def read_logout(key: bytes, note: str) -> tuple[str, int] | None:
    parts = note.split(" ")
    if len(parts) != 4 or parts[0] != "logout" or not parts[3].isdigit():
        return None
    if not hmac.compare_digest(parts[1], _tag(key)):
        return None
    return parts[2], int(parts[3])


def _tag(key: bytes) -> str:
    return hmac.new(key, b"lijian-dashboard-notices", "sha256").hexdigest()[:32]
