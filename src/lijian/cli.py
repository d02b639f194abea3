"""The ``lijian`` command line (typer + rich)."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lijian.cli_campaign import campaign_app
from lijian.cli_serving import (
    check_ledger_key,
    not_started,
    start_children_early,
    warn_about_clock,
)
from lijian.cluster import LEASE_TTL_S
from lijian.progress import on_terminal
from lijian.seed import SEED_CAMPAIGN

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="立减 lijian: voucher campaign engine"
)
app.add_typer(campaign_app, name="campaign")
console = Console()
err = Console(stderr=True)


@app.command()
def audit(
    db: Annotated[Path, typer.Option("--db", help="SQLite ledger file")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    order_registry: Annotated[
        str | None,
        typer.Option(
            "--order-registry",
            help="a shard's order registry (postgresql://): check the ledger's rows there",
        ),
    ] = None,
) -> None:
    """Replay every stored entry from zero and check every invariant (exit 1 if any fails;
    2 if the ledger, or the order registry given, cannot be read)."""
    from lijian.audit import audit_db
    from lijian.audit_registry import RegistryUnreadable
    from lijian.ledger_file import LedgerFileError, db_arg
    from lijian.store import shown_db

    pg = ("postgresql://", "postgres://")
    if order_registry is not None and not order_registry.startswith(pg):
        sys.stderr.write("lijian audit: --order-registry is a postgresql:// URL\n")
        raise typer.Exit(2)
    try:
        with on_terminal():
            rep = audit_db(db, order_registry)
    except (LedgerFileError, RegistryUnreadable) as exc:
        sys.stderr.write(f"lijian audit: {exc}\n")
        raise typer.Exit(2) from None
    if as_json:
        print(
            json.dumps(
                {
                    "ok": rep.ok,
                    "entries": rep.entries,
                    "checks": rep.checks,
                    "violations": rep.violations,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for c in rep.checks:
            mark = "[green]ok[/green]" if c["ok"] else "[red]FAIL[/red]"
            console.print(f"{mark}  {c['name']}")
        for v in rep.violations:
            console.print(f"  [red]violation:[/red] {v}")
        console.print(
            f"audit of {shown_db(db_arg(db))}: {rep.entries:,} entries replayed, "
            f"{len(rep.violations)} violation(s)"
        )
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="report directory (ledger file inside)")] = Path(
        "out/demo"
    ),
    persons: Annotated[int, typer.Option(help="synthetic persons")] = 150_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 2025,
) -> None:
    """Simulate the whole Chengdu campaign in-process on a fresh ledger, report, audit."""
    from lijian.demo import run_demo

    sys.exit(run_demo(out, persons, seed, console))


@app.command()
def simulate(
    campaign: Annotated[Path, typer.Option("--campaign", help="campaign TOML file")],
    persons: Annotated[int, typer.Option(help="synthetic persons")] = 50_000,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same report")] = 2025,
    days: Annotated[int | None, typer.Option(help="only the first N days")] = None,
    out: Annotated[Path, typer.Option(help="report directory")] = Path("out/sim"),
    forecast: Annotated[
        bool, typer.Option("--forecast", help="forecast sell-out times only, run no requests")
    ] = False,
    catalog_skus: Annotated[int, typer.Option(help="synthetic catalogue size")] = 20_000,
    participation: Annotated[
        float, typer.Option(help="expected arrivals per person per day")
    ] = 0.15,
    # The simulator's own defaults (sim/config.py ArrivalCurve, docs/SIMULATOR.md);
    # tests/sim/test_cli_defaults.py holds every option of this command to them.
    burst_share: Annotated[float, typer.Option(help="share of arrivals in the rush")] = 0.7,
    burst_tau_s: Annotated[float, typer.Option(help="rush decay time constant, s")] = 180.0,
    order_value_scale: Annotated[float, typer.Option(help="scales order values")] = 1.0,
    bots: Annotated[
        float | None,
        typer.Option(help="the 10:00 rush with bots as this share of accounts (FAIRNESS.md)"),
    ] = None,
    compare_release: Annotated[
        bool,
        typer.Option(
            "--compare-release", help="with --bots: first come first served vs 2 s and 10 s windows"
        ),
    ] = False,
    script: Annotated[
        Path | None,
        typer.Option(
            help="rehearsal: operator actions (pause, budget, end, block, lift) at set "
            "times, a TOML or JSON file (docs/SIMULATOR.md); exit 2 if it is invalid"
        ),
    ] = None,
    fraud: Annotated[str | None, typer.Option(help="fraud patterns to inject (RISK.md)")] = None,
    fraud_share: Annotated[float, typer.Option(help="with --fraud: share of fraudsters")] = 0.02,
) -> None:
    """Run a campaign through the real engine with a synthetic population (docs/SIMULATOR.md)."""
    from lijian.sim.commands import run_simulate_command

    if fraud is not None:  # docs/RISK.md: measured detection
        from lijian.sim.fraud_report import run_fraud_command

        sys.exit(run_fraud_command(campaign, out, persons, seed, fraud, fraud_share, console))
    if bots is not None or compare_release:
        from lijian.sim.fairness_report import run_fairness_command

        if script is not None:
            sys.stderr.write("lijian simulate: --script does not go with --bots\n")
            sys.exit(2)

        share = 0.05 if bots is None else bots
        code = run_fairness_command(campaign, out, persons, seed, share, compare_release, console)
        sys.exit(code)
    sys.exit(
        run_simulate_command(
            campaign,
            out,
            forecast,
            console,
            script,
            persons=persons,
            seed=seed,
            days=days,
            catalog_skus=catalog_skus,
            participation=participation,
            burst_share=burst_share,
            burst_tau_s=burst_tau_s,
            order_value_scale=order_value_scale,
        )
    )


@app.command()
def loadtest(
    url: Annotated[str, typer.Option("--url", help="base URL of a running lijian serve")],
    clients: Annotated[Path, typer.Option("--clients", help="clients TOML (keys, secrets)")],
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="channel client to sign with")
    ] = None,
    rate: Annotated[float, typer.Option(help="arrivals per second at the peak")] = 200.0,
    duration_s: Annotated[float, typer.Option(help="how long to send, s")] = 30.0,
    max_requests: Annotated[int, typer.Option(help="redemptions at most")] = 20_000,
    concurrency: Annotated[int, typer.Option(help="requests in flight at most")] = 64,
    campaign: Annotated[
        Path, typer.Option(help="the served campaign's TOML (default: the seed campaign)")
    ] = SEED_CAMPAIGN,
    upload_catalog: Annotated[
        bool, typer.Option(help="PUT the synthetic catalogue first (operator key)")
    ] = True,
    set_clock: Annotated[
        str | None, typer.Option(help="move a manual server clock first (operator key)")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 2025,
    allow_remote: Annotated[
        bool, typer.Option(help="allow a non-loopback URL (rehearsals on real hosts)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Drive a running server over HTTP with signed requests; report latency and declines."""
    from lijian.sim.loadtest import run_loadtest_command

    sys.exit(
        run_loadtest_command(
            url,
            clients,
            key_id,
            console,
            campaign,
            set_clock,
            as_json,
            rate_per_s=rate,
            duration_s=duration_s,
            max_requests=max_requests,
            concurrency=concurrency,
            seed=seed,
            allow_remote=allow_remote,
            upload_catalog=upload_catalog,
        )
    )


