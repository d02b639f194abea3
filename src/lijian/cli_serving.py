"""What the server commands (``serve``, ``sequencer``) check before a process starts,
and say after: one line each, on stderr (README, "Exit codes")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console

err = Console(stderr=True)


def name_ledger_key(key_file: Path | None) -> None:
    """Name the key file to the processes started here, through the environment, which
    they inherit (set before the fork server starts: ``supervisor.children_context``)."""
    from lijian.ledger_key import ENV_KEY_FILE

    if key_file is not None:
        os.environ[ENV_KEY_FILE] = str(key_file)


def start_children_early(key_file: Path | None) -> None:
    """For a command that starts children (a supervisor): what they inherit through the
    environment set (the ledger key's file, the gateways' proxy key), then their fork
    server started (``cluster/children.py``), first thing, so that its imports run on the
    other core while this process imports and checks its inputs."""
    from lijian.cluster.children import start_children_server
    from lijian.cluster.proxy_key import ensure_proxy_key

    name_ledger_key(key_file)
    ensure_proxy_key()
    start_children_server()


def check_ledger_key(command: str, db: str, key_file: Path | None) -> None:
    """The ledger key can be had and is the ledger's, before any process starts (one
    line and exit 2 if not); the file named to them (``name_ledger_key``)."""
    from lijian.ledger_key import LedgerKeyError, preflight

    name_ledger_key(key_file)
    try:
        preflight(db)
    except LedgerKeyError as exc:
        err.print(f"[red]lijian {command}:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def not_started(command: str, code: int, db: str) -> None:
    """After exit 3 (README, "Exit codes"), the one line a person reads; the process's
    log above it has the details."""
    from lijian.cluster.roles import EXIT_NOT_STARTED
    from lijian.store import is_postgres_url

    if code != EXIT_NOT_STARTED:
        return
    if is_postgres_url(db):
        why = "another sequencer holds the ledger's lease (--standby waits for it)"
    else:
        why = "the server could not start"
    sys.stderr.write(f"lijian {command}: not started: {why}; the log above says more\n")


def warn_about_clock(command: str, db: str, clock: str | None) -> None:
    """A manual ``--clock`` before the ledger's last entry is not used: the ledger's time
    never goes back, so it runs from that entry's time. Said in one line (a warning: the
    server starts), not left to be discovered in the answers."""
    from zoneinfo import ZoneInfo

    from lijian.clock import ManualClock, parse_clock
    from lijian.core.views import iso
    from lijian.ledger_file import ledger_time_ms

    try:
        given = parse_clock(clock)
    except ValueError:
        return  # the start reports a bad --clock itself (exit 2)
    if not isinstance(given, ManualClock):
        return
    last_ms = ledger_time_ms(db)
    if last_ms is None or given.now_ms() >= last_ms:
        return
    shown = iso(last_ms, ZoneInfo("Asia/Shanghai"))
    sys.stderr.write(
        f"lijian {command}: warning: --clock {clock} is before this ledger's last entry "
        f"({shown}); a ledger's time never goes back, so its manual clock starts at "
        f"{shown} (give a later --clock to move it forward)\n"
    )
