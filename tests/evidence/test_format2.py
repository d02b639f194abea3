"""A ``lijian-evidence/2`` bundle, issued before /3 added the vouchers, lotteries, items
and risk rows, still verifies: every check /2 had, and one note that it lists none of
those rows. A tampered /2 bundle fails naming the row; a /2 bundle carrying a /3 field,
or a bundle of an unknown format, is one ``FAIL format`` line.

The /2 bundles are those /2's builder wrote (git 4dea2a7): the same day's payload less
the fields /3 added, ``format`` "lijian-evidence/2", signed the same way with the same
key. The ledger is a real one with vouchers in it (the Hangzhou claims campaign), so the
/3 rows a /2 bundle lacks are really in its entries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lijian.evidence.schema import FORMAT_2, V3_ONLY, BundleV2
from tests.evidence import range_ledgers as R
from tests.evidence.test_bundle import run
from tests.evidence.test_range_rows import Days

CID = "hangzhou-2020-claims"
DAY1, DAY2 = "2020-03-27", "2020-03-28"
# Every field of a /2 bundle, as git 4dea2a7's schema.Bundle lists them.
V2_FIELDS = {
    "format", "campaign_id", "date", "time_zone", "settlement", "redemptions", "refunds",
    "chain", "entries", "holds", "signature", "changes",
}  # fmt: skip


def as_v2(payload: Any) -> dict[str, Any]:
    """The unsigned /2 bundle of a day: the /3 payload without what /3 added."""
    doc = {k: v for k, v in json.loads(json.dumps(payload)).items() if k not in V3_ONLY}
    doc["format"] = FORMAT_2
    return doc


class V2Days(Days):
    def __init__(self, root: Path, db: Path) -> None:
        super().__init__(root, db, CID, (DAY1, DAY2))
        self.v2 = {d: self.write(d, as_v2(self.payload[d]), "v2") for d in (DAY1, DAY2)}

    def note(self, path: Path) -> str:
        return (
            f"{path} is format 2 (lijian-evidence/2, from before lijian-evidence/3): it does "
            "not list vouchers, lotteries, items or risk rows; its other contents are checked"
        )


@pytest.fixture(scope="module")
def hz(tmp_path_factory: pytest.TempPathFactory) -> V2Days:
    root = tmp_path_factory.mktemp("hz2")
    R.hangzhou(root / "l.db")
    return V2Days(root, root / "l.db")


def test_a_v2_bundle_has_exactly_the_v2_layout(hz: V2Days) -> None:
    for day in (DAY1, DAY2):
        doc = json.loads(hz.v2[day].read_bytes())
        assert set(doc) == V2_FIELDS == set(BundleV2.__struct_fields__)
        assert doc["format"] == "lijian-evidence/2"
        # What it lacks is really in its entries: day 1 has 6 voucher rows in /3.
        assert len(hz.payload[day]["vouchers"]) == {DAY1: 6, DAY2: 3}[day]
    assert len(json.loads(hz.v2[DAY1].read_bytes())["redemptions"]) == 1


def test_a_v2_bundle_verifies_with_one_note(hz: V2Days) -> None:
    for day in (DAY1, DAY2):
        v = hz.verify(hz.v2[day])
        assert (v.failures, v.notes) == ([], [hz.note(hz.v2[day])])
    v = hz.verify(hz.v2[DAY2], hz.v2[DAY1])
    assert (v.failures, v.notes) == ([], [hz.note(hz.v2[DAY2]), hz.note(hz.v2[DAY1])])
    # The day of the upgrade: a /3 bundle continues a /2 one, and the other way round.
    v = hz.verify(hz.path[DAY2], hz.v2[DAY1])
    assert (v.failures, v.notes) == ([], [hz.note(hz.v2[DAY1])])
    v = hz.verify(hz.v2[DAY2], hz.path[DAY1])
    assert (v.failures, v.notes) == ([], [hz.note(hz.v2[DAY2])])
    # A /3 bundle has no note.
    assert hz.verify(hz.path[DAY1]).notes == []


def test_lijian_verify_prints_ok_and_the_format_2_line(hz: V2Days) -> None:
    r = run("verify", hz.v2[DAY2], "--pubkey", hz.pub, "--previous", hz.v2[DAY1])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"ok {hz.v2[DAY2]} (continues {hz.v2[DAY1]})",
        f"note: {hz.note(hz.v2[DAY2])}",
        f"note: {hz.note(hz.v2[DAY1])}",
    ]
    assert r.stderr == ""


def test_a_v2_bundle_with_a_redemption_altered_fails_naming_it(hz: V2Days) -> None:
    doc = as_v2(hz.payload[DAY1])
    row = doc["redemptions"][0]
    row["payable_fen"] += 100
    (settled,) = [p for p in doc["settlement"]["platforms"] if p["platform"] == row["platform"]]
    settled["gmv_fen"] += 100  # the forger's settlement follows the row
    doc["settlement"]["totals"]["gmv_fen"] += 100
    v = hz.verify(hz.write(DAY1, doc, "forged"))
    assert v.failures == [f"rows: redemption {row['id']} is not as its entries say"]
    # Through the command, and unsigned (a changed file): signature and row both named.
    path = hz.v2[DAY1].with_name("unsigned.json")
    raw = hz.v2[DAY1].read_bytes()
    payable = row["payable_fen"] - 100
    assert raw.count(f'"payable_fen":{payable}'.encode()) == 1
    path.write_bytes(raw.replace(f'"payable_fen":{payable}'.encode(), b'"payable_fen":1'))
    r = run("verify", path, "--pubkey", hz.pub)
    assert r.returncode == 1
    assert r.stderr.splitlines()[:2] == [
        "FAIL signature: does not verify with the given public key (content or key wrong)",
        f"FAIL rows: redemption {row['id']} is not as its entries say",
    ]
    assert r.stdout == f"note: {hz.note(path)}\n" and "Traceback" not in r.stderr


def test_a_v2_bundle_carrying_a_v3_field_is_refused_in_one_line(hz: V2Days) -> None:
    v3: dict[str, Any] = json.loads(json.dumps(hz.payload[DAY1]))
    for field in V3_ONLY:
        doc = as_v2(hz.payload[DAY1])
        doc[field] = v3[field]
        v = hz.verify(hz.write(DAY1, doc, "mixed"))
        want = f"format: a lijian-evidence/2 bundle with lijian-evidence/3 fields ({field})"
        assert (v.failures, v.notes) == ([want], [])
    doc = as_v2(hz.payload[DAY1])
    doc.update({k: [] for k in ("vouchers", "risk")})
    path = hz.write(DAY1, doc, "mixed")
    r = run("verify", path, "--pubkey", hz.pub)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (
        "FAIL format: a lijian-evidence/2 bundle with lijian-evidence/3 fields (vouchers, risk)\n"
    )


def test_an_unknown_format_is_one_fail_line(hz: V2Days) -> None:
    for fmt in ("lijian-evidence/1", "lijian-evidence/4", "lijian-evidence/2 ", 2):
        doc = as_v2(hz.payload[DAY1])
        doc["format"] = fmt
        path = hz.write(DAY1, doc, "unknown")
        r = run("verify", path, "--pubkey", hz.pub)
        assert (r.returncode, r.stdout) == (1, ""), fmt
        assert r.stderr == ("FAIL format: not a lijian-evidence/3 or lijian-evidence/2 bundle\n"), (
            fmt
        )
