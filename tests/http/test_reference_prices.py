"""Reference prices over HTTP, on every topology: a catalogue line's
``reference_price_fen``, ``[risk] price_action = "decline"`` declining a unit priced
above it, bad prices refused by line with nothing changed, and prices kept over a
kill -9 (``lijian catalog import`` too)."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http.harness import LIJIAN, Api, Server, campaign_doc, dump_toml, order

pytestmark = pytest.mark.xdist_group("http-risk")

RISK = "risk-2025"  # declines a unit more than 10% above its reference
FLAG = "flag-2025"  # grants it, and flags the grant
DAY = "2025-02-12"


@pytest.fixture(scope="module")
def risky(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    doc = campaign_doc(
        campaign={"id": RISK}, risk={"max_price_over_reference_pct": 10, "price_action": "decline"}
    )
    flag = campaign_doc(
        campaign={"id": FLAG}, risk={"max_price_over_reference_pct": 10, "price_action": "flag"}
    )
    s = Server(
        Path(tmp_path_factory.mktemp("http-risk")),
        campaigns=[campaign_doc(), doc, flag],
        topology=topology,
    )
    try:
        yield s
    finally:
        s.close()


def line(sku: str, price: Any = None, **more: Any) -> bytes:
    row: dict[str, Any] = {"sku": sku, "category": "fresh_food", "platform": "jd", **more}
    if price is not None:
        row["reference_price_fen"] = price
    return json.dumps(row).encode() + b"\n"


def quote_codes(api: Api, sku: str, unit_fen: int, cid: str = RISK) -> list[str]:
    r = api.post("/v1/quotes", order(sku=sku, price_fen=unit_fen, campaign_id=cid))
    assert r.status_code == 200, r.text
    return [x["code"] for x in r.json()["reasons"]]


def test_a_unit_above_its_reference_is_declined_only_where_risk_says(risky: Server) -> None:
    api, sku = risky.api, f"JD-{uuid.uuid4().hex[:8]}"
    r = risky.api.put_catalog(line(sku, 10_000) + line(sku + "-plain"))
    assert (r.status_code, r.json()) == (200, {"upserted": 2})
    assert quote_codes(api, sku, 11_000) == []  # exactly 10% above: not above the limit
    assert quote_codes(api, sku, 11_001) == ["price_above_reference"]
    d = api.redeem(order(sku=sku, price_fen=11_001, campaign_id=RISK))
    assert d.status_code == 200, d.text
    assert d.json()["status"] == "declined"
    assert [x["code"] for x in d.json()["reasons"]] == ["price_above_reference"]
    assert api.granted(order(sku=sku, price_fen=11_000, campaign_id=RISK))["status"] == "held"
    # A SKU with no reference price, and a campaign without [risk]: no price is too high.
    assert quote_codes(api, sku + "-plain", 1_000_000) == []
    assert quote_codes(api, sku, 1_000_000, cid=risky.campaign_id) == []


# (null is no price: the SKU keeps the one it has, as a line without the field.)
@pytest.mark.parametrize("bad", [0, -100, 12.5, 1000.0, "10000", True, 10**10 + 1, [1]])
def test_a_bad_reference_price_is_refused_with_its_line(risky: Server, bad: Any) -> None:
    api, sku = risky.api, f"JD-{uuid.uuid4().hex[:8]}"
    assert api.put_catalog(line(sku, 10_000)).status_code == 200
    body = line(sku, 20_000) + line(sku + "-2", 5_000) + (
        json.dumps({"sku": sku + "-3", "category": "fresh_food", "platform": "jd",
                    "reference_price_fen": bad}).encode() + b"\n"
    )  # fmt: skip
    r = api.put_catalog(body)
    assert r.status_code == 422, r.text
    p = r.json()
    assert p["code"] == "invalid_request"
    assert [(e["field"], e["line"]) for e in p["errors"]] == [("reference_price_fen", 3)]
    assert p["detail"].startswith("line 3: ") and p["detail"].endswith("; nothing was stored")
    # Nothing changed: the old price is in force, the other lines' SKUs are not stored.
    assert quote_codes(api, sku, 11_001) == ["price_above_reference"]
    assert quote_codes(api, sku + "-2", 5_000) == ["not_campaign_goods"]


def flags_of(api: Api, rids: set[str], limit: int = 500) -> list[dict[str, Any]]:
    """The day's flags naming ``rids``, read page after page."""
    out, after = [], 0
    while True:
        r = api.get(f"/v1/campaigns/{FLAG}/risk?date={DAY}&after={after}&limit={limit}",
                    as_="audit")  # fmt: skip
        assert r.status_code == 200, r.text
        page = r.json()
        assert (page["campaign_id"], page["date"]) == (FLAG, DAY)
        out += [f for f in page["flags"] if set(f["redemption_ids"]) & rids]
        if page["next_after"] is None:
            return out
        assert page["next_after"] == after + limit
        after = page["next_after"]


