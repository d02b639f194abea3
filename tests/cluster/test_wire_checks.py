"""What a peer on the sequencer's link can send, straight on the wire (no gateway in
between): every command HTTP signs needs its ticket, every argument is checked as HTTP
checks it, a call that fails is that call's answer, and the connection answers on.

Real processes: ``lijian sequencer`` (with two gateways, ``Server``'s ``pg-2gw`` shape)
on a SQLite file or on PostgreSQL, and a client speaking ``lijian.cluster.wire``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lijian.cluster.wire import Answer
from lijian.http.admission import RESENDS_MAX
from lijian.port import Ticket
from tests.cluster.wire_client import OK, PROBLEM, WireClient, connect, ticket
from tests.http.harness import CATEGORIES, LIJIAN, Server, order
from tests.support import CID

FP = hashlib.sha256(b"a request").hexdigest()
# 9999-12-31T00:00:00+08:00: representable, but no campaign clock can show it.
Y9999_MS = 253_402_185_600_000
Y2099_MS = 4_102_329_600_000  # 2099-12-31T00:00:00+08:00


def sequencer_address(server: Server) -> tuple[str, int]:
    cmd = server.cmds[0]
    assert cmd[1] == "sequencer", cmd
    host, _, port = cmd[cmd.index("--listen") + 1].rpartition(":")
    return host, int(port)


def wire(server: Server) -> WireClient:
    """A client with a gateway's credentials (the harness's ``lijian certs new`` set)."""
    return WireClient(connect(sequencer_address(server), server.workdir / "tls" / "gateway-1"))


def start(tmp_path: Path, db: str) -> Server:
    """``lijian sequencer`` and two gateways on SQLite (a file) or PostgreSQL."""
    if db == "sqlite":
        return Server(tmp_path / "srv", topology="pg-2gw", db=tmp_path / "srv" / "lijian.db")
    return Server(tmp_path / "srv", topology="pg-2gw")


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    s = start(tmp_path, "sqlite")
    try:
        yield s
    finally:
        s.close()


_upload_ids = itertools.count(1)


def upload(
    c: WireClient, rows: list[Any], t: Ticket | None, part_rows: int = 0, cid: str = CID
) -> Answer:
    """A catalogue upload as a gateway sends it: its rows in parts (``part_rows`` each,
    or one part), which carry no ticket, then its end (campaign, count) with ``t``. The
    answer of the first part refused, else the end's."""
    upload_id = next(_upload_ids)
    step = part_rows or max(len(rows), 1)
    for i in range(0, len(rows), step):
        a = c.call("catalog_rows", [upload_id, rows[i : i + step]])
        if a.kind != OK:
            return a
    return c.call("catalog", [upload_id, len(rows), cid], t)


def upload_problem(c: WireClient, rows: list[Any], t: Ticket | None, part_rows: int = 0
                   ) -> tuple[int, str, str]:  # fmt: skip
    a = upload(c, rows, t, part_rows)
    assert a.kind == PROBLEM, a
    status, code, detail, _errors, _headers = a.payload
    return status, code, detail


def granted(c: WireClient) -> int:
    """Fen held or granted so far (a 201 holds the discount until captured)."""
    status = c.ok("status", [CID], ticket("ops"))
    return int(status["held_fen"]) + int(status["granted_fen"])


SIGNED_CALLS: list[tuple[str, list[Any]]] = [
    ("admit", []),
    ("redeem", [order(), "unionpay", "k-1", FP]),
    ("quote", [order()]),
    ("capture", ["r-1"]),
    ("void", ["r-1"]),
    ("refund", ["r-1", {"kind": "full"}, "unionpay", "k-2", FP]),
    ("catalog", [1_000_000, 1, CID]),  # the end of the upload whose part the test sends
    ("clock", [None, 3_600_000]),
    ("redemption", ["r-1"]),
    ("person", [CID, "p-1"]),
    ("status", [CID]),
    ("settlement", [CID, "2025-02-12"]),
    ("audit", [CID]),
    ("evidence", [CID, "2025-02-11"]),
    ("events", [0, 10]),
]


