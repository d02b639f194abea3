"""Evidence bundles over the API (GET /v1/campaigns/{id}/evidence?date=): the body is
the signed bundle ``lijian verify`` accepts, its head is the public feed's day head, on
every topology."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lijian.evidence.bundle import KEY_ENV
from tests.http.harness import Api, Server, order
from tests.support import CID

pytestmark = pytest.mark.xdist_group("http-evidence")
LIJIAN = [sys.executable, "-m", "lijian.cli"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, topology: str) -> Iterator[tuple[Server, Path]]:
    root = Path(tmp_path_factory.mktemp(f"evidence-{topology}"))
    made = subprocess.run([*LIJIAN, "keys", "new", "--out", str(root / "keys")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, str(root / "keys" / "evidence.key"))  # the servers inherit it
    try:
        s = Server(root / "server", topology=topology)
    finally:
        mp.undo()
    try:
        yield s, root
    finally:
        s.close()


def test_a_closed_day_is_served_signed_and_verifies(keyed: tuple[Server, Path]) -> None:
    server, root = keyed
    api: Api = server.api
    rids = [api.granted(order())["id"] for _ in range(3)]
    for rid in rids[:2]:
        assert api.post(f"/v1/redemptions/{rid}/capture").status_code == 200
    early = api.get(f"/v1/campaigns/{CID}/evidence?date=2025-02-12", as_="audit")
    assert early.status_code == 404, early.text  # the day has not closed
    api.set_clock("2025-02-13T10:00:00+08:00")
    r = api.get(f"/v1/campaigns/{CID}/evidence?date=2025-02-12", as_="audit")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [x["id"] for x in doc["redemptions"]] == rids[:2]
    assert doc["settlement"]["totals"]["count"] == 2
    assert doc["settlement"]["totals"]["discount_fen"] == 2 * 3_720
    path = root / "bundle.json"
    path.write_bytes(r.content)
    pub = str(root / "keys" / "evidence.pub")
    ok = subprocess.run([*LIJIAN, "verify", str(path), "--pubkey", pub],
                        capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    public = api.get(f"/public/campaigns/{CID}", signed=False).json()
    day = next(d for d in public["days"] if d["date"] == "2025-02-12")
    assert (day["seq"], day["head"]) == (doc["chain"]["to_seq"], doc["chain"]["head"])
    assert public["chain"]["seq"] >= day["seq"]


def test_evidence_needs_a_date_and_a_reader_role(keyed: tuple[Server, Path]) -> None:
    api = keyed[0].api
    bad = api.get(f"/v1/campaigns/{CID}/evidence?date=2025-13-01", as_="audit")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "date"
    assert api.get(f"/v1/campaigns/{CID}/evidence?date=2025-02-12").status_code == 403
    assert api.get("/v1/campaigns/nope/evidence?date=2025-02-12", as_="audit").status_code == 404
