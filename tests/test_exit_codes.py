"""The README's exit-code table, one command each: 0, 1, 2 (usage, input, refused
credentials), 130 (Ctrl-C: one line). 3, 70 and 75 need PostgreSQL's lease:
tests/postgres/test_pg_exit_codes.py. And a --clock before the ledger's time is one
warning line, after which the ledger's time holds."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lijian.seed import SEED_CAMPAIGN
from tests.http.harness import CID, Server, free_port, order

LIJIAN = [sys.executable, "-m", "lijian.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIJIAN, *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)  # fmt: skip


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def test_0_done_and_1_a_check_failed(tmp_path: Path) -> None:
    assert run("campaign", "check", str(SEED_CAMPAIGN)).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(SEED_CAMPAIGN.read_text(encoding="utf-8").replace(
        'end_date = "2025-02-28"', 'end_date = "2025-02-01"'), encoding="utf-8")  # fmt: skip
    r = run("campaign", "check", str(bad))
    assert r.returncode == 1 and "end_date" in r.stderr, r.stdout + r.stderr


def test_2_usage_and_input(tmp_path: Path) -> None:
    r = run("audit")  # --db missing: a usage error
    assert r.returncode == 2 and "--db" in r.stderr, r.stderr
    r = run("audit", "--db", str(tmp_path / "nothing.db"))
    assert r.returncode == 2
    assert one_line(r) == f"lijian audit: no database at {tmp_path / 'nothing.db'}\n"
    r = run("demo", "--persons", "0", "--out", str(tmp_path / "demo"))
    assert r.returncode == 2
    assert one_line(r) == "lijian demo: persons must be in [1, 5000000]\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    s = Server(tmp_path_factory.mktemp("exit-codes"), topology="one")
    yield s
    s.close()


def call(server: Server, key: str, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIJIAN_KEY": key, "LIJIAN_SECRET": secret, "LIJIAN_URL": server.url}
    env.pop("LIJIAN_CLIENTS", None)
    return run("call", *args, env=env)


def test_call_1_for_an_answer_2_for_refused_credentials(server: Server, tmp_path: Path) -> None:
    status = f"/v1/campaigns/{CID}/status"
    assert call(server, "ops", "operator-secret", "GET", status).returncode == 0
    r = call(server, "ops", "operator-secret", "GET", "/v1/campaigns/nope/status")
    assert r.returncode == 1 and "HTTP 404" in r.stderr, r.stderr
    r = call(server, "ops", "not-the-secret", "GET", status)  # 401: the secret is refused
    assert r.returncode == 2 and "HTTP 401" in r.stderr and "bad_signature" in r.stderr, r.stderr
    move = tmp_path / "move.json"
    move.write_text('{"advance_s": 60}', encoding="utf-8")
    r = call(server, "jd", "jd-platform-secret", "POST", "/v1/admin/clock", "--body", str(move))
    assert r.returncode == 2 and "HTTP 403" in r.stderr, r.stderr  # a key without the role


def test_130_for_ctrl_c_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.Popen([*LIJIAN, "demo", "--out", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()  # the banner: the command runs (its handler is in place)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    # Off a terminal the demo's progress goes to stderr as plain lines ("  day …: n/N
    # (p%)"); beside them, the interruption is one line and nothing else (no traceback).
    lines = err.decode().splitlines()
    progress = re.compile(r"^  [^:]+: [\d,]+/[\d,]+ \(\d+%\)$")
    assert [ln for ln in lines if not progress.match(ln)] == ["lijian: interrupted"], err
    assert lines[-1] == "lijian: interrupted"


def test_a_clock_before_the_ledgers_time_is_one_warning(tmp_path: Path) -> None:
    first = Server(tmp_path / "a", clock="manual:2025-02-12T10:30:00+08:00", topology="one")
    try:
        assert first.api.redeem(order()).status_code == 201
        db = first.db
    finally:
        first.close()
    again = Server(tmp_path / "a", clock="manual:2025-02-12T09:00:00+08:00", db=db,
                   catalog=False, topology="one")  # fmt: skip
    try:
        assert again.api.status()["now"] == "2025-02-12T10:30:00+08:00"
        again.api.set_clock("2025-02-12T10:45:00+08:00")  # and it moves from there
        assert again.api.status()["now"] == "2025-02-12T10:45:00+08:00"
    finally:
        again.close()
    warnings = [ln for ln in again.log().splitlines() if ln.startswith("lijian serve: warning")]
    assert warnings == [
        "lijian serve: warning: --clock manual:2025-02-12T09:00:00+08:00 is before this "
        "ledger's last entry (2025-02-12T10:30:00+08:00); a ledger's time never goes back, "
        "so its manual clock starts at 2025-02-12T10:30:00+08:00 (give a later --clock to "
        "move it forward)"
    ]


def test_2_for_a_taken_port_on_every_server(tmp_path: Path) -> None:
    from tests.cluster.link_support import inputs
    from tests.http.harness import link_credentials

    camp, clients = inputs(tmp_path)
    tls = link_credentials(tmp_path / "tls", 1)
    taken = socket.create_server(("127.0.0.1", 0))
    port = str(taken.getsockname()[1])
    try:
        for command in (
            ["serve", "--campaign", str(camp), "--clients", str(clients), "--db",
             str(tmp_path / "a.db"), "--port", port],
            ["sequencer", "--campaign", str(camp), "--clients", str(clients), "--db",
             str(tmp_path / "b.db"), "--port", port, "--listen", f"127.0.0.1:{free_port()}",
             "--tls-dir", str(tls / "sequencer")],
            ["gateway", "--sequencer", "127.0.0.1:1", "--clients", str(clients), "--port", port,
             "--tls-dir", str(tls / "gateway-1")],
        ):  # fmt: skip
            r = run(*command)
            assert r.returncode == 2, (command[0], r.stderr[-2000:])
            assert "Traceback" not in r.stderr and "cannot listen on" in r.stderr, r.stderr
            assert [ln for ln in r.stderr.splitlines() if "lijian" in ln] == [
                ln for ln in r.stderr.splitlines() if ln.startswith(f"lijian {command[0]}:")
            ]
    finally:
        taken.close()
