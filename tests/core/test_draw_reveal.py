"""Draw seeds derived from the ledger key: before the open only the commitment is an
entry; the seed becomes one (``DrawRevealed``) when the window ends, the draw uses it,
and replay (so ``lijian audit``) checks it against the commitment."""

from __future__ import annotations

import msgspec

from lijian.core.draw import commitment, derive_seed, draw_order
from lijian.core.entries import DrawCommitted, DrawRevealed, HoldPlaced, LedgerKeyed, encode
from lijian.core.invariants import check_invariants
from lijian.core.keyed import key_id
from lijian.core.ledger import Ledger
from lijian.core.order import Person
from lijian.core.replay import replay
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.views import public_view
from lijian.core.window import Arrival
from tests.support import CID, Desk, at, order, settings

KEY = bytes(range(32))
DAY = "2025-02-12"


def desk() -> Desk:
    s = settings(campaign={"budget_fen": 17 * 18_700}, release={"admission_window_s": 2})
    d = Desk(s)  # 09:59
    d.ledger.seeds = lambda cid, day: derive_seed(KEY, cid, day)
    d.ledger.bind_key_id = key_id(KEY)
    d.ledger.bind_key()
    d.ledger.emit(DrawCommitted(d.now_ms, CID, DAY, commitment(derive_seed(KEY, CID, DAY))))
    return d


def arrivals(d: Desk, persons: list[str]) -> list[Arrival]:
    out = []
    for i, p in enumerate(persons):
        o = msgspec.structs.replace(order(f"{p}-{i}"), person=Person(p, True))
        out.append(Arrival(o, d.evaluate(o), "unionpay", f"k-{i}", f"fp-{i}"))
    return out


def test_the_seed_is_in_no_entry_until_the_window_has_ended():
    d = desk()
    seed = derive_seed(KEY, CID, DAY)
    d.move("2025-02-12 10:00:01")
    blob = b"".join(encode(e) for e in d.ledger.take_pending())
    assert seed.encode() not in blob and bytes.fromhex(seed) not in blob
    assert commitment(seed).encode() in blob
    feed = public_view(d.ledger, CID, at("2025-02-12 10:00:01"))["today"]["draw"]
    assert feed["seed"] is None and feed["commitment"] == commitment(seed)
    d.move("2025-02-12 10:00:02")  # the window's end: a timed event reveals it
    revealed = d.ledger.take_pending()
    assert revealed == [DrawRevealed(at("2025-02-12 10:00:02"), CID, DAY, seed)]
    feed = public_view(d.ledger, CID, at("2025-02-12 10:00:02"))["today"]["draw"]
    assert feed["seed"] == seed


def test_the_decision_reveals_first_and_draws_with_the_revealed_seed():
    d = desk()
    persons = ["a", "b", "c", "a"]
    d.ledger.decide_window(CID, DAY, arrivals(d, persons), at("2025-02-12 10:00:02"))
    entries = d.ledger.take_pending()
    kinds = [type(e).__name__ for e in entries]
    assert kinds[:3] == ["LedgerKeyed", "DrawCommitted", "TrancheOpened"]
    assert kinds[3] == "DrawRevealed" and kinds[-1] == "WindowDecided"
    seed = derive_seed(KEY, CID, DAY)
    holds = [e for e in entries if isinstance(e, HoldPlaced)]
    drawn = [persons[i] for i in draw_order(seed, CID, DAY, persons)]
    assert [h.person_id for h in holds] == drawn
    led = replay(d.settings, [encode(e) for e in entries])
    assert check_invariants(led) == []
    assert led.key_id == key_id(KEY)
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(led, len(entries)))
    assert fresh.book(CID).draws == d.ledger.book(CID).draws
    assert fresh.key_id == key_id(KEY) and fresh.book(CID).unrevealed == []


def test_a_revealed_seed_that_does_not_match_its_commitment_fails_the_audit():
    d = desk()
    d.ledger.decide_window(CID, DAY, arrivals(d, ["a", "b"]), at("2025-02-12 10:00:02"))
    entries = d.ledger.take_pending()
    forged = [
        msgspec.structs.replace(e, seed="00" * 32) if isinstance(e, DrawRevealed) else e
        for e in entries
    ]
    problems = check_invariants(replay(d.settings, [encode(e) for e in forged]))
    assert any("does not match its commitment" in p for p in problems), problems


def test_a_ledger_records_one_key():
    d = desk()
    entries = d.ledger.take_pending()
    assert entries[0] == LedgerKeyed(at("2025-02-12 09:59"), key_id(KEY))
    d.ledger.bind_key()  # already bound: nothing more
    assert d.ledger.take_pending() == []
