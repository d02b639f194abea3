"""A catalogue line must name one of the campaign's categories (or ``withdrawn``): an
unknown one is a 422 naming the line, over HTTP and in ``lijian catalog import``."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.http.harness import CATEGORIES, LIJIAN, Api, campaign_doc, dump_toml, order

pytestmark = pytest.mark.xdist_group("http-main")

KNOWN = ", ".join(sorted(CATEGORIES))
MESSAGE = (
    f"category 'electronics' is not one of the campaign's ({KNOWN}); "
    "'withdrawn' takes a SKU out of the campaign"
)


def lines(*rows: tuple[str, str]) -> bytes:
    return b"".join(
        json.dumps({"sku": s, "category": c, "platform": "jd"}).encode() + b"\n" for s, c in rows
    )


def test_an_unknown_category_is_refused_with_its_line(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    body = lines((f"JD-{tag}-1", "fresh_food"), (f"JD-{tag}-2", "electronics"))
    r = api.put_catalog(body)
    assert r.status_code == 422, r.text
    p = r.json()
    assert (p["code"], p["detail"]) == ("invalid_request", f"line 2: {MESSAGE}; nothing was stored")
    assert p["errors"] == [{"field": "category", "message": MESSAGE, "line": 2}]
    # Nothing stored: the good first line is not in the catalogue either.
    q = api.post("/v1/quotes", order(sku=f"JD-{tag}-1"))
    assert [x["code"] for x in q.json()["reasons"]] == ["not_campaign_goods"]


def test_withdrawn_takes_a_sku_out_of_the_campaign(api: Api) -> None:
    sku = f"JD-{uuid.uuid4().hex[:8]}"
    assert api.put_catalog(lines((sku, "fresh_food"))).status_code == 200
    assert api.post("/v1/quotes", order(sku=sku)).json()["eligible"] is True
    assert api.put_catalog(lines((sku, "withdrawn"))).json() == {"upserted": 1}
    q = api.post("/v1/quotes", order(sku=sku)).json()
    assert [x["code"] for x in q["reasons"]] == ["not_campaign_goods"]


def test_catalog_import_refuses_an_unknown_category(tmp_path: Path) -> None:
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(dump_toml(campaign_doc()), encoding="utf-8")
    f = tmp_path / "goods.ndjson"
    f.write_bytes(lines(("JD-1", "fresh_food"), ("JD-2", "electronics")))
    db = tmp_path / "import.db"
    r = subprocess.run(
        [str(LIJIAN), "catalog", "import", "--db", str(db), "--campaign", str(campaign), str(f)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.replace("\n", "") == f"nothing stored: {f}: line 2: {MESSAGE}"
    assert not db.exists()
