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


@pytest.fixture(scope="module")
def risky(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[Server]:
    doc = campaign_doc(
        campaign={"id": RISK}, risk={"max_price_over_reference_pct": 10, "price_action": "decline"}
    )
    s = Server(
        Path(tmp_path_factory.mktemp("http-risk")),
        campaigns=[campaign_doc(), doc],
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


def test_a_changed_price_is_in_force_and_kept_over_a_kill(risky: Server) -> None:
    api, sku = risky.api, f"JD-{uuid.uuid4().hex[:8]}"
    assert api.put_catalog(line(sku, 10_000)).status_code == 200
    assert api.put_catalog(line(sku, 20_000)).status_code == 200
    assert quote_codes(api, sku, 22_000) == []
    assert quote_codes(api, sku, 22_001) == ["price_above_reference"]
    # A line without a price keeps the SKU's price.
    assert api.put_catalog(line(sku)).status_code == 200
    assert quote_codes(api, sku, 22_001) == ["price_above_reference"]
    risky.stop(signal.SIGKILL)
    risky.start()
    assert quote_codes(api, sku, 22_000) == []
    assert quote_codes(api, sku, 22_001) == ["price_above_reference"]


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
