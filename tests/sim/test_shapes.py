"""Claim campaigns in the simulator (lijian.sim.shapes): a small fixed seed gives exact
figures for each shape, every ledger passes the audit after, and ``lijian simulate`` on a
claims file prints the shapes side by side and writes ``shapes.json``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from lijian.audit import audit_db
from lijian.inputs import load_settings_file
from lijian.sim.shapes import ShapeConfig, ShapeResult, run_shape

CAMPAIGNS = Path(__file__).resolve().parents[2] / "campaigns"


def _run(name: str, tmp_path: Path, link: bool = False, days: int = 1) -> ShapeResult:
    db = tmp_path / f"{name}-{link}.db"
    cfg = ShapeConfig(people=300, seed=7, days=days)
    res = asyncio.run(run_shape(load_settings_file(CAMPAIGNS / f"{name}.toml"), cfg, db, link))
    rep = audit_db(db)
    assert rep.ok, rep.violations  # replayed from zero: every voucher's fen accounted for
    assert res.failed is None and res.left == 0  # every voucher ended: used or expired
    return res


def _figures(r: ShapeResult) -> tuple[int, ...]:
    return (r.registered, r.lost, r.claimed, r.used, r.expired_unused,
            r.claimed_fen, r.granted_fen, r.expired_fen, r.bots_fen, r.people_served)  # fmt: skip


def test_claimed_vouchers_two_days(tmp_path: Path) -> None:
    r = _run("hangzhou-2020-claims", tmp_path, days=2)
    # 150 vouchers a day of 20 CNY for 300 people and 20 bot accounts; 15% of people
    # never use theirs (expired at valid_until, 7 days on); bots use all of theirs.
    assert r.vouchers_per_day == 150
    assert _figures(r) == (0, 0, 300, 273, 27, 600_000, 546_000, 54_000, 80_000, 128)
    assert r.granted_fen == 2000 * r.used and r.expired_fen == 2000 * r.expired_unused
    assert r.sold_out_after_s == 48.0
    assert r.declines == {"claims_sold_out": 340}  # 170 a day: 320 accounts, 150 vouchers


def test_lottery_registers_then_draws(tmp_path: Path) -> None:
    r = _run("shenzhen-lottery", tmp_path)
    # Everyone registers 10:00-12:00; the engine draws at 12:00: 150 win, 170 lose.
    assert _figures(r) == (320, 170, 150, 132, 18, 750_000, 660_000, 90_000, 40_000, 124)
    assert r.sold_out_after_s is None and r.declines == {}


def test_tradein_qualification_then_one_item(tmp_path: Path) -> None:
    r = _run("sichuan-2025-tradein", tmp_path)
    # A qualification reserves 2,000 CNY; the unit's 15-20% discount takes part of it.
    fig = (0, 0, 150, 133, 17, 30_000_000, 9_998_257, 3_400_000, 1_560_518, 113)
    assert _figures(r) == fig
    assert r.declines == {"claims_sold_out": 170}
    linked = _run("sichuan-2025-tradein", tmp_path, link=True)
    # Linked, a bot owner's accounts are one group: one unit per category for all of
    # them, so 8 of their qualifications cannot be used and expire.
    fig = (0, 0, 150, 125, 25, 30_000_000, 9_416_604, 5_000_000, 978_865, 113)
    assert _figures(linked) == fig
    assert linked.declines == {"claims_sold_out": 170, "order:person_category_limit": 8}
    assert linked.bot_share < r.bot_share


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lijian.cli", "simulate", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)


def test_simulate_prints_the_shapes_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _cli("--campaign", str(CAMPAIGNS / "sichuan-2025-tradein.toml"), "--persons", "300",
             "--seed", "7", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("shape   link  claimed")
    assert lines[1].split() == [
        "tradein",
        "no",
        "150",
        "133",
        "17",
        "99,982.57",
        "33.3%",
        "48.0",
        "s",
        "15.6%",
    ]
    doc = json.loads((out / "shapes.json").read_text())
    assert [(s["shape"], s["link"], s["granted_fen"]) for s in doc["shapes"]] == [
        ("tradein", False, 9_998_257), ("tradein", True, 9_416_604)]  # fmt: skip
    assert all(audit_db(p).ok for p in out.glob("shape-*.db"))


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for args, says in (
        (["--campaign", str(tmp_path / "empty")], "no campaign file with [claims]"),
        (["--campaign", str(CAMPAIGNS / "shenzhen-lottery.toml"), "--days", "9"], "days must be"),
    ):
        r = _cli(*args, "--out", str(tmp_path / "o"))
        assert r.returncode == 2 and says in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
