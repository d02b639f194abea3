"""``lijian keys new``, ``lijian evidence`` and ``lijian verify`` (registered in cli.py).

Exit codes: 0 all good; 1 a check failed (the chain of the database, or a bundle that
does not verify: each failure named on its own line); 2 a usage or input error (missing
file, not a key, unknown campaign, a day that has not closed).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:  # the commands import the bundle module when they run; here, its type
    from lijian.evidence.bundle import Payload

keys_app = typer.Typer(no_args_is_help=True, help="Evidence signing keys (Ed25519)")
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(code: int, message: str) -> typer.Exit:
    err.print(message, markup=False)
    return typer.Exit(code)


@keys_app.command("new")
def keys_new(
    out: Annotated[Path, typer.Option("--out", help="directory for evidence.key / .pub")],
) -> None:
    """Write a new Ed25519 key pair: DIR/evidence.key (private, 0600) and DIR/evidence.pub."""
    from lijian.evidence.keys import EvidenceKeyError, new_key_pair

    try:
        priv, pub = new_key_pair(out)
    except (EvidenceKeyError, OSError) as exc:
        raise _fail(2, f"lijian keys new: {exc}") from None
    print(priv)
    print(pub)


def build_bundle_from_db(db: str | Path, campaign_id: str, day: str) -> Payload:
    """Replay the stored ledger (one consistent read) and build the day's unsigned bundle.
    Raises ChainBroken when the stored hash chain does not hold."""
    from lijian.audit import check_chain
    from lijian.evidence.bundle import chain_range, day_payload
    from lijian.ledger_file import open_ledger
    from lijian.stored_ledger import open_stored_ledger, stored_settings

    store = open_ledger(db)  # checked read-only first: a foreign file is never written to
    try:
        with store.consistent_reads():
            broken = check_chain(store)
            if broken:
                raise ChainBroken("; ".join(broken))
            settings = stored_settings(store)
            if campaign_id not in {s.campaign.id for s in settings}:
                raise LookupError(f"campaign {campaign_id!r} is not in {store.path}")
            ledger = open_stored_ledger(store, settings).ledger
            closes = list(store.day_closes)
            c = chain_range(closes, campaign_id, day)
            bodies = store.range_bodies(c["from_seq"], c["to_seq"])
            return day_payload(ledger, closes, campaign_id, day, bodies)
    finally:
        store.close()


class ChainBroken(RuntimeError):
    pass


def evidence(
    db: Annotated[str, typer.Option("--db", help="SQLite ledger file or postgresql:// URL")],
    campaign: Annotated[str, typer.Option("--campaign", help="campaign id")],
    date: Annotated[str, typer.Option("--date", help="the day, YYYY-MM-DD (closed already)")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (PEM)")],
    out: Annotated[Path, typer.Option("--out", help="directory to write the bundle into")],
) -> None:
    """Write the signed evidence bundle of one campaign day; print its path last."""
    from lijian.evidence.bundle import DayNotClosed, sign, write_bundle
    from lijian.evidence.keys import EvidenceKeyError, load_private
    from lijian.ledger_file import LedgerFileError
    from lijian.progress import on_terminal

    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise _fail(2, f"lijian evidence: --date {date!r} is not YYYY-MM-DD") from None
    try:
        private = load_private(key)
        with on_terminal():
            payload = build_bundle_from_db(db, campaign, date)
    except (EvidenceKeyError, FileNotFoundError, LedgerFileError, LookupError, DayNotClosed) as exc:
        raise _fail(2, f"lijian evidence: {exc}") from None
    except ChainBroken as exc:
        raise _fail(
            1, f"lijian evidence: the ledger's hash chain fails, no bundle: {exc}"
        ) from None
    bundle = sign(payload, private)
    path = write_bundle(bundle, out)
    c = payload["chain"]  # as signed
    print(
        f"{campaign} {date}: {len(payload['redemptions'])} redemptions, "
        f"{len(payload['refunds'])} refunds, {len(payload['vouchers'])} voucher, "
        f"{len(payload['lotteries'])} lottery, {len(payload['items'])} items and "
        f"{len(payload['risk'])} risk rows, chain seq {c['from_seq']}.."
        f"{c['to_seq']} head {c['head']}"
    )
    print(path)


def verify(
    bundle: Annotated[Path, typer.Argument(help="an evidence bundle file")],
    pubkey: Annotated[Path, typer.Option("--pubkey", help="Ed25519 public key (PEM)")],
    previous: Annotated[
        Path | None, typer.Option("--previous", help="the previous day's bundle")
    ] = None,
    head: Annotated[
        str | None,
        typer.Option("--head", help="the day's head as the public feed published it (hex)"),
    ] = None,
) -> None:
    """Check a bundle's signature, its rows against its chain entries, its settlement
    against its rows, (with --head) its head against the published one and (with
    --previous) the chain's continuity with the day before. Exit 1 naming each failed
    check, 2 when it cannot be checked at all."""
    from lijian.evidence.keys import EvidenceKeyError, load_public
    from lijian.evidence.verify import BundleUnreadable, verify_file

    try:
        key = load_public(pubkey)
        verdict = verify_file(bundle, key, previous, head)
    except (EvidenceKeyError, BundleUnreadable) as exc:
        raise _fail(2, f"lijian verify: {exc}") from None
    except (MemoryError, RecursionError, ValueError, TypeError) as exc:
        # Crafted input beyond what the checks foresaw: still one line, never a trace.
        raise _fail(2, f"lijian verify: {bundle}: cannot be checked ({exc!r:.200})") from None
    if not verdict.ok:
        _notes(verdict.notes)
        for failure in verdict.failures:
            err.print(f"FAIL {failure}", markup=False)
        raise typer.Exit(1)
    print(f"ok {bundle}" + (f" (continues {previous})" if previous else ""))
    _notes(verdict.notes)


def _notes(notes: list[str]) -> None:
    """What the checks did not cover (a format 2 bundle's missing lists): on stdout,
    since it is no failure."""
    for note in notes:
        print(f"note: {note}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command("evidence")(evidence)
    app.command("verify")(verify)