# ------------------------------------------------------------------------------ serve
REQUIRE_SYNC_STANDBY_OPTION = typer.Option(
    "--require-sync-standby",
    help="PostgreSQL: answer 503 instead of acknowledging while the primary has no "
    "synchronous standby (docs/SCALE-OUT.md)",
)
LEDGER_KEY_OPTION = typer.Option(
    "--ledger-key",
    help="the ledger key file (made on first start; default: beside a SQLite ledger, "
    "LIJIAN_LEDGER_KEY_FILE; PostgreSQL needs one)",
)


catalog_app = typer.Typer(no_args_is_help=True, help="Campaign goods catalogue")
app.add_typer(catalog_app, name="catalog")


@app.command()
def serve(
    campaign: Annotated[list[Path], typer.Option(help="campaign TOML (repeatable)")],
    clients: Annotated[Path, typer.Option(help="API clients TOML")],
    db: Annotated[str, typer.Option(help="SQLite ledger file or postgresql:// URL")] = "lijian.db",
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    clock: Annotated[str | None, typer.Option(help="manual:<RFC 3339> or system")] = None,
    workers: Annotated[
        int, typer.Option(help="gateway processes in front of one sequencer (1: one process)")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
    lease_ttl: Annotated[
        float, typer.Option(help="PostgreSQL: seconds a dead sequencer's lease lasts")
    ] = LEASE_TTL_S,
    require_sync_standby: Annotated[bool, REQUIRE_SYNC_STANDBY_OPTION] = False,
    ledger_key: Annotated[Path | None, LEDGER_KEY_OPTION] = None,
) -> None:
    """Serve HTTP API v1 (docs/API.md); SIGTERM drains and commits before exit."""
    from lijian.store import is_postgres_url

    if workers > 1 or is_postgres_url(db):  # a supervisor's children: their fork server,
        start_children_early(ledger_key)  # before the imports and checks below
    from lijian.cluster.owner import LeaseOptions
    from lijian.cluster.supervisor import serve as run
    from lijian.http.extras import DEFAULT_EXTENSIONS
    from lijian.http.server import ServeError, ServeOptions
    from lijian.store.preflight import db_problem

    opts = ServeOptions(
        campaign, clients, db, host, port, clock, workers, log_level, access_log,
        DEFAULT_EXTENSIONS, require_sync_standby,
    )  # fmt: skip
    if (problem := db_problem(db, require_sync_standby)) is not None:
        err.print(f"[red]lijian serve:[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    check_ledger_key("serve", db, ledger_key)
    warn_about_clock("serve", db, clock)
    try:
        code = run(opts, LeaseOptions(ttl_s=lease_ttl))
        not_started("serve", code, db)
    except ServeError as exc:
        err.print(f"[red]lijian serve:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        # --workers N binds its public socket in the supervisor: the same one line as
        # http.server.bind_public gives for one process. Other OS errors are not input.
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        sys.stderr.write(f"lijian serve: cannot listen on {host}:{port}: "
                         f"{os.strerror(exc.errno)}\n")  # fmt: skip
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def sequencer(
    campaign: Annotated[list[Path], typer.Option(help="campaign TOML (repeatable)")],
    clients: Annotated[Path, typer.Option(help="API clients TOML")],
    listen: Annotated[str, typer.Option(help="gateways connect here: HOST:PORT or unix:PATH")],
    tls_dir: Annotated[
        Path | None,
        typer.Option(help="the link's credentials: ca.pem, cert.pem, key.pem (lijian certs new)"),
    ] = None,
    db: Annotated[str, typer.Option(help="SQLite ledger file or postgresql:// URL")] = "lijian.db",
    host: Annotated[str, typer.Option(help="its own HTTP (API, dashboard)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="its own HTTP port")] = 8001,
    clock: Annotated[str | None, typer.Option(help="manual:<RFC 3339> or system")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    standby: Annotated[
        bool, typer.Option(help="PostgreSQL: wait for the lease, then take over")
    ] = False,
    lease_ttl: Annotated[
        float, typer.Option(help="PostgreSQL: seconds a dead sequencer's lease lasts")
    ] = LEASE_TTL_S,
    require_sync_standby: Annotated[bool, REQUIRE_SYNC_STANDBY_OPTION] = False,
    ledger_key: Annotated[Path | None, LEDGER_KEY_OPTION] = None,
    node: Annotated[
        str, typer.Option(help="sharded: this ledger's name, 1-8 letters a-z, unique per shard")
    ] = "a",
    order_registry: Annotated[
        str | None,
        typer.Option(help="sharded: the postgresql:// URL of the order registry all shards share"),
    ] = None,
) -> None:
    """Run the ledger for gateways on other machines (``lijian gateway --sequencer``)."""
    start_children_early(ledger_key)  # its child's fork server, before the imports below
    from lijian.cluster.order_claims import check_node
    from lijian.cluster.owner import LeaseOptions
    from lijian.cluster.supervisor import run_sequencer
    from lijian.cluster.tls import TlsError, server_context
    from lijian.cluster.wire import parse_address
    from lijian.http.extras import DEFAULT_EXTENSIONS
    from lijian.http.server import ServeError, ServeOptions
    from lijian.serving import load_inputs

    opts = ServeOptions(campaign, clients, db, host, port, clock, 1, log_level, True,
                        DEFAULT_EXTENSIONS, require_sync_standby, node,
                        order_registry)  # fmt: skip
    from lijian.store.preflight import db_problem, postgres_problem

    try:
        parse_address(listen)
        check_node(node)
        if order_registry is not None:
            if not order_registry.startswith(("postgresql://", "postgres://")):
                raise ServeError("--order-registry must be a postgresql:// URL")
            if (problem := postgres_problem(order_registry)) is not None:
                raise ServeError(problem.replace("--db", "--order-registry", 1))
        if (problem := db_problem(db, require_sync_standby)) is not None:
            raise ServeError(problem)
        if tls_dir is None:  # no gateway may connect unauthenticated, on any transport
            msg = "--tls-dir is required: the gateways' link is TLS with certificates"
            raise ServeError(msg + " on both sides (make them: lijian certs new)")
        server_context(tls_dir)
        loaded = load_inputs(opts)
    except (ServeError, ValueError, TlsError) as exc:
        err.print(f"[red]lijian sequencer:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    check_ledger_key("sequencer", db, ledger_key)
    warn_about_clock("sequencer", db, clock)
    try:
        code = run_sequencer(opts, loaded, listen, tls_dir, LeaseOptions(standby, lease_ttl))
        not_started("sequencer", code, db)
    except ServeError as exc:
        err.print(f"[red]lijian sequencer:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # a port taken: input, as for serve (exit 2)
        err.print(f"[red]lijian sequencer:[/red] cannot listen on {listen} or {host}:{port}: "
                  f"{exc.strerror}", highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def gateway(
    clients: Annotated[Path, typer.Option(help="API clients TOML (the sequencer's)")],
    tls_dir: Annotated[
        Path,
        typer.Option(help="the link's credentials: ca.pem, cert.pem, key.pem (lijian certs new)"),
    ],
    sequencer: Annotated[
        list[str] | None,
        typer.Option(help="the sequencer: HOST:PORT or unix:PATH (repeatable: its standbys)"),
    ] = None,
    shard: Annotated[
        list[str] | None,
        typer.Option(
            help="sharded: one sequencer owning some campaigns, ADDR[,ADDR…] with its "
            "standbys (repeatable: one per shard; instead of --sequencer)"
        ),
    ] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    dashboard_url: Annotated[
        list[str] | None,
        typer.Option(
            help="a sequencer's HTTP URL, for the dashboard pages (repeatable: the active "
            "one and its standbys; the first that answers serves them)"
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
) -> None:
    """Serve HTTP API v1 in front of a sequencer (``lijian sequencer``)."""
    from lijian.cluster.proxy import UPSTREAMS_MAX
    from lijian.cluster.roles import run_gateway
    from lijian.cluster.shards import SHARDS_MAX
    from lijian.cluster.tls import TlsError, client_context
    from lijian.cluster.wire import parse_address
    from lijian.http.clients import ClientsError, load_clients
    from lijian.http.server import ServeError, ServeOptions

    try:
        if bool(sequencer) == bool(shard):
            raise ValueError("give --sequencer (one ledger) or --shard (one per shard), not both")
        groups = [g.split(",") for g in shard or []]
        if len(groups) > SHARDS_MAX:
            raise ValueError(f"--shard: at most {SHARDS_MAX}")
        for a in [*(sequencer or []), *(x for g in groups for x in g)]:
            parse_address(a)
        dashboard_urls = list(dashboard_url or [])
        if len(dashboard_urls) > UPSTREAMS_MAX:
            raise ValueError(f"--dashboard-url: at most {UPSTREAMS_MAX}")
        for u in dashboard_urls:
            if not u.startswith(("http://", "https://")) or len(u) > 2048:
                raise ValueError(f"--dashboard-url must be http(s)://host:port, got {u!r}")
        client_context(tls_dir)
        loaded_clients = load_clients(clients)
    except ClientsError as exc:
        err.print(f"[red]lijian gateway:[/red] {clients}: {'; '.join(exc.problems)}",
                  highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(2) from None
    except (ValueError, TlsError) as exc:
        err.print(f"[red]lijian gateway:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    opts = ServeOptions([], clients, "", host, port, None, 1, log_level, access_log)
    try:
        code = run_gateway(opts, loaded_clients, sequencer or [], dashboard_urls, tls_dir,
                           groups or None)  # fmt: skip
    except ServeError as exc:  # its port taken: one line, as for serve
        err.print(f"[red]lijian gateway:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _register_certs() -> None:
    from lijian.cli_certs import certs_app

    app.add_typer(certs_app, name="certs")


_register_certs()


@catalog_app.command("import")
def catalog_import(
    file: Annotated[Path, typer.Argument(help="NDJSON: {sku, category, platform} per line")],
    db: Annotated[str, typer.Option(help="SQLite ledger file")],
    campaign: Annotated[str, typer.Option(help="campaign id in the db, or its TOML file")],
) -> None:
    """Load a catalogue into a stopped server's db (all lines or none)."""
    from rich.progress import Progress

    from lijian.catalog_import import import_catalog_file
    from lijian.store import shown_db

    if not file.is_file():
        sys.stderr.write(f"lijian catalog import: no file at {file}\n")
        raise typer.Exit(2)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("parsing", total=file.stat().st_size)
        res = import_catalog_file(db, campaign, str(file), lambda n: bar.advance(task, n))
    if res.error is not None:
        err.print(f"[red]nothing stored:[/red] {res.error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"{res.rows:,} catalogue rows stored in {shown_db(db)}")


# ------------------------------------------------------------------ settle, reconcile
# The options of the commands that read a ledger and write or print a day's figures.
ReadDb = Annotated[
    str, typer.Option("--db", help="SQLite ledger file or postgresql:// URL (read only)")
]
EveryCampaign = Annotated[str | None, typer.Option(help="campaign id (default: every one)")]
CsvDir = Annotated[Path, typer.Option(help="directory for the CSV files")]


@app.command()
def settle(
    db: ReadDb,
    date: Annotated[str, typer.Option("--date", help="settlement day, YYYY-MM-DD")],
    campaign: EveryCampaign = None,
    out: CsvDir = Path("."),
) -> None:
    """Write R19 settlement CSVs per platform (as GET .../settlement) from a ledger file."""
    from lijian.reconcile import settle_command

    raise typer.Exit(settle_command(db, date, campaign, out, console, err))


@app.command()
def risk(
    db: ReadDb,
    date: Annotated[str, typer.Option("--date", help="campaign day, YYYY-MM-DD")],
    campaign: EveryCampaign = None,
    out: CsvDir = Path("."),
) -> None:
    """Write a day's risk flags as CSV, one file per campaign (docs/RISK.md)."""
    from lijian.risk_csv import risk_command

    raise typer.Exit(risk_command(db, date, campaign, out, console, err))


@app.command()
def reconcile(
    db: ReadDb,
    channel_file: Annotated[
        Path, typer.Option(help="CSV: redemption_id,order_id,discount_fen,refunded_fen")
    ],
    campaign: EveryCampaign = None,
    as_json: Annotated[bool, typer.Option("--json", help="print mismatches as JSON")] = False,
    date: Annotated[
        str | None, typer.Option(help="the file covers this campaign day (YYYY-MM-DD)")
    ] = None,
    first: Annotated[str | None, typer.Option("--from", help="first day the file covers")] = None,
    last: Annotated[str | None, typer.Option("--to", help="last day the file covers")] = None,
) -> None:
    """Compare the payment channel's settlement file with the ledger (exit 1 on a mismatch)."""
    from lijian.reconcile import parse_days, reconcile_command

    try:
        days = parse_days(date, first, last)
    except ValueError as exc:
        sys.stderr.write(f"lijian reconcile: {exc}\n")
        raise typer.Exit(2) from None
    raise typer.Exit(reconcile_command(db, channel_file, campaign, as_json, err, days))


# ----------------------------------------- call, clients new, sandbox (the first hour)
def _register_first_hour() -> None:
    from lijian import cli_call, cli_clients

    app.command("call")(cli_call.call)
    app.add_typer(cli_clients.clients_app, name="clients")
    app.command("sandbox")(cli_clients.sandbox)


_register_first_hour()


def _register_evidence() -> None:
    from lijian.evidence.commands import register

    register(app)  # keys new, evidence, verify


_register_evidence()


# The exit codes every command follows (README.md, "Exit codes"). 70 and 75 are those of
# a sequencer's process, read by its supervisor (cluster/roles.py, cluster/owner.py).
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


class Interrupted(BaseException):
    """Ctrl-C, raised instead of KeyboardInterrupt: click would turn that into "Aborted!"
    and exit 1. A server replaces this handler with its own (it drains, then exits 0)."""


def _interrupted(_signum: int, _frame: object) -> None:
    raise Interrupted


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted)
    try:
        app()
    except Interrupted:
        sys.stderr.write("lijian: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
