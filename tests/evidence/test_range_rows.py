"""The bundle lists every voucher, lottery, trade-in item and risk entry of its range
(real ledgers from the shipped campaign files, built by the engine), and ``verify``
names a row altered, dropped or added, as it does the redemptions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lijian.core.draw import draw_order
from lijian.evidence.bundle import bundle_bytes, sign
from lijian.evidence.commands import build_bundle_from_db
from lijian.evidence.keys import load_private, load_public, new_key_pair
from lijian.evidence.verify import Verdict, verify_file
from tests.evidence import range_ledgers as R
from tests.evidence.test_bundle import run

LISTS = ("vouchers", "lotteries", "items", "risk")


class Days:
    """A ledger's bundles, signed with a fresh key, and ways to sign a changed one."""

    def __init__(self, root: Path, db: Path, cid: str, days: tuple[str, ...]) -> None:
        self.root, self.cid = root, cid
        self.ids: dict[str, str] = {}  # what the ledger's builder returned
        priv, self.pub = new_key_pair(root / "keys")
        self.key = load_private(priv)
        self.payload = {d: build_bundle_from_db(db, cid, d) for d in days}
        self.path = {d: self.write(d, dict(self.payload[d])) for d in days}

    def write(self, day: str, doc: dict[str, Any], name: str = "") -> Path:
        p = self.root / f"{name or self.cid}-{day}.json"
        p.write_bytes(bundle_bytes(sign(doc, self.key)))
        return p

    def verify(self, path: Path, previous: Path | None = None) -> Verdict:
        return verify_file(path, load_public(self.pub), previous)

    def changed(self, day: str, key: str, change: Any) -> Verdict:
        """The day's bundle with ``change`` done to a copy of its ``key`` list, signed."""
        doc = json.loads(json.dumps(self.payload[day]))
        change(doc[key])
        return self.verify(self.write(day, doc, "forged"))


def counts(doc: dict[str, Any]) -> dict[str, int]:
    """Rows by list and kind: {"vouchers claimed": 3, "items": 2, ...}."""
    out: Counter[str] = Counter()
    for key in LISTS:
        for row in doc[key]:
            out[f"{key} {row['kind']}" if "kind" in row else key] += 1
    return dict(out)


@pytest.fixture(scope="module")
def hz(tmp_path_factory: pytest.TempPathFactory) -> Days:
    root = tmp_path_factory.mktemp("hz")
    ids = R.hangzhou(root / "l.db")
    days = Days(root, root / "l.db", "hangzhou-2020-claims", ("2020-03-27", "2020-03-28"))
    days.ids = ids
    return days


def test_claims_holds_and_uses_of_vouchers_are_rows_of_their_range(hz: Days) -> None:
    d1, d2 = hz.payload["2020-03-27"], hz.payload["2020-03-28"]
    assert counts(d1) == {"vouchers claimed": 3, "vouchers held": 2, "vouchers used": 1}
    assert counts(d2) == {"vouchers held": 1, "vouchers used": 1, "vouchers restored": 1}
    assert [f["refund_id"] for f in d2["refunds"]] == ["rf-1"]
    claimed = [r for r in d1["vouchers"] if r["kind"] == "claimed"]
    assert [(r["person_id"], r["value_fen"], r["valid_until"]) for r in claimed] == [
        (p, 2000, "2020-04-03T10:00:00+08:00") for p in ("hz-1", "hz-2", "hz-3")
    ]
    # Day 2's use is of a voucher claimed on day 1: the bundle quotes its campaign.
    hz3 = claimed[2]["voucher_id"]
    assert d1["voucher_campaigns"] == []
    assert d2["voucher_campaigns"] == [{"voucher_id": hz3, "campaign_id": hz.cid}]
    (restored,) = [r for r in d2["vouchers"] if r["kind"] == "restored"]
    assert (restored["from_voucher_id"], restored["value_fen"]) == (hz.ids["hz-1"], 2000)
    assert {r["voucher_id"] for r in d2["vouchers"]} == {hz3, restored["voucher_id"]}
    for day, path in hz.path.items():
        assert hz.verify(path).ok, (day, hz.verify(path).failures)
    assert hz.verify(hz.path["2020-03-28"], hz.path["2020-03-27"]).ok


