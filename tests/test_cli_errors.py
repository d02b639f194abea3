"""Every CLI's expected errors over the real command: one line on stderr, the documented
exit status (2: usage or input error), no traceback, and no file written or changed."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.engine import Engine
from tests.support import CAMPAIGN_FILE, catalog, order, settings

LIJIAN = [sys.executable, "-m", "lijian.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIJIAN, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, check=False)  # fmt: skip


def one_line(r: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert "Traceback" not in r.stderr + r.stdout
    assert (r.returncode, r.stderr) == (code, line + "\n")


def ledger(db: Path | str) -> None:
    """A small ledger: one captured redemption on 2025-02-12."""
    e = Engine([settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    Blocking(e).catalog_upsert(list(catalog().rows()))
    Blocking(e).capture(Blocking(e).redeem(order(1), "unionpay", "k", "f").body["id"])
    e.close()


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clients file, made once by ``lijian clients new``, for the tests that only
    need one to start a server or a call (none of them changes it)."""
    path = tmp_path_factory.mktemp("clients") / "clients.toml"
    assert run("clients", "new", "--out", str(path)).returncode == 0
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_campaign_check_of_a_missing_file(tmp_path: Path) -> None:
    one_line(run("campaign", "check", str(tmp_path / "x.toml")), 2,
             f"lijian campaign check: no file at {tmp_path / 'x.toml'}")  # fmt: skip


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no database at {db}"),
        (b"", "{db} is not a lijian ledger (an empty file)"),
        (b"id,amount\n1,2\n", "{db} is not a lijian ledger (not a SQLite database)"),
        ("foreign", "{db} is not a lijian ledger (a SQLite database without its tables)"),
    ],
)
def test_audit_settle_reconcile_refuse_what_is_not_a_ledger(
    tmp_path: Path, content: bytes | str | None, why: str
) -> None:
    db = tmp_path / "x.db"
    if content == "foreign":
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE t (a)")
        con.commit()
        con.close()
    elif isinstance(content, bytes):
        db.write_bytes(content)
    before = db.read_bytes() if db.exists() else None
    message = why.format(db=db)
    one_line(run("audit", "--db", str(db)), 2, f"lijian audit: {message}")
    out = tmp_path / "out"
    one_line(run("settle", "--db", str(db), "--date", "2025-02-12", "--out", str(out)), 2,
             f"lijian settle: {message}")  # fmt: skip
    channel = tmp_path / "channel.csv"
    channel.write_text("redemption_id,order_id,discount_fen,refunded_fen\n")
    one_line(run("reconcile", "--db", str(db), "--channel-file", str(channel)), 2,
             f"lijian reconcile: {message}")  # fmt: skip
    assert (db.read_bytes() if db.exists() else None) == before  # never given a schema
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["channel.csv", *(["x.db"] if before is not None else [])]
    )