def test_a_flagged_grant_is_listed_and_sent_to_webhooks(risky: Server) -> None:
    api, sku = risky.api, f"JD-{uuid.uuid4().hex[:8]}"
    assert api.put_catalog(line(sku, 10_000)).status_code == 200
    person = f"p-{uuid.uuid4().hex[:12]}"
    flagged = api.granted(order(sku=sku, price_fen=11_001, person=person, campaign_id=FLAG))
    plain = api.granted(order(sku=sku, price_fen=11_000, campaign_id=FLAG))
    flags = flags_of(api, {flagged["id"], plain["id"]})
    assert len(flags) == 1
    f = flags[0]
    assert f["id"].startswith("flag-") and f["raised_at"].startswith(DAY)
    assert {k: v for k, v in f.items() if k not in ("id", "raised_at")} == {
        "code": "price_above_reference", "day": DAY, "person_ids": [person],
        "redemption_ids": [flagged["id"]],
        "figures": [{"subject": sku, "figure": "unit_price_fen", "value": 11_001},
                    {"subject": sku, "figure": "reference_price_fen", "value": 10_000}],
    }  # fmt: skip
    # The webhook's event: the flag as listed (without the time, which the event has).
    events = api.get("/v1/admin/events?limit=500", as_="ops").json()["events"]
    sent = [e for e in events if e["type"] == "risk.flagged"
            and e["data"]["redemption_ids"] == [flagged["id"]]]  # fmt: skip
    assert len(sent) == 1 and sent[0]["campaign_id"] == FLAG
    assert sent[0]["data"] == {k: v for k, v in f.items() if k != "raised_at"}


def test_flags_are_paged_and_guarded(risky: Server) -> None:
    api, sku = risky.api, f"JD-{uuid.uuid4().hex[:8]}"
    assert api.put_catalog(line(sku, 100)).status_code == 200
    rids = [api.granted(order(sku=sku, price_fen=2_000, campaign_id=FLAG))["id"]
            for _ in range(3)]  # fmt: skip
    by_one = flags_of(api, set(rids), limit=1)
    assert [f["redemption_ids"][0] for f in by_one] == rids
    assert by_one == flags_of(api, set(rids))
    base = f"/v1/campaigns/{FLAG}/risk"
    assert api.get(f"{base}?date={DAY}", as_="unionpay").status_code == 403
    assert api.get(f"{base}?date={DAY}", as_="jd").status_code == 403
    assert api.get(f"/v1/campaigns/nope-2025/risk?date={DAY}", as_="ops").status_code == 404
    bad = [("", "date"), ("?date=2025-02-30", "date"), (f"?date={DAY}&limit=0", "limit"),
           (f"?date={DAY}&limit=501", "limit"), (f"?date={DAY}&after=-1", "after"),
           (f"?date={DAY}&after=x", "after")]  # fmt: skip
    for query, field in bad:
        r = api.get(base + query, as_="ops")
        assert r.status_code == 422, (query, r.text)
        assert r.json()["errors"][0]["field"] == field
    # Another day: none.
    r = api.get(f"{base}?date=2025-02-13", as_="ops")
    assert r.json() == {"campaign_id": FLAG, "date": "2025-02-13", "flags": [], "next_after": None}


def test_a_changed_price_is_in_force_and_kept_over_a_kill(risky: Server) -> None:
    api, sku = risky.api, f"JD-{uuid.uuid4().hex[:8]}"
    assert api.put_catalog(line(sku, 10_000)).status_code == 200
    assert api.put_catalog(line(sku, 20_000)).status_code == 200
    assert quote_codes(api, sku, 22_000) == []
    assert quote_codes(api, sku, 22_001) == ["price_above_reference"]
    # A line without a price keeps the SKU's price.
    assert api.put_catalog(line(sku)).status_code == 200
    assert quote_codes(api, sku, 22_001) == ["price_above_reference"]
    flagged = api.granted(order(sku=sku, price_fen=22_001, campaign_id=FLAG))["id"]
    before = flags_of(api, {flagged})
    assert len(before) == 1
    risky.stop(signal.SIGKILL)
    risky.start()
    assert quote_codes(api, sku, 22_000) == []
    assert quote_codes(api, sku, 22_001) == ["price_above_reference"]
    assert flags_of(api, {flagged}) == before  # an acknowledged flag is not lost


def test_catalog_import_stores_prices_and_refuses_a_bad_one(tmp_path: Path) -> None:
    campaign = tmp_path / "campaign.toml"
    doc = campaign_doc(risk={"max_price_over_reference_pct": 0, "price_action": "decline"})
    campaign.write_text(dump_toml(doc), encoding="utf-8")
    db = tmp_path / "import.db"

    def run(body: bytes) -> subprocess.CompletedProcess[str]:
        f = tmp_path / "goods.ndjson"
        f.write_bytes(body)
        return subprocess.run(
            [str(LIJIAN), "catalog", "import", "--db", str(db), "--campaign", str(campaign),
             str(f)], capture_output=True, text=True, check=False,
        )  # fmt: skip

    bad = run(line("JD-1", 100) + line("JD-2", -5))
    assert bad.returncode == 1
    assert "line 2: reference_price_fen: Expected `int` >= 1" in bad.stderr.replace("\n", "")
    assert not db.exists()
    assert run(line("JD-1", 100) + line("JD-2", 200)).returncode == 0
    assert run(line("JD-1", 100) + line("JD-2", 300)).returncode == 0
    import sqlite3

    with sqlite3.connect(db) as c:
        history = c.execute("SELECT platform, sku, reference_price_fen FROM reference_prices"
                            " ORDER BY rowid").fetchall()  # fmt: skip
    # Only changes are kept: JD-1 once, JD-2 at 200 then 300.
    assert history == [("jd", "JD-1", 100), ("jd", "JD-2", 200), ("jd", "JD-2", 300)]
