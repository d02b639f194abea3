"""The database password never reaches a log line: ``--db`` is shown without it."""

from __future__ import annotations

import io
import logging
import subprocess

import pytest

from lijian.http.logs import configure, get_logger
from lijian.redact import mask_secrets
from lijian.store import shown_db
from tests.http.harness import LIJIAN, Server

SECRET = "pw-9f3c1e77"  # a test value: trust authentication ignores it


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{SECRET}@db1:5432/x", "postgresql://app:***@db1:5432/x"),
        (
            f"postgresql://app:{SECRET}@h1:5432,h2:5432/x?target_session_attrs=read-write",
            "postgresql://app:***@h1:5432,h2:5432/x?target_session_attrs=read-write",
        ),
        (
            f"postgres://h/x?sslmode=require&password={SECRET}",
            "postgres://h/x?sslmode=require&password=***",
        ),
        ("postgresql://app@h/x", "postgresql://app@h/x"),
        ("out/lijian.db", "out/lijian.db"),
    ],
)
def test_shown_db_hides_the_password(url, shown):
    assert shown_db(url) == shown


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_logs_no_password(tmp_path, pg_url, workers):
    scheme, rest = pg_url.split("://", 1)
    user, host = rest.split("@", 1)
    db = f"{scheme}://{user}:{SECRET}@{host}&password={SECRET}"
    topology = "pg-w2" if workers == "2" else "one"
    server = Server(tmp_path, db=db, topology=topology)
    try:
        assert server.api.status()["state"] == "open"
    finally:
        server.close()
    text = server.log_path.read_text(errors="replace")
    assert '"event":"starting"' in text
    assert f"{user}:***@" in text
    assert SECRET not in text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            f"cannot open postgresql://app:{SECRET}@h1:5432,h2:5432/x: refused",
            "cannot open postgresql://app:***@h1:5432,h2:5432/x: refused",
        ),
        (f"host=h user=app password={SECRET} dbname=x", "host=h user=app password=*** dbname=x"),
        (f"host=h password='{SECRET} two' dbname=x", "host=h password=*** dbname=x"),
        (f"postgres://h/x?password={SECRET}&sslmode=require", "postgres://h/x?password=***&sslmode=require"),
        ("no secret here: http://example.org/a", "no secret here: http://example.org/a"),
    ],
)  # fmt: skip
def test_any_text_loses_its_password(text, masked):
    assert mask_secrets(text) == masked


def test_a_log_line_built_from_an_error_shows_no_password():
    out = io.StringIO()
    configure("info", out)
    try:
        url = f"postgresql://app:{SECRET}@db1:5432/x"
        get_logger().error("lease", why=f"database unreachable ({url})", hosts=[url])
        logging.getLogger("psycopg.pool").warning("error connecting to %s", url)
    finally:
        configure("info")
    text = out.getvalue()
    assert text.count("postgresql://app:***@db1:5432/x") == 3, text
    assert SECRET not in text


def with_password(pg_url: str) -> str:
    scheme, rest = pg_url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{SECRET}@{host}&password={SECRET}"


def test_audit_output_shows_no_password(tmp_path, pg_url):
    Server(tmp_path, db=pg_url, topology="one").close()  # a ledger to audit
    for args in (["--db", with_password(pg_url)], ["--db", with_password(pg_url), "--json"]):
        r = subprocess.run([str(LIJIAN), "audit", *args], capture_output=True, text=True,
                           timeout=120, check=False)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert SECRET not in (r.stdout + r.stderr).replace("\n", "")
        if "--json" not in args:
            flat = r.stdout.replace("\n", "")  # rich wraps the line
            assert "audit of postgresql://postgres:***@127.0.0.1:5432/test?" in flat
    # A database that is not there: one line, at once, and still no password.
    gone = with_password(pg_url).replace("/test?", "/no_such_db?")
    r = subprocess.run([str(LIJIAN), "audit", "--db", gone], capture_output=True, text=True,
                       timeout=60, check=False)  # fmt: skip
    assert r.returncode == 2
    assert 'database "no_such_db" does not exist' in r.stderr
    assert "postgres:***@" in r.stderr and SECRET not in r.stderr
