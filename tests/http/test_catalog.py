"""PUT /v1/campaigns/{id}/catalog (NDJSON, all lines or none) and ``lijian catalog import``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.http.harness import LIJIAN, Api, campaign_doc, dump_toml, order
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-main")

# The contract's largest upload. How fast it goes is bench/catalog_bench.py's business.
MILLION = 1_000_000


def line(sku: str, category: str = "fresh_food", platform: str = "jd") -> str:
    return json.dumps({"sku": sku, "category": category, "platform": platform})


def ndjson(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def eligible(api: Api, sku: str, platform: str = "jd") -> bool:
    r = api.post("/v1/quotes", order(sku=sku, platform=platform))
    return bool(r.json()["eligible"])


def test_an_upload_upserts_every_line(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    skus = [f"JD-{tag}-{i}" for i in range(3)]
    assert not eligible(api, skus[0])
    r = api.put_catalog(ndjson(*(line(s) for s in skus), "", line(skus[0], "beauty_skincare")))
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": 4}
    assert all(eligible(api, s) for s in skus)
    # Upsert: a later line takes the SKU out of the campaign ("withdrawn").
    assert api.put_catalog(ndjson(line(skus[1], "withdrawn"))).status_code == 200
    assert not eligible(api, skus[1])


def test_a_bad_line_rejects_the_whole_upload_with_its_line_number(api: Api) -> None:
    good = f"JD-{uuid.uuid4().hex[:8]}"
    bad = [
        (json.dumps({"sku": "x", "category": "fresh_food"}), 422, "platform"),
        (json.dumps({"sku": "x", "category": "fresh_food", "platform": "jd", "n": 1}), 422, "n"),
        (json.dumps({"sku": 5, "category": "fresh_food", "platform": "jd"}), 422, "sku"),
        (json.dumps({"sku": "", "category": "fresh_food", "platform": "jd"}), 422, "sku"),
        ('{"sku": "x", "category": ', 400, "$"),
        ("[1, 2]", 422, "$"),
    ]
    for text, status, field in bad:
        r = api.put_catalog(ndjson(line(good), line(good + "-2"), text, line(good + "-4")))
        assert r.status_code == status, (text, r.text)
        p = r.json()
        assert p["errors"] == [{"field": field, "message": p["errors"][0]["message"], "line": 3}]
        assert "line 3" in p["detail"]
    assert not eligible(api, good)


def test_a_platform_writes_only_its_own_platform(api: Api) -> None:
    own, other = f"JD-{uuid.uuid4().hex[:8]}", f"VIP-{uuid.uuid4().hex[:8]}"
    r = api.put_catalog(ndjson(line(own), line(other, platform="vip")), as_="jd")
    assert r.status_code == 403
    assert r.json()["errors"][0]["line"] == 2
    assert not eligible(api, own)
    assert api.put_catalog(ndjson(line(own)), as_="jd").status_code == 200
    assert eligible(api, own)
    assert api.put_catalog(ndjson(line(other, platform="vip")), as_="vip").status_code == 200


def test_a_platform_outside_the_campaign_is_refused(api: Api) -> None:
    r = api.put_catalog(ndjson(line("TB-1", platform="taobao")))
    assert r.status_code == 422
    assert r.json()["errors"][0] == {
        "field": "platform",
        "message": r.json()["errors"][0]["message"],
        "line": 1,
    }


def test_catalog_needs_ndjson_and_a_known_campaign(api: Api) -> None:
    body = ndjson(line("JD-ct"))
    r = api.request(
        "PUT",
        f"/v1/campaigns/{CID}/catalog",
        content=body,
        headers={"content-type": "application/json"},
        as_="ops",
    )
    assert r.status_code == 415
    assert api.put_catalog(body, cid="nope").status_code == 404
    r = api.put_catalog(body[:-5] + b"\xff\xfe\n")
    assert r.status_code == 400


@pytest.mark.slow  # a million lines; make test runs it
def test_a_million_lines_in_one_request(api: Api) -> None:
    tag = uuid.uuid4().hex[:6]
    body = "".join(
        f'{{"sku":"JD-M{tag}-{i:07d}","category":"fresh_food","platform":"jd"}}\n'
        for i in range(MILLION)
    ).encode()
    r = api.put_catalog(body)
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": MILLION}
    assert eligible(api, f"JD-M{tag}-{0:07d}")
    assert eligible(api, f"JD-M{tag}-{MILLION // 2:07d}")
    assert eligible(api, f"JD-M{tag}-{MILLION - 1:07d}")
    assert not eligible(api, f"JD-M{tag}-{MILLION:07d}")  # one past the last line


def test_catalog_import_stores_all_lines_or_none(tmp_path: Path) -> None:
    db = tmp_path / "import.db"
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(dump_toml(campaign_doc()), encoding="utf-8")
    good = tmp_path / "good.ndjson"
    good.write_bytes(ndjson(*(line(f"JD-I-{i}") for i in range(1_000))))
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(ndjson(line("JD-B-1"), line("JD-B-2", platform="taobao")))
    run = [str(LIJIAN), "catalog", "import", "--db", str(db)]

    out = subprocess.run(
        check=False, args=[*run, "--campaign", str(campaign), str(good)], capture_output=True
    )
    assert out.returncode == 0, out.stderr.decode()
    out = subprocess.run(
        check=False, args=[*run, "--campaign", CID, str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "line 2" in out.stderr
    out = subprocess.run(
        check=False, args=[*run, "--campaign", "nope", str(good)], capture_output=True, text=True
    )
    assert out.returncode == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM catalog").fetchone() == (1_000,)
