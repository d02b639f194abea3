"""Start N engine processes against one database (what ``lijian serve --workers N`` uses).

Each serving process calls :func:`open_engine` with its worker index; with one worker
that is the plain :class:`~lijian.engine.Engine` (SQLite or PostgreSQL), with several it
is an :class:`~lijian.escrow.node.EscrowEngine` node named ``w{index}`` (PostgreSQL only:
SQLite has one writer). Node names must stay the same across restarts: a restarted
worker adopts the escrow leases of its previous incarnation at once instead of waiting
for them to time out.

:func:`start_workers` starts the processes (``spawn``: no state is inherited across the
fork, each builds its own engine) and :func:`stop_workers` stops them, bounded in time.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lijian.clock import Clock
from lijian.core.errors import InvalidRequest
from lijian.core.escrow import EscrowPolicy
from lijian.core.settings import Settings
from lijian.engine import Engine
from lijian.store import is_postgres_url

MAX_WORKERS = 64  # leases, pool connections (4 each) and PostgreSQL's max_connections
STOP_TIMEOUT_S = 30.0


def node_name(worker: int) -> str:
    return f"w{worker}"


def open_engine(
    settings: Iterable[Settings],
    db: str | Path,
    clock: Clock | None = None,
    *,
    worker: int = 0,
    workers: int = 1,
    policy: EscrowPolicy | None = None,
    **kw: Any,
) -> Engine:
    """The engine of serving process ``worker`` (0-based) of ``workers``."""
    if not 1 <= workers <= MAX_WORKERS or not 0 <= worker < workers:
        raise InvalidRequest(f"worker {worker} of {workers}: need 0 <= worker < workers <= 64")
    if workers == 1:
        return Engine(settings, db, clock, **kw)
    if not is_postgres_url(db):
        raise InvalidRequest("--workers > 1 needs a postgresql:// database (SQLite has one writer)")
    from lijian.escrow.node import EscrowEngine

    return EscrowEngine(
        settings, str(db), clock, node_id=node_name(worker), nodes=workers, policy=policy, **kw
    )


def start_workers(
    workers: int, target: Callable[..., Any], *args: Any
) -> list[multiprocessing.process.BaseProcess]:
    """Start ``target(worker, workers, *args)`` in ``workers`` fresh processes."""
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidRequest(f"workers must be 1..{MAX_WORKERS}")
    ctx = multiprocessing.get_context("spawn")
    procs: list[multiprocessing.process.BaseProcess] = [
        ctx.Process(target=target, args=(i, workers, *args), name=f"lijian-{node_name(i)}")
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    return procs


def stop_workers(
    procs: list[multiprocessing.process.BaseProcess], timeout_s: float = STOP_TIMEOUT_S
) -> None:
    """SIGTERM each (a worker closes its engine: leases go back), SIGKILL after the timeout."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout_s)
        if p.is_alive():
            p.kill()
            p.join(timeout_s)
