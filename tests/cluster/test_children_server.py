"""The fork server a supervisor's children come from (cluster/children.py) listens on a
Unix socket: only this user may ask it for a process. And what children inherit through
the environment cannot change behind its back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lijian.cluster import children
from tests.cluster.link_support import Sequencer

# Started in a process of its own (the server outlives nothing: it exits with it): where
# it listens, the modes of the socket and its directory, and whether another user
# (nobody, when this runs as root) is let in.
PROBE = r"""
import json, os, socket, stat
import multiprocessing.forkserver as fs
from lijian.cluster.children import start_children_server
start_children_server()
address = fs._forkserver._forkserver_address
out = {"address": address, "socket": stat.S_IMODE(os.stat(address).st_mode),
       "dir": stat.S_IMODE(os.stat(os.path.dirname(address)).st_mode), "other": None}
if os.geteuid() == 0:
    pid = os.fork()
    if pid == 0:
        os.setgid(65534)
        os.setuid(65534)
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(address)
            os._exit(0)
        except PermissionError:
            os._exit(13)
        except OSError:
            os._exit(1)
    out["other"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(out))
"""


def test_the_fork_server_listens_for_this_user_only() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert not got["address"].startswith("\0")  # a path, not the abstract namespace
    assert (got["socket"], got["dir"]) == (0o600, 0o700)
    if os.geteuid() == 0:  # as CI runs: another user is refused by the filesystem
        assert got["other"] == 13


def test_a_change_of_the_environment_after_the_server_started_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(children, "_server_environment", [dict(os.environ)])
    children.check_children_environment()  # unchanged: fine
    monkeypatch.setenv("LIJIAN_LEDGER_KEY_FILE", "/set/too/late")
    with pytest.raises(AssertionError, match="children would not see it"):
        children.check_children_environment()


def _group(pgid: int) -> dict[int, tuple[int, bytes]]:
    """The live processes of a process group: their parent and command line (a child
    forked by the fork server keeps the server's)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == pgid and fields[0] != "Z":
                out[int(entry.name)] = (int(fields[1]), (entry / "cmdline").read_bytes())
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_a_stop_sent_to_the_group_waits_for_the_children(tmp_path: Path) -> None:
    """SIGTERM to the whole group (a terminal, a harness, a service manager): the fork
    server outlives it, so the supervisor learns each child's end from it, and exits
    only after its sequencer drained and stopped; the server goes with it."""
    seq = Sequencer(tmp_path)
    try:
        _stop_by_group(seq)
    finally:  # whatever failed above, nothing of the group is left running
        seq.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(seq.proc.pid, signal.SIGKILL)


def _stop_by_group(seq: Sequencer) -> None:
    pgid = seq.proc.pid
    server = [p for p, (ppid, cmd) in _group(pgid).items()
              if ppid == pgid and b"multiprocessing.forkserver" in cmd]  # fmt: skip
    assert len(server) == 1, _group(pgid)  # the server the child came from
    assert any(ppid == server[0] for ppid, _ in _group(pgid).values())  # the child
    os.killpg(pgid, signal.SIGTERM)
    assert seq.proc.wait(30) == 0
    left = {p: cmd for p, (_, cmd) in _group(pgid).items()
            if p not in server and b"resource_tracker" not in cmd}  # fmt: skip
    assert left == {}, left  # no child outlived its supervisor
    deadline = time.monotonic() + 10
    while _group(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group(pgid) == {}  # and the server went when the supervisor did
    assert '"event":"stopped"' in seq.log.read_text()  # the sequencer's own clean stop
