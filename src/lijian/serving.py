"""The composition root of ``lijian serve``: start-up inputs read and checked, the
engine built on its ledger, the HTTP app assembled in front of it.

Everything that can fail on bad input fails in ``load_inputs``, before any port is
bound, as one ``ServeError`` (printed, exit status 2). Which processes run what (one
process, a sequencer and its gateways, a standby) is ``lijian.cluster.supervisor``'s;
how one process serves (uvicorn, limits, graceful stop) is ``lijian.http.server``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lijian.clock import Clock
from lijian.core.settings import Settings
from lijian.http.app import Extension, LijianApp
from lijian.http.assembly import assemble_app
from lijian.http.clients import Client
from lijian.http.guard import limits_from_env
from lijian.http.logs import get_logger
from lijian.http.server import LIMITS, ServeError, ServeOptions, check_workers
from lijian.store import is_postgres_url

if TYPE_CHECKING:
    from lijian.engine import Engine
    from lijian.engine_recovery import WarmStart

__all__ = ["Loaded", "ServeError", "ServeOptions", "build_app", "load_inputs"]


@dataclass
class Loaded:
    """The start-up inputs, read and checked: settings (with their files' text, which
    the sequencer hands to gateways), clients, clock, extensions."""

    settings: list[Settings]
    texts: list[str]
    clients: dict[str, Client]
    clock: Clock | None  # None only on a refused start (never returned then)
    extensions: list[Extension]


def load_inputs(opts: ServeOptions) -> Loaded:
    """Everything that can fail on bad input, before any port is bound."""
    from lijian.clock import parse_clock
    from lijian.core.settings import SettingsError
    from lijian.http.clients import ClientsError, load_clients
    from lijian.http.extras import load_extension
    from lijian.inputs import load_settings_file

    check_workers(opts)
    settings: list[Settings] = []
    texts: list[str] = []
    problems: list[str] = []
    for f in opts.campaigns:
        try:
            settings.append(load_settings_file(f))
            texts.append(Path(f).read_text(encoding="utf-8"))
        except SettingsError as exc:
            problems += [f"{f}: {p.path}: {p.message}" for p in exc.problems]
    clients: dict[str, Client] = {}
    try:
        clients = load_clients(opts.clients)
    except ClientsError as exc:
        problems += [f"{opts.clients}: {p}" for p in exc.problems]
    clock: Clock | None = None
    try:
        clock = parse_clock(opts.clock)
    except ValueError as exc:
        problems.append(f"--clock: {exc}")
    if not settings and not problems:
        problems.append("at least one --campaign is required")
    try:
        limits_from_env(LIMITS)
    except ValueError as exc:
        problems.append(str(exc))
    from lijian.events.audits import audit_every_s

    try:  # read again by each engine; checked here so that a bad value is one line
        audit_every_s()
    except ValueError as exc:
        problems.append(str(exc))
    from lijian.cluster.proxy_key import ensure_proxy_key

    # The key gateways vouch for a browser's address with (cluster/proxy.py): drawn in
    # the process that starts the others, so that every child inherits the same one.
    ensure_proxy_key()
    if problems:
        raise ServeError("\n".join(problems))
    exts: list[Extension] = []
    for spec in opts.extensions:
        ext = load_extension(spec)
        if ext is not None:
            exts.append(ext)
    return Loaded(settings, texts, clients, clock, exts)


def build_app(
    opts: ServeOptions, loaded: Loaded | None = None, warm: WarmStart | None = None
) -> LijianApp:
    """One process: the engine (SQLite or PostgreSQL) and the app in front of it
    (``warm``: a standby's ledger that followed the log, cluster/follower.py)."""
    from lijian.core.settings_text import CampaignSettingsDiffer
    from lijian.engine import Engine
    from lijian.ledger_key import LedgerKeyError

    inputs = loaded or load_inputs(opts)
    try:
        engine = Engine(inputs.settings, opts.db, inputs.clock, background=False,
                        node_id=opts.node, warm=warm)  # fmt: skip
    except LedgerKeyError as exc:  # the start's own check came first; this is its backstop
        raise ServeError(str(exc)) from None
    except CampaignSettingsDiffer as exc:  # a --campaign file against the ledger's own
        raise ServeError(str(exc)) from None
    from lijian.events.receivers import load_receivers

    engine.enable_webhooks(load_receivers(opts.clients))  # delivered where the ledger is
    app = assemble_app(engine, inputs.clients, access_log=opts.access_log,
                       extensions=inputs.extensions)  # fmt: skip
    if is_postgres_url(opts.db):
        watch_durability(app, engine, opts.require_sync_standby)
    return app


def watch_durability(app: LijianApp, engine: Engine, required: bool) -> None:
    """Say what a commit survives (store/pg_durability.py), keep it watched for /readyz
    and /metrics, and with ``required`` refuse commands while no synchronous standby is
    attached: from the start of serving on (the engine's own start-up commits, which
    acknowledge nobody, are not held up)."""
    from lijian.store.postgres import PostgresStore

    store, writer = engine.store, engine.writer
    assert isinstance(store, PostgresStore), "only PostgreSQL has standbys to watch"
    writer.durability = watch = store.watch_durability()
    get_logger().info("durability", required=required, **watch.report())

    async def require() -> None:
        writer.require_sync_standby = True

    if required:
        app.on_started.insert(0, require)
