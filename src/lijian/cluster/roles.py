"""What runs in the processes a supervisor starts: a sequencer, or a gateway.

A sequencer process (``sequencer_main``) takes the ledger's lease on PostgreSQL
(``owner.py``), rebuilds the engine from the log, then serves gateways (``sequencer.py``)
and its own HTTP port (the API and the dashboard). It never heals in place: when a
commit fails (the database restarted, the disk is full) or the lease is lost, it exits
and its supervisor starts a new one, which rebuilds from the log what was acknowledged.

A gateway process (``gateway_main``) is the HTTP API in front of ``RemoteEngine``.

A warm spare (``spare_main``, on PostgreSQL) is a sequencer process started ahead of need
by its supervisor: imported, its lease keeper started, waiting to be told to go.

A process that waits for the lease (a standby, a spare) follows the log meanwhile
(``follower.py``): read-only, its ports closed; once it holds the lease, its engine
replays only the entries it had not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path
from typing import Any, cast

from lijian.cluster.children import SPARE_IMPORTS
from lijian.cluster.keeper import KeptLease
from lijian.cluster.owner import LeaseOptions, exit_if_deposed, hold, take_lease
from lijian.cluster.wire import parse_address
from lijian.http.logs import configure, get_logger
from lijian.http.server import BACKLOG, ServeError, ServeOptions, run_app
from lijian.serving import Loaded, build_app, load_inputs

WATCHDOG_EVERY_S = 0.05  # a failed commit is noticed this soon: the failover starts there
SPARE_CHECK_S = 1.0  # a waiting spare checks this often that its supervisor lives
EXIT_NOT_STARTED = 3  # its port is taken, or the lease is held by a sequencer that serves
EXIT_ENGINE_FAILED = 70  # EX_SOFTWARE: the sequencer's engine failed a commit


def sequencer_app(opts: ServeOptions, loaded: Loaded, listener: socket.socket | None,
                  tls_dir: Path, restarts: Any = None,
                  lease: KeptLease | None = None, warm: Any = None) -> Any:  # fmt: skip
    """The sequencer's app: the one engine, the dashboard, and the gateways' listener
    (TLS with the credentials in ``tls_dir``) started with it (after recovery) and
    stopped before it (before the final commit). ``warm``: the ledger a standby kept
    up with the log while it waited (``follower.LogFollower``), built on only now that
    the lease is held."""
    from lijian.cluster.sequencer import Sequencer
    from lijian.cluster.tls import server_context

    app = build_app(opts, loaded, warm)
    if lease is not None:
        hold(app.engine, lease)
    # One admission per process: the gateways' tickets are admitted by the very one of
    # this process's own HTTP port (the dashboard's), with its durable nonce memory (loaded
    # from the store, each nonce noted for the writer's commits) and its rate limits.
    assert app.local is not None, "a sequencer's app holds the ledger: it admits locally"
    admission = app.local.admission
    engine: Any = app.engine
    # "node": this ledger's shard, in its redemption ids (gateways route by it);
    # "order_registry": R15 is kept across shards (cluster/order_claims.py).
    hello = {"settings": loaded.texts, "manual_clock": engine.clock.manual, "node": opts.node,
             "order_registry": bool(opts.order_registry)}  # fmt: skip

    async def ledger_metrics() -> bytes:
        app.metrics.ledger_gauges = await engine.gauges()
        out: bytes = app.metrics.render_ledger()
        return out

    seq = Sequencer(engine, admission, hello, _count_redeemed(app), ledger_metrics,
                    lease.valid if lease is not None else None,
                    ssl_context=server_context(tls_dir))  # fmt: skip
    if opts.order_registry:
        _shard(app, seq, opts.order_registry, opts.node)
    app.extra_gauges["lijian_sequencer_gateways"] = lambda: float(seq.connections)
    app.extra_gauges["lijian_nonces_remembered"] = lambda: float(len(admission.nonces))
    if restarts is not None:
        app.extra_gauges["lijian_supervisor_restarts"] = lambda: float(restarts.value)

    async def listen() -> None:
        if listener is not None:
            # Gateways are refused until now (a bound socket that does not listen),
            # so while a standby waits they connect to the sequencer that serves.
            listener.listen(BACKLOG)
            await seq.listen_on(listener)

    app.on_started.append(listen)
    _watch(app)
    app.on_stopping.append(seq.close)
    return app


def _shard(app: Any, seq: Any, registry_url: str, node: str) -> None:
    """One shard of several: own its campaigns in the order registry (another node's
    campaign refuses the start), reconcile its rows with the recovered ledger, then
    serve redemptions, voids and quotes through it (cluster/shard_guard.py)."""
    from lijian.cluster.order_claims import OrderRegistry, ShardConflict
    from lijian.cluster.shard_guard import GuardedEngine, ShardGuard, install, owned_campaigns
    from lijian.port import EnginePort

    engine, led = app.engine, app.engine.ledger
    registry = OrderRegistry(registry_url, node)
    try:
        registry.register(owned_campaigns(led))
    except ShardConflict as exc:
        raise ServeError(str(exc)) from None
    active = {k: led.redemptions[rid].campaign_id for k, rid in led.active_orders.items()}
    deleted, added = registry.reconcile(active)
    get_logger().info("order_registry", node=node, deleted=deleted, added=added)
    engine.name_events(node)  # its events' ids name it, as a sharded gateway lists them
    guard = ShardGuard(engine, registry)  # the sequencer counts its redemptions
    install(seq, guard)
    # Its own HTTP port too (the API next to the dashboard): nothing bypasses the guard.
    app.local.engine = cast("EnginePort", GuardedEngine(engine, guard))
    app.on_started.insert(0, guard.start)  # before the listener (appended later)
    app.on_stopping.append(guard.close)


def _watch(app: Any) -> None:
    """Exit the process when its engine fails a commit (``_exit_when_failed``)."""
    watchdog: list[asyncio.Task[None]] = []

    async def start_watchdog() -> None:
        watchdog.append(asyncio.ensure_future(_exit_when_failed(app.engine)))
        for serving in _serving:  # after every other start step: it serves now
            serving.set()

    async def stop_watchdog() -> None:
        for t in watchdog:
            t.cancel()

    app.on_started.append(start_watchdog)
    app.on_stopping.append(stop_watchdog)


def server_main(opts: ServeOptions, http_sock: socket.socket, restarts: Any,
                lopts: LeaseOptions) -> None:  # fmt: skip
    """``lijian serve --workers 1`` on PostgreSQL: the one process, supervised, so that
    after a database restart it exits, is started again and rebuilds from the log."""
    configure(opts.log_level)
    log = get_logger()
    loaded, follower = _follow(opts)
    try:
        lease = take_lease(opts.db, f"{opts.host}:{opts.port}", lopts, opts.log_level)
    except ServeError as exc:
        log.error("server_not_started", why=str(exc))
        raise SystemExit(EXIT_NOT_STARTED) from None
    try:
        try:
            app = build_app(opts, loaded, follower)
        except ServeError as exc:  # input the ledger refuses (its key, a campaign file)
            log.error("server_not_started", why=str(exc))
            raise SystemExit(EXIT_NOT_STARTED) from None
        except Exception as exc:  # the database went away while recovering: start again
            log.error("server_failed", error=_first_line(exc))
            raise SystemExit(EXIT_ENGINE_FAILED) from None
        if lease is not None:
            hold(app.engine, lease)
        app.extra_gauges["lijian_supervisor_restarts"] = lambda: float(restarts.value)
        _watch(app)
        code = run_app(app, opts, http_sock)
    finally:
        if lease is not None:
            lease.release()
    raise SystemExit(code)


async def _exit_when_failed(engine: Any) -> None:
    """Fail-stop, then heal: an engine whose commit failed (a PostgreSQL restart, a lost
    connection, a full disk) answers nothing any more, and recovering in place would
    mean trusting memory the failed commit may have left ahead of the log. So the
    process exits; its supervisor starts a new sequencer, which rebuilds its state from
    the log (what was acknowledged was committed) and serves again, while gateways
    answer 503 with Retry-After and reconnect."""
    while engine.writer.failed is None:
        await asyncio.sleep(WATCHDOG_EVERY_S)
    exit_if_deposed(engine.writer.failed)  # 75, not 70: the lease was taken
    get_logger().error("engine_failed", error=repr(engine.writer.failed))
    os._exit(EXIT_ENGINE_FAILED)


def _count_redeemed(app: Any) -> Any:
    metrics = app.metrics

    def hook(campaign_id: str, out: Any) -> None:
        if out.status == 201 and not out.replayed:
            metrics.granted(campaign_id)
        elif out.status == 200:
            metrics.declined(campaign_id, out.body["reasons"])

    return hook


def gateway_app(opts: ServeOptions, loaded_clients: dict[str, Any], sequencer: list[str],
                dashboard_urls: list[str], tls_dir: Path, restarts: Any = None,
                shards: list[list[str]] | None = None) -> Any:  # fmt: skip
    """``shards``: several sequencers, each its campaigns (cluster/shards.py)."""
    from lijian.cluster.gateway import RemoteEngine
    from lijian.cluster.proxy import pass_through
    from lijian.cluster.shards import ShardedEngine
    from lijian.cluster.tls import client_context
    from lijian.http.assembly import assemble_app

    engine: Any
    if shards is not None and len(shards) > 1:
        engine = ShardedEngine(shards, ssl_context=client_context(tls_dir))
    else:
        engine = RemoteEngine(shards[0] if shards else sequencer,
                              ssl_context=client_context(tls_dir))  # fmt: skip
    # Behind the API, the same app as one process (docs, 404s), with the dashboard's
    # pages passed through to the sequencer instead of served here.
    extensions = [pass_through(dashboard_urls)] if dashboard_urls else []
    app = assemble_app(engine, loaded_clients, access_log=opts.access_log, extensions=extensions)
    if restarts is not None:
        app.extra_gauges["lijian_supervisor_restarts"] = lambda: float(restarts.value)
    return app


# A child reads its inputs again (they were checked by the parent): nothing but options
# and sockets crosses the process boundary.
def sequencer_main(opts: ServeOptions, http_sock: socket.socket | None,
                   listener: socket.socket | str, restarts: Any, lopts: LeaseOptions,
                   address: str, tls_dir: Path) -> None:  # fmt: skip
    """One sequencer process: the lease (waiting as a standby if it must), the engine
    rebuilt from the log, then the gateways' listener. ``listener`` is a socket the
    parent bound, or an address this process binds only once it serves (so that while
    it waits, gateways are refused and turn to the sequencer that serves)."""
    configure(opts.log_level)
    log = get_logger()
    loaded, follower = _follow(opts)
    try:
        lease = take_lease(opts.db, address, lopts, opts.log_level)
    except ServeError as exc:
        log.error("sequencer_not_started", why=str(exc))
        raise SystemExit(EXIT_NOT_STARTED) from None
    try:
        try:
            sock = listener if isinstance(listener, socket.socket) else bind_listener(listener)
            app = sequencer_app(opts, loaded, sock, tls_dir, restarts, lease, follower)
        except OSError as exc:
            log.error("sequencer_not_started", why=f"{address}: {exc.strerror or exc}")
            raise SystemExit(EXIT_NOT_STARTED) from None
        except ServeError as exc:  # input the ledger refuses (its key, a campaign file)
            log.error("sequencer_not_started", why=str(exc))
            raise SystemExit(EXIT_NOT_STARTED) from None
        except Exception as exc:  # the database went away while recovering: start again
            log.error("sequencer_failed", error=_first_line(exc))
            raise SystemExit(EXIT_ENGINE_FAILED) from None
        code = run_app(app, opts, http_sock)
    finally:
        if lease is not None:
            lease.release()
    raise SystemExit(code)


_serving: list[Any] = []  # this process's "serving" event, from its supervisor (run_role)
_following: list[tuple[Loaded, Any]] = []  # a spare's inputs and follower, from before `go`


def _follow(opts: ServeOptions) -> tuple[Loaded, Any]:
    """This process's inputs, and the follower of the log it uses while it takes the
    lease (``follower.py``): the one a spare started before its ``go``, or one started
    now on PostgreSQL, for a process that may wait (``--standby``, a supervisor's
    restarts) and for one that takes the lease at once too: its keeper's interpreter
    starts and takes the lease on the other core while the follower reads and decodes
    the newest snapshot (0.7 s of a restart that were one after the other). None on
    SQLite (no lease, no standby)."""
    if _following:
        return _following.pop()
    loaded = load_inputs(opts)
    from lijian.cluster.follower import start_follower

    return loaded, start_follower(opts.db, loaded.settings, opts.node)


def run_role(serving: Any, target: Any, *args: Any) -> None:
    """A supervised process that says when it serves (the supervisor then starts its
    spare): ``serving`` is set once the app started (``_watch``)."""
    _serving.append(serving)
    target(*args)


def spare_main(go: Any, serving: Any, target: Any, *args: Any) -> None:
    """A warm spare: a sequencer (or one-process server) started ahead of need. It does
    now what a new process spends its first seconds on (the interpreter, the imports,
    the lease keeper's own interpreter: ``keeper.prestart``), then waits for its
    supervisor's ``go`` (the sequencer died) and runs ``target`` as a restarted one
    would: the lease first, then the log. Before ``go`` it only reads: it follows the
    log read-only (``follower.py``, no lease, no write), so that after ``go`` it replays
    just the entries committed since its last poll."""
    import importlib
    import signal

    from lijian.cluster import keeper

    # Ctrl-C reaches the whole process group: the supervisor stops this one (SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The keeper first: its interpreter starts (at its own priority) while this one
    # imports, so a spare told to go soon after its birth does not wait for both.
    keeper.prestart()
    for name in SPARE_IMPORTS:
        importlib.import_module(name)
    _prefollow(args)
    parent = os.getppid()
    while not go.wait(SPARE_CHECK_S):
        if os.getppid() != parent:  # the supervisor is gone: so is the need
            os._exit(0)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_role(serving, target, *args)


def _prefollow(args: tuple[Any, ...]) -> None:
    """A spare follows the log while it waits (``follower.py``), so that its ``go`` costs
    the lease and the tail; its inputs are read now, as the target would read them."""
    opts = args[0]
    assert isinstance(opts, ServeOptions)
    try:
        loaded = load_inputs(opts)
    except ServeError:
        return  # the target reads them again after `go` and says what is wrong
    configure(opts.log_level)
    from lijian.cluster.follower import start_follower
    from lijian.inputs import default_geo
    from lijian.new_campaigns import needs_geo

    _following.append((loaded, start_follower(opts.db, loaded.settings, opts.node)))
    # The cities' boundaries too, while the follower loads (cached per process: the
    # engine's start finds them), else the new sequencer's start waits about a second
    # for them on a busy machine (before the change: its first redemption, on the loop).
    for s in loaded.settings:
        if needs_geo(s):
            default_geo(s.campaign.city_adcode)


def bind_listener(address: str) -> socket.socket:
    """The gateways' socket, bound but not yet listening (``sequencer_app`` listens)."""
    host, port = parse_address(address)
    if host == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(port))  # left by a sequencer that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(port))
        os.chmod(str(port), 0o600)  # only this user may connect (TLS is checked as well)
        return sock
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    return sock


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def gateway_main(opts: ServeOptions, address: str, dashboard_url: str,
                 http_sock: socket.socket, restarts: Any, tls_dir: Path) -> None:  # fmt: skip
    configure(opts.log_level)
    clients = load_inputs(opts).clients
    app = gateway_app(opts, clients, [address], [dashboard_url], tls_dir, restarts)
    raise SystemExit(run_app(app, opts, http_sock))


def run_gateway(opts: ServeOptions, clients: dict[str, Any], sequencer: list[str],
                dashboard_urls: list[str], tls_dir: Path,
                shards: list[list[str]] | None = None) -> int:  # fmt: skip
    configure(opts.log_level)
    app = gateway_app(opts, clients, sequencer, dashboard_urls, tls_dir, None, shards)
    return run_app(app, opts, None)