def test_every_command_http_signs_needs_a_ticket_and_runs_nothing_without(sqlite_server):
    c = wire(sqlite_server)
    before = c.ok("status", [CID], ticket("ops"))
    # A catalogue upload's part runs nothing and needs no ticket; its end does.
    assert c.ok("catalog_rows", [1_000_000, [["jd", "JD-NEW", "fresh_food"]]]) == 1
    for method, args in SIGNED_CALLS:
        assert c.problem(method, args) == (
            401,
            "signature_required",
            "this command needs a signed request",
        ), method
    after = c.ok("status", [CID], ticket("ops"))
    # Nothing ran: no grant, the clock did not move, the SKU is not in the catalogue.
    assert after["today"] == before["today"]
    assert (after["held_fen"], after["granted_fen"]) == (before["held_fen"], 0) == (0, 0)
    assert after["now"] == before["now"] == "2025-02-12T10:00:00+08:00"
    quote = c.ok("quote", [order(sku="JD-NEW")], ticket("ops"))
    assert [r["code"] for r in quote["reasons"]] == ["not_campaign_goods"]
    # What HTTP serves unsigned is served without a ticket.
    assert c.ok("health", [])["ok"] is True
    assert c.ok("public", [CID])["campaign_id"] == CID
    hello = c.ok("hello", [])
    assert set(hello) == {"settings", "manual_clock", "node", "order_registry"}
    assert (hello["node"], hello["order_registry"]) == ("a", False)  # one ledger, unsharded
    c.close()


def test_a_ticket_speaks_for_its_client_only_and_once(sqlite_server):
    c = wire(sqlite_server)
    # A channel's redemption under another client's name, or by a role HTTP refuses.
    assert c.problem("redeem", [order(), "ops", "k-3", FP], ticket("unionpay"))[:2] == (
        403,
        "forbidden",
    )
    assert c.problem("redeem", [order(), "audit", "k-4", FP], ticket("audit"))[:2] == (
        403,
        "forbidden",
    )
    assert c.problem("clock", [None, 1000], ticket("unionpay"))[:2] == (403, "forbidden")
    assert c.problem("quote", [order(platform="vip")], ticket("jd"))[:2] == (403, "forbidden")
    assert upload_problem(c, [["vip", "VIP-X", "fresh_food"]], ticket("jd"))[:2] == (
        403,
        "forbidden",
    )
    assert granted(c) == 0
    # A ticket is taken once; a resend of the same call is admitted a few times at most.
    t = ticket("ops")
    assert c.call("status", [CID], t).kind == OK
    assert c.problem("status", [CID], t)[:2] == (401, "nonce_reused")
    resent = ticket("ops").__class__(t.key_id, t.nonce, t.ts_s, resent=True)
    for _ in range(RESENDS_MAX):
        assert c.call("status", [CID], resent).kind == OK
    assert c.problem("status", [CID], resent)[:2] == (401, "nonce_reused")
    # A ticket HTTP would refuse: stale, malformed nonce, unknown key.
    old = ticket("ops").__class__("ops", "n" * 32, 1_000_000_000)
    assert c.problem("status", [CID], old)[:2] == (401, "timestamp_out_of_window")
    assert c.problem("status", [CID], ticket("ops").__class__("ops", "x\x00", t.ts_s))[:2] == (
        401,
        "nonce_invalid",
    )
    assert c.problem("status", [CID], ticket("nobody"))[:2] == (401, "unknown_key")
    # A granted redemption with its own client's ticket: the link still serves.
    out = c.ok("redeem", [order(), "unionpay", "k-5", FP], ticket("unionpay"))
    assert out[0] == 201
    assert granted(c) == 3_720
    c.close()


PERSON = {"id": "p-1", "real_name_verified": True}


