"""ops/prometheus/lijian-alerts.yml: valid for promtool (Debian's ``prometheus``), its
alerts fire on the series they are meant for (promtool's rule unit tests), and every
metric it names is one a live ``lijian serve`` exposes on GET /metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.events.receiver import webhooks_toml
from tests.http import harness
from tests.http.harness import Server, order
from tests.support import ROOT

RULES = ROOT / "ops" / "prometheus" / "lijian-alerts.yml"
UNIT_TESTS = Path(__file__).with_name("alert_rules_test.yml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"  # scripts/system-packages


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=UNIT_TESTS.parent)  # fmt: skip


def test_promtool_accepts_the_rules() -> None:
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 13 rules found" in r.stdout


def test_the_alerts_fire_on_their_series() -> None:
    r = promtool("test", "rules", UNIT_TESTS.name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_metric_in_the_rules_is_exposed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = set(re.findall(r"\b(lijian_[a-z_]+)", RULES.read_text()))
    assert len(named) == 12
    plain = harness.clients_toml
    url = f"http://127.0.0.1:{harness.free_port()}/hook"  # nobody listens: failures count
    monkeypatch.setattr(harness, "clients_toml", lambda: plain() + "\n" + webhooks_toml(url))
    server = Server(tmp_path, topology="one")
    monkeypatch.setattr(harness, "clients_toml", plain)
    try:
        server.api.granted(order())
        server.api.redeem(order(device_location={"lng": 106.577, "lat": 29.557, "crs": "gcj02"}))
        server.api.get("/v1/campaigns", as_="nobody")  # a 401
        text = server.api.get("/metrics", signed=False).text
    finally:
        server.close()
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
               if line.startswith("lijian_")}  # fmt: skip
    assert sorted(named - exposed) == []
