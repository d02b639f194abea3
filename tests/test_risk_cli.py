"""``lijian risk``: a day's flags as CSV from a real ledger file, run as a user would;
bad input is one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.engine import Engine
from tests.support import CID, catalog, order, settings

LIJIAN = [sys.executable, "-m", "lijian.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIJIAN, *args], check=False, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_risk_writes_the_days_flags(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    s = settings(risk={"max_price_over_reference_pct": 0, "price_action": "flag"})
    e = Engine([s], db, parse_clock("manual:2025-02-12T10:00:00+08:00"))
    e.call(e.catalog_upsert, list(catalog().rows()), None, None, [("jd", "JD-1", 12_000)])
    flagged = Blocking(e).redeem(order(1, person="p-1", price_fen=12_900), "unionpay", "k1", "f1")
    plain = Blocking(e).redeem(order(2, person="p-2", price_fen=12_000), "unionpay", "k2", "f2")
    assert (flagged.status, plain.status) == (201, 201)
    e.close()
    out = tmp_path / "out"
    r = run("risk", "--db", str(db), "--date", "2025-02-12", "--out", str(out))
    assert r.returncode == 0, r.stderr
    path = out / f"risk-{CID}-2025-02-12.csv"
    assert f"1 flag(s) of {CID} on 2025-02-12" in r.stdout.replace("\n", "")
    rid = flagged.body["id"]
    assert path.read_text(encoding="utf-8").splitlines() == [
        "flag_id,code,day,raised_at,person_ids,redemption_ids,figures",
        f"flag-1,price_above_reference,2025-02-12,2025-02-12T10:00:00+08:00,p-1,{rid},"
        "JD-1:unit_price_fen=12900 JD-1:reference_price_fen=12000",
    ]
    # Another day: the header only.
    assert run("risk", "--db", str(db), "--date", "2025-02-13", "--out", str(out)).returncode == 0
    assert (out / f"risk-{CID}-2025-02-13.csv").read_text(encoding="utf-8").count("\n") == 1


def test_risk_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    r = run("risk", "--db", str(tmp_path / "none.db"), "--date", "2025-02-12")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = run("risk", "--db", str(tmp_path / "none.db"), "--date", "2025-02-30")
    assert r.returncode == 2 and r.stderr.startswith("lijian risk: --date:")
    assert not list(tmp_path.iterdir())  # nothing created
