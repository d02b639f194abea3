"""``lijian serve --workers N``: one sequencer process and N gateway processes.

The parent binds everything first and keeps it: the public HTTP socket (all gateways
accept on it), the sequencer's Unix socket (gateways connect to it) and the sequencer's
private HTTP socket (the dashboard, which gateways pass through). Because the parent
holds the sockets, a process that dies is replaced without the port ever closing: the
parent checks its children every ``WATCH_EVERY_S`` and starts a new one in place of a
dead one (as gunicorn's arbiter does), logs it and counts it
(``lijian_supervisor_restarts`` in every process's /metrics), after a back-off that grows
while the same role keeps dying (``RESTART_DELAY_S``). It gives up, and exits 1, only
when one role died ``RESTARTS_MAX`` times within ``RESTART_WINDOW_S``, or when the
sequencer could not start at all (exit 3: its port). SIGTERM or
SIGINT stops the gateways first (they finish their in-flight requests), then the
sequencer (it drains its queue and commits), and exits 0.

The other entry points: :func:`run_sequencer` (``lijian sequencer``) and
:func:`run_gateway` (``lijian gateway``) for gateways on other machines.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import Any

from lijian.http.logs import configure, get_logger
from lijian.http.server import BACKLOG, Loaded, ServeOptions, load_inputs, run_app

WATCH_EVERY_S = 0.2
WATCHDOG_EVERY_S = 0.2
EXIT_ENGINE_FAILED = 70  # EX_SOFTWARE: the sequencer's engine failed a commit
RESTARTS_MAX = 30
RESTART_WINDOW_S = 120.0
RESTART_DELAY_S = (0.1, 5.0)  # back-off between restarts of one role: first, longest
STOP_TIMEOUT_S = 30.0


# ---------------------------------------------------------------- in the children
def sequencer_app(opts: ServeOptions, loaded: Loaded, listener: socket.socket | None,
                  restarts: Any = None) -> Any:  # fmt: skip
    """The sequencer's app: the one engine, the dashboard, and the gateways' listener
    started with it (after recovery) and stopped before it (before the final commit)."""
    from lijian.cluster.sequencer import Sequencer
    from lijian.http.admission import Admission
    from lijian.http.server import build_app

    app = build_app(opts, loaded)
    admission = Admission(loaded.clients)
    # This process's own HTTP port (the dashboard's) shares the one nonce memory.
    app.auth.nonces = admission.nonces
    app.limiter = admission.limiter
    engine: Any = app.engine
    hello = {"settings": loaded.texts, "manual_clock": engine.clock.manual}

    async def ledger_metrics() -> bytes:
        app.metrics.ledger_gauges = await engine.gauges()
        out: bytes = app.metrics.render_ledger()
        return out

    seq = Sequencer(engine, admission, hello, _count_redeemed(app), ledger_metrics)
    app.extra_gauges["lijian_sequencer_gateways"] = lambda: float(seq.connections)
    app.extra_gauges["lijian_nonces_remembered"] = lambda: float(len(admission.nonces))
    if restarts is not None:
        app.extra_gauges["lijian_supervisor_restarts"] = lambda: float(restarts.value)

    async def listen() -> None:
        if listener is not None:
            await seq.listen_on(listener)

    watchdog: list[asyncio.Task[None]] = []

    async def start_watchdog() -> None:
        watchdog.append(asyncio.ensure_future(_exit_when_failed(engine)))

    async def stop_watchdog() -> None:
        for t in watchdog:
            t.cancel()

    app.on_started.append(listen)
    app.on_started.append(start_watchdog)
    app.on_stopping.append(stop_watchdog)
    app.on_stopping.append(seq.close)
    return app


async def _exit_when_failed(engine: Any) -> None:
    """Fail-stop, then heal: an engine whose commit failed (a PostgreSQL restart, a lost
    connection, a full disk) answers nothing any more, and recovering in place would
    mean trusting memory the failed commit may have left ahead of the log. So the
    process exits; its supervisor starts a new sequencer, which rebuilds its state from
    the log (what was acknowledged was committed) and serves again, while gateways
    answer 503 with Retry-After and reconnect."""
    while engine.writer.failed is None:
        await asyncio.sleep(WATCHDOG_EVERY_S)
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
                dashboard_url: str | None, restarts: Any = None) -> Any:  # fmt: skip
    from lijian.cluster.gateway import RemoteEngine
    from lijian.cluster.proxy import Proxy
    from lijian.http.assembly import assemble_app

    engine = RemoteEngine(sequencer)
    fallback = Proxy(dashboard_url) if dashboard_url else None
    app = assemble_app(engine, loaded_clients, access_log=opts.access_log, fallback=fallback)
    if restarts is not None:
        app.extra_gauges["lijian_supervisor_restarts"] = lambda: float(restarts.value)
    return app


# A child reads its inputs again (they were checked by the parent): nothing but options
# and sockets crosses the process boundary.
def _sequencer_main(opts: ServeOptions, http_sock: socket.socket, listener: socket.socket,
                    restarts: Any) -> None:  # fmt: skip
    configure(opts.log_level)
    app = sequencer_app(opts, load_inputs(opts), listener, restarts)
    raise SystemExit(run_app(app, opts, http_sock))


def _gateway_main(opts: ServeOptions, address: str, dashboard_url: str,
                  http_sock: socket.socket, restarts: Any) -> None:  # fmt: skip
    configure(opts.log_level)
    app = gateway_app(opts, load_inputs(opts).clients, [address], dashboard_url, restarts)
    raise SystemExit(run_app(app, opts, http_sock))


# -------------------------------------------------------------------- the parent
class _Role:
    """One kind of child (the sequencer, or gateway i): how to start it, its deaths."""

    def __init__(self, name: str, target: Any, args: tuple[Any, ...]) -> None:
        self.name = name
        self.target = target
        self.args = args
        self.proc: multiprocessing.process.BaseProcess | None = None
        self.deaths: collections.deque[float] = collections.deque(maxlen=RESTARTS_MAX)
        self.restart_at_s: float | None = None  # a death waits out its back-off

    def start(self, ctx: Any) -> None:
        self.proc = ctx.Process(target=self.target, args=self.args, name=f"lijian-{self.name}")
        self.proc.start()
        get_logger().info("started", role=self.name, pid=self.proc.pid)

    def died(self) -> bool:
        return self.proc is not None and not self.proc.is_alive()

    def too_many_deaths(self, now_s: float) -> bool:
        self.deaths.append(now_s)
        recent = sum(1 for t in self.deaths if now_s - t < RESTART_WINDOW_S)
        # Back off while a role keeps dying (e.g. the database is down for a while).
        self.restart_at_s = now_s + min(RESTART_DELAY_S[0] * 2 ** (recent - 1), RESTART_DELAY_S[1])
        return len(self.deaths) == RESTARTS_MAX and now_s - self.deaths[0] < RESTART_WINDOW_S


def serve_cluster(opts: ServeOptions, loaded: Loaded) -> int:
    configure(opts.log_level)
    log = get_logger()
    ctx = multiprocessing.get_context("spawn")  # each child builds its own state
    public = socket.create_server((opts.host, opts.port), backlog=BACKLOG)
    private = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)
    rundir = tempfile.mkdtemp(prefix="lijian-")
    path = os.path.join(rundir, "sequencer.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(BACKLOG)
    dashboard_url = f"http://127.0.0.1:{private.getsockname()[1]}"
    restarts = ctx.Value("i", 0)
    roles = [_Role("sequencer", _sequencer_main, (opts, private, listener, restarts))]
    roles += [
        _Role(f"gateway-{i}", _gateway_main,
              (opts, f"unix:{path}", dashboard_url, public, restarts))
        for i in range(opts.workers)
    ]  # fmt: skip
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        for r in roles:
            r.start(ctx)
        log.info("cluster", sequencer=path, gateways=opts.workers, port=opts.port)
        while not stopping:
            time.sleep(WATCH_EVERY_S)  # a signal interrupts the sleep and sets ``stopping``
            for r in roles:
                if r.restart_at_s is not None and time.monotonic() >= r.restart_at_s:
                    r.restart_at_s = None
                    with restarts.get_lock():
                        restarts.value += 1
                    log.warning("restarting", role=r.name, restarts=restarts.value)
                    r.start(ctx)
                    continue
                if stopping or r.restart_at_s is not None or not r.died():
                    continue
                assert r.proc is not None
                exitcode = r.proc.exitcode
                if exitcode == 3 and r.name == "sequencer":
                    log.error("sequencer could not start", exitcode=exitcode)
                    return 1
                log.warning("died", role=r.name, exitcode=exitcode)
                if r.too_many_deaths(time.monotonic()):
                    log.error("giving up", role=r.name, deaths=RESTARTS_MAX,
                              window_s=RESTART_WINDOW_S)  # fmt: skip
                    return 1
    finally:
        _stop([r for r in roles if r.name != "sequencer"])
        _stop([r for r in roles if r.name == "sequencer"])
        for s in (public, private, listener):
            s.close()
        shutil.rmtree(rundir, ignore_errors=True)
    return 0


def _stop(roles: list[_Role]) -> None:
    """SIGTERM each (a gateway drains, the sequencer commits), SIGKILL after the timeout."""
    procs = [r.proc for r in roles if r.proc is not None]
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(STOP_TIMEOUT_S)
        if p.is_alive():
            p.kill()
            p.join(STOP_TIMEOUT_S)


# ------------------------------------------------------- separate commands
def run_sequencer(opts: ServeOptions, loaded: Loaded, listen: str) -> int:
    """``lijian sequencer``: the engine on opts' HTTP port, gateways on ``listen``."""
    from lijian.cluster.wire import parse_address

    configure(opts.log_level)
    host, port = parse_address(listen)
    if host == "unix":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(port))
        listener.listen(BACKLOG)
    else:
        listener = socket.create_server((host, int(port)), backlog=BACKLOG)
    return run_app(sequencer_app(opts, loaded, listener), opts, None)


def run_gateway(opts: ServeOptions, clients: dict[str, Any], sequencer: list[str],
                dashboard_url: str | None) -> int:  # fmt: skip
    configure(opts.log_level)
    return run_app(gateway_app(opts, clients, sequencer, dashboard_url), opts, None)
