"""The admission window's decision in the pure core: the holds in the draw's order at
the decision time, a tranche that covers only some, and the check that replay (and so
``lijian audit``) makes of the stored seed and arrivals."""

from __future__ import annotations

import msgspec
import pytest

from lijian.core.draw import commitment, draw_order
from lijian.core.entries import DrawSeeded, HoldPlaced, WindowDecided, encode
from lijian.core.errors import Conflict
from lijian.core.invariants import check_invariants
from lijian.core.ledger import Ledger
from lijian.core.order import Person
from lijian.core.replay import replay
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.views import public_view
from lijian.core.window import Arrival
from tests.support import CID, Desk, at, order, settings

SEED = "5e" * 32
DAY = "2025-02-12"
TRANCHE_FEN = 18_700  # five holds of 3,720 fen


def desk(**identity: object) -> Desk:
    s = settings(
        campaign={"budget_fen": 17 * TRANCHE_FEN},
        release={"admission_window_s": 2},
        **({"identity": identity} if identity else {}),
    )
    d = Desk(s)  # 09:59
    d.ledger.emit(DrawSeeded(d.now_ms, CID, DAY, SEED))
    return d


def arrivals(d: Desk, persons: list[str], **ids: str) -> list[Arrival]:
    out = []
    for i, p in enumerate(persons):
        o = msgspec.structs.replace(order(f"{p}-{i}"), person=Person(p, True, **ids))
        out.append(Arrival(o, d.evaluate(o), "unionpay", f"k-{i}", f"fp-{i}"))
    return out


def test_holds_are_placed_in_the_draws_order_at_the_decision_time():
    d = desk()
    persons = ["a", "b", "a", "c", "b", "a", "d"]
    win = arrivals(d, persons)
    decided_ms = at("2025-02-12 10:00") + 2_000
    results = d.ledger.decide_window(CID, DAY, win, decided_ms)
    drawn = draw_order(SEED, CID, DAY, persons)
    granted = [i for i in drawn if results[i].redemption is not None]
    assert granted == drawn[:5]  # the tranche covers five: the first five drawn
    ids = [results[i].redemption.id for i in granted]
    assert ids == sorted(ids)
    assert {persons[i] for i in drawn[:4]} == {"a", "b", "c", "d"}  # round 1 first
    for i in drawn[5:]:
        assert [c for c, _ in results[i].reasons] == ["sold_out"]
    for i in granted:
        r = results[i].redemption
        assert r.created_ms == decided_ms and r.expires_at_ms == decided_ms + 900_000
    rec = d.ledger.book(CID).windows[DAY]
    assert (rec.arrivals, rec.persons, rec.granted, rec.problems) == (7, 4, 5, [])
    assert check_invariants(d.ledger) == []


def test_a_conflict_is_that_arrivals_answer_and_the_others_go_on():
    d = desk()
    win = arrivals(d, ["a", "b"])
    twice = Arrival(win[0].order, win[0].evaluation, "unionpay", "k-other", "fp-other")
    results = d.ledger.decide_window(CID, DAY, [*win, twice], at("2025-02-12 10:00:02"))
    assert sum(1 for r in results if not isinstance(r, Conflict) and r.redemption) == 2
    assert [type(r).__name__ for r in results].count("Conflict") == 1


def test_linked_accounts_are_one_person_key_in_the_draw():
    d = desk(link_by=["card_hash"])
    win = arrivals(d, ["x1", "x2", "x3"], card_hash="same-card")
    d.ledger.decide_window(CID, DAY, win, at("2025-02-12 10:00:02"))
    rec = d.ledger.book(CID).windows[DAY]
    assert rec.persons == 1  # three accounts, one group: rounds 1, 2, 3 of one key


def test_replay_reports_a_grant_out_of_the_draws_order():
    d = desk()
    persons = ["a", "b", "c"]
    d.ledger.decide_window(CID, DAY, arrivals(d, persons), at("2025-02-12 10:00:02"))
    entries = d.ledger.take_pending()
    assert replay(d.settings, [encode(e) for e in entries]).book(CID).windows[DAY].problems == []
    holds = [e for e in entries if isinstance(e, HoldPlaced)]
    rest = [e for e in entries if not isinstance(e, HoldPlaced)]
    # The same holds, with the ids of the first and last swapped: granted out of order.
    first, last = holds[0], holds[-1]
    forged_holds = [
        msgspec.structs.replace(last, redemption_id=first.redemption_id),
        *holds[1:-1],
        msgspec.structs.replace(first, redemption_id=last.redemption_id),
    ]
    window = [e for e in rest if isinstance(e, WindowDecided)]
    before = [e for e in rest if not isinstance(e, WindowDecided)]
    led = replay(d.settings, [encode(e) for e in [*before, *forged_holds, *window]])
    problems = check_invariants(led)
    # Granted last-drawn first: the two drawn before it are both named.
    assert len(problems) == 2, problems
    assert all("granted out of the draw's order" in p for p in problems)


def test_seed_and_window_survive_a_snapshot_and_the_feed_shows_them():
    d = desk()
    feed = public_view(d.ledger, CID, at("2025-02-12 09:59"))["today"]["draw"]
    assert feed["commitment"] == commitment(SEED) and feed["seed"] is None
    d.ledger.decide_window(CID, DAY, arrivals(d, ["a"]), at("2025-02-12 10:00:02"))
    d.ledger.take_pending()
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(d.ledger, 3))
    assert fresh.book(CID).draws == d.ledger.book(CID).draws
    assert fresh.book(CID).windows == d.ledger.book(CID).windows
    feed = public_view(fresh, CID, at("2025-02-12 10:00:02"))["today"]["draw"]
    assert feed == {"commitment": commitment(SEED), "seed": SEED, "window_s": 2,
                    "arrivals": 1, "granted": 1}  # fmt: skip


def test_a_seed_stored_after_the_open_gives_no_window():
    d = desk()
    d.move("2025-02-12 10:00")
    d.ledger.emit(DrawSeeded(d.now_ms, CID, "2025-02-13", "ab" * 32))
    assert d.ledger.book(CID).draws["2025-02-13"].committed_ms < at("2025-02-13 10:00")
    late = DrawSeeded(at("2025-02-14 10:00:01"), CID, "2025-02-14", "cd" * 32)
    with pytest.raises(AssertionError):
        d.ledger.emit(DrawSeeded(d.now_ms, CID, DAY, "ab" * 32))  # a day is seeded once
    d.ledger.apply(late)
    from lijian.core.window import seed_of

    assert seed_of(d.ledger.book(CID), "2025-02-14") is None