def test_a_voucher_row_altered_dropped_or_added_fails_naming_it(hz: Days) -> None:
    day = "2020-03-27"
    first = hz.payload[day]["vouchers"][0]
    vid, n = first["voucher_id"], first["entry"]
    name = f"voucher claimed {vid} (entry {n})"

    def alter(rows: list[dict[str, Any]]) -> None:
        rows[0]["value_fen"] = 20_000

    v = hz.changed(day, "vouchers", alter)
    assert v.failures == [f"rows: {name} is not as its entry says"]
    v = hz.changed(day, "vouchers", lambda rows: rows.pop(0))
    assert v.failures == [f"rows: {name} is in the entries but not listed"]

    def add(rows: list[dict[str, Any]]) -> None:
        rows.append({**rows[0], "entry": 1, "voucher_id": "vc_forged"})

    v = hz.changed(day, "vouchers", add)
    assert v.failures == ["rows: voucher claimed vc_forged (entry 1) is listed but is no such "
                          "entry of the campaign"]  # fmt: skip
    v = hz.changed(day, "vouchers", lambda rows: rows.reverse())
    assert v.failures == ["rows: the vouchers rows are not in the order of their entries"]


def test_a_quoted_voucher_campaign_dropped_or_changed_fails(hz: Days) -> None:
    day = "2020-03-28"
    vid = hz.payload[day]["voucher_campaigns"][0]["voucher_id"]
    v = hz.changed(day, "voucher_campaigns", lambda q: q.clear())
    assert f"rows: the campaign of voucher {vid} is not given" in v.failures
    # Said to be another campaign's: its rows vanish (caught), and --previous names it.
    doc = json.loads(json.dumps(hz.payload[day]))
    doc["voucher_campaigns"][0]["campaign_id"] = "elsewhere"
    doc["vouchers"] = [r for r in doc["vouchers"] if r["voucher_id"] != vid]
    v = hz.verify(hz.write(day, doc, "forged"), hz.path["2020-03-27"])
    assert v.failures == [
        f"previous: the campaign of voucher {vid} is not the one in "
        f"{hz.path['2020-03-27']}'s entries"
    ]


def test_the_lottery_row_lets_an_auditor_recompute_the_draw(tmp_path: Path) -> None:
    cid, regs = R.shenzhen(tmp_path / "l.db")
    days = Days(tmp_path, tmp_path / "l.db", cid, ("2022-03-21",))
    doc = days.payload["2022-03-21"]
    assert counts(doc) == {"vouchers registered": 5, "lotteries": 1, "vouchers held": 1,
                           "vouchers used": 1}  # fmt: skip
    (draw,) = doc["lotteries"]
    assert [v for v, _ in draw["registrations"]] == regs
    assert len(draw["seed"]) == 64 and draw["valid_until"] == "2022-03-28T12:00:00+08:00"
    # Everyone won (10,000 vouchers a day): the winners are the draw's whole order.
    persons = [p for _, p in draw["registrations"]]
    order = draw_order(draw["seed"], cid, draw["day"], persons)
    assert draw["winners"] == [regs[i] for i in order]
    assert days.verify(days.path["2022-03-21"]).ok

    def reseed(rows: list[dict[str, Any]]) -> None:
        rows[0]["seed"] = "0" * 64

    v = days.changed("2022-03-21", "lotteries", reseed)
    assert v.failures == [f"rows: lottery 2022-03-21 (entry {draw['entry']}) is not as its "
                          "entry says"]  # fmt: skip


def test_trade_in_items_and_expiries_are_rows_without_serials(tmp_path: Path) -> None:
    cid, vids = R.sichuan(tmp_path / "l.db")
    days = Days(tmp_path, tmp_path / "l.db", cid, ("2025-03-01",))
    doc = days.payload["2025-03-01"]
    assert counts(doc) == {"vouchers claimed": 3, "vouchers held": 2, "vouchers used": 1,
                           "items": 2, "vouchers expired": 2}  # fmt: skip
    assert [(r["person_id"], r["units"], r["serial_count"]) for r in doc["items"]] == [
        ("t-1", [["phone", 1]], 1), ("t-2", [["air_conditioner", 3]], 3)]  # fmt: skip
    expired = [r["voucher_id"] for r in doc["vouchers"] if r["kind"] == "expired"]
    assert expired == vids[1:]
    rows = json.dumps({k: doc[k] for k in LISTS})
    assert "SN-" not in rows  # serials are counted, not listed
    assert days.verify(days.path["2025-03-01"]).ok
    n = doc["items"][1]["entry"]
    v = days.changed("2025-03-01", "items", lambda r: r.pop())
    assert v.failures == [f"rows: items {doc['items'][1]['redemption_id']} (entry {n}) is in "
                          "the entries but not listed"]  # fmt: skip


@pytest.fixture(scope="module")
def risk(tmp_path_factory: pytest.TempPathFactory) -> Days:
    root = tmp_path_factory.mktemp("risk")
    cid = R.risky(root / "l.db")
    return Days(root, root / "l.db", cid, ("2025-02-12",))


