"""``lijian clients new`` (a clients file with random secrets, one client per role) and
``lijian sandbox`` (what ``make serve`` runs: the seed campaign on SQLite with a
development clients file, a small catalogue, a manual clock at the first opening)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from lijian.cli_call import fail
from lijian.seed import SEED_CAMPAIGN, SEED_CAMPAIGN_ID, SEED_PLATFORMS, example_catalog

clients_app = typer.Typer(no_args_is_help=True, help="API clients files (keys and secrets)")
SECRET_BYTES = 32  # 43 URL-safe characters
SANDBOX_CLOCK = "manual:2025-02-12T10:00:00+08:00"  # the first tranche has just opened


def new_clients_toml(platforms: tuple[str, ...] | list[str] = SEED_PLATFORMS) -> str:
    """One client per role (a platform client per platform), each with a fresh secret."""
    rows: list[tuple[str, str, str | None]] = [("unionpay", "channel", None)]
    rows += [(p, "platform", p) for p in platforms]
    rows += [("ops", "operator", None), ("audit", "auditor", None)]
    out = [
        '# API clients for `lijian serve --clients` (docs/API.md, "Clients file").',
        "# Generated with random secrets: keep this file private.",
        "",
    ]
    for key_id, role, platform in rows:
        secret = secrets.token_urlsafe(SECRET_BYTES)
        out += ["[[clients]]", f'key_id = "{key_id}"', f'secret = "{secret}"', f'role = "{role}"']
        if platform is not None:
            out.append(f'platform = "{platform}"')
        out.append("")
    return "\n".join(out)


def write_new_clients(out: Path, platforms: list[str], force: bool) -> None:
    if out.exists() and not force:
        raise fail("clients new", f"{out} exists (pass --force to replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(new_clients_toml(platforms), encoding="utf-8")
        out.chmod(0o600)
    except OSError as exc:
        raise fail("clients new", f"{out}: cannot write: {exc.strerror}") from None


def print_clients(path: Path) -> None:
    from lijian.http.clients import load_clients

    for c in load_clients(path).values():
        where = f" ({c.platform})" if c.platform else ""
        print(f"  {c.key_id:<10} {c.role + where:<16} secret {c.secret.decode()}")


@clients_app.command("new")
def clients_new(
    out: Annotated[Path, typer.Option("--out", help="the clients TOML to write")],
    platform: Annotated[
        list[str] | None, typer.Option(help="a platform client per platform (repeatable)")
    ] = None,
    force: Annotated[bool, typer.Option(help="replace an existing file")] = False,
) -> None:
    """Write a clients file: a channel, a platform per platform, an operator, an auditor."""
    platforms = platform or list(SEED_PLATFORMS)
    write_new_clients(out, platforms, force)
    print(f"wrote {out} (mode 600):")
    print_clients(out)


def sandbox(
    directory: Annotated[Path, typer.Option("--dir", help="clients file and ledger here")] = Path(
        "out/serve"
    ),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    ledger_key: Annotated[
        Path | None,
        typer.Option("--ledger-key", help="the ledger key file (default: DIR/lijian.db.key)"),
    ] = None,
) -> None:
    """Serve the seed campaign for trying the API (what `make serve` runs).

    Keeps DIR/clients.toml across runs (secrets stay the same); starts a fresh ledger
    DIR/lijian.db with a small catalogue (JD-1…JD-20, VIP-1…VIP-20) and a manual clock
    at 2025-02-12 10:00 (+08:00), when the first tranche opens."""
    from lijian.catalog_import import import_catalog_file
    from lijian.store.ledger_lock import LedgerInUse, LedgerLock

    clients = directory / "clients.toml"
    db = directory / "lijian.db"
    catalog = directory / "catalog.ndjson"
    if not clients.exists():
        write_new_clients(clients, list(SEED_PLATFORMS), force=False)
    _check_port_free(host, port)
    try:
        # Nothing is deleted while another process (a running sandbox) has the ledger.
        lock = LedgerLock(db)
    except LedgerInUse as exc:
        raise fail("sandbox", f"{exc} (another lijian sandbox or server)") from None
    except OSError as exc:
        raise fail("sandbox", f"{directory}: {exc.strerror}") from None
    try:
        for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            f.unlink(missing_ok=True)
        catalog.write_bytes(example_catalog())
    except OSError as exc:
        raise fail("sandbox", f"{directory}: {exc.strerror}") from None
    res = import_catalog_file(str(db), str(SEED_CAMPAIGN), str(catalog))
    lock.release()  # the server takes it again before it writes (store/ledger_lock.py)
    if res.error is not None:
        raise fail("sandbox", res.error)
    url = f"http://{host}:{port}"
    print(f"lijian sandbox: campaign {SEED_CAMPAIGN_ID}, ledger {db} (fresh), clock "
          f"{SANDBOX_CLOCK[len('manual:'):]}, {res.rows} catalogue SKUs")  # fmt: skip
    print(f"clients ({clients}):")
    print_clients(clients)
    print(f"API        {url}/v1/   (contract: {url}/docs)")
    print(f"dashboard  {url}/   (log in as ops or audit, the secret above is the password)")
    print(f"try        export LIJIAN_URL={url} LIJIAN_CLIENTS={clients} LIJIAN_KEY=unionpay")
    print(f"           lijian call GET /v1/campaigns/{SEED_CAMPAIGN_ID}/status")
    sys.stdout.flush()
    # The one `lijian serve`, in this process (exec: signals and the exit status are its).
    args = [sys.executable, "-m", "lijian.cli", "serve", "--campaign", str(SEED_CAMPAIGN),
            "--clients", str(clients), "--db", str(db), "--host", host, "--port", str(port),
            "--clock", SANDBOX_CLOCK]  # fmt: skip
    if ledger_key is not None:
        args += ["--ledger-key", str(ledger_key)]
    os.execv(sys.executable, args)


def _check_port_free(host: str, port: int) -> None:
    """A taken port is one line before anything is printed or written (the server
    would find out only after the banner)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise fail("sandbox", f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise fail("sandbox", f"cannot listen on {host}:{port}: {exc.strerror}") from None