def test_arguments_http_refuses_are_refused_on_the_wire(sqlite_server):
    c = wire(sqlite_server)
    ops = lambda: ticket("ops")  # noqa: E731 - a fresh nonce per call
    long_id = "r" * 129
    cases: list[tuple[str, list[Any], int]] = [
        ("redemption", [long_id], 422),
        ("redemption", ["r\x00x"], 404),
        ("person", [CID, "p\x00"], 404),
        ("status", ["c" * 129], 422),
        ("settlement", [CID, "2025-02-30"], 422),
        ("evidence", [CID, "yesterday"], 422),
        ("events", [0, 0], 422),
        ("events", [0, 501], 422),
        ("events", [-1, 10], 422),
        ("redeem", [order(), "ops", "k\x00", FP], 422),
        ("redeem", [order(), "ops", "k" * 256, FP], 422),
        ("redeem", [order(), "ops", "k-6", "not-a-digest"], 422),
        ("redeem", [{**order(), "order_id": "o\x00"}, "ops", "k-7", FP], 422),
        (
            "redeem",
            [{**order(), "person": {**PERSON, "phone_hash": "13800138000"}}, "ops", "k-8", FP],
            422,
        ),
        (
            "redeem",
            [{**order(), "person": {**PERSON, "card_hash": "4222222222222"}}, "ops", "k-9", FP],
            422,
        ),
        ("redeem", [{**order(), "delivery_address": {"adcode": "51010x"}}, "ops", "k-10", FP], 422),
        ("redeem", [{**order(), "platform": "jd\x7f"}, "ops", "k-11", FP], 422),
        ("redeem", [order(), "ops", "k-12", FP.upper()], 422),
        ("clock", [None, None], 422),
        ("clock", [Y2099_MS, 1000], 422),
        ("clock", [None, 367 * 86_400_000], 422),
        ("clock", [None, -1], 422),
        ("clock", ["tomorrow", None], 422),
        ("status", [CID, "extra"], 422),
    ]
    details = []
    for method, args, status in cases:
        got = c.problem(method, args, ops())
        assert got[0] == status, (method, args, got)
        details.append(got[2])
    # The order's refusals as HTTP words them (cluster/order_decode.py leaves every
    # refusal to msgspec's strict decoder).
    assert {
        "arguments: Expected `str` that is not a raw phone number, raw ID number or bank card "
        "number (send the channel's hash), without control characters (U+0000-U+001F, U+007F)",
        "arguments: raw number in field `card_hash`: it looks like a bank card number (13-15 "
        "digits, valid Luhn check digit); send the channel's hash instead",
        r"arguments: Expected `str` matching regex '^[0-9]{6}(?![\\s\\S])'",
        "arguments: Expected `str` without control characters (U+0000-U+001F, U+007F)",
        "fingerprint: 64 lowercase hex digits",
    } <= set(details), details
    assert granted(c) == 0
    assert c.ok("status", [CID], ops())["now"] == "2025-02-12T10:00:00+08:00"
    c.close()


def redemption_cases(tag: str) -> list[tuple[str, list[Any], Ticket | None]]:
    """Calls a gateway may send together, each with its own fate; ``tag`` makes the
    orders, keys and nonces fresh."""
    once = ticket("unionpay")
    grant = order(n=f"O-{tag}-grant")
    ch = lambda: ticket("unionpay")  # noqa: E731 - a fresh nonce per call
    return [
        ("redeem", [order(), "unionpay", f"{tag}-a", FP], None),
        ("redeem", [order(), "unionpay", f"{tag}-b", FP], ticket("nobody")),
        ("redeem", [order(), "ops", f"{tag}-c", FP], ch()),
        ("redeem", [order(), "unionpay", "k\x00", FP], ch()),
        ("redeem", [{**order(), "order_id": "o\x00"}, "unionpay", f"{tag}-d", FP], ch()),
        ("redeem", [1, 2], ch()),
        ("redeem", [grant, "unionpay", f"{tag}-e", FP], once),
        ("redeem", [order(), "unionpay", f"{tag}-f", FP], once),
        ("status", [CID], ticket("ops")),
        ("redeem", [grant, "unionpay", f"{tag}-e", FP], ch()),
        ("redeem", [order(campaign_id="nowhere"), "unionpay", f"{tag}-g", FP], ch()),
        ("redeem", [order(), "unionpay", f"{tag}-h", "not-a-digest"], ch()),
    ]


