"""`lijian gateway --dashboard-url` repeated: the dashboard's pages go to the first
sequencer that answers. A first address that refuses connections (a sequencer that is
gone) or accepts them and stays silent (a standby's port, bound before it serves) does
not stop the dashboard through the gateway; a form is never posted to a silent one."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster.link_support import Sequencer, spawn, stop, wait_ready
from tests.http.harness import CLIENTS, LIJIAN, free_port
from tests.support import CID

LOGIN_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def sequencer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sequencer]:
    seq = Sequencer(tmp_path_factory.mktemp("dashboard-urls"))
    try:
        yield seq
    finally:
        seq.close()


def gateway(
    seq: Sequencer, name: str, dashboard_urls: list[str]
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    urls = [a for u in dashboard_urls for a in ("--dashboard-url", u)]
    log = seq.workdir / f"{name}.log"
    proc = spawn(
        [str(LIJIAN), "gateway", "--sequencer", seq.address, "--clients", str(seq.clients),
         "--port", str(port), "--tls-dir", str(seq.tls / "gateway-1"), "--no-access-log", *urls],
        log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log)
    return url, proc


def log_in(base: str) -> httpx.Response:
    """The login page, then the form posted (a fresh connection each), then the page."""
    with httpx.Client(base_url=base, timeout=LOGIN_TIMEOUT_S) as c:
        page = c.get("/login")
        assert page.status_code == 200, page.text
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        r = c.post("/login", data={"csrf": token.group(1), "username": "ops",
                                   "password": CLIENTS["ops"]["secret"]})  # fmt: skip
        assert r.status_code == 303 and r.headers["location"] == "/", (r.status_code, r.text)
        return c.get("/")


def first_event(base: str) -> str:
    """Logged in, the first event of the dashboard's stream."""
    with httpx.Client(base_url=base, timeout=LOGIN_TIMEOUT_S) as c:
        page = c.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        r = c.post("/login", data={"csrf": token.group(1), "username": "ops",
                                   "password": CLIENTS["ops"]["secret"]})  # fmt: skip
        assert r.status_code == 303, r.text
        with c.stream("GET", f"/dashboard/events?campaign={CID}") as stream:
            assert stream.status_code == 200
            return next(ln for ln in stream.iter_lines() if ln.startswith("event: "))


def test_the_first_address_down(sequencer: Sequencer) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    live = f"http://127.0.0.1:{sequencer.http_port}"
    url, proc = gateway(sequencer, "gw-down-first", [down, live])
    try:
        for _ in range(2):  # and again, now that the live one answered last
            home = log_in(url)
            assert home.status_code == 200 and "立减" in home.text, home.text[:300]
    finally:
        stop(proc)


def test_the_first_address_silent_like_a_waiting_standby(sequencer: Sequencer) -> None:
    # Bound and listening, never accepting: connections complete and nothing answers.
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)
    live = f"http://127.0.0.1:{sequencer.http_port}"
    quiet = f"http://127.0.0.1:{silent.getsockname()[1]}"
    url, proc = gateway(sequencer, "gw-silent-first", [quiet, live])
    try:
        # The page (GET) moves on to the live one; the form then goes where the page came
        # from: had it gone to the silent one first it would be answered 503.
        home = log_in(url)
        assert home.status_code == 200 and "立减" in home.text, home.text[:300]
        # The event stream, which never ends, comes through as well.
        assert first_event(url) == "event: snapshot"
    finally:
        stop(proc)
        silent.close()


def test_only_http_urls(sequencer: Sequencer) -> None:
    r = subprocess.run(
        [str(LIJIAN), "gateway", "--sequencer", sequencer.address, "--clients",
         str(sequencer.clients), "--tls-dir", str(sequencer.tls / "gateway-1"),
         "--dashboard-url", "10.0.0.5:8001"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "--dashboard-url must be http(s)://" in r.stderr
