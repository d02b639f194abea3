"""Ids that the edge accepts are stored and given back unchanged by every store.

A NUL in an order id used to pass the decoder and then fail the PostgreSQL write (text
cannot hold NUL), which fail-stopped the engine. Now the decoder refuses every control
character (tests/http/test_identifiers.py); this property checks the other half: any
other Unicode id (astral characters, C1 controls, U+2028, a BOM, spaces, 128 characters)
goes through SQLite and PostgreSQL and comes back
identical, also after a restart (snapshot) and a replay of the log from zero.

Each test runs in its own schema (see conftest.py), so they may run in parallel.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lijian.blocking import Blocking
from lijian.clock import parse_clock
from lijian.core.order import ID_LEN_MAX, Order, RefundRequest
from lijian.engine import Engine
from lijian.http.ndjson import CatalogParser
from tests.http.harness import Server, order
from tests.postgres.pgutil import execute
from tests.support import CID
from tests.support import settings as campaign_settings

pytestmark = pytest.mark.xdist_group("postgres")

EXAMPLES = 50
START = "manual:2025-02-12T10:00:00+08:00"
CONTROLS = [chr(c) for c in (*range(0x20), 0x7F)]

# Any Unicode scalar value but the control characters the contract refuses: UTF-8 JSON
# cannot carry a lone surrogate (msgspec refuses the escape).
TEXT_CHARS = st.characters(codec="utf-8", exclude_characters=CONTROLS)
IDS = st.text(TEXT_CHARS, min_size=1, max_size=ID_LEN_MAX)
TEXTS = st.text(TEXT_CHARS, max_size=ID_LEN_MAX)

_decode_order = msgspec.json.Decoder(Order).decode
_decode_refund = msgspec.json.Decoder(RefundRequest).decode


def at_the_edge(body: dict[str, Any], ascii_only: bool) -> bytes:
    """The body as a client would send it (escaped or raw UTF-8)."""
    return json.dumps(body, ensure_ascii=ascii_only).encode()


def catalog_row(sku: str) -> tuple[str, str, str]:
    """The row as a catalogue upload parses it (the same decoder as PUT .../catalog)."""
    p = CatalogParser()
    p.feed(at_the_edge({"sku": sku, "category": "fresh_food", "platform": "jd"}, False) + b"\n")
    p.close()
    assert p.error is None, p.error
    ((row),) = p.rows
    return row


def unique(value: str, seen: set[str]) -> str:
    """``value``, or (rarely: hypothesis repeats small examples) a variant not seen yet."""
    n = 0
    out = value
    while out in seen:
        n += 1
        out = f"{value[: ID_LEN_MAX - 8]}#{n}"
    seen.add(out)
    return out


class Backends:
    """The same requests on a SQLite engine and a PostgreSQL engine."""

    def __init__(self, sqlite_path: str, engine_url: str) -> None:
        self.sqlite_path, self.engine_url = sqlite_path, engine_url
        self.open()

    def open(self) -> None:
        s = campaign_settings()
        self.engines: dict[str, Engine] = {
            "sqlite": Engine([s], self.sqlite_path, parse_clock(START)),
            "postgres": Engine([s], self.engine_url, parse_clock(START)),
        }

    def close(self) -> None:
        for e in self.engines.values():
            e.close()

    def views(self, rid: dict[str, str], pid: str) -> dict[str, Any]:
        """Each backend's redemption and person views."""
        out: dict[str, Any] = {}
        for name, e in self.engines.items():
            out[name] = (e.call(e.redemption, rid[name]), Blocking(e).person(CID, pid))
        return out


def comparable(view: tuple[dict[str, Any], dict[str, Any]]) -> tuple[Any, ...]:
    red, person = view
    return (
        red["order_id"],
        red["person_id"],
        red["platform"],
        red["status"],
        [f["refund_id"] for f in red["refunds"]],
        person["person_id"],
        person["redemptions_count"],
    )


def test_accepted_unicode_ids_are_stored_and_returned_identically(pg_url, tmp_path):
    run_property(str(tmp_path / "lijian.db"), pg_url)