def outcome_of(a: Answer) -> tuple[Any, ...]:
    """What a case's answer must be, without the ids that differ between two runs."""
    if a.kind == PROBLEM:
        status, code, detail, _errors, _headers = a.payload
        return ("problem", status, code, detail)
    assert a.kind == OK, a
    if isinstance(a.payload, dict):  # the status
        return ("ok",)
    status, body, replayed = a.payload
    return (status, replayed, [r["code"] for r in body.get("reasons", [])])


def test_a_frame_of_redemptions_is_answered_as_one_at_a_time(sqlite_server):
    """The sequencer takes a frame's consecutive redemptions step by step for all of
    them (cluster/sequencer.py: _redeems): each is answered as if it came alone, in
    order (a ticket used by an earlier call of the frame is reused; a repeat of an
    earlier call's key replays its grant)."""
    c = wire(sqlite_server)
    alone = [outcome_of(c.call(method, args, t)) for method, args, t in redemption_cases("a")]
    cases = redemption_cases("f")
    ids = list(range(10_000, 10_000 + len(cases)))
    c.send([[i, method, t, args] for i, (method, args, t) in zip(ids, cases, strict=True)])
    got = c.answers(len(cases))
    together = [outcome_of(got[i]) for i in ids]
    assert together == alone
    codes = [x[1:3] if x[0] == "problem" else x for x in together]
    assert codes == [
        (401, "signature_required"), (401, "unknown_key"), (403, "forbidden"),
        (422, "invalid_request"), (422, "invalid_request"), (422, "invalid_request"),
        (201, False, []), (401, "nonce_reused"), ("ok",), (201, True, []),
        (200, False, ["campaign_not_found"]), (422, "invalid_request"),
    ]  # fmt: skip
    assert granted(c) == 2 * 3_720  # one grant each time, its repeat stored no more
    c.close()


def test_300_new_categories_with_an_empty_map_are_refused_and_the_ledger_restarts(
    sqlite_server,
):
    c = wire(sqlite_server)
    rows = [["jd", f"JD-C{i}", f"cat-{i:03d}"] for i in range(300)]
    # The old shapes (rows and a category map; campaign and rows): not an end this
    # sequencer takes.
    assert c.problem("catalog", [rows, {}], ticket("ops"))[0] == 422
    assert c.problem("catalog", [CID, rows], ticket("ops"))[0] == 422
    # The rows are counted, not a map sent with them, over all the parts.
    for part_rows in (0, 100):
        status, code, detail = upload_problem(c, rows, ticket("ops"), part_rows)
        assert (status, code) == (422, "invalid_request")
        assert detail == "line 256: too many distinct category values; nothing was stored"
    # Unknown categories are refused by the campaign's list, as over HTTP.
    status, _, detail = upload_problem(c, rows[:3], ticket("ops"))
    assert status == 422 and detail.startswith("line 1: category 'cat-000' is not one of")
    ok_rows = [["jd", f"JD-OK{i}", CATEGORIES[i % len(CATEGORIES)]] for i in range(20)]
    answer = upload(c, ok_rows, ticket("ops"), part_rows=7)
    assert (answer.kind, answer.payload) == (OK, 20)
    c.close()
    sqlite_server.stop()
    sqlite_server.start()  # ready: the ledger starts again
    db = sqlite_server.db
    with sqlite3.connect(db) as conn:
        categories = {r[0] for r in conn.execute("SELECT DISTINCT category FROM catalog")}
    assert len(categories) == len(CATEGORIES) + 1  # the campaign's and "withdrawn"
    c = wire(sqlite_server)
    quote = c.ok("quote", [order(sku="JD-OK3")], ticket("ops"))
    assert quote["eligible"] is True
    c.close()