def test_settle_refuses_a_date_outside_the_campaign(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    ledger(db)
    out = tmp_path / "out"
    r = run("settle", "--db", str(db), "--date", "2025-03-12", "--out", str(out))
    one_line(r, 2, "lijian settle: --date 2025-03-12 is outside campaign 'chengdu-2025-spring' "
             "(2025-02-12 to 2025-02-28) and nothing was captured or refunded that day; "
             "no file written")  # fmt: skip
    assert not out.exists()
    ok = run("settle", "--db", str(db), "--date", "2025-02-12", "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    assert [p.name for p in out.iterdir()] == ["settlement-chengdu-2025-spring-2025-02-12.csv"]


def test_settle_and_reconcile_read_a_postgresql_ledger(tmp_path: Path) -> None:
    from tests.http.harness import _drop_pg_schema, _new_pg_schema

    name, url = _new_pg_schema()
    try:
        ledger(url)
        out = tmp_path / "out"
        r = run("settle", "--db", url, "--date", "2025-02-12", "--out", str(out))
        assert r.returncode == 0, r.stderr
        csv = (out / "settlement-chengdu-2025-spring-2025-02-12.csv").read_text()
        assert csv.splitlines()[1].startswith("2025-02-12,jd,1,24800,3720,0,3720")
        channel = tmp_path / "channel.csv"
        channel.write_text("redemption_id,order_id,discount_fen,refunded_fen\n")
        r = run("reconcile", "--db", url, "--channel-file", str(channel))
        assert r.returncode == 1, r.stderr  # the ledger's one redemption is not in the file
        assert "1 mismatch(es)" in r.stderr
    finally:
        _drop_pg_schema(name)


def test_catalog_import_of_a_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "goods.ndjson"
    r = run("catalog", "import", "--db", str(tmp_path / "l.db"), "--campaign",
            str(CAMPAIGN_FILE), str(f))  # fmt: skip
    one_line(r, 2, f"lijian catalog import: no file at {f}")
    assert list(tmp_path.iterdir()) == []


def test_call_without_a_server_or_a_body(tmp_path: Path, clients: Path) -> None:
    port = free_port()
    r = run("call", "GET", "/v1/campaigns/x/status", "--clients", str(clients), "--key", "ops",
            "--url", f"http://127.0.0.1:{port}")  # fmt: skip
    one_line(r, 2, f"lijian call: cannot reach http://127.0.0.1:{port}: [Errno 111] "
             "Connection refused")  # fmt: skip
    r = run("call", "POST", "/v1/quotes", "--clients", str(clients), "--key", "nobody")
    one_line(r, 2, f"lijian call: {clients}: no client 'nobody' (there are: audit, jd, ops, "
             "unionpay, vip)")  # fmt: skip
    r = run("call", "POST", "/v1/quotes", "--clients", str(clients), "--body", "missing.json",
            cwd=tmp_path)  # fmt: skip
    one_line(r, 2, "lijian call: missing.json: cannot read: No such file or directory")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_taken_port(tmp_path: Path, workers: str, clients: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = run("serve", "--campaign", str(CAMPAIGN_FILE), "--clients", str(clients),
                "--db", str(tmp_path / "l.db"), "--port", str(port),
                "--workers", workers)  # fmt: skip
    one_line(r, 2, f"lijian serve: cannot listen on 127.0.0.1:{port}: Address already in use")


@pytest.mark.parametrize(
    ("make", "why"),
    [
        ("no-folder", "--db {db}: no folder {parent}"),
        ("folder", "--db {db} is a folder, not a ledger file"),
        ("text", "--db {db} is not a lijian ledger (not a SQLite database)"),
    ],
)
def test_serve_refuses_a_bad_db_in_one_line(
    tmp_path: Path, make: str, why: str, clients: Path
) -> None:
    db = tmp_path / "l.db"
    if make == "no-folder":
        db = tmp_path / "missing" / "l.db"
    elif make == "folder":
        db.mkdir()
    else:
        db.write_text("id,amount\n1,2\n")
    for cmd in (["serve"], ["sequencer", "--listen", "127.0.0.1:1"]):
        r = run(*cmd, "--campaign", str(CAMPAIGN_FILE), "--clients", str(clients),
                "--db", str(db), "--port", str(free_port()))  # fmt: skip
        one_line(r, 2, f"lijian {cmd[0]}: " + why.format(db=db, parent=db.parent))
    assert not (tmp_path / "missing").exists()
    assert make != "text" or db.read_text() == "id,amount\n1,2\n"


def test_serve_refuses_a_postgresql_database_it_cannot_reach(tmp_path: Path, clients: Path) -> None:
    from tests.postgres.pgutil import BASE_URL, reachable

    if not reachable():
        pytest.fail(f"PostgreSQL is not reachable at {BASE_URL}")
    url = BASE_URL.rsplit("/", 1)[0] + "/no_such_database_here"
    r = run("serve", "--campaign", str(CAMPAIGN_FILE), "--clients", str(clients),
            "--db", url, "--port", str(free_port()))  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"lijian serve: --db {url}: cannot connect: ")
    assert 'database "no_such_database_here" does not exist' in line


def test_a_second_server_on_a_running_ledger_is_refused(tmp_path: Path) -> None:
    from tests.http.harness import Server
    from tests.http.harness import order as http_order

    # A SQLite ledger (its lock beside the file), whatever topology an earlier test in
    # this process left as the harness's default.
    server = Server(tmp_path / "first", topology="one")
    try:
        held = server.api.redeem(http_order())
        assert held.status_code == 201
        for workers in ("1", "2"):
            r = run("serve", "--campaign", str(tmp_path / "first" / "campaign-0.toml"),
                    "--clients", str(server.clients_path), "--db", str(server.db),
                    "--port", str(free_port()), "--workers", workers)  # fmt: skip
            assert server.proc is not None
            one_line(r, 2, f"lijian serve: --db {server.db} is in use by another process "
                           f"(pid {server.proc.pid}): stop it first")  # fmt: skip
        # The first one still answers from its ledger.
        got = server.api.get(f"/v1/redemptions/{held.json()['id']}")
        assert got.status_code == 200 and got.json()["status"] == "held"
    finally:
        server.close()


def test_loadtest_checks_its_credentials_and_the_server_first(tmp_path: Path) -> None:
    from tests.http.harness import Server

    server = Server(tmp_path / "srv", catalog=False)
    try:
        wrong = tmp_path / "wrong.toml"
        assert run("clients", "new", "--out", str(wrong)).returncode == 0
        r = run("loadtest", "--url", server.url, "--clients", str(wrong), "--duration-s", "1")
        one_line(r, 2, "lijian loadtest: the server refused key 'unionpay': HTTP 401 "
                 "bad_signature (check its secret in the clients file)")  # fmt: skip
        assert "redemptions" not in r.stdout  # no run started
    finally:
        server.close()
    r = run("loadtest", "--url", server.url, "--clients", str(server.clients_path),
            "--duration-s", "1")  # fmt: skip
    one_line(r, 2, f"lijian loadtest: cannot reach {server.url}: All connection attempts "
             "failed")  # fmt: skip


def test_simulate_and_settle_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "x.toml"
    one_line(run("simulate", "--campaign", str(missing), "--out", str(tmp_path / "o")), 2,
             f"lijian simulate: {missing}: cannot read: No such file or directory")  # fmt: skip
    r = run("simulate", "--campaign", str(CAMPAIGN_FILE), "--persons", "0", "--out",
            str(tmp_path / "o"))  # fmt: skip
    one_line(r, 2, "lijian simulate: invalid simulation settings: persons must be in [1, 5000000]")
    one_line(run("settle", "--db", str(tmp_path / "l.db"), "--date", "2025-13-01"), 2,
             "lijian settle: --date: month must be in 1..12")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_the_offline_tools_leave_a_ledger_byte_for_byte_as_it_was(tmp_path: Path) -> None:
    import hashlib

    d = tmp_path / "ledger"
    d.mkdir()
    db = d / "l.db"
    ledger(db)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}
    assert run("audit", "--db", str(db)).returncode == 0
    out = tmp_path / "out"
    assert run("settle", "--db", str(db), "--date", "2025-02-12", "--out", str(out)).returncode == 0
    channel = tmp_path / "channel.csv"
    channel.write_text("redemption_id,order_id,discount_fen,refunded_fen\n")
    assert run("reconcile", "--db", str(db), "--channel-file", str(channel)).returncode == 1
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}
    assert after == before


def test_serve_with_a_bad_audit_period(tmp_path: Path, clients: Path) -> None:
    r = subprocess.run(
        [*LIJIAN, "serve", "--campaign", str(CAMPAIGN_FILE), "--clients", str(clients),
         "--db", str(tmp_path / "l.db"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "LIJIAN_AUDIT_EVERY_S": "soon"},
    )  # fmt: skip
    one_line(r, 2, "lijian serve: LIJIAN_AUDIT_EVERY_S must be seconds between 0 (off) and "
                   "86400: 'soon'")  # fmt: skip
    assert not (tmp_path / "l.db").exists()
