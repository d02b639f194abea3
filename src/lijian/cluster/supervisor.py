"""``lijian serve``: one process, or (``--workers N``) one sequencer process and N
gateway processes.

The parent binds everything first and keeps it: the public HTTP socket (all gateways
accept on it), the sequencer's Unix socket (gateways connect to it) and the sequencer's
private HTTP socket (the dashboard, which gateways pass through). The Unix socket is
in a private run directory (0700, the socket 0600) with the link's credentials, made
at every start (``tls.ephemeral_set``): the sequencer talks TLS with client
certificates there as it does on TCP. Because the parent
holds the sockets, a process that dies is replaced without the port ever closing: the
parent checks its children every ``WATCH_EVERY_S`` and starts a new one in place of a
dead one (as gunicorn's arbiter does), logs it and counts it
(``lijian_supervisor_restarts`` in every process's /metrics), after a back-off that grows
while the same role keeps dying (``RESTART_DELAY_S``). It gives up, and exits 1, only
when one role died ``RESTARTS_MAX`` times within ``RESTART_WINDOW_S``, or when the
sequencer could not start at all (exit 3: its port). SIGTERM or
SIGINT stops the gateways first (they finish their in-flight requests), then the
sequencer (it drains its queue and commits), and exits 0.

On PostgreSQL the sequencer takes the ledger's lease before it recovers (``owner.py``).
The parent names the lease's holder once, so a sequencer it restarts after reaping the
dead one takes the lease back at once; if a standby elsewhere took it meanwhile, the new
child waits as a standby itself.

On PostgreSQL the parent also keeps a **warm spare** of the sequencer (``roles.spare_main``):
a process started ahead of need (``SPARE_AFTER_S`` after the sequencer it would replace
serves, so that the two never compete for the machine during a recovery), its
interpreter, imports and lease keeper ready, that waits for the parent's word. When
the sequencer dies (its commit failed: the primary was lost), the spare is told to go
at once and takes the lease as a restarted sequencer would, the seconds a new
interpreter takes on a busy machine saved from the failover; a new spare follows. It
changes nothing of safety: the spare takes the lease, under the same holder name, only
once told, then replays the log like any new sequencer.

``lijian sequencer [--standby]`` (:func:`run_sequencer`) is the same parent with one
child, the sequencer, so that it too heals from a database restart by itself; gateways
on other machines run ``lijian gateway`` (``roles.run_gateway``). What the children run
is in ``roles.py``.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from lijian.cluster.children import check_children_environment, children_context
from lijian.cluster.owner import LeaseOptions, check_lease_options, new_holder
from lijian.cluster.roles import (
    EXIT_NOT_STARTED,
    bind_listener,
    gateway_main,
    run_role,
    sequencer_main,
    server_main,
    spare_main,
)
from lijian.cluster.tls import ephemeral_set
from lijian.http.logs import configure, get_logger
from lijian.http.server import BACKLOG, ServeOptions, run_app
from lijian.serving import Loaded, build_app, load_inputs
from lijian.store import is_postgres_url

WATCH_EVERY_S = 0.1
RESTARTS_MAX = 30
RESTART_WINDOW_S = 120.0
RESTART_DELAY_S = (0.1, 5.0)  # back-off between restarts of one role: first, longest
STOP_TIMEOUT_S = 30.0
# A spare is started this long after the process it would replace serves: not while that
# one recovers, nor while it meets the clients who waited for it (its imports take a
# core for a second or more).
SPARE_AFTER_S = 5.0


class _Role:
    """One kind of child (the sequencer, or gateway i): how to start it, its deaths."""

    def __init__(self, name: str, target: Any, args: tuple[Any, ...]) -> None:
        self.name = name
        self.target = target
        self.args = args
        self.proc: multiprocessing.process.BaseProcess | None = None
        self.deaths: collections.deque[float] = collections.deque(maxlen=RESTARTS_MAX)
        self.restart_at_s: float | None = None  # a death waits out its back-off
        self.later_args: tuple[Any, ...] | None = None  # for every start after a death
        self.warm = False  # keep a spare (roles.spare_main) ready to replace it
        self.spare: multiprocessing.process.BaseProcess | None = None
        self.go: Any = None  # the spare's event: set, it runs
        self.serving: Any = None  # the live process's event: set once it serves
        self.spare_serving: Any = None  # the spare's, for when it takes over
        self.serving_seen_s: float | None = None  # when ``serving`` was first seen set

    def start(self, ctx: Any) -> None:
        check_children_environment()
        spare, self.spare = self.spare, None
        if spare is not None and spare.is_alive():
            self.go.set()  # warm: its interpreter and keeper are ready
            self.proc, self.serving, self.serving_seen_s = spare, self.spare_serving, None
            get_logger().info("started", role=self.name, pid=spare.pid, warm=True)
            return
        self.serving_seen_s = None
        if self.warm:
            self.serving = ctx.Event()
            target, args = run_role, (self.serving, self.target, *self.args)
        else:
            target, args = self.target, self.args
        self.proc = ctx.Process(target=target, args=args, name=f"lijian-{self.name}")
        self.proc.start()
        get_logger().info("started", role=self.name, pid=self.proc.pid)

    def keep_spare(self, ctx: Any, now_s: float) -> None:
        """Start a spare ``SPARE_AFTER_S`` after the live process serves (so that the two
        never compete for the machine while it recovers or meets the clients who waited,
        on a failover too), and again if one died."""
        if self.spare is not None:
            if self.spare.is_alive():
                return
            self.spare = None
        if self.serving is None or not self.serving.is_set() or self.died():
            return
        if self.serving_seen_s is None:
            self.serving_seen_s = now_s
        if now_s < self.serving_seen_s + SPARE_AFTER_S:
            return
        self.go, self.spare_serving = ctx.Event(), ctx.Event()
        args = self.later_args if self.later_args is not None else self.args
        self.spare = ctx.Process(target=spare_main,
                                 args=(self.go, self.spare_serving, self.target, *args),
                                 name=f"lijian-{self.name}-spare")  # fmt: skip
        self.spare.start()
        get_logger().info("spare", role=self.name, pid=self.spare.pid)

    def died(self) -> bool:
        return self.proc is not None and not self.proc.is_alive()

    def too_many_deaths(self, now_s: float) -> bool:
        self.deaths.append(now_s)
        recent = sum(1 for t in self.deaths if now_s - t < RESTART_WINDOW_S)
        # Back off while a role keeps dying (e.g. the database is down for a while).
        self.restart_at_s = now_s + min(RESTART_DELAY_S[0] * 2 ** (recent - 1), RESTART_DELAY_S[1])
        return len(self.deaths) == RESTARTS_MAX and now_s - self.deaths[0] < RESTART_WINDOW_S


def serve(opts: ServeOptions, lopts: LeaseOptions | None = None) -> int:
    """``lijian serve``: one process (``--workers 1``), or a sequencer and N gateways."""
    lopts = lopts or LeaseOptions()
    check_lease_options(opts.db, lopts)
    loaded = load_inputs(opts)
    if opts.workers > 1:
        return serve_cluster(opts, loaded, lopts)
    configure(opts.log_level)
    if is_postgres_url(opts.db):
        return _serve_supervised(opts, lopts)
    return run_app(build_app(opts, loaded), opts, None)  # SQLite: no lease, no parent


def _serve_supervised(opts: ServeOptions, lopts: LeaseOptions) -> int:
    """One serving process on PostgreSQL, under a parent that holds its port and starts
    it again when it exits after a failed commit (a database restart): it heals by itself
    like a sequencer does. (On SQLite a failed commit means a full or broken disk, which
    a restart does not mend: the one process stays, answering 503, for an operator.)"""
    ctx = children_context()
    sock = socket.create_server((opts.host, opts.port), backlog=BACKLOG)
    restarts = ctx.Value("i", 0)
    first = replace(lopts, holder=lopts.holder or new_holder())
    role = _Role("server", server_main, (opts, sock, restarts, first))
    role.later_args = (opts, sock, restarts, replace(first, standby=True))
    role.warm = True
    try:
        return _supervise(ctx, [role], restarts)
    finally:
        sock.close()


def serve_cluster(opts: ServeOptions, loaded: Loaded, lopts: LeaseOptions) -> int:
    configure(opts.log_level)
    ctx = children_context()  # each child builds its own state
    public = socket.create_server((opts.host, opts.port), backlog=BACKLOG)
    private = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)
    rundir = tempfile.mkdtemp(prefix="lijian-")  # 0700: this user's only
    os.chmod(rundir, 0o700)
    tls_dir = Path(rundir) / "tls"
    tls_dir.mkdir(mode=0o700)
    ephemeral_set(tls_dir, opts.workers)
    path = os.path.join(rundir, "sequencer.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    dashboard_url = f"http://127.0.0.1:{private.getsockname()[1]}"
    restarts = ctx.Value("i", 0)
    # One holder name for every sequencer this parent starts, and each waits for the
    # lease as long as it takes (a standby elsewhere may hold it): gateways answer 503.
    lopts = replace(lopts, holder=lopts.holder or new_holder(), standby=True)
    roles = [_Role("sequencer", sequencer_main,
                   (opts, private, listener, restarts, lopts, f"unix:{path}",
                    tls_dir / "sequencer"))]  # fmt: skip
    roles[0].warm = is_postgres_url(opts.db)
    roles += [
        _Role(f"gateway-{i}", gateway_main,
              (opts, f"unix:{path}", dashboard_url, public, restarts, tls_dir / f"gateway-{i}"))
        for i in range(opts.workers)
    ]  # fmt: skip
    try:
        get_logger().info("cluster", sequencer=path, gateways=opts.workers, port=opts.port)
        return _supervise(ctx, roles, restarts)
    finally:
        for s in (public, private, listener):
            s.close()
        shutil.rmtree(rundir, ignore_errors=True)


def run_sequencer(opts: ServeOptions, loaded: Loaded, listen: str, tls_dir: Path,
                  lopts: LeaseOptions | None = None) -> int:  # fmt: skip
    """``lijian sequencer``: the engine on opts' HTTP port, gateways on ``listen`` (TLS
    with the credentials in ``tls_dir``, checked by the caller), in a child this process
    restarts when it dies. Both ports are checked here first (a taken one fails at once,
    exit 3); the child binds ``listen`` itself, once it serves."""
    lopts = lopts or LeaseOptions()
    check_lease_options(opts.db, lopts)
    configure(opts.log_level)
    if not listen.startswith("unix:"):  # a Unix path may be a live sequencer's: not here
        bind_listener(listen).close()
    http_sock = socket.create_server((opts.host, opts.port), backlog=BACKLOG)
    ctx = children_context()
    restarts = ctx.Value("i", 0)
    first = replace(lopts, holder=lopts.holder or new_holder())
    role = _Role("sequencer", sequencer_main,
                 (opts, http_sock, listen, restarts, first, listen, tls_dir))  # fmt: skip
    # After a death the same holder takes the lease back at once, or waits as a standby
    # if another sequencer took it meanwhile.
    role.later_args = (opts, http_sock, listen, restarts, replace(first, standby=True), listen,
                       tls_dir)  # fmt: skip
    role.warm = is_postgres_url(opts.db)
    try:
        return _supervise(ctx, [role], restarts)
    finally:
        http_sock.close()


def _supervise(ctx: Any, roles: list[_Role], restarts: Any) -> int:
    """Start every role, replace the dead, stop all on SIGTERM/SIGINT. The exit status:
    0 stopped by a signal, 1 gave up on a role, ``EXIT_NOT_STARTED`` when the sequencer
    could not start at all."""
    log = get_logger()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        for r in roles:
            r.start(ctx)
        while not stopping:
            time.sleep(WATCH_EVERY_S)  # a signal interrupts the sleep and sets ``stopping``
            for r in roles:
                if r.warm and not stopping:
                    r.keep_spare(ctx, time.monotonic())
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
                if exitcode == EXIT_NOT_STARTED and r.name in ("sequencer", "server"):
                    log.error("sequencer could not start", exitcode=exitcode)
                    return EXIT_NOT_STARTED if len(roles) == 1 else 1
                log.warning("died", role=r.name, exitcode=exitcode)
                if r.later_args is not None:
                    r.args = r.later_args
                if r.too_many_deaths(time.monotonic()):
                    log.error("giving up", role=r.name, deaths=RESTARTS_MAX,
                              window_s=RESTART_WINDOW_S)  # fmt: skip
                    return 1
    finally:
        _stop([r for r in roles if r.name != "sequencer"])
        _stop([r for r in roles if r.name == "sequencer"])
    return 0


def _stop(roles: list[_Role]) -> None:
    """SIGTERM each (a gateway drains, the sequencer commits), SIGKILL after the timeout."""
    procs = [p for r in roles for p in (r.spare, r.proc) if p is not None]
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(STOP_TIMEOUT_S)
        if p.is_alive():
            p.kill()
            p.join(STOP_TIMEOUT_S)
