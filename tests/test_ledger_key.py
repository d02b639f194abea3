"""The ledger key (lijian.ledger_key): identifiers are stored keyed, draw seeds are in no
byte of the ledger before their reveal, and a start with another key is refused.

Against the real server and the real files: the SQLite ledger's bytes (the file and its
WAL) are searched for the values sent and for the seeds; PostgreSQL rows likewise."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lijian.blocking import Blocking
from lijian.core.draw import commitment, derive_seed
from lijian.core.entries import IdentifiersSeen, LedgerKeyed, decode
from lijian.core.keyed import key_id, keyed
from lijian.core.order import Person
from lijian.engine import Engine
from lijian.ledger_key import ENV_KEY_FILE, KEY_SUFFIX, LedgerKeyError, read_key
from tests.http.harness import LIJIAN, Api, Server, campaign_doc, free_port, order
from tests.support import CID, at, settings
from tests.support import order as core_order

pytestmark = pytest.mark.xdist_group("ledger-key")

GOODS = ("jd", "JD-1", "fresh_food")
DAYS = [f"2025-02-{d:02d}" for d in range(12, 29)]
SENT = {"device_id": "dev-plain-4711", "card_hash": "card-plain-0815", "phone_hash": "ph-42"}


def the_key() -> bytes:
    return read_key(Path(os.environ[ENV_KEY_FILE]))


def ledger_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def person(pid: str, **ids: str) -> dict[str, Any]:
    return {"id": pid, "real_name_verified": True, **ids}


def test_identifiers_are_stored_keyed_and_still_link(tmp_path: Path) -> None:
    doc = campaign_doc(identity={"link_by": list(SENT)})
    server = Server(tmp_path / "s", campaigns=[doc], topology="one")
    try:
        a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
        server.api.granted(order(person=person(a, **SENT)))
        server.api.granted(order(person=person(b, device_id=SENT["device_id"])))
        assert server.api.person(b)["linked_persons"] == [a]
        raw = ledger_bytes(Path(server.db))
        for value in SENT.values():
            assert value.encode() not in raw
        with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as c:
            stored = [decode(bytes(body)) for (body,) in c.execute("SELECT body FROM entries")]
        key = the_key()
        seen = [e for e in stored if isinstance(e, IdentifiersSeen)]
        device = ("device_id", keyed(key, "device_id", SENT["device_id"]))
        assert [(e.person_id, e.identifiers, e.linked) for e in seen] == [
            (a, [(k, keyed(key, k, v)) for k, v in SENT.items()], []),
            (b, [device], [a]),
        ]
        assert [e.key_id for e in stored if isinstance(e, LedgerKeyed)] == [key_id(key)]
        assert key not in raw and key.hex().encode() not in raw
    finally:
        server.close()


def test_a_seed_is_in_no_byte_of_the_ledger_before_its_reveal(tmp_path: Path) -> None:
    doc = campaign_doc(release={"admission_window_s": 2})
    server = Server(
        tmp_path / "w",
        campaigns=[doc],
        clock="manual:2025-02-12T09:59:00+08:00",
        catalog=False,
        topology="one",  # a SQLite file to search (tests/http may have set another)
    )
    try:
        api = server.api
        key = the_key()
        seeds = {day: derive_seed(key, CID, day) for day in DAYS}
        draw = public(api)["today"]["draw"]
        assert draw["commitment"] == commitment(seeds[DAYS[0]]) and draw["seed"] is None
        api.set_clock("2025-02-12T10:00:01+08:00")  # open, inside the window
        raw = ledger_bytes(Path(server.db))
        for seed in seeds.values():
            assert seed.encode() not in raw and bytes.fromhex(seed) not in raw
            assert commitment(seed).encode() in raw
        api.set_clock("2025-02-12T10:00:02+08:00")  # the window's end: revealed
        draw = public(api)["today"]["draw"]
        assert draw["seed"] == seeds[DAYS[0]]
        assert hashlib.sha256(draw["seed"].encode("ascii")).hexdigest() == draw["commitment"]
        raw = ledger_bytes(Path(server.db))
        assert seeds[DAYS[0]].encode() in raw
        assert all(seeds[d].encode() not in raw for d in DAYS[1:])  # later days: not yet
        audit = api.get(f"/v1/campaigns/{CID}/audit", as_="ops").json()
        assert audit["ok"] is True, audit
    finally:
        server.close()


def public(api: Api) -> dict[str, Any]:
    r = api.get(f"/public/campaigns/{CID}", signed=False)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def serve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LIJIAN), "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_a_start_with_another_key_is_refused(tmp_path: Path, workers: int) -> None:
    doc = campaign_doc(identity={"link_by": ["device_id"]})
    server = Server(tmp_path / "s", campaigns=[doc], topology="one")
    try:
        server.api.granted(order(person=person(f"p-{uuid.uuid4().hex[:6]}", device_id="d-1")))
        args = [a for a in server.cmd[2:] if a != "--workers"]
        args = args[: args.index("--port")]
    finally:
        server.close()
    env = {**os.environ}
    other = tmp_path / "other.key"
    port = ["--port", str(free_port())]
    r = serve([*args, *port, "--workers", str(workers), "--ledger-key", str(other)], env)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "another key" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert stat.S_IMODE(other.stat().st_mode) == 0o600  # made, but not the ledger's


def test_a_sqlite_ledgers_key_is_made_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEY_FILE)
    db = tmp_path / "l.db"
    s = settings(identity={"link_by": ["device_id"]})
    o = msgspec.structs.replace(core_order("o-1"), person=Person("p", True, "dev-9"))
    with Engine([s], db, clock=_clock()) as eng:
        Blocking(eng).catalog_upsert([GOODS])
        assert Blocking(eng).redeem(o, "unionpay", "k-1", "fp-1").status == 201
    key_file = db.with_name(db.name + KEY_SUFFIX)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = read_key(key_file)
    assert len(key_file.read_text().strip()) == 64
    with Engine([s], db, clock=_clock()) as eng:  # the same key again: it starts
        seen = [e for e in eng.ledger.book(CID).identity.to_state().owners]
    assert seen == [("device_id", keyed(key, "device_id", "dev-9"), "p")]
    key_file.unlink()  # a lost key: a new one is made, and the ledger refuses it
    with pytest.raises(LedgerKeyError, match="another key"):
        Engine([s], db, clock=_clock())


def test_a_postgresql_ledger_without_a_key_file_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_KEY_FILE}
    args = ["--campaign", str(_campaign_file(tmp_path)), "--clients", str(_clients(tmp_path))]
    port = ["--port", str(free_port())]
    r = serve([*args, *port, "--db", "postgresql://postgres@127.0.0.1:5432/test"], env)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "needs its key file" in lines[0], r.stderr


def test_an_engine_refuses_another_key_and_a_ledger_that_never_used_one_takes_any(
    tmp_path: Path,
) -> None:
    linked = settings(identity={"link_by": ["device_id"]})
    plain = settings()
    k1, k2 = bytes(32), bytes([1] * 32)
    for s, db, refused in (
        (linked, tmp_path / "linked.db", True),
        (plain, tmp_path / "p.db", False),
    ):
        eng = Engine([s], db, clock=_clock(), ledger_key=k1)
        Blocking(eng).catalog_upsert([GOODS])
        try:
            o = msgspec.structs.replace(core_order("o-1"), person=Person("p", True, "dev-9"))
            assert Blocking(eng).redeem(o, "unionpay", "k-1", "fp-1").status == 201
        finally:
            eng.close()
        if refused:
            with pytest.raises(LedgerKeyError, match="another key"):
                Engine([s], db, clock=_clock(), ledger_key=k2)
        else:
            Engine([s], db, clock=_clock(), ledger_key=k2).close()
        Engine([s], db, clock=_clock(), ledger_key=k1).close()


def _clock() -> Any:
    from lijian.clock import ManualClock

    return ManualClock(at("2025-02-12 10:00"))


def _campaign_file(tmp_path: Path) -> Path:
    from tests.http.harness import dump_toml

    f = tmp_path / "c.toml"
    f.write_text(dump_toml(campaign_doc()), encoding="utf-8")
    return f


def _clients(tmp_path: Path) -> Path:
    from tests.http.harness import clients_toml

    f = tmp_path / "clients.toml"
    f.write_text(clients_toml(), encoding="utf-8")
    return f
