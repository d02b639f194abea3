"""docs/SCALE-OUT.md's recipe for one machine, run as written on SQLite from a folder
holding the repository's campaigns/ (the PostgreSQL lines are the same commands on
another --db): clients, the example catalogue, `serve --workers 2` on the manual clock,
and the API answers that the seed campaign is open, with a grant for a catalogue SKU."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from lijian.seed import SEED_GOODS, example_catalog
from tests.http.harness import LIJIAN, free_port
from tests.support import ROOT
from tests.test_sandbox import ORDER

pytestmark = pytest.mark.slow  # a sequencer and two gateways: `make test`, not test-fast
STARTUP_TIMEOUT_S = 90


def one_machine_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "SCALE-OUT.md").read_text(encoding="utf-8")
    block = re.findall(r"```sh\n(.*?)```", text, re.S)[0]
    block = block[: block.index("# several machines")].replace("\\\n", " ")
    lines = [ln.strip() for ln in block.splitlines()]
    return [shlex.split(ln) for ln in lines if ln and not ln.startswith("#")]


def test_the_example_catalogue_file_is_the_sandboxs() -> None:
    assert SEED_GOODS.read_bytes() == example_catalog()


def test_the_one_machine_recipe_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "campaigns").symlink_to(ROOT / "campaigns")
    commands = [c for c in one_machine_commands() if not any("postgresql" in a for a in c)]
    assert [c[:2] for c in commands] == [
        ["lijian", "clients"], ["lijian", "catalog"], ["lijian", "serve"], ["lijian", "call"],
        ["lijian", "call"],
    ]  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server: subprocess.Popen[bytes] | None = None
    outputs = []
    try:
        for cmd in commands:
            argv = [str(LIJIAN), *cmd[1:]]
            if cmd[1] == "serve":
                log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - the child keeps it
                server = subprocess.Popen([*argv, "--port", str(port)], cwd=tmp_path,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)  # fmt: skip
                log.close()
                wait_ready(url, server, tmp_path / "serve.log")
                continue
            if cmd[1] == "call":
                argv += ["--url", url]
            r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                               check=False)  # fmt: skip
            assert r.returncode == 0, (cmd, r.stdout, r.stderr)
            outputs.append(r.stdout)
        status = json.loads(outputs[2])
        assert status["state"] == "open" and status["today"]["date"] == "2025-02-12", status
        assert json.loads(outputs[3]) == {"upserted": 40}, outputs[3]
        (tmp_path / "order.json").write_text(json.dumps(ORDER), encoding="utf-8")
        r = subprocess.run(
            [str(LIJIAN), "call", "POST", "/v1/redemptions", "--body", "order.json", "--url",
             url, "--clients", "clients.toml", "--key", "unionpay"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["discount_fen"] == 3_720
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(60)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.1)
