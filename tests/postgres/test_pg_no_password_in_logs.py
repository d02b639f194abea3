"""The database password never reaches a log line: ``--db`` is shown without it."""

from __future__ import annotations

import pytest

from lijian.store import shown_db
from tests.http.harness import Server

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
