"""``lijian serve``: load campaigns and clients, build the engine, run uvicorn.

One process, one event loop (uvloop) with the httptools parser: the engine's ledger
lives on that loop. SIGTERM/SIGINT: uvicorn stops accepting, lets in-flight requests
finish (at most ``GRACEFUL_SHUTDOWN_S``), then the lifespan shutdown drains the writer's
queue and commits (``Engine.aclose``) before the process exits.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from lijian.http.app import Extension, LijianApp
from lijian.http.logs import configure, get_logger

GRACEFUL_SHUTDOWN_S = 15
CONNECTIONS_MAX = 8_192  # beyond this uvicorn answers 503 instead of queueing sockets
BACKLOG = 4_096
KEEP_ALIVE_S = 30


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


def check_workers(opts: ServeOptions) -> None:
    """What several serving processes need, checked before any process starts."""
    from lijian.escrow.cluster import MAX_WORKERS

    if not 1 <= opts.workers <= MAX_WORKERS:
        raise ServeError(f"--workers must be 1..{MAX_WORKERS}")
    is_pg = opts.db.startswith(("postgresql://", "postgres://"))
    if opts.workers > 1 and not is_pg:
        raise ServeError("--workers > 1 needs a postgresql:// --db (SQLite has one writer)")
    # A manual --clock with several workers is shared through the database (the nodes'
    # shared_clock row, lijian.escrow.node): moving it through any worker moves it for all.


def build_app(opts: ServeOptions, worker: int = 0) -> LijianApp:
    """Everything that can fail on bad input, before the port is bound.

    ``worker`` is this serving process's index of ``opts.workers``: one worker runs the
    plain engine (SQLite or PostgreSQL); several run escrow nodes on one PostgreSQL
    database (lijian.escrow.cluster)."""
    from lijian.clock import parse_clock
    from lijian.core.settings import SettingsError
    from lijian.engine import load_settings_file
    from lijian.escrow.cluster import open_engine
    from lijian.http.clients import ClientsError, load_clients
    from lijian.http.extras import load_extension

    check_workers(opts)
    settings = []
    problems: list[str] = []
    for f in opts.campaigns:
        try:
            settings.append(load_settings_file(f))
        except SettingsError as exc:
            problems += [f"{f}: {p.path}: {p.message}" for p in exc.problems]
    try:
        clients = load_clients(opts.clients)
    except ClientsError as exc:
        problems += [f"{opts.clients}: {p}" for p in exc.problems]
    try:
        clock = parse_clock(opts.clock)
    except ValueError as exc:
        problems.append(f"--clock: {exc}")
    if not settings and not problems:
        problems.append("at least one --campaign is required")
    if problems:
        raise ServeError("\n".join(problems))
    exts: list[Extension] = []
    for spec in opts.extensions:
        ext = load_extension(spec)
        if ext is not None:
            exts.append(ext)
    engine = open_engine(
        settings, opts.db, clock, worker=worker, workers=opts.workers, background=False
    )
    return LijianApp(engine, clients, access_log=opts.access_log, extensions=exts)


def serve(opts: ServeOptions) -> int:
    check_workers(opts)
    if opts.workers > 1:
        return _serve_workers(opts)
    return _serve_one(opts, 0, None)


def _serve_workers(opts: ServeOptions) -> int:
    """N processes accept on one listening socket bound here; each runs its own engine
    (an escrow node). SIGTERM stops them all (each drains and returns its leases)."""
    import socket

    from lijian.escrow.cluster import start_workers, stop_workers

    sock = socket.create_server((opts.host, opts.port), backlog=BACKLOG, reuse_port=False)
    procs = start_workers(opts.workers, _worker_main, opts, sock)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        while not stopping and all(p.is_alive() for p in procs):
            time.sleep(0.2)  # a signal interrupts the sleep and sets ``stopping``
    finally:
        stop_workers(procs)
        sock.close()
    return 0 if stopping else 1


def _worker_main(worker: int, workers: int, opts: ServeOptions, sock: object) -> None:
    sys.exit(_serve_one(opts, worker, sock))


def _serve_one(opts: ServeOptions, worker: int, sock: object | None) -> int:
    configure(opts.log_level)
    log = get_logger()
    app = build_app(opts, worker)
    config = uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_config=None,  # logs.configure routed uvicorn's loggers through structlog
        access_log=False,  # the app logs each request itself, with its request id
        server_header=False,
        # No client-address logic depends on X-Forwarded-For; skipping uvicorn's proxy
        # middleware saves a layer on every request.
        proxy_headers=False,
        limit_concurrency=CONNECTIONS_MAX,
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    log.info("starting", host=opts.host, port=opts.port, db=opts.db, clock=opts.clock)
    # uvicorn drains on SIGTERM/SIGINT, restores the handlers it found and re-raises the
    # signal. With these no-op handlers in place the re-raise returns, and a drained
    # shutdown exits 0 (what process supervisors read as "stopped cleanly").
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock] if sock is not None else None)  # type: ignore[list-item]
    if not server.started:
        return 3
    log.info("exited")
    return 0