def test_risk_flags_notes_and_reviews_are_rows_keyed(risk: Days) -> None:
    doc = risk.payload["2025-02-12"]
    assert counts(doc) == {"risk noted": 2, "risk flagged": 2, "risk reviewed": 1}
    flagged = [r for r in doc["risk"] if r["kind"] == "flagged"]
    assert [(r["flag_id"], r["code"], r["person_ids"]) for r in flagged] == [
        ("flag-1", "shared_identity_cluster", ["r-1", "r-2"]),
        ("flag-2", "velocity", ["r-1"]),
    ]
    (reviewed,) = [r for r in doc["risk"] if r["kind"] == "reviewed"]
    assert (reviewed["flag_id"], reviewed["action"], reviewed["operator"]) == (
        "flag-1", "dismiss", "ops")  # fmt: skip
    assert "dev-A" not in json.dumps(doc["risk"])  # the device is keyed, never as sent
    assert risk.verify(risk.path["2025-02-12"]).ok


def test_a_risk_row_dropped_fails_through_the_command(risk: Days) -> None:
    doc = json.loads(json.dumps(risk.payload["2025-02-12"]))
    gone = doc["risk"].pop(2)
    forged = risk.write("2025-02-12", doc, "forged")
    r = run("verify", forged, "--pubkey", risk.pub)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"FAIL rows: risk flagged flag-1 (entry {gone['entry']}) is in the entries but not listed"
    ]
    assert run("verify", risk.path["2025-02-12"], "--pubkey", risk.pub).returncode == 0


def test_the_servers_bundle_has_the_same_rows(
    hz: Days, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What GET …/evidence answers (the engine's report, lijian/reports.py) is the
    command's bundle byte for byte, its rows and quoted voucher campaigns included."""
    from lijian.clock import parse_clock
    from lijian.engine import Engine
    from lijian.evidence.bundle import KEY_ENV
    from lijian.inputs import load_settings_file

    monkeypatch.setenv(KEY_ENV, str(hz.root / "keys" / "evidence.key"))
    db = tmp_path / "l.db"
    R.hangzhou(db)
    s = load_settings_file(R.HANGZHOU)
    e = Engine([s], db, parse_clock("manual:2020-03-29T09:00:00+08:00"))
    try:
        for day in ("2020-03-27", "2020-03-28"):
            served = e.call(e.evidence_report, hz.cid, day)
            made = sign(build_bundle_from_db(db, hz.cid, day), hz.key)
            assert bundle_bytes(served) == bundle_bytes(made)
            assert counts(served) == counts(hz.payload[day])
    finally:
        e.close()


def test_the_command_writes_the_rows_and_says_how_many(hz: Days) -> None:

    db = hz.root / "l.db"
    r = run("evidence", "--db", db, "--campaign", hz.cid, "--date", "2020-03-27",
            "--key", hz.root / "keys" / "evidence.key", "--out", hz.root / "cli")  # fmt: skip
    assert r.returncode == 0, r.stderr
    first, path = r.stdout.strip().splitlines()
    assert first.startswith(f"{hz.cid} 2020-03-27: 1 redemptions, 0 refunds, 6 voucher, "
                            "0 lottery, 0 items and 0 risk rows, chain seq 0..")  # fmt: skip
    assert Path(path).read_bytes() == hz.path["2020-03-27"].read_bytes()
    assert run("verify", path, "--pubkey", hz.pub).returncode == 0


def test_each_campaign_lists_its_own_vouchers_from_one_ledger(tmp_path: Path) -> None:
    cids, vids = R.two_cities(tmp_path / "l.db")
    days = {c: Days(tmp_path / c, tmp_path / "l.db", c, ("2020-03-27", "2020-03-28"))
            for c in cids}  # fmt: skip
    quoted = sorted([{"voucher_id": vids[c], "campaign_id": c} for c in cids],
                    key=lambda q: q["voucher_id"])  # fmt: skip
    for c in cids:
        d1, d2 = days[c].payload["2020-03-27"], days[c].payload["2020-03-28"]
        assert counts(d1) == {"vouchers claimed": 1}
        assert counts(d2) == {"vouchers held": 1, "vouchers used": 1}
        assert {r["voucher_id"] for r in d1["vouchers"] + d2["vouchers"]} == {vids[c]}
        # Day 2's range holds both campaigns' uses: both campaigns are quoted.
        assert d2["voucher_campaigns"] == quoted
        p1, p2 = days[c].path["2020-03-27"], days[c].path["2020-03-28"]
        assert days[c].verify(p2, p1).ok, days[c].verify(p2, p1).failures
    # The other campaign's use claimed as this one's: its rows are wanted, then named.
    a, b = cids
    doc = json.loads(json.dumps(days[a].payload["2020-03-28"]))
    for q in doc["voucher_campaigns"]:
        q["campaign_id"] = a
    v = days[a].verify(days[a].write("2020-03-28", doc, "forged"))
    assert [f.split(" (entry")[0] for f in v.failures] == [
        f"rows: voucher held {vids[b]}", f"rows: voucher used {vids[b]}"]  # fmt: skip
    assert all(f.endswith(") is in the entries but not listed") for f in v.failures)
