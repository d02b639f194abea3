"""Progress on the commands that replay a ledger: a bar on stderr when stderr is a
terminal (a pseudo-terminal here), nothing of it when stderr is piped, and the same
stdout either way."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from lijian.reconcile import CHANNEL_HEADER
from lijian.seed import SEED_CAMPAIGN
from tests.evidence.ledger_days import DAY1, build_two_days
from tests.support import CID

LIJIAN = [sys.executable, "-m", "lijian.cli"]
TIMEOUT_S = 120.0
LABEL = "replaying the ledger"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("progress")
    build_two_days(work / "l.db")
    channel = work / "channel.csv"
    channel.write_text(",".join(CHANNEL_HEADER) + "\n", encoding="utf-8")
    r = subprocess.run([*LIJIAN, "keys", "new", "--out", str(work / "keys")],
                       capture_output=True, text=True, timeout=TIMEOUT_S, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return work


def commands(work: Path) -> dict[str, list[str]]:
    db = str(work / "l.db")
    key = str(work / "keys" / "evidence.key")
    return {
        "audit": ["audit", "--db", db],
        "settle": ["settle", "--db", db, "--date", DAY1, "--out", str(work / "settle")],
        # An empty channel file: the day's captures are missing from it (exit 1).
        "reconcile": [
            "reconcile",
            "--db",
            db,
            "--channel-file",
            str(work / "channel.csv"),
            "--date",
            DAY1,
        ],
        "evidence": [
            "evidence",
            "--db",
            db,
            "--campaign",
            CID,
            "--date",
            DAY1,
            "--key",
            key,
            "--out",
            str(work / "bundles"),
        ],
    }


def on_a_terminal(args: list[str]) -> tuple[int, bytes, bytes]:
    """Run with stderr on a pseudo-terminal, stdout on a pipe: (code, stdout, terminal)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    proc = subprocess.Popen([*LIJIAN, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, env=env)  # fmt: skip
    os.close(slave)
    seen = b""
    assert proc.stdout is not None
    out = b""
    while True:
        ready, _, _ = select.select([master, proc.stdout], [], [], TIMEOUT_S)
        assert ready, "no output within the timeout"
        if proc.stdout in ready:
            chunk = os.read(proc.stdout.fileno(), 65_536)
            out += chunk
        if master in ready:
            try:
                chunk = os.read(master, 65_536)
            except OSError:  # the terminal's other end closed: the command is done
                chunk = b""
            seen += chunk
            if not chunk:
                break
    out += proc.stdout.read()
    os.close(master)
    return proc.wait(TIMEOUT_S), out, seen


@pytest.mark.parametrize("command", ["audit", "settle", "reconcile", "evidence"])
def test_progress_on_a_terminal_only(ledger: Path, command: str) -> None:
    args = commands(ledger)[command]
    code, out, terminal = on_a_terminal(args)
    assert LABEL.encode() in terminal, terminal[-2000:]
    piped = subprocess.run([*LIJIAN, *args], capture_output=True, timeout=TIMEOUT_S, check=False)
    assert piped.returncode == code == (1 if command == "reconcile" else 0), piped.stderr
    assert LABEL.encode() not in piped.stderr and b"\x1b[" not in piped.stderr, piped.stderr
    if command == "audit":
        assert b"0 violation(s)" in out
        assert piped.stderr == b""
    if command == "reconcile":  # stdout is the mismatches, the same either way
        assert out == piped.stdout and out.count(b"missing_in_file") == 3, out


def test_no_bar_under_the_test_runner(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In process, with output captured (not a terminal): the replay is not wrapped."""
    from lijian.progress import counted, on_terminal

    items = [1, 2, 3]
    with on_terminal():
        assert counted(items, 3, LABEL) is items
    assert capsys.readouterr().err == ""


def test_the_fairness_phase_shows_its_rush(tmp_path: Path) -> None:
    """The demo's fairness phase (``simulate --bots``): one bar per release variant."""
    args = ["simulate", "--campaign", str(SEED_CAMPAIGN), "--bots", "0.1",
            "--persons", "300", "--out", str(tmp_path / "fair")]  # fmt: skip
    code, out, terminal = on_a_terminal(args)
    assert code == 0, out
    assert b"the rush: first come, first served" in terminal, terminal[-2000:]
    piped = subprocess.run([*LIJIAN, *args], capture_output=True, timeout=TIMEOUT_S, check=False)
    assert piped.returncode == 0 and b"the rush" not in piped.stdout + piped.stderr
