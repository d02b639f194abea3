"""``lijian settle`` and ``lijian reconcile`` on a real ledger file, run as a user would."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.order import RefundRequest
from lijian.core.settlement import settlement, settlement_csv
from lijian.engine import Engine
from lijian.reconcile import (
    AMOUNT_DIFFERS,
    CHANNEL_HEADER,
    DUPLICATE_IN_FILE,
    EXTRA_IN_FILE,
    MISSING_IN_FILE,
    ORDER_ID_DIFFERS,
    ChannelFileError,
    ChannelRow,
    read_channel_file,
    reconcile,
    replay_db,
)
from tests.support import CID, at, catalog, order, settings

LIJIAN = [sys.executable, "-m", "lijian.cli"]
NO_GEO = {"require_device_in_city": False, "require_address_in_city": False}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LIJIAN, *map(str, args)], check=False, capture_output=True, text=True, timeout=120
    )


class Ledgerfile:
    """A ledger file with every redemption state, and what the live engine said."""

    def __init__(self, db: Path) -> None:
        self.db = db
        e = Engine(
            [settings(eligibility=NO_GEO)], db, parse_clock("manual:2025-02-12T10:00:00+08:00")
        )
        try:
            Blocking(e).catalog_upsert(list(catalog().rows()))
            ids = {}
            for n, platform in ((1, "jd"), (2, "vip"), (3, "jd"), (4, "vip"), (5, "jd"), (6, "jd")):
                o = order(n, person=f"p-{n}", platform=platform, sku=f"{platform.upper()}-{n}")
                out = Blocking(e).redeem(o, "unionpay", f"k-{n}", f"fp-{n}")
                assert out.status == 201, out.body
                ids[n] = out.body["id"]
            for n in (1, 2, 3):
                assert Blocking(e).capture(ids[n]).status == 200
            Blocking(e).void(ids[5])  # never captured: not owed, must not be in the file
            part = Blocking(e).refund(
                ids[2], RefundRequest("f-2", payable_fen=5_000), "unionpay", "r-2", "fp-r2"
            )
            assert part.status == 201 and part.body["kind"] == "partial"
            Blocking(e).set_clock(at("2025-02-13 11:00"))
            full = Blocking(e).refund(
                ids[3], RefundRequest("f-3", payable_fen=24_800), "unionpay", "r-3", "fp-r3"
            )
            assert full.status == 201 and full.body["kind"] == "full", full.body
            # 6, held on the 12th, has expired by now; 7 is captured on the 13th.
            o7 = order(7, person="p-7", platform="vip", sku="VIP-7")
            out = Blocking(e).redeem(o7, "unionpay", "k-7", "fp-7")
            assert out.status == 201, out.body
            ids[7] = out.body["id"]
            assert Blocking(e).capture(ids[7]).status == 200
            self.ids = ids
            self.live = {
                day: e.call(settlement, e.ledger, CID, day) for day in ("2025-02-12", "2025-02-13")
            }
        finally:
            e.close()

    def clean_rows(self) -> list[list[str]]:
        ledger = replay_db(self.db)
        rows = []
        for r in ledger.redemptions.values():
            if r.status in ("captured", "partially_refunded", "refunded"):
                rows.append([r.id, r.order_id, str(r.discount_fen), str(r.card_refunded_fen)])
        return rows


@pytest.fixture(scope="module")
def ledgerfile(tmp_path_factory: pytest.TempPathFactory) -> Ledgerfile:
    return Ledgerfile(tmp_path_factory.mktemp("reconcile") / "ledger.db")


def write_channel(path: Path, rows: list[list[str]], header: tuple[str, ...] = CHANNEL_HEADER):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ------------------------------------------------------------------- settlement
def test_settle_writes_the_api_settlement_per_platform_for_the_day(ledgerfile, tmp_path):
    for day in ("2025-02-12", "2025-02-13"):
        r = run("settle", "--db", ledgerfile.db, "--date", day, "--out", tmp_path)
        assert r.returncode == 0, r.stderr
        written = (tmp_path / f"settlement-{CID}-{day}.csv").read_text(encoding="utf-8")
        assert written == settlement_csv(ledgerfile.live[day])
    rows = list(csv.DictReader((tmp_path / f"settlement-{CID}-2025-02-13.csv").open()))
    by = {row["platform"]: row for row in rows}
    assert by["vip"]["count"] == "1"  # the capture of the 13th
    assert int(by["jd"]["clawback_fen"]) > 0  # the full refund of the 13th, claimed back
    assert by["TOTAL"]["net_subsidy_fen"] == str(
        ledgerfile.live["2025-02-13"]["totals"]["net_subsidy_fen"]
    )


def test_settle_refuses_bad_input_without_creating_anything(ledgerfile, tmp_path):
    missing = tmp_path / "nope.db"
    r = run("settle", "--db", missing, "--date", "2025-02-12", "--out", tmp_path)
    assert r.returncode == 2 and "no database" in r.stderr and not missing.exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    r = run("settle", "--db", junk, "--date", "2025-02-12", "--out", tmp_path)
    assert r.returncode == 2 and "not a lijian ledger" in r.stderr
    r = run("settle", "--db", ledgerfile.db, "--date", "2025-02-30", "--out", tmp_path)
    assert r.returncode == 2 and "--date" in r.stderr
    r = run("settle", "--db", ledgerfile.db, "--date", "2025-02-12", "--campaign", "x-1")
    assert r.returncode == 2 and "unknown campaign" in r.stderr
    assert not list(tmp_path.glob("*.csv"))


# --------------------------------------------------------------- reconciliation
def test_a_clean_channel_file_reconciles(ledgerfile, tmp_path):
    rows = ledgerfile.clean_rows()
    assert len(rows) == 4  # 1, 2 (partial refund), 3 (full refund), 7; not held 4, voided 5
    f = write_channel(tmp_path / "clean.csv", rows)
    assert reconcile(replay_db(ledgerfile.db), read_channel_file(f)) == []
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", f)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 mismatch" in r.stderr
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", f, "--campaign", CID, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "rows": 4, "mismatches": []}


def test_the_ledger_side_is_exactly_the_captured_redemptions(ledgerfile):
    """An empty channel file misses every redemption the core counts as settled (captured,
    partially or fully refunded), and none voided or expired."""
    ids = ledgerfile.ids
    ledger = replay_db(ledgerfile.db)
    statuses = {n: ledger.redemptions[rid].status for n, rid in ids.items()}
    assert statuses == {
        1: "captured",
        2: "partially_refunded",
        3: "refunded",
        4: "expired",  # held on the 12th, its hold lapsed by the 13th
        5: "voided",
        6: "expired",
        7: "captured",
    }
    found = reconcile(ledger, [])
    assert [(m.kind, m.redemption_id) for m in found] == sorted(
        (MISSING_IN_FILE, ids[n]) for n in (1, 2, 3, 7)
    )
    assert [m.detail.split(",")[0] for m in found] == [
        statuses[n] for n in sorted((1, 2, 3, 7), key=lambda n: ids[n])
    ]


def test_reconcile_finds_every_kind_of_planted_mismatch(ledgerfile, tmp_path):
    ids = ledgerfile.ids
    rows = {row[0]: row for row in ledgerfile.clean_rows()}
    dropped = rows.pop(ids[7])  # missing in file
    rows[ids[1]] = [ids[1], rows[ids[1]][1], str(int(rows[ids[1]][2]) - 1), "0"]  # discount
    rows[ids[2]] = [ids[2], rows[ids[2]][1], rows[ids[2]][2], "1"]  # refunded amount
    rows[ids[3]] = [ids[3], "JD-WRONG-3", rows[ids[3]][2], rows[ids[3]][3]]  # order id
    planted = [
        *rows.values(),
        ["rd_z9999999999", "JD-404", "100", "0"],  # unknown redemption
        [ids[5], "O-5", "3720", "0"],  # voided in the ledger
        [ids[4], "O-4", "3720", "0"],  # only held in the ledger
        rows[ids[2]],  # the same redemption twice
    ]
    f = write_channel(tmp_path / "planted.csv", planted)
    found = reconcile(replay_db(ledgerfile.db), read_channel_file(f))
    kinds = {(m.kind, m.redemption_id, m.field) for m in found}
    assert kinds == {
        (MISSING_IN_FILE, dropped[0], ""),
        (AMOUNT_DIFFERS, ids[1], "discount_fen"),
        (AMOUNT_DIFFERS, ids[2], "refunded_fen"),
        (ORDER_ID_DIFFERS, ids[3], "order_id"),
        (EXTRA_IN_FILE, "rd_z9999999999", ""),
        (EXTRA_IN_FILE, ids[5], ""),
        (EXTRA_IN_FILE, ids[4], ""),
        (DUPLICATE_IN_FILE, ids[2], ""),
    }
    voided = next(m for m in found if m.redemption_id == ids[5])
    assert "voided" in voided.detail and voided.line == len(rows) + 3
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", f)
    assert r.returncode == 1
    out = r.stdout.splitlines()
    assert len(out) == len(found) == 8
    assert any(
        line.startswith(f"{AMOUNT_DIFFERS}\t{ids[1]}\tdiscount_fen: ledger=") for line in out
    )
    doc = json.loads(run("reconcile", "--db", ledgerfile.db, "--channel-file", f, "--json").stdout)
    assert doc["ok"] is False and len(doc["mismatches"]) == 8


def test_reconcile_for_one_campaign_treats_other_rows_as_extra(ledgerfile):
    ledger = replay_db(ledgerfile.db)
    r = next(iter(ledger.redemptions.values()))
    r.campaign_id = "another-campaign"  # as if a second campaign shared the ledger
    row = ChannelRow(2, r.id, r.order_id, r.discount_fen, r.card_refunded_fen)
    found = reconcile(ledger, [row], CID)
    assert any(m.kind == EXTRA_IN_FILE and "another-campaign" in m.detail for m in found)


def test_an_unusable_channel_file_is_refused_with_its_problems(ledgerfile, tmp_path):
    bad_header = write_channel(tmp_path / "h.csv", [], header=("id", "order", "discount"))
    with pytest.raises(ChannelFileError, match="header"):
        read_channel_file(bad_header)
    bad_rows = write_channel(
        tmp_path / "r.csv",
        [["rd_1", "O-1", "37.20", "0"], ["rd_2", "O-2", "1"], ["", "O", "1", "0"]],
    )
    with pytest.raises(ChannelFileError) as exc:
        read_channel_file(bad_rows)
    text = "; ".join(exc.value.problems)
    assert "line 2: discount_fen" in text and "line 3: 3 fields" in text and "line 4" in text
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", bad_rows)
    assert r.returncode == 2 and "line 2" in r.stderr
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", tmp_path / "absent.csv")
    assert r.returncode == 2 and "cannot read" in r.stderr
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeff".encode() + b"redemption_id,order_id,discount_fen,refunded_fen\r\n")
    assert read_channel_file(bom) == []


def test_reconcile_scoped_to_a_day_or_a_range(ledgerfile, tmp_path):
    """A channel's daily file is compared with that campaign day's redemptions only."""
    ledger = replay_db(ledgerfile.db)
    rows = ledgerfile.clean_rows()
    day_of = {r.id: r.day for r in ledger.redemptions.values()}
    of_13 = [row for row in rows if day_of[row[0]] == "2025-02-13"]
    of_12 = [row for row in rows if day_of[row[0]] == "2025-02-12"]
    assert [row[0] for row in of_13] == [ledgerfile.ids[7]] and len(of_12) == 3
    f13 = write_channel(tmp_path / "unionpay-2025-02-13.csv", of_13)
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", f13, "--date", "2025-02-13")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.endswith(", day 2025-02-13: 0 mismatch(es) (clean)\n")
    # Unscoped, the same file misses the 12th's three.
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", f13, "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and [m["kind"] for m in doc["mismatches"]] == [MISSING_IN_FILE] * 3
    # The whole file scoped to the 13th: the 12th's rows are extra, and say why.
    fall = write_channel(tmp_path / "all.csv", rows)
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", fall, "--date", "2025-02-13",
            "--json")  # fmt: skip
    doc = json.loads(r.stdout)
    assert r.returncode == 1
    assert sorted(
        (m["kind"], m["redemption_id"], m["detail"]) for m in doc["mismatches"]
    ) == sorted(
        (EXTRA_IN_FILE, row[0], "of day 2025-02-12, outside the day 2025-02-13 reconciled")
        for row in of_12
    )
    r = run("reconcile", "--db", ledgerfile.db, "--channel-file", fall,
            "--from", "2025-02-12", "--to", "2025-02-13")  # fmt: skip
    assert r.returncode == 0 and "days 2025-02-12 to 2025-02-13: 0 mismatch" in r.stderr
    for bad, why in (
        (["--date", "2025-02-13", "--from", "2025-02-12"], "give --date, or --from/--to, not both"),
        (
            ["--from", "2025-02-13", "--to", "2025-02-12"],
            "--from 2025-02-13 is after --to 2025-02-12",
        ),
        (["--date", "2025-02-30"], "day is out of range for month"),
    ):
        r = run("reconcile", "--db", ledgerfile.db, "--channel-file", fall, *bad)
        assert (r.returncode, r.stdout) == (2, "") and "Traceback" not in r.stderr
        assert r.stderr == f"lijian reconcile: {why}\n"
