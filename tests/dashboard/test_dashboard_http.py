"""The dashboard's HTTP surface on a real server: sessions, CSRF, the stream, the feed."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from importlib import resources

import httpx
import pytest

from tests.dashboard.client import CID
from tests.dashboard.conftest import USERS

pytestmark = pytest.mark.xdist_group("lijian-serve")
STREAM_WAIT_S = 15.0


def form_token(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


@contextlib.contextmanager
def logged_in(server, user: str = "audit") -> Iterator[tuple[httpx.Client, str]]:
    """A client with a session cookie, and the page's CSRF token for logout."""
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        token = form_token(c.get("/login").text)
        r = c.post("/login", data={"csrf": token, "username": user, "password": USERS[user][0]})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        page = c.get("/")
        assert page.status_code == 200
        yield c, form_token(page.text)


def test_everything_but_the_login_page_needs_a_session(server):
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        for path in (
            "/dashboard/events",
            f"/dashboard/api/history?campaign={CID}",
            f"/dashboard/api/settlement?campaign={CID}&date=2025-02-12",
            f"/dashboard/settlement.csv?campaign={CID}&date=2025-02-12",
        ):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json()["code"] == "login_required"
        assert c.get("/dashboard/static/dashboard.js").status_code == 200
        assert c.get("/dashboard/static/../../cli.py").status_code == 404


def test_a_login_needs_this_pages_token_and_origin(server):
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        creds = {"username": "ops", "password": USERS["ops"][0]}
        r = c.post("/login", data=creds)  # no token, no login cookie: a forged form
        assert r.status_code == 403 and "lijian_session" not in r.cookies
        token = form_token(c.get("/login").text)
        r = c.post(
            "/login", data={**creds, "csrf": token}, headers={"Origin": "https://evil.example"}
        )
        assert r.status_code == 403 and "lijian_session" not in r.cookies
        r = c.post("/login", data={**creds, "csrf": token + "x"})
        assert r.status_code == 403
        token = form_token(r.text)  # every refusal hands out a fresh form
        r = c.post("/login", data={**creds, "csrf": token}, headers={"Origin": server.base_url})
        assert r.status_code == 303


def test_a_refused_login_keeps_the_name_escaped(server):
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        token = form_token(c.get("/login").text)
        name = '"><script>alert(1)</script>'
        r = c.post("/login", data={"csrf": token, "username": name, "password": "x" * 9})
        assert r.status_code == 401
        assert "<script>alert" not in r.text and "&lt;script&gt;alert(1)" in r.text


def test_the_session_cookie_is_httponly_strict_and_signed(server):
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        token = form_token(c.get("/login").text)
        r = c.post(
            "/login", data={"csrf": token, "username": "audit", "password": "auditor-secret-1"}
        )
        assert r.status_code == 303
        cookie = next(v for k, v in r.headers.multi_items() if v.startswith("lijian_session="))
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        page = c.get("/")
        assert page.status_code == 200 and "auditor" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store"
        forged = c.cookies["lijian_session"][:-3] + "AAA"
        c.cookies.set("lijian_session", forged)
        assert c.get(f"/dashboard/api/history?campaign={CID}").status_code == 401


def test_logout_needs_the_page_token_and_ends_the_session(server):
    with logged_in(server) as (c, token):
        assert c.post("/logout", data={}).status_code == 403
        assert c.post("/logout", data={"csrf": "nope"}).status_code == 403
        old = c.cookies["lijian_session"]
        r = c.post("/logout", data={"csrf": token})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        c.cookies.set("lijian_session", old)  # a copy kept by someone: dead all the same
        assert c.get(f"/dashboard/api/history?campaign={CID}").status_code == 401


def test_the_event_stream_sends_a_snapshot_and_is_bounded(server):
    server.open_campaign()
    with (
        logged_in(server, "ops") as (c, _),
        c.stream("GET", f"/dashboard/events?campaign={CID}") as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        deadline = time.monotonic() + STREAM_WAIT_S
        event, data, retry = None, None, None
        for line in r.iter_lines():
            if line.startswith("retry:"):
                retry = int(line.split(":")[1])
            elif line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "snapshot":
                data = json.loads(line[5:])
                break
            assert time.monotonic() < deadline, "no snapshot in time"
    assert retry == 1000
    assert data is not None and data["campaign_id"] == CID
    for key in ("today", "burn", "grants_per_s", "declines", "platforms", "categories",
                "totals", "budget", "audit", "feed"):  # fmt: skip
        assert key in data, key
    assert data["budget"]["budget_fen"] == 3_000_000_000
    assert data["feed"]["ok"], data["feed"]


def test_unknown_campaigns_and_bad_dates_are_refused(server):
    with logged_in(server) as (c, _):
        assert c.get("/dashboard/events?campaign=nope").status_code == 404
        r = c.get(f"/dashboard/api/settlement?campaign={CID}&date=2025-02-30")
        assert r.status_code == 422
        assert c.get(f"/dashboard/api/burn?campaign={CID}&date=2024-01-01").status_code == 404
        r = c.get(f"/dashboard/api/history?campaign={CID}")
        days = r.json()["days"]
        assert days[0]["date"] == "2025-02-12" and len(days) == 17


def test_the_public_feed_needs_no_login_and_is_cacheable(server):
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        r = c.get(f"/public/campaigns/{CID}")
        assert r.status_code == 200
        cache = {d.strip() for d in r.headers["cache-control"].split(",")}
        assert {"public", "max-age=1"} <= cache
        assert "set-cookie" not in r.headers
        body = r.json()
        assert body["state"] in ("scheduled", "open", "sold_out", "closed_for_day", "ended")
        assert {"remaining_fen", "sold_out_at"} <= set(body["today"])
        assert "next_release_at" in body
        assert "person" not in json.dumps(body)
        assert c.get("/public/campaigns/nope").status_code == 404


def test_the_page_loads_nothing_from_elsewhere():
    static = resources.files("lijian.dashboard").joinpath("static")
    for f in static.iterdir():
        text = f.read_text("utf-8")
        for pattern in (r"""(src|href)\s*=\s*["']?(https?:)?//""", r"url\(\s*['\"]?(https?:)?//",
                        r"import\s+.*from\s+['\"]https?:", r"fetch\(\s*['\"]https?:"):  # fmt: skip
            assert not re.search(pattern, text), (f.name, pattern)
