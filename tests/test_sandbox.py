"""The first hour: `make serve`'s command (`lijian sandbox`) answers a signed
`lijian call` from another process; `lijian clients new` writes usable random secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from lijian.http.clients import load_clients
from tests.http.harness import free_port

LIJIAN = [sys.executable, "-m", "lijian.cli"]
STARTUP_TIMEOUT_S = 60
ORDER = {
    "campaign_id": "chengdu-2025-spring",
    "platform": "jd",
    "order_id": "JD-20250212-0001",
    "payment_channel": "unionpay",
    "person": {"id": "p-1001", "real_name_verified": True},
    "device_location": {"lng": 104.065735, "lat": 30.657462, "crs": "gcj02"},
    "delivery_address": {"adcode": "510104", "text": "四川省成都市锦江区红星路三段1号"},
    "items": [
        {"sku": "JD-1", "quantity": 2, "unit_price_fen": 12900, "platform_discount_fen": 1000}
    ],
}


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [*LIJIAN, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
        check=False,
    )  # fmt: skip


def test_make_serve_uses_the_sandbox_command() -> None:
    r = subprocess.run(["make", "-n", "serve"], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert ".venv/bin/lijian sandbox --dir out/serve --port 8000" in r.stdout


def test_the_sandbox_answers_a_signed_call(tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "sandbox.log", "wb")  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen(
        [*LIJIAN, "sandbox", "--dir", str(tmp_path / "serve"), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, (tmp_path / "sandbox.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the sandbox did not get ready"
            time.sleep(0.2)
        printed = (tmp_path / "sandbox.log").read_text()
        clients_file = tmp_path / "serve" / "clients.toml"
        clients = load_clients(clients_file)
        assert sorted(clients) == ["audit", "jd", "ops", "unionpay", "vip"]
        for c in clients.values():  # every secret is printed, for the first calls
            assert f"secret {c.secret.decode()}" in printed
        assert f"dashboard  {url}/" in printed
        assert oct(clients_file.stat().st_mode & 0o777) == "0o600"

        env = {**os.environ, "LIJIAN_URL": url, "LIJIAN_CLIENTS": str(clients_file),
               "LIJIAN_KEY": "unionpay"}  # fmt: skip
        status = run("call", "GET", "/v1/campaigns/chengdu-2025-spring/status", env=env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["state"] == "open"
        assert status.stderr == "HTTP 200 OK\n"

        body = tmp_path / "order.json"
        body.write_text(json.dumps(ORDER, ensure_ascii=False), encoding="utf-8")
        args = ("call", "POST", "/v1/redemptions", "--body", str(body), "--idempotency-key", "k1")
        held = run(*args, env=env)
        assert held.returncode == 0, held.stderr
        doc = json.loads(held.stdout)
        assert (doc["status"], doc["discount_fen"], doc["pay_fen"]) == ("held", 3_720, 21_080)
        assert held.stderr == "HTTP 201 Created, Idempotency-Key k1\n"
        again = run(*args, env=env)
        assert json.loads(again.stdout) == doc
        assert again.stderr == "HTTP 201 Created (replayed), Idempotency-Key k1\n"

        # The catalogue file keeps its newlines: the signature covers them.
        cat = run("call", "PUT", "/v1/campaigns/chengdu-2025-spring/catalog", "--key", "ops",
                  "--body", str(tmp_path / "serve" / "catalog.ndjson"), env=env)  # fmt: skip
        assert cat.returncode == 0, cat.stderr
        assert json.loads(cat.stdout) == {"upserted": 40}

        # A second sandbox in the same folder (another port) is refused before it
        # deletes or writes anything: the running one keeps its ledger and answers.
        before = (tmp_path / "serve" / "lijian.db").stat().st_ino
        second = run("sandbox", "--dir", str(tmp_path / "serve"), "--port", str(free_port()),
                     cwd=tmp_path)  # fmt: skip
        assert second.returncode == 2 and "Traceback" not in second.stderr + second.stdout
        assert second.stdout == ""
        assert second.stderr == (
            f"lijian sandbox: {tmp_path / 'serve' / 'lijian.db'} is in use by another process "
            f"(pid {proc.pid}): stop it first (another lijian sandbox or server)\n"
        )
        assert (tmp_path / "serve" / "lijian.db").stat().st_ino == before
        assert json.loads(run(*args, env=env).stdout) == doc  # still there, still answered
        # And a second sandbox on the same port is refused before its banner.
        taken = run("sandbox", "--dir", str(tmp_path / "other"), "--port", str(port), cwd=tmp_path)
        assert (taken.returncode, taken.stdout) == (2, "")
        assert (
            taken.stderr == f"lijian sandbox: cannot listen on 127.0.0.1:{port}: "
            "Address already in use\n"
        )

        bad_env = {**env, "LIJIAN_CLIENTS": "", "LIJIAN_SECRET": "not-the-secret"}
        wrong = run("call", "GET", "/v1/campaigns/chengdu-2025-spring/status", env=bad_env)
        assert wrong.returncode == 2  # refused credentials (README, "Exit codes")
        assert wrong.stderr.splitlines() == [
            "HTTP 401 Unauthorized",
            "bad_signature: X-Lijian-Signature does not match the request "
            "(is the secret the server's for this key?)",
        ]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0


def test_clients_new_writes_one_client_per_role_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "clients.toml"
    r = run("clients", "new", "--out", str(out))
    assert r.returncode == 0, r.stderr
    clients = load_clients(out)
    assert {c.key_id: (c.role, c.platform) for c in clients.values()} == {
        "unionpay": ("channel", None),
        "jd": ("platform", "jd"),
        "vip": ("platform", "vip"),
        "ops": ("operator", None),
        "audit": ("auditor", None),
    }
    secrets = {c.secret for c in clients.values()}
    assert len(secrets) == 5 and {len(s) for s in secrets} == {43}
    before = out.read_bytes()
    r = run("clients", "new", "--out", str(out))
    assert (r.returncode, r.stderr) == (
        2,
        f"lijian clients new: {out} exists (pass --force to replace it)\n",
    )
    assert out.read_bytes() == before
