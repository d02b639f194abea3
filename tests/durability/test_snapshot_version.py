"""A snapshot written by an older release (format 1: a person's counts per day as a dict;
format 2: a redemption's 23 fields unpacked; format 3: a record per redemption and per
person, not columns) is not read: the start replays from zero, and the audit says it did not compare
it."""

from __future__ import annotations

import struct

import msgspec
import pytest

from lijian.audit import audit_db
from lijian.core import snapshot
from lijian.core.invariants import balances
from lijian.core.ledger import Ledger
from lijian.core.snapshot import SNAPSHOT_VERSION, SnapshotOutdated, restore_snapshot
from lijian.store import open_store
from lijian.stored_ledger import open_stored_ledger
from tests.durability.test_stored_ledger import written
from tests.support import settings


def as_format_3(blob: bytes) -> bytes:
    """The same snapshot in format 3's layout: version 3, each redemption as one record
    [id, where, person, order, key, created, sums, line, status, closed] and each person
    as one record (format 4: a list per field, the where, the person and the day by
    place)."""
    state = msgspec.msgpack.decode(blob)
    state[0] = 3
    columns = state[5]
    wheres, where_of, ids, person_of, orders, keys, created, sums, lines, line_of = columns[:10]
    statuses, closed = columns[10:]
    for book in state[4]:  # each person as [id, used, held, day, day count, earlier, restores]
        days, pids, used, held, day_of, day_count, earlier, restores = book[2]
        book[2] = [
            [pids[i], used[i], held[i], days[day_of[i]], day_count[i], earlier[i], restores[i]]
            for i in range(len(pids))
        ]
    persons = [p[0] for book in state[4] for p in book[2]]
    state[5] = [
        [ids[i], wheres[where_of[i]], persons[person_of[i]], orders[i], keys[i], created[i],
         sums[i], lines[line_of[i]], statuses[i], closed[i]]
        for i in range(len(ids))
    ]  # fmt: skip
    return msgspec.msgpack.encode(state)


def as_format_1(blob: bytes) -> bytes:
    """The same snapshot in format 1's layout: version 1, each person as
    [id, used, held, count_total, {day: count}, restores] (format 2: [id, used, held,
    day, day count, earlier days, restores])."""
    state = msgspec.msgpack.decode(as_format_3(blob))
    state[0] = 1
    for book in state[4]:
        assert all(not p[5] for p in book[2]), "the test's persons redeemed on one day"
        book[2] = [
            [p[0], p[1], p[2], p[4], {p[3]: p[4]} if p[3] is not None else {}, p[6] or []]
            for p in book[2]
        ]
    return msgspec.msgpack.encode(state)


def test_an_older_format_is_replayed_from_zero_and_not_audited_as_a_fault(tmp_path):
    assert SNAPSHOT_VERSION == 4
    db = tmp_path / "l.db"
    written(db)
    store = open_store(db)
    try:
        seq, blob = store.latest_snapshot() or (0, b"")
        assert seq > 0
        old = as_format_1(blob)
        with pytest.raises(msgspec.ValidationError):  # why the version is read first
            msgspec.msgpack.Decoder(snapshot.LedgerState).decode(old)
        with pytest.raises(SnapshotOutdated, match="snapshot version 1, expected 4"):
            restore_snapshot(Ledger([settings()]), old)
        store.save_snapshot(seq, old)
        assert store.latest_snapshot() == (seq, old)
        opened = open_stored_ledger(store, from_snapshot=True)
        zero = open_stored_ledger(store)
    finally:
        store.close()
    assert (opened.snapshot_seq, opened.replayed) == (0, seq)  # replayed from zero
    assert balances(opened.ledger) == balances(zero.ledger)
    assert opened.ledger.redemptions == zero.ledger.redemptions
    rep = audit_db(db)
    assert rep.ok, rep.violations
    names = [str(c["name"]) for c in rep.checks]
    assert (
        f"snapshot at seq {seq}: format 1, not compared (this release reads 4; a start "
        "replays instead)" in names
    )
    assert not any(n.startswith(f"snapshot at seq {seq} = replay") for n in names)


