"""Signed daily evidence bundles, through the real ``lijian`` command (real processes,
a real SQLite ledger): keys new, evidence, verify; and every way a bundle must fail."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lijian.blocking import Blocking
from lijian.evidence.bundle import bundle_bytes, sign
from lijian.evidence.keys import load_private
from tests.evidence.ledger_days import DAY1, DAY2, build_two_days

LIJIAN = [sys.executable, "-m", "lijian.cli"]
CID = "chengdu-2025-spring"


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LIJIAN, *map(str, args)], check=False, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One ledger, one key pair, both days' bundles (module-wide: each test copies)."""
    root = tmp_path_factory.mktemp("evidence")
    db = root / "lijian.db"
    days = build_two_days(db)
    r = run("keys", "new", "--out", root / "keys")
    assert r.returncode == 0, r.stderr
    bundles = {}
    for day in (DAY1, DAY2):
        r = run("evidence", "--db", db, "--campaign", CID, "--date", day,
                "--key", root / "keys" / "evidence.key", "--out", root / "out")  # fmt: skip
        assert r.returncode == 0, r.stderr
        bundles[day] = Path(r.stdout.strip().splitlines()[-1])  # the path is printed last
    return root, db, days, bundles


def copy(made, tmp_path):
    bundles = made[3]
    return {d: Path(shutil.copy(p, tmp_path / p.name)) for d, p in bundles.items()}


def pub(made):
    return made[0] / "keys" / "evidence.pub"