def run_property(sqlite_path: str, engine_url: str) -> None:
    b = Backends(sqlite_path, engine_url)
    granted: list[tuple[dict[str, str], str, tuple[Any, ...]]] = []
    seen_orders: set[str] = set()
    seen_persons: set[str] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        order_id=IDS,
        person_id=IDS,
        sku=IDS,
        refund_id=IDS,
        device_id=TEXTS,
        address=st.text(TEXT_CHARS, max_size=512),
        ascii_only=st.booleans(),
    )
    def grant(
        order_id: str,
        person_id: str,
        sku: str,
        refund_id: str,
        device_id: str,
        address: str,
        ascii_only: bool,
    ) -> None:
        oid, pid = unique(order_id, seen_orders), unique(person_id, seen_persons)
        body = order(n=oid, person=pid, sku=sku)
        body["person"]["device_id"] = device_id
        body["delivery_address"]["text"] = address
        o = _decode_order(at_the_edge(body, ascii_only))  # the edge accepts it as it is
        assert (o.order_id, o.person.id, o.items[0].sku, o.person.device_id) == (
            oid,
            pid,
            sku,
            device_id,
        )
        assert o.delivery_address is not None and o.delivery_address.text == address
        refund = _decode_refund(at_the_edge({"refund_id": refund_id, "payable_fen": 1_000}, False))
        assert refund.refund_id == refund_id
        row = catalog_row(sku)
        assert row == ("jd", sku, "fresh_food")
        rid: dict[str, str] = {}
        for name, e in b.engines.items():
            Blocking(e).catalog_upsert([row])
            out = Blocking(e).redeem(o, "unionpay", f"K-{len(granted)}", f"fp-{len(granted)}")
            assert out.status == 201, (name, out.body)
            assert (out.body["order_id"], out.body["person_id"]) == (oid, pid)
            rid[name] = out.body["id"]
            assert Blocking(e).capture(rid[name]).status == 200, name
            out = Blocking(e).refund(rid[name], refund, "unionpay", f"R-{len(granted)}", "rfp")
            assert out.status == 201, (name, out.body)
            assert out.body["refund_id"] == refund_id
        want = (oid, pid, "jd", "partially_refunded", [refund_id], pid, 1)
        for name, view in b.views(rid, pid).items():
            assert comparable(view) == want, name
        granted.append((rid, pid, want))

    try:
        grant()
    finally:
        b.close()
    assert len(granted) >= EXAMPLES

    # A restart (from the snapshot a graceful stop writes), then a replay from zero.
    for restart in ("snapshot", "replay"):
        if restart == "replay":
            with sqlite3.connect(sqlite_path) as con:
                con.execute("DELETE FROM snapshots")
            execute(engine_url, "DELETE FROM snapshots")
        b.open()
        try:
            for rid, pid, want in granted:
                for name, view in b.views(rid, pid).items():
                    assert comparable(view) == want, (restart, name)
        finally:
            b.close()


def test_a_nul_is_refused_at_the_edge_and_the_server_on_postgresql_keeps_granting(pg_url, tmp_path):
    """The symptoms once seen: a signed order with a NUL made the PostgreSQL write fail and
    the engine fail-stop; ``%00`` in a path was a 500."""
    server = Server(tmp_path / "srv", db=pg_url)  # type: ignore[arg-type]
    api = server.api
    try:
        for field, body in (
            ("order_id", order(n="O-\x00")),
            ("person.id", order(person="p\x00")),
            ("items[0].sku", order(sku="JD-1\x00")),
        ):
            r = api.redeem(body)
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["field"] == field
        r = api.put_catalog(b'{"sku": "JD-\\u0000", "category": "fresh_food", "platform": "jd"}\n')
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sku", r.text
        r = api.get("/v1/redemptions/rd%00x")
        assert r.status_code == 404 and r.json()["code"] == "redemption_not_found", r.text
        created = api.granted(order(n="订单-😀\u0085", person="人\u2028"))
        rid = created["id"]
        assert api.post(f"/v1/redemptions/{rid}/capture").status_code == 200
        r = api.post(
            f"/v1/redemptions/{rid}/refunds",
            {"refund_id": "rf\x00", "payable_fen": 1_000},
            headers={"Idempotency-Key": "rf-nul"},
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "refund_id", r.text
        assert api.granted(order())["status"] == "held"  # still up
    finally:
        assert server.stop() == 0, server.log()
        api.close()
    e = Engine([campaign_settings()], pg_url, parse_clock(START))
    try:
        view = e.call(e.redemption, rid)
        assert (view["order_id"], view["person_id"]) == ("订单-😀\u0085", "人\u2028")
    finally:
        e.close()


def test_identifiers_are_stored_keyed_in_postgresql_rows(pg_url: str) -> None:
    """The engine keys what it receives: no value sent is in any stored row; the rows
    hold hex(HMAC-SHA256(key, kind "\\n" value)), which link the same way."""
    from lijian.core.entries import IdentifiersSeen, LedgerKeyed, decode
    from lijian.core.keyed import key_id, keyed
    from lijian.core.order import Person

    sent = {"device_id": "dev-pg-4711", "card_hash": "card-pg-0815", "phone_hash": "ph-pg-42"}
    s = campaign_settings(identity={"link_by": list(sent)})
    key = bytes(range(32))
    eng = Engine([s], pg_url, clock=parse_clock(START), ledger_key=key)
    try:
        Blocking(eng).catalog_upsert([("jd", "JD-1", "fresh_food")])
        for pid, ids in (("p-pg-1", sent), ("p-pg-2", {"device_id": sent["device_id"]})):
            base = msgspec.json.decode(json.dumps(order(person=pid)).encode(), type=Order)
            o = msgspec.structs.replace(base, person=Person(pid, True, **ids))
            assert Blocking(eng).redeem(o, "unionpay", f"k-{pid}", f"fp-{pid}").status == 201
        assert eng.person(CID, "p-pg-2")["linked_persons"] == ["p-pg-1"]
    finally:
        eng.close()
    rows = [r[0] for r in execute(pg_url, "SELECT body FROM entries ORDER BY seq")]
    assert rows and all(isinstance(r, bytes) for r in rows)
    text = " ".join(
        str(r) for t in ("persons", "balances") for r in execute(pg_url, f"SELECT * FROM {t}")
    )
    for value in sent.values():
        assert all(value.encode() not in r for r in rows) and value not in text
    stored = [decode(r) for r in rows]
    seen = [e for e in stored if isinstance(e, IdentifiersSeen)]
    assert seen[0].identifiers == [(k, keyed(key, k, v)) for k, v in sent.items()]
    assert seen[1].linked == ["p-pg-1"]
    assert [e.key_id for e in stored if isinstance(e, LedgerKeyed)] == [key_id(key)]
