"""Crash test: SIGKILL a granting process at random moments, ≥ 20 times.

After every kill the ledger is replayed from the file: every grant and capture the
child had printed (it prints only after the acknowledgement) must be there, and the
audit (replay from zero, invariants, stored balances) must pass.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from lijian.audit import audit_db
from lijian.core.ledger import Ledger
from lijian.core.settings import parse_settings
from lijian.store.sqlite import SqliteStore
from tests.support import ROOT

KILLS = 20


def replay(db):
    store = SqliteStore(db)
    try:
        import json

        settings = [parse_settings(json.loads(raw)) for _, raw in store.campaigns()]
        led = Ledger(settings)
        for _, e in store.iter_entries():
            led.apply(e)
        return led
    finally:
        store.close()


def run_and_kill(db, round_no, rng, module="tests.durability.crash_child"):
    """Runs the child ``module`` on ``db``, kills it with SIGKILL at a random moment after
    its first acknowledgement, and returns the lines it printed (what was acknowledged)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", module, str(db), str(round_no)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    lines: list[str] = []

    def read():
        for raw in child.stdout:
            lines.append(raw.decode().strip())

    reader = threading.Thread(target=read)
    reader.start()
    # Wait for the first acknowledgement, then kill at a random moment under load.
    deadline = time.monotonic() + 60
    while not lines and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lines, child.stderr.read().decode()[-2000:]
    time.sleep(rng.uniform(0.0, 0.4))
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join()
    return [line for line in lines if line]


@pytest.mark.slow
def test_every_acknowledged_grant_survives_sigkill(tmp_path):
    rng = random.Random(20250212)
    db = tmp_path / "crash.db"
    acked_holds: set[str] = set()
    acked_captures: set[str] = set()
    for round_no in range(KILLS):
        for line in run_and_kill(db, round_no, rng):
            kind, rid = line.split()
            (acked_holds if kind == "H" else acked_captures).add(rid)
        led = replay(db)
        missing = acked_holds - set(led.redemptions)
        assert not missing, f"round {round_no}: acknowledged grants lost: {sorted(missing)[:5]}"
        not_captured = [r for r in acked_captures if led.redemptions[r].status != "captured"]
        assert not not_captured, f"round {round_no}: acknowledged captures lost"
    assert len(acked_holds) > KILLS * 200  # the child really was granting under load
    report = audit_db(db)
    assert report.ok, report.violations
