"""The command line, run as a user would: a real process, real files."""

import os
import shutil
import subprocess
import sys

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.engine import Engine
from tests.support import CAMPAIGN_FILE, catalog, order, settings

LIJIAN = [sys.executable, "-m", "lijian.cli"]


def run(*args):
    return subprocess.run(
        [*LIJIAN, *args], check=False, capture_output=True, text=True, timeout=120
    )


def test_campaign_check_prints_the_schedule():
    r = run("campaign", "check", str(CAMPAIGN_FILE))
    assert r.returncode == 0, r.stderr
    assert "176,470,592" in r.stdout and "3,000,000,000" in r.stdout and "exact" in r.stdout
    assert r.stdout.count("176,470,588") == 16


def test_campaign_check_cuts_nothing_at_80_columns():
    env = {**os.environ, "COLUMNS": "80"}
    r = subprocess.run([*LIJIAN, "campaign", "check", str(CAMPAIGN_FILE)], check=False,
                       capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    assert "│ 2025-02-12 │ 10:00 │ 24:00  │   176,470,588 │  1,764,705.88 │" in r.stdout
    assert "times local to Asia/Shanghai (UTC+08:00)" in r.stdout


def test_campaign_check_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    text = CAMPAIGN_FILE.read_text().replace("budget_fen = 3_000_000_000", "budget_fen = -1")
    text = text.replace('leftover = "rollover"', 'leftover = "maybe"')
    bad.write_text(text)
    r = run("campaign", "check", str(bad))
    assert r.returncode == 1
    assert "campaign.budget_fen" in r.stderr and "campaign.leftover" in r.stderr


def test_audit_passes_on_a_sound_ledger_and_fails_on_a_tampered_one(tmp_path):
    db = tmp_path / "l.db"
    e = Engine([settings()], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    Blocking(e).catalog_upsert(list(catalog().rows()))
    Blocking(e).capture(Blocking(e).redeem(order(1), "unionpay", "k", "f").body["id"])
    e.close()
    r = run("audit", "--db", str(db))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 violation(s)" in r.stdout
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("UPDATE balances SET value = value + 1 WHERE key LIKE '%/held'")
    con.commit()
    con.close()
    r = run("audit", "--db", str(db), "--json")
    assert r.returncode == 1 and '"ok": false' in r.stdout


def test_audit_of_a_missing_file_says_so(tmp_path):
    r = run("audit", "--db", str(tmp_path / "none.db"))
    assert r.returncode == 2 and "no database" in r.stderr


def test_the_console_script_is_installed():
    assert shutil.which("lijian") or (CAMPAIGN_FILE.parent.parent / ".venv/bin/lijian").exists()
