"""One serving process under uvicorn: its options, socket, limits and graceful stop.

What it serves is built by the composition root (``lijian.serving``: start-up inputs,
the engine, the app). One process, one event loop (uvloop) with the httptools parser:
the engine's ledger lives on that loop. SIGTERM/SIGINT: uvicorn stops accepting, lets
in-flight requests finish (at most ``GRACEFUL_SHUTDOWN_S``), then the lifespan shutdown
drains the writer's queue and commits (``Engine.aclose``) before the process exits.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn

from lijian.http.app import LijianApp
from lijian.http.guard import Limits, guarded_protocol, limits_from_env, raise_open_files_limit
from lijian.http.guard import gauges as guard_gauges
from lijian.http.logs import get_logger
from lijian.store import shown_db

GRACEFUL_SHUTDOWN_S = 15
CONNECTIONS_MAX = 8_192  # beyond this uvicorn answers 503 instead of queueing sockets
# uvicorn counts connections and request tasks against CONNECTIONS_MAX; the guard's own
# total (http/guard.py, 8,000 by default) stays this far below it, so that the guard,
# which lets the crowding network's slowest go, decides before uvicorn refuses everybody.
CONNECTIONS_MARGIN = 192
BACKLOG = 4_096
KEEP_ALIVE_S = 30
# Slow, idle and oversized clients (http/guard.py): head size, head and body deadlines,
# connections per network and in total.
LIMITS = Limits(keep_alive_s=KEEP_ALIVE_S)
OPEN_FILES_WANTED = 2 * CONNECTIONS_MAX + 1_024  # sockets, the db, logs, refused accepts


class ServeError(Exception):
    """Bad start-up input (files, options): printed, exit status 2."""


@dataclass
class ServeOptions:
    campaigns: Sequence[Path]
    clients: Path
    db: str
    host: str = "127.0.0.1"
    port: int = 8000
    clock: str | None = None
    workers: int = 1
    log_level: str = "info"
    access_log: bool = True
    extensions: Sequence[str] = field(default_factory=tuple)
    # PostgreSQL: refuse (503) rather than acknowledge without a synchronous standby.
    require_sync_standby: bool = False
    # A sharded sequencer (docs/SCALE-OUT.md): its node (in its redemption ids) and the
    # order registry every shard shares (cluster/order_claims.py); None: one ledger.
    node: str = "a"
    order_registry: str | None = None


MAX_WORKERS = 64  # gateway processes of one serve; each holds one sequencer connection


def check_workers(opts: ServeOptions) -> None:
    """What several serving processes need, checked before any process starts."""
    if not 1 <= opts.workers <= MAX_WORKERS:
        raise ServeError(f"--workers must be 1..{MAX_WORKERS}")


def bind_public(host: str, port: int) -> socket.socket:
    """The listening socket of ``lijian serve``; ServeError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ServeError(f"cannot listen on {host}:{port}: {reason}") from None


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stop signal during start-up exits at once.

    uvicorn only notes the signal and waits for the start-up to finish; a gateway's
    start-up waits for its sequencer's hello, which may not come (the sequencer is
    stopping too, under the same signal). Nothing has been served before start-up is
    complete, so there is nothing to drain or commit."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.started:
            get_logger().info("stopped_while_starting", signal=sig)
            os._exit(0)
        super().handle_exit(sig, frame)


def run_app(app: LijianApp, opts: ServeOptions, sock: socket.socket | None) -> int:
    """Run ``app`` under uvicorn on ``sock`` (already bound) or on opts' host and port."""
    log = get_logger()
    try:
        limits = limits_from_env(LIMITS)
    except ValueError as exc:
        print(f"lijian: {exc}", file=sys.stderr)
        return 2
    raise_open_files_limit(max(OPEN_FILES_WANTED, 2 * limits.connections_max + 1_024))
    protocol = guarded_protocol(limits)
    app.extra_gauges.update(guard_gauges(protocol))
    config = uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        loop="uvloop",
        # uvicorn's httptools protocol with a head size limit, head and body deadlines
        # and limits of connections per network and in total (http/guard.py).
        http=protocol,
        ws="none",
        lifespan="on",
        log_config=None,  # logs.configure routed uvicorn's loggers through structlog
        access_log=False,  # the app logs each request itself, with its request id
        server_header=False,
        # No client-address logic depends on X-Forwarded-For; skipping uvicorn's proxy
        # middleware saves a layer on every request.
        proxy_headers=False,
        limit_concurrency=max(CONNECTIONS_MAX, limits.connections_max + CONNECTIONS_MARGIN),
        backlog=BACKLOG,
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    if sock is None:
        # Bound before anything is logged or uvicorn starts the app: "ready" is logged
        # only on a socket that is ours, and a taken port is one line (ServeError: exit
        # 2), not a logged startup followed by uvicorn's own failure.
        sock = bind_public(opts.host, opts.port)
    server = _Server(config)
    log.info("starting", host=opts.host, port=opts.port, db=shown_db(opts.db), clock=opts.clock)
    # uvicorn drains on SIGTERM/SIGINT, restores the handlers it found and re-raises the
    # signal. With these no-op handlers in place the re-raise returns, and a drained
    # shutdown exits 0 (what process supervisors read as "stopped cleanly").
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])
    if not server.started:
        return 3
    log.info("exited")
    return 0
