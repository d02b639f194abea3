"""Sharded campaigns (docs/SCALE-OUT.md): two real sequencers, each its own ledger and
campaigns, one order registry, two real gateways routing by campaign.

Each scenario runs on one process holding both campaigns in one ledger and on the
sharded topology (``pg-shards``), and must give the same answers: R15 (one order, one
campaign) across the two ledgers, voids and expiries freeing an order, replays by key,
ids routed to their ledger. Then what a misconfigured or hostile deployment gets: a
campaign owned by another sequencer refuses the start; a gateway given two sequencers
with the same node, or one without the registry, answers 503 and says why.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from lijian.cluster.shards import placed_shard
from tests.http.harness import (
    LIJIAN,
    SHARD_B_CID,
    Api,
    Server,
    campaign_doc,
    catalog_ndjson,
    dump_toml,
    free_port,
    link_credentials,
    order,
)
from tests.support import CID

pytestmark = [pytest.mark.xdist_group("shards")]

B_DOC = campaign_doc(campaign={"id": SHARD_B_CID})
DISCOUNT_FEN = 3_720  # the example order: 15% of 24,800 fen


def _server(tmp: Path, topology: str) -> Server:
    s = Server(tmp, campaigns=[campaign_doc(), B_DOC], topology=topology)
    r = s.api.put_catalog(catalog_ndjson(), cid=SHARD_B_CID)
    assert r.status_code == 200, r.text
    # A fresh ledger's first grant can take over a second on a loaded machine (its first
    # commits, the interpreter's first imports on that path): made here, retried on 503,
    # so the scenarios compare answers, not a busy machine's first seconds.
    for url in s.urls:
        warm = Api(url)
        try:
            for cid in (CID, SHARD_B_CID):
                for _ in range(60):
                    if warm.redeem(order(campaign_id=cid)).status_code != 503:
                        break
                    time.sleep(0.5)
        finally:
            warm.close()
    return s


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """One process and the sharded topology, each with campaigns A (CID) and B."""
    servers: dict[str, Server] = {}
    try:
        for topology in ("one", "pg-shards"):
            servers[topology] = _server(tmp_path_factory.mktemp(topology), topology)
        yield servers
    finally:
        for s in servers.values():
            s.close()


_IDS = re.compile(r"\b(rd|vc)_[a-z0-9]+")


def _same_ids(x: Any) -> Any:
    """Every redemption and voucher id written the same (ids carry their ledger)."""
    if isinstance(x, str):
        return _IDS.sub(r"\1_…", x)
    if isinstance(x, list):
        return [_same_ids(v) for v in x]
    if isinstance(x, dict):
        return {k: _same_ids(v) for k, v in x.items()}
    return x


def _shape(r: httpx.Response) -> tuple[int, Any]:
    """An answer, its ids made alike (they name the ledger that gave them)."""
    return r.status_code, _same_ids(r.json())


Scenario = Callable[[Api, str, str], list[tuple[int, Any]]]


def _both(pair: dict[str, Server], scenario: Scenario) -> list[Any]:
    """The scenario on each topology, with the same order and person ids."""
    n, pid = f"O-{uuid.uuid4().hex[:12]}", f"p-{uuid.uuid4().hex[:8]}"
    answers = {name: scenario(s.api, n, pid) for name, s in pair.items()}
    for i, (got, want) in enumerate(zip(answers["pg-shards"], answers["one"], strict=True)):
        assert got == want, f"step {i}"
    return answers["one"]


def test_one_order_one_campaign_across_shards(pair: dict[str, Server]) -> None:
    def scenario(api: Api, n: str, pid: str) -> list[tuple[int, Any]]:
        out = []
        key = uuid.uuid4().hex
        first = api.redeem(order(n, person=pid), key=key)  # A holds the order
        assert first.status_code == 201, first.text
        out.append(_shape(first))
        rid = first.json()["id"]
        # B: declined with the R15 reason (every reason: here that one), also quoted so
        b = api.redeem(order(n, person=pid, campaign_id=SHARD_B_CID))
        out.append(_shape(b))
        out.append(_shape(api.post("/v1/quotes", order(n, person=pid, campaign_id=SHARD_B_CID))))
        # A again, another key: the order is taken in this very campaign (409)
        out.append(_shape(api.redeem(order(n, person=pid))))
        # the first key again: its grant, replayed
        again = api.redeem(order(n, person=pid), key=key)
        assert again.json()["id"] == rid
        out.append(_shape(again))
        # a void frees the order: B grants it, and now A declines it
        out.append(_shape(api.post(f"/v1/redemptions/{rid}/void")))
        b2 = api.redeem(order(n, person=pid, campaign_id=SHARD_B_CID))
        out.append(_shape(b2))
        out.append(_shape(api.redeem(order(n, person=pid))))
        # B's grant captured and refunded in part, through its id
        rid_b = b2.json()["id"]
        out.append(_shape(api.post(f"/v1/redemptions/{rid_b}/capture")))
        refund = {"refund_id": "rf-1", "items": [{"sku": "JD-1", "quantity": 1}]}
        r = api.post(f"/v1/redemptions/{rid_b}/refunds", refund,
                     headers={"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
        out.append(_shape(r))
        out.append(_shape(api.get(f"/v1/redemptions/{rid_b}")))
        out.append(_shape(api.get(f"/v1/campaigns/{SHARD_B_CID}/persons/{pid}")))
        out.append(_shape(api.get(f"/v1/campaigns/{CID}/persons/{pid}")))
        # the original key once more: still its first answer (the redemption, voided)
        out.append(_shape(api.redeem(order(n, person=pid), key=key)))
        return out

    answers = _both(pair, scenario)
    assert [status for status, _ in answers] == [
        201, 200, 200, 409, 201, 200, 201, 200, 200, 201, 200, 200, 200, 201,
    ]  # fmt: skip
    assert answers[1][1]["reasons"] == [
        {"code": "other_government_subsidy", "message": answers[1][1]["reasons"][0]["message"]}
    ]
    assert [x["code"] for x in answers[2][1]["reasons"]] == ["other_government_subsidy"]
    assert answers[3][1]["code"] == "order_already_redeemed"
    assert [x["code"] for x in answers[7][1]["reasons"]] == ["other_government_subsidy"]


def test_a_shards_own_port_goes_through_the_order_registry(pair: dict[str, Server]) -> None:
    """The API a sequencer serves on its own HTTP port (next to its dashboard) keeps R15
    across the shards as its gateways' calls do: an order held on shard a is declined and
    quoted with the R15 reason on shard b's own port; voided on a's own port, b grants
    it there, and a then declines it."""
    s = pair["pg-shards"]
    n, pid = f"O-{uuid.uuid4().hex[:12]}", f"p-{uuid.uuid4().hex[:8]}"
    on_a, on_b = _sequencer_api(s, "a"), _sequencer_api(s, "b")
    on_b_order = order(n, person=pid, campaign_id=SHARD_B_CID)
    try:
        first = s.api.redeem(order(n, person=pid))
        assert first.status_code == 201, first.text
        declined = on_b.redeem(on_b_order)
        quoted = on_b.post("/v1/quotes", on_b_order)
        voided = on_a.post(f"/v1/redemptions/{first.json()['id']}/void")
        granted = on_b.redeem(on_b_order)
        again = on_a.redeem(order(n, person=pid))
    finally:
        on_a.close()
        on_b.close()
    r15 = ["other_government_subsidy"]
    assert declined.status_code == 200, declined.text
    assert [x["code"] for x in declined.json()["reasons"]] == r15
    assert quoted.status_code == 200, quoted.text
    assert [x["code"] for x in quoted.json()["reasons"]] == r15
    assert voided.status_code == 200, voided.text
    assert granted.status_code == 201 and granted.json()["id"].startswith("rd_b"), granted.text
    assert again.status_code == 200 and [x["code"] for x in again.json()["reasons"]] == r15


def test_an_expiry_frees_the_order_for_the_other_shard(pair: dict[str, Server]) -> None:
    """A hold expires (a timed event of A's writer): B may grant the order after it, as
    in one ledger. The clock moves on every shard at once."""

    def scenario(api: Api, n: str, pid: str) -> list[tuple[int, Any]]:
        first = api.redeem(order(n, person=pid))
        assert first.status_code == 201, first.text
        out = [_shape(first)]
        out.append(_shape(api.redeem(order(n, person=pid, campaign_id=SHARD_B_CID))))
        r = api.post("/v1/admin/clock", {"advance_s": 901}, as_="ops")
        assert r.status_code == 200, r.text
        out.append((r.status_code, {}))
        # The release of A's row follows A's commit of the expiry: at most a moment.
        deadline = time.monotonic() + 10
        while True:
            b = api.redeem(order(n, person=pid, campaign_id=SHARD_B_CID))
            if b.status_code == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        out.append(_shape(b))
        out.append(_shape(api.get(f"/v1/redemptions/{first.json()['id']}")))  # expired
        return out

    answers = _both(pair, scenario)
    assert [s for s, _ in answers] == [201, 200, 200, 201, 200]
    assert [x["code"] for x in answers[1][1]["reasons"]] == ["other_government_subsidy"]
    assert answers[4][1]["status"] == "expired"


def test_ids_and_campaigns_are_routed_to_their_ledger(pair: dict[str, Server]) -> None:
    api = pair["pg-shards"].api
    a = api.granted(order())
    b = api.granted(order(campaign_id=SHARD_B_CID))
    assert a["id"].startswith("rd_a") and b["id"].startswith("rd_b")
    for rid, cid in ((a["id"], CID), (b["id"], SHARD_B_CID)):
        got = api.get(f"/v1/redemptions/{rid}")  # answered by either gateway
        assert got.status_code == 200 and got.json()["campaign_id"] == cid
    # An id naming no shard, or a campaign no shard has: the 404s of one process.
    one = pair["one"].api
    for path in ("/v1/redemptions/rd_z0000000000000001", "/v1/redemptions/nonsense",
                 "/v1/campaigns/nowhere/status"):  # fmt: skip
        r, r1 = api.get(path), one.get(path)
        assert (r.status_code, r.json()["code"]) == (r1.status_code, r1.json()["code"])
        assert r.status_code == 404
    listed = api.get("/v1/campaigns", as_="ops")
    assert listed.status_code == 200, listed.text
    assert listed.json() == one.get("/v1/campaigns", as_="ops").json()
    metrics = api.http.get("/metrics").text
    assert 'shard="a"' in metrics and 'shard="b"' in metrics
    assert api.http.get("/readyz").status_code == 200


def test_racing_one_order_on_both_shards_draws_once(pair: dict[str, Server]) -> None:
    """Each order sent at once to A and to B, through both gateways: exactly one grant
    per order, and the registry names the campaign of that grant."""
    s = pair["pg-shards"]
    apis = [Api(u) for u in s.urls]
    orders = [f"O-race-{uuid.uuid4().hex[:10]}" for _ in range(40)]

    def send(i: int) -> tuple[str, int, str]:
        n = orders[i // 2]
        cid = CID if i % 2 else SHARD_B_CID
        r = apis[i % 2].redeem(order(n, campaign_id=cid))
        assert r.status_code in (200, 201), r.text
        return n, r.status_code, cid

    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(send, range(2 * len(orders))))
    finally:
        for a in apis:
            a.close()
    granted = {n: [cid for m, st, cid in results if m == n and st == 201] for n in orders}
    assert all(len(g) == 1 for g in granted.values()), granted
    import psycopg

    with psycopg.connect(s.shard_dbs[1], autocommit=True) as c:
        rows = dict(
            c.execute(
                "SELECT order_id, campaign_id FROM order_claims WHERE order_id = ANY(%s)",
                (orders,),
            ).fetchall()
        )
    assert rows == {n: g[0] for n, g in granted.items()}


# ---------------------------------------------------------------- misconfigured
def _sequencer(tmp: Path, node: str, cid_doc: dict[str, Any], db: str, registry: str | None,
               tls: Path, clients: Path) -> tuple[list[str], int]:  # fmt: skip
    from tests.http.harness import dump_toml

    f = tmp / f"campaign-{node}-{uuid.uuid4().hex[:6]}.toml"
    f.write_text(dump_toml(cid_doc), encoding="utf-8")
    port = free_port()
    cmd = [str(LIJIAN), "sequencer", "--campaign", str(f), "--clients", str(clients),
           "--db", db, "--listen", f"127.0.0.1:{port}", "--port", str(free_port()),
           "--tls-dir", str(tls / "sequencer"), "--node", node,
           "--clock", "manual:2025-02-12T10:00:00+08:00"]  # fmt: skip
    if registry is not None:
        cmd += ["--order-registry", registry]
    return cmd, port


def test_a_campaign_owned_by_another_sequencer_refuses_the_start(
    pair: dict[str, Server], tmp_path: Path
) -> None:
    s = pair["pg-shards"]
    from tests.http.harness import _drop_pg_schema, _new_pg_schema

    schema, db = _new_pg_schema()
    try:
        tls = link_credentials(s.workdir / "tls", 2)
        cmd, _ = _sequencer(tmp_path, "c", campaign_doc(), db, s.shard_dbs[1], tls,
                            s.clients_path)  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        out = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 3, out
        assert f"campaigns owned by another sequencer: {CID} (node 'a')" in out
    finally:
        _drop_pg_schema(schema)
    # The shard that owns it serves on.
    assert s.api.granted(order())["id"].startswith("rd_a")


@pytest.mark.parametrize("fault", ["same-node", "no-registry"])
def test_a_gateway_refuses_a_misconfigured_pair_of_shards(tmp_path: Path, fault: str) -> None:
    from tests.http.harness import _drop_pg_schema, _new_pg_schema, clients_toml

    schemas = [_new_pg_schema() for _ in range(3)]
    clients = tmp_path / "clients.toml"
    clients.write_text(clients_toml(), encoding="utf-8")
    tls = link_credentials(tmp_path / "tls", 1)
    registry = schemas[2][1]
    b_node, b_registry = ("a", registry) if fault == "same-node" else ("b", None)
    seq_a, port_a = _sequencer(tmp_path, "a", campaign_doc(), schemas[0][1], registry, tls,
                               clients)  # fmt: skip
    seq_b, port_b = _sequencer(tmp_path, b_node, B_DOC, schemas[1][1], b_registry, tls,
                               clients)  # fmt: skip
    http = free_port()
    gw = [str(LIJIAN), "gateway", "--shard", f"127.0.0.1:{port_a}", "--shard",
          f"127.0.0.1:{port_b}", "--clients", str(clients), "--port", str(http),
          "--tls-dir", str(tls / "gateway-1")]  # fmt: skip
    log = open(tmp_path / "log", "wb")  # noqa: SIM115 - the children keep it
    procs = [subprocess.Popen(c, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
             for c in (seq_a, seq_b, gw)]  # fmt: skip
    api = Api(f"http://127.0.0.1:{http}")
    try:
        deadline = time.monotonic() + 90
        r = None
        while time.monotonic() < deadline:
            try:
                r = api.redeem(order())
                if r.status_code == 503 and "misconfigured" in r.text:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert r is not None and r.status_code == 503, (r.text if r else "", log.name)
        why = "the same node" if fault == "same-node" else "has no --order-registry"
        assert why in r.json()["detail"]
        assert r.headers["retry-after"] == "1"
        assert api.http.get("/readyz").status_code == 503
        assert "shards misconfigured" in (tmp_path / "log").read_text(errors="replace")
    finally:
        api.close()
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
        log.close()
        for name, _ in schemas:
            _drop_pg_schema(name)


def test_cli_refuses_sequencer_and_shard_together(tmp_path: Path) -> None:
    r = subprocess.run(
        [str(LIJIAN), "gateway", "--sequencer", "127.0.0.1:1", "--shard", "127.0.0.1:2",
         "--clients", str(tmp_path / "c.toml"), "--tls-dir", str(tmp_path)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2
    assert b"not both" in r.stderr
    r = subprocess.run(
        [str(LIJIAN), "sequencer", "--campaign", "x.toml", "--clients", "c.toml",
         "--listen", "127.0.0.1:1", "--node", "Shard-1"],
        capture_output=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2
    assert b"--node must be 1-8 letters" in r.stderr


def test_the_events_of_every_shard_are_listed_through_a_gateway(pair: dict[str, Server]) -> None:
    """``GET /v1/admin/events`` lists both ledgers' events (ids naming their shard), and
    its cursor pages through them whatever the shards commit between the pages."""
    api = pair["pg-shards"].api
    reason = {"reason": f"drill {uuid.uuid4().hex[:6]}"}

    def listing(after: str = "", limit: int = 500) -> dict[str, Any]:
        q = f"?limit={limit}" + (f"&after={after}" if after else "")
        r = api.get(f"/v1/admin/events{q}", as_="ops")
        assert r.status_code == 200, r.text
        return r.json()

    before = listing()
    assert before["next_after"] is None  # one page holds what the other tests made
    for cid in (CID, SHARD_B_CID):
        r = api.post(f"/v1/campaigns/{cid}/pause", reason, as_="ops")
        assert r.status_code == 200, r.text
    mine = [e for e in listing()["events"] if e.get("data", {}).get("reason") == reason["reason"]]
    assert [(e["type"], e["campaign_id"], e["id"][:5]) for e in mine] == [
        ("campaign.paused", CID, "evt_a"), ("campaign.paused", SHARD_B_CID, "evt_b")]  # fmt: skip
    # Page by one, resuming B meanwhile: every event once, the new one last.
    seen, after = [], ""
    for i in range(200):
        got = listing(after, 1)
        seen += got["events"]
        if i == 1:
            r = api.post(f"/v1/campaigns/{SHARD_B_CID}/resume", reason, as_="ops")
            assert r.status_code == 200, r.text
        if got["next_after"] is None:
            break
        after = got["next_after"]
    whole = listing()["events"]
    assert seen == whole and len({e["id"] for e in whole}) == len(whole)
    assert (whole[-1]["type"], whole[-1]["campaign_id"]) == ("campaign.resumed", SHARD_B_CID)
    api.post(f"/v1/campaigns/{CID}/resume", reason, as_="ops")
    # The plain id of one ledger names no shard here: refused, not read at shard a.
    bad = api.get("/v1/admin/events?after=evt_0000000000000001", as_="ops")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "after"


def _registry_owner(s: Server, campaign_id: str) -> str | None:
    import psycopg

    with psycopg.connect(s.shard_dbs[1], autocommit=True) as c:
        row = c.execute(
            "SELECT node FROM shard_campaigns WHERE campaign_id = %s", (campaign_id,)
        ).fetchone()
    return None if row is None else str(row[0])


def _sequencer_api(s: Server, node: str) -> Api:
    """The API of shard ``node``'s own HTTP port (its sequencer's)."""
    cmd = next(c for c in s.cmds if "sequencer" in c and c[c.index("--node") + 1] == node)
    return Api(f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}")


def _placed_on(node: str) -> str:
    """A new campaign id that ``placed_shard`` puts on ``node`` (of nodes a and b)."""
    while True:
        cid = f"api-{uuid.uuid4().hex[:8]}"
        if "ab"[placed_shard(cid, ["a", "b"])] == node:
            return cid


def test_a_campaign_created_over_the_api_is_owned_and_routed(pair: dict[str, Server]) -> None:
    """``POST /v1/campaigns`` through a sharded gateway: the campaign is made on the shard
    its id is placed on (``placed_shard``: b here, not the first), owned by it in the
    registry from its proposal on, both gateways route to it with no restart (the
    pending proposal too), an id the other shard owns is refused as one ledger refuses
    an id it has, and a rejected proposal frees its id."""
    s = pair["pg-shards"]
    gw1, gw2 = (Api(url) for url in s.urls)
    toml = {"content-type": "application/toml"}
    cid = _placed_on("b")

    def propose(api: Api, campaign_id: str) -> httpx.Response:
        text = dump_toml(campaign_doc(campaign={"id": campaign_id}))
        return api.request("POST", "/v1/campaigns", content=text.encode(), headers=toml,
                           as_="ops")  # fmt: skip

    try:
        # Before any gateway has read it: unknown, the same 404 from both.
        for gw in (gw1, gw2):
            assert gw.get(f"/v1/campaigns/{cid}/status").status_code == 404
        r = propose(gw1, cid)
        assert r.status_code == 201, r.text
        am = r.json()["id"]
        assert _registry_owner(s, cid) == "b"  # owned from the proposal on
        for gw in (gw1, gw2):  # the pending proposal is listed through either gateway
            got = gw.get(f"/v1/campaigns/{cid}/amendments", as_="ops")
            assert got.status_code == 200, got.text
            assert [a["id"] for a in got.json()["amendments"]] == [am], got.text
        r = gw2.post(f"/v1/campaigns/{cid}/amendments/{am}/approve", {"reason": "ok"},
                     as_="ops2")  # fmt: skip
        assert r.status_code == 200, r.text
        for gw in (gw2, gw1):  # both find it on shard b, neither restarted
            st = gw.get(f"/v1/campaigns/{cid}/status")
            assert st.status_code == 200 and st.json()["campaign_id"] == cid, st.text
        assert _registry_owner(s, cid) == "b"
        # Shard b's campaign, proposed through either gateway: placed on b, whose ledger
        # has it: 409 as in one ledger, in its words.
        one = propose(pair["one"].api, CID)
        assert placed_shard(SHARD_B_CID, ["a", "b"]) == 1
        for gw in (gw1, gw2):
            got = propose(gw, SHARD_B_CID)
            assert (got.status_code, got.json()["code"]) == (409, "campaign_exists"), got.text
            assert (got.status_code, got.json()["code"]) == (one.status_code, one.json()["code"])
            assert got.json()["detail"] == one.json()["detail"].replace(CID, SHARD_B_CID)
        assert _registry_owner(s, SHARD_B_CID) == "b"
        # The campaign b made, proposed on shard a (its own port: no gateway sends it
        # there): the registry refuses it, naming its owner.
        on_a = _sequencer_api(s, "a")
        try:
            got = propose(on_a, cid)
        finally:
            on_a.close()
        assert (got.status_code, got.json()["code"]) == (409, "campaign_exists"), got.text
        assert "node 'b'" in got.json()["detail"]
        # A rejected proposal leaves no row: the id is free for any shard again.
        other = _placed_on("a")
        r = propose(gw2, other)
        assert r.status_code == 201 and _registry_owner(s, other) == "a", r.text
        r = gw1.post(f"/v1/campaigns/{other}/amendments/{r.json()['id']}/reject",
                     {"reason": "no"}, as_="ops2")  # fmt: skip
        assert r.status_code == 200, r.text
        assert _registry_owner(s, other) is None
    finally:
        gw1.close()
        gw2.close()


def test_the_audit_checks_the_ledger_against_the_order_registry(
    pair: dict[str, Server],
) -> None:
    """``lijian audit --order-registry``: shard a's active orders each have their row
    naming their campaign (exit 0); a row missing or naming another campaign is a
    finding (exit 1, one line each); a registry that does not answer is exit 2."""
    import psycopg

    s = pair["pg-shards"]
    n = f"O-audit-{uuid.uuid4().hex[:8]}"
    rid = s.api.granted(order(n, person=f"p-{uuid.uuid4().hex[:8]}"))["id"]
    registry = s.shard_dbs[1]

    def audit(url: str = registry) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(LIJIAN), "audit", "--db", str(s.db), "--order-registry", url],
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip

    clean = audit()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "ok  order registry: every active order's row names its campaign (R15)" in clean.stdout
    assert "ok  order registry: every campaign owned by this ledger's node" in clean.stdout
    with psycopg.connect(registry, autocommit=True) as c:
        c.execute("DELETE FROM order_claims WHERE platform = 'jd' AND order_id = %s", (n,))
        try:
            missing = audit()
        finally:
            c.execute("INSERT INTO order_claims VALUES ('jd', %s, %s, 'a')", (n, CID))
        c.execute("UPDATE order_claims SET campaign_id = %s WHERE order_id = %s", (SHARD_B_CID, n))
        try:
            other = audit()
        finally:
            c.execute("UPDATE order_claims SET campaign_id = %s WHERE order_id = %s", (CID, n))
    assert missing.returncode == 1, missing.stdout + missing.stderr
    want = f"violation: order jd/{n}: active in campaign {CID} ({rid}) with no row in order_claims"
    assert want in " ".join(missing.stdout.split())
    assert other.returncode == 1, other.stdout + other.stderr
    want = f"order jd/{n}: active in campaign {CID} ({rid}), its row names campaign {SHARD_B_CID}"
    assert want in " ".join(other.stdout.split())
    assert audit().returncode == 0
    gone = audit(f"postgresql://127.0.0.1:{free_port()}/none")
    assert gone.returncode == 2 and gone.stdout == ""
    assert gone.stderr.startswith("lijian audit: order registry: ") and gone.stderr.count("\n") == 1


# Last: it kills and restarts shard a, which a gateway may take a moment to reach again.
def test_a_claim_left_by_a_crash_is_mended_by_the_next_start(pair: dict[str, Server]) -> None:
    """A sequencer killed between its claim and its hold's commit leaves the order
    claimed for its campaign with no redemption: meanwhile the other shard declines the
    order (never a second campaign for it), and the owner's next start deletes the row
    before it serves, so the order is free again, as in one ledger."""
    import psycopg

    s = pair["pg-shards"]
    n, pid = f"O-crash-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
    os.killpg(s.procs[0].pid, signal.SIGKILL)  # sequencer a: no goodbye
    s.procs[0].wait(timeout=30)
    with psycopg.connect(s.shard_dbs[1], autocommit=True) as c:  # what the crash left
        c.execute("INSERT INTO order_claims VALUES ('jd', %s, %s, 'a')", (n, CID))
    codes = s.api.codes(order(n, person=pid, campaign_id=SHARD_B_CID))
    assert codes == ["other_government_subsidy"]
    log = open(s.log_path, "ab")  # noqa: SIM115 - the child keeps it
    s.procs[0] = subprocess.Popen(s.cmds[0], stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
    log.close()
    deadline = time.monotonic() + 120
    while True:  # a serves again once an order of its campaign is granted
        r = s.api.redeem(order(campaign_id=CID))
        if r.status_code == 201:
            break
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        time.sleep(0.2)
    assert '"node":"a","deleted":1' in s.log_path.read_text(errors="replace")
    granted = s.api.redeem(order(n, person=pid, campaign_id=SHARD_B_CID))
    assert granted.status_code == 201, granted.text
    assert granted.json()["id"].startswith("rd_b")


class _GaugedShard:
    """A shard's ``gauges()`` as its sequencer answers them (``Engine.gauges``)."""

    def __init__(self, status: dict[str, Any], depth: int, refusing: bool) -> None:
        durability = {"commits_survive": "fsync", "refusing": refusing}
        writer = {"ok": True, "queue_depth": depth, "last_batch_entries": 9,
                  "max_batch_entries": 40, "entries": 100, "durability": durability}  # fmt: skip
        self.answer = {"status": status, "writer": writer, "events": {"recorded": 3}}

    async def gauges(self) -> dict[str, Any]:
        return self.answer


def test_the_gauges_of_every_shard_are_merged() -> None:
    import asyncio

    from lijian.cluster.shards import ShardCarrier

    shards = [
        _GaugedShard({"a": {"granted_fen": 1}, "b": {"granted_fen": 2}}, 3, False),
        _GaugedShard({"c": {"granted_fen": 5}}, 4, True),
    ]

    class _Set:
        def answered(self) -> list[_GaugedShard]:
            return shards

    port: Any = ShardCarrier(_Set(), None)  # type: ignore[arg-type]
    merged = asyncio.run(port.gauges())
    assert merged == {
        "status": {"a": {"granted_fen": 1}, "b": {"granted_fen": 2}, "c": {"granted_fen": 5}},
        "writer": {
            "ok": True,
            "queue_depth": 7,
            "durability": {"commits_survive": "fsync", "refusing": True},
        },
    }