@pytest.mark.parametrize("db", ["sqlite", "pg"])
def test_nul_catalogue_rows_are_refused_and_the_sequencer_serves_on(tmp_path, db):
    server = start(tmp_path, db)
    try:
        seq = server.procs[0]
        c = wire(server)
        bad_rows = [
            [["jd", "JD-OK", "fresh_food"], ["jd", "JD-\x00", "fresh_food"]],
            [["j\x00d", "JD-N1", "fresh_food"]],
            [["jd", "JD-N2", "fresh\x00food"]],
            [["jd", "JD-N3", "fresh_food\n"]],
            [["jd", "", "fresh_food"]],
            [["jd", "J" * 129, "fresh_food"]],
        ]
        for rows in bad_rows:
            status, code, detail = upload_problem(c, rows, ticket("ops"))
            assert (status, code) == (422, "invalid_request"), (rows, detail)
            assert detail.endswith("nothing was stored"), detail
        # A row its part refuses (an empty SKU) is named by its line in the whole upload.
        rows = [["jd", f"JD-P{i}", "fresh_food"] for i in range(5)] + [["jd", "", "fresh_food"]]
        status, _, detail = upload_problem(c, rows, ticket("ops"), part_rows=2)
        assert status == 422 and detail.startswith("line 6: "), detail
        # The same connection, the same sequencer process, answers on.
        quote = c.ok("quote", [order(sku="JD-OK")], ticket("ops"))
        assert [r["code"] for r in quote["reasons"]] == ["not_campaign_goods"]
        assert c.ok("redeem", [order(), "unionpay", "k-n", FP], ticket("unionpay"))[0] == 201
        assert seq.poll() is None
        assert "engine_failed" not in server.log()
        c.close()
    finally:
        server.close()


def test_a_clock_far_ahead_is_refused_and_the_same_connection_answers_on(sqlite_server):
    c = wire(sqlite_server)
    status, code, detail = c.problem("clock", [Y9999_MS, None], ticket("ops"))
    assert (status, code) == (422, "invalid_request")
    assert "2000-01-01 to 2099-12-31" in detail
    assert c.ok("status", [CID], ticket("ops"))["now"] == "2025-02-12T10:00:00+08:00"
    # Over HTTP the same rule, the same answer.
    api = sqlite_server.api
    r = api.post("/v1/admin/clock", {"now": "9999-12-31T00:00:00+08:00"}, as_="ops")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "now"
    # The last moment a manual clock may show still renders everywhere.
    assert c.ok("clock", [Y2099_MS, None], ticket("ops")) == Y2099_MS
    assert c.ok("status", [CID], ticket("ops"))["now"] == "2099-12-31T00:00:00+08:00"
    assert api.get(f"/v1/campaigns/{CID}/status").status_code == 200
    c.close()


def test_a_call_that_breaks_the_shape_is_answered_and_the_link_stays_up(sqlite_server):
    c = wire(sqlite_server)
    bad = [
        ("status", [CID], ["ops"]),  # a ticket of the wrong shape
        ("status", {"campaign": CID}, None),  # arguments not an array
        ("redeem", [{"order": 1}, "unionpay", "k", FP], None),
    ]
    for call_id, (method, args, t) in enumerate(bad, 100):
        c.send([[call_id, method, t, args]])
        a = c.answers(1)[call_id]
        assert a.kind != OK, a
    assert c.ok("status", [CID], ticket("ops"))["campaign_id"] == CID
    c.close()


