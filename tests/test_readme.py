"""The README's five-minute walk-through, run as written against `make serve`'s command
(`lijian sandbox`): every `lijian call` answers, and the Python client snippet works."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.http.harness import free_port
from tests.support import ROOT

STARTUP_TIMEOUT_S = 60


def blocks(kind: str, heading: str = "## Five minutes with the API") -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    section = section[: section.index("\n## ", 10)]
    return re.findall(rf"```{kind}\n(.*?)```", section, re.S)


def test_the_in_process_engine_snippet_runs_as_written(tmp_path: Path) -> None:
    [python] = blocks("python", "## Usage")
    assert "Engine(" in python and "Blocking(engine)" in python
    # As written (it writes lijian.db in the current folder), then what it computed.
    probe = python + "\nimport json; print(json.dumps([outcome.status, outcome.body]))\n"
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    status, body = json.loads(r.stdout.splitlines()[-1])
    assert status == 201
    assert (body["status"], body["discount_fen"]) == ("held", 3720)
    assert re.fullmatch(r"rd_a[0-9a-z]{6}0000000001", body["id"]), body["id"]
    assert (tmp_path / "lijian.db").is_file()


def test_the_walk_through_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "sandbox.log", "wb")  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen(
        [sys.executable, "-m", "lijian.cli", "sandbox", "--dir", "out/serve", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, (tmp_path / "sandbox.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        [shell] = blocks("sh")
        # As written, but on this test's port, and with the venv of this interpreter.
        shell = shell.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        shell = shell.replace(". .venv/bin/activate", "true")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        r = subprocess.run(["bash", "-e", "-c", shell], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        answers = [line for line in r.stderr.splitlines() if line.startswith("HTTP ")]
        assert [a.split(",")[0] for a in answers] == [
            "HTTP 200 OK", "HTTP 200 OK", "HTTP 201 Created", "HTTP 200 OK", "HTTP 200 OK",
            "HTTP 200 OK", "HTTP 200 OK",
        ]  # fmt: skip
        out = r.stdout
        assert '"state": "open"' in out and '"discount_fen": 3720' in out
        assert '"status": "captured"' in out and '"used_fen": 3720' in out
        assert '"now": "2025-02-12T10:15:00+08:00"' in out and '"gmv_fen": 24800' in out

        [python] = blocks("python")
        python = python.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        r = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, check=False)  # fmt: skip
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert re.fullmatch(r"rd_a[0-9a-z]{6}0000000002 3720", lines[0]), lines[0]
        assert lines[1] == "captured"
        assert lines[2].startswith("Today(date='2025-02-12'")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_the_readme_lists_every_command_and_every_document() -> None:
    import typer

    from lijian.cli import app

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    usage = text[text.index("## Usage") : text.index("## Exit codes")]
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    for name, command in group.commands.items():
        subs = getattr(command, "commands", None)
        for full in [f"{name} {s}" for s in subs] if subs else [name]:
            assert f"lijian {full} " in usage, full
    listed = text[text.index("## Documentation") :]
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"`docs/{doc.name}`" in listed, doc.name