def test_keys_are_pem_and_never_overwritten(made):
    root = made[0]
    assert (root / "keys" / "evidence.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (root / "keys" / "evidence.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (root / "keys" / "evidence.key").stat().st_mode & 0o777 == 0o600
    r = run("keys", "new", "--out", root / "keys")
    assert r.returncode == 2 and "exists already" in r.stderr and "Traceback" not in r.stderr


def test_bundle_holds_the_days_settlement_rows_and_chain(made):
    _, _, days, bundles = made
    b1 = json.loads(bundles[DAY1].read_bytes())
    b2 = json.loads(bundles[DAY2].read_bytes())
    assert bundles[DAY1].name == f"{CID}-{DAY1}.evidence.json"
    assert [r["id"] for r in b1["redemptions"]] == days.day1_captured
    assert [r["id"] for r in b2["redemptions"]] == days.day2_captured
    assert {r["person_id"] for r in b1["redemptions"]} == {"p-1", "p-2", "p-3"}
    assert [(f["redemption_id"], f["refund_id"]) for f in b1["refunds"]] == [
        (days.refunded, "rf-1")
    ]
    jd = next(p for p in b1["settlement"]["platforms"] if p["platform"] == "jd")
    assert (jd["count"], jd["gmv_fen"], jd["discount_fen"]) == (3, 3 * 24_800, 3 * 3_720)
    assert jd["clawback_fen"] == b1["refunds"][0]["clawback_fen"] > 0
    assert b1["settlement"]["totals"]["net_subsidy_fen"] == 3 * 3_720 - jd["clawback_fen"]
    assert b2["settlement"]["totals"]["count"] == 2
    # The chain: day 1 starts at zero; day 2 continues exactly where day 1 closed.
    assert b1["chain"]["from_seq"] == 0 and b1["chain"]["from_head"] == "0" * 64
    assert b2["chain"]["from_seq"] == b1["chain"]["to_seq"] < b2["chain"]["to_seq"]
    assert b2["chain"]["from_head"] == b1["chain"]["head"]


def test_bundle_heads_are_the_public_feeds_days(made):
    from lijian.clock import parse_clock
    from lijian.engine import Engine
    from tests.support import settings

    _, db, _, bundles = made
    e = Engine([settings()], db, parse_clock("manual:2025-02-14T09:00:00+08:00"))
    try:
        body = e.call(e.read_public, CID)
    finally:
        e.close()
    heads = {d["date"]: (d["seq"], d["head"]) for d in body["days"]}
    for day, path in bundles.items():
        c = json.loads(path.read_bytes())["chain"]
        assert heads[day] == (c["to_seq"], c["head"])
    assert body["chain"]["seq"] >= heads[DAY2][0] and len(body["chain"]["head"]) == 64


def test_verify_ok_alone_and_with_the_previous_day(made, tmp_path):
    b = copy(made, tmp_path)
    r = run("verify", b[DAY1], "--pubkey", pub(made))
    assert r.returncode == 0, r.stderr
    r = run("verify", b[DAY2], "--pubkey", pub(made), "--previous", b[DAY1])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok ")


def test_one_changed_byte_fails_the_signature(made, tmp_path):
    b = copy(made, tmp_path)
    raw = bytearray(b[DAY1].read_bytes())
    at = raw.index(b'"gmv_fen":') + len(b'"gmv_fen":')
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")  # one digit of one figure
    b[DAY1].write_bytes(bytes(raw))
    r = run("verify", b[DAY1], "--pubkey", pub(made))
    assert r.returncode == 1
    assert "FAIL signature: does not verify" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_removed_row_fails_even_when_re_signed_with_the_right_key(made, tmp_path):
    """The operator holds the key: a bundle re-signed after dropping a redemption still
    fails, because its settlement no longer follows from its rows."""
    b = copy(made, tmp_path)
    doc = json.loads(b[DAY1].read_bytes())
    dropped = doc["redemptions"].pop(1)
    b[DAY1].write_bytes(bundle_bytes(sign(doc, load_private(made[0] / "keys" / "evidence.key"))))
    r = run("verify", b[DAY1], "--pubkey", pub(made))
    assert r.returncode == 1
    assert "FAIL signature" not in r.stderr
    assert "FAIL settlement: jd count is 3, the listed rows give 2" in r.stderr
    assert f"the listed rows give {3 * 24_800 - dropped['payable_fen']}" in r.stderr


def test_a_removed_row_without_re_signing_fails_the_signature_too(made, tmp_path):
    b = copy(made, tmp_path)
    doc = json.loads(b[DAY1].read_bytes())
    doc["redemptions"].pop(0)
    b[DAY1].write_bytes(bundle_bytes(doc))
    r = run("verify", b[DAY1], "--pubkey", pub(made))
    assert r.returncode == 1
    assert "FAIL signature: does not verify" in r.stderr
    assert "FAIL settlement: jd count is 3, the listed rows give 2" in r.stderr


def test_the_wrong_public_key_fails(made, tmp_path):
    b = copy(made, tmp_path)
    assert run("keys", "new", "--out", tmp_path / "other").returncode == 0
    r = run("verify", b[DAY1], "--pubkey", tmp_path / "other" / "evidence.pub")
    assert r.returncode == 1
    assert "FAIL signature: signed by another key than the one given" in r.stderr
    assert "FAIL signature: does not verify with the given public key" in r.stderr


def test_a_missing_day_between_two_bundles_fails(made, tmp_path):
    """Day 3's bundle checked against day 1's: the day in between is missing."""
    root, db, _, _ = made
    from lijian.clock import parse_clock
    from lijian.engine import Engine
    from tests.evidence.ledger_days import local_ms
    from tests.support import order, settings

    work = tmp_path / "l.db"
    shutil.copy(db, work)
    e = Engine([settings()], work, parse_clock("manual:2025-02-14T10:00:00+08:00"))
    try:
        assert Blocking(e).redeem(order(31, person="p-31"), "unionpay", "K31", "f31").status == 201
        Blocking(e).set_clock(local_ms("2025-02-15 09:00"))
    finally:
        e.close()
    out = {}
    for day in (DAY1, "2025-02-14"):
        r = run("evidence", "--db", work, "--campaign", CID, "--date", day,
                "--key", root / "keys" / "evidence.key", "--out", tmp_path / "out")  # fmt: skip
        assert r.returncode == 0, r.stderr
        out[day] = r.stdout.strip().splitlines()[-1]
    r = run("verify", out["2025-02-14"], "--pubkey", pub(made), "--previous", out[DAY1])
    assert r.returncode == 1
    assert "FAIL previous: day missing: the previous bundle is 2025-02-12, not 2025-02-13" in (
        r.stderr
    )
    assert "FAIL chain: does not continue the previous bundle" in r.stderr


def test_evidence_refuses_a_day_not_closed_and_a_broken_chain(made, tmp_path):
    root, db, _, _ = made
    key = root / "keys" / "evidence.key"
    r = run("evidence", "--db", db, "--campaign", CID, "--date", "2025-02-20",
            "--key", key, "--out", tmp_path)  # fmt: skip
    assert r.returncode == 2 and "has no close of 2025-02-20" in r.stderr
    work = tmp_path / "t.db"
    shutil.copy(db, work)
    from tests.evidence.ledger_days import Tamper, more_payable

    t = Tamper(str(work))
    seq = t.first_hold_seq(0)
    t.rewrite_body(seq, more_payable)
    r = run("evidence", "--db", work, "--campaign", CID, "--date", DAY1,
            "--key", key, "--out", tmp_path)  # fmt: skip
    assert r.returncode == 1
    assert f"hash chain broken at seq {seq}" in r.stderr
    assert not list(tmp_path.glob("*.evidence.json"))
    r = run("evidence", "--db", tmp_path / "none.db", "--campaign", CID, "--date", DAY1,
            "--key", key, "--out", tmp_path)  # fmt: skip
    assert r.returncode == 2 and "no database at" in r.stderr