def as_format_2(blob: bytes) -> bytes:
    """The same snapshot in format 2's layout: version 2, each redemption as its 23
    fields [id, campaign, day, person, platform, order, payable, discount, capped,
    created, expires, lines, fingerprint, client, key, status, captured, ended,
    returned, card refunded, clawed back, returned quantities, refunds] (format 3: [id,
    where, person, order, key, created, sums, line, status, closed])."""
    state = msgspec.msgpack.decode(as_format_3(blob))
    state[0] = 2
    unpacked = []
    for r in state[5]:
        rid, (campaign, day, platform, client, capped, hold_ms), person, order, key = r[:5]
        created, sums, line = r[5:8]
        status = r[8] if len(r) > 8 else "held"
        closed = r[9] if len(r) > 9 else None
        assert not isinstance(closed, list), "the test's redemptions are not refunded"
        payable, discount = struct.unpack_from("<qq", sums)
        lines = [[line, 1, payable]] if isinstance(line, str) else line
        captured = closed if status == "captured" else None
        ended = closed if status in ("voided", "expired") else None
        unpacked.append([
            rid, campaign, day, person, platform, order, payable, discount, capped, created,
            created + hold_ms, lines, sums[16:], client, key, status, captured, ended,
            0, 0, 0, None, [],
        ])  # fmt: skip
    state[5] = unpacked
    return msgspec.msgpack.encode(state)


@pytest.mark.parametrize(("to_old", "version"), [(as_format_2, 2), (as_format_3, 3)])
def test_the_records_of_formats_2_and_3_are_replayed_from_zero(tmp_path, to_old, version):
    db = tmp_path / "l.db"
    written(db)
    store = open_store(db)
    try:
        seq, blob = store.latest_snapshot() or (0, b"")
        old = to_old(blob)
        assert len(msgspec.msgpack.decode(old)[5]) == 3  # three records (one captured)
        with pytest.raises(SnapshotOutdated, match=f"snapshot version {version}, expected 4"):
            restore_snapshot(Ledger([settings()]), old)
        store.save_snapshot(seq, old)
        opened = open_stored_ledger(store, from_snapshot=True)
        zero = open_stored_ledger(store)
    finally:
        store.close()
    assert (opened.snapshot_seq, opened.replayed) == (0, seq)  # replayed from zero
    assert opened.ledger.redemptions == zero.ledger.redemptions
    captured = [r for r in opened.ledger.redemptions.values() if r.captured_ms is not None]
    assert [r.status for r in captured] == ["captured"]


def test_the_current_format_is_still_compared_by_the_audit(tmp_path):
    db = tmp_path / "l.db"
    written(db)
    rep = audit_db(db)
    assert rep.ok, rep.violations
    assert any(str(c["name"]).endswith("= replay to that seq") for c in rep.checks)


def test_a_snapshot_that_decodes_but_names_another_version_is_not_restored(tmp_path):
    """The version is checked after the decode (no second parse first): a snapshot in
    the current layout whose version says otherwise is refused all the same."""
    db = tmp_path / "l.db"
    written(db)
    store = open_store(db)
    try:
        _, blob = store.latest_snapshot() or (0, b"")
    finally:
        store.close()
    state = msgspec.msgpack.decode(blob)
    state[0] = SNAPSHOT_VERSION + 1
    newer = msgspec.msgpack.encode(state)
    assert msgspec.msgpack.Decoder(snapshot.LedgerState).decode(newer).version == 5
    with pytest.raises(SnapshotOutdated, match="snapshot version 5, expected 4"):
        restore_snapshot(Ledger([settings()]), newer)
    with pytest.raises(msgspec.DecodeError):  # not a snapshot at all: not "outdated"
        restore_snapshot(Ledger([settings()]), blob[: len(blob) // 2])