def test_the_audit_reports_a_ledger_that_cannot_start(tmp_path, sqlite_server):
    c = wire(sqlite_server)
    assert c.ok("redeem", [order(), "unionpay", "k-a", FP], ticket("unionpay"))[0] == 201
    c.close()
    assert sqlite_server.stop() == 0
    src = Path(sqlite_server.db)

    def audit(db: Path) -> tuple[int, list[str]]:
        """`lijian audit --json`'s exit status and violations."""
        r = subprocess.run([str(LIJIAN), "audit", "--db", str(db), "--json"],
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        return r.returncode, json.loads(r.stdout)["violations"]

    assert audit(src) == (0, [])
    # 1. Catalogue rows the catalogue cannot hold (300 categories): no start loads them.
    cat = tmp_path / "catalogue.db"
    shutil.copy(src, cat)
    with sqlite3.connect(cat) as conn:
        conn.executemany(
            "INSERT INTO catalog (platform, sku, category) VALUES (?, ?, ?)",
            [("jd", f"JD-X{i:03d}", f"cat-{i:03d}") for i in range(300)],
        )
    code, violations = audit(cat)
    assert code == 1
    assert len(violations) == 1, violations
    assert violations[0].startswith("catalogue row ")
    assert "more than 255 distinct categories" in violations[0]
    # 2. An entry the replay cannot apply (a hold placed twice), chained as if committed.
    ent = tmp_path / "entry.db"
    shutil.copy(src, ent)
    from lijian.core.chain import link
    from lijian.core.entries import HoldPlaced, decode

    with sqlite3.connect(ent) as conn:
        rows = conn.execute("SELECT seq, body, chain FROM entries ORDER BY seq").fetchall()
        hold = next(body for _, body, _ in rows if isinstance(decode(body), HoldPlaced))
        last_seq, _, last_chain = rows[-1]
        conn.execute(
            "INSERT INTO entries (seq, body, chain) VALUES (?, ?, ?)",
            (last_seq + 1, hold, link(last_chain, hold)),
        )
    code, violations = audit(ent)
    assert code == 1
    assert len(violations) == 1, violations
    assert violations[0].startswith(f"entry {last_seq + 1}: AssertionError(")
    # And the ledger indeed cannot start on either copy (what `lijian serve` would do).
    from lijian.clock import parse_clock
    from lijian.engine import Engine
    from lijian.inputs import load_settings_file

    settings = load_settings_file(sqlite_server.workdir / "campaign-0.toml")
    clock = parse_clock("manual:2025-02-12T10:00:00+08:00")
    with pytest.raises(ValueError, match="more than 255 distinct categories"):
        Engine([settings], cat, clock=clock, background=False)
    with pytest.raises(AssertionError):
        Engine([settings], ent, clock=clock, background=False)


def unix_socket_of(pid: int) -> str:
    """The path of the sequencer's Unix socket that ``lijian serve --workers N`` (process
    ``pid``) listens on: its socket inodes, looked up in the kernel's table."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and fields[7].endswith("sequencer.sock"):
            return fields[7]
    raise AssertionError(f"no sequencer socket held by process {pid}")


def test_the_unix_socket_of_serve_workers_checks_the_same(tmp_path):
    server = Server(tmp_path / "srv", topology="sqlite-w2")
    try:
        assert server.proc is not None
        path = unix_socket_of(server.proc.pid)
        # serve --workers makes its credentials in its private run directory (0700,
        # this user's): a gateway's are readable there to this user only.
        c = WireClient(connect(path, Path(path).parent / "tls" / "gateway-1"))
        assert c.problem("redeem", [order(), "unionpay", "k-u", FP])[:2] == (
            401,
            "signature_required",
        )
        assert c.problem("clock", [Y9999_MS, None], ticket("ops"))[0] == 422
        status = c.ok("status", [CID], ticket("ops"))
        assert status["now"] == "2025-02-12T10:00:00+08:00"
        assert status["held_fen"] == 0
        c.close()
    finally:
        server.close()
