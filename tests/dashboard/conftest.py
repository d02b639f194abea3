"""A real ``lijian serve`` (fresh db, manual clock, free loopback port) and a real browser.

Both are session fixtures of the xdist group ``lijian-serve``: the tests that use them run
in one worker, against one server process, in file order. Chromium is Debian's
(``/usr/bin/chromium``, installed by .ci/run); Playwright never downloads a browser. If
Chromium is missing or cannot start, the tests fail: they are never skipped.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.client import CID, Signed, catalog_ndjson, order
from tests.support import CAMPAIGN_FILE, ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts"
START_TIMEOUT_S = 120.0  # geography and a cold import on a busy 2-core machine
STOP_TIMEOUT_S = 30.0
CLOCK_START = "2025-02-12T09:59:00+08:00"
USERS = {
    "ops": ("operator-secret-1", "operator"),
    "audit": ("auditor-secret-1", "auditor"),
}
CLIENTS_TOML = """
[[clients]]
key_id = "unionpay"
secret = "channel-secret-1"
role = "channel"

[[clients]]
key_id = "ops"
secret = "operator-secret-1"
role = "operator"

[[clients]]
key_id = "audit"
secret = "auditor-secret-1"
role = "auditor"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base_url: str
    log: Path
    ops: Signed
    channel: Signed
    orders: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    opened: bool = False

    def open_campaign(self) -> None:
        """Goods in the catalogue and the clock at the 10:00 release (once)."""
        if self.opened:
            return
        r = self.ops.request(
            "PUT",
            f"/v1/campaigns/{CID}/catalog",
            raw=catalog_ndjson(),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert r.status_code == 200, r.text
        r = self.ops.request("POST", "/v1/admin/clock", {"now": "2025-02-12T10:00:00+08:00"})
        assert r.status_code == 200, r.text
        self.opened = True

    def redeem(self, platform: str = "jd", capture: bool = True, **kw: Any) -> dict[str, Any]:
        n = next(self.orders)
        body = order(n, platform, sku_index=n % 16, price_fen=10_000 + 731 * n, **kw)
        r = self.channel.request(
            "POST", "/v1/redemptions", body, headers={"Idempotency-Key": f"idem-{n}"}
        )
        assert r.status_code in (200, 201), r.text
        out: dict[str, Any] = r.json()
        if r.status_code == 201 and capture:
            c = self.channel.request("POST", f"/v1/redemptions/{out['id']}/capture")
            assert c.status_code == 200, c.text
        return out

    def settlement(self, day: str, csv: bool = False) -> httpx.Response:
        headers = {"Accept": "text/csv"} if csv else None
        path = f"/v1/campaigns/{CID}/settlement?date={day}"
        r = self.ops.request("GET", path, headers=headers)
        assert r.status_code == 200, r.text
        return r


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("serve")
    clients = d / "clients.toml"
    clients.write_text(CLIENTS_TOML)
    port = free_port()
    log = d / "serve.log"
    cmd = [
        sys.executable, "-m", "lijian.cli", "serve",
        "--campaign", str(CAMPAIGN_FILE), "--clients", str(clients),
        "--db", str(d / "ledger.db"), "--host", "127.0.0.1", "--port", str(port),
        "--clock", f"manual:{CLOCK_START}", "--no-access-log",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"lijian serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(base + "/readyz", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"lijian serve not ready in {START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.2)
        srv = Server(
            base,
            log,
            Signed(base, "ops", "operator-secret-1"),
            Signed(base, "unionpay", "channel-secret-1"),
        )
        yield srv
        srv.ops.close()
        srv.channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API runs an event loop on this thread
    # while it is open, and a later test of the same worker (asyncio.run, or another
    # sync_playwright) would fail on it.
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(
        base_url=server.base_url, viewport={"width": 1440, "height": 1600}, accept_downloads=True
    )
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(pg: Any, user: str, password: str) -> None:
    pg.goto("/")
    pg.wait_for_url("**/login")
    pg.fill("#username", user)
    pg.fill("#password", password)
    pg.click("#submit")
