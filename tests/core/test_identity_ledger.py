"""One person across identities in the ledger: links via each identifier and
transitively, the cap and count limits shared by the group, nothing clawed back at the
link, the link as a ledger entry that replay and snapshots keep, the group cap on replay."""

from __future__ import annotations

import msgspec
import pytest

from lijian.core.entries import HoldPlaced, IdentifiersSeen, encode
from lijian.core.invariants import check_invariants
from lijian.core.ledger import Ledger
from lijian.core.order import Person
from lijian.core.replay import replay
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.views import person_view
from tests.support import CID, Desk, order, settings

LINK_ALL = ["device_id", "card_hash", "phone_hash"]
DISCOUNT = 3_720  # 15% of 2 x 129.00 - 10.00


def desk(cap_fen: int = 10_000, **limits: int) -> Desk:
    s = settings(
        identity={"link_by": LINK_ALL}, limits={"person_savings_cap_fen": cap_fen, **limits}
    )
    d = Desk(s)
    d.move("2025-02-12 10:00")
    return d


def mine(pid: str, n: int, **ids: str):
    return msgspec.structs.replace(order(f"{pid}-{n}"), person=Person(pid, True, **ids))


def log(d: Desk) -> list[bytes]:
    return [encode(e) for e in d.ledger.take_pending()]


@pytest.mark.parametrize("kind", LINK_ALL)
def test_a_shared_value_of_each_identifier_makes_one_person(kind):
    d = desk()
    d.granted(mine("a", 1, **{kind: "v-1"}))
    d.granted(mine("b", 1, **{kind: "v-1"}))
    view = person_view(d.ledger, CID, "b")
    assert view["used_fen"] + view["held_fen"] == 2 * DISCOUNT
    assert view["remaining_fen"] == 10_000 - 2 * DISCOUNT
    assert view["linked_persons"] == ["a"]
    assert person_view(d.ledger, CID, "a")["linked_persons"] == ["b"]


def test_an_identifier_not_listed_links_nothing():
    s = settings(identity={"link_by": ["card_hash"]}, limits={"person_savings_cap_fen": 10_000})
    d = Desk(s)
    d.move("2025-02-12 10:00")
    d.granted(mine("a", 1, device_id="dev-1"))
    d.granted(mine("b", 1, device_id="dev-1"))
    assert person_view(d.ledger, CID, "b")["linked_persons"] == []
    assert person_view(d.ledger, CID, "b")["held_fen"] == DISCOUNT


def test_links_are_transitive_and_the_cap_is_shared():
    d = desk()
    d.granted(mine("a", 1, device_id="dev-1"))
    d.granted(mine("b", 1, device_id="dev-1", card_hash="card-1"))
    out = d.redeem(mine("c", 1, card_hash="card-1"))
    assert out.redemption is not None and out.redemption.capped
    assert out.redemption.discount_fen == 10_000 - 2 * DISCOUNT
    assert d.codes(mine("a", 2)) == ["person_cap_reached"]
    assert person_view(d.ledger, CID, "a")["linked_persons"] == ["b", "c"]
    assert check_invariants(d.ledger) == []


def test_what_each_used_before_the_link_counts_and_nothing_is_taken_back():
    d = desk()
    a = [d.granted(mine("a", i, device_id="dev-a")) for i in (1, 2)]
    b = [d.granted(mine("b", i, card_hash="card-b")) for i in (1, 2)]
    # c brings a's device and b's card: the group has used 4 x 3,720 > 10,000.
    assert d.codes(mine("c", 1, device_id="dev-a", card_hash="card-b")) == ["person_cap_reached"]
    view = person_view(d.ledger, CID, "c")
    assert view["held_fen"] == 4 * DISCOUNT and view["remaining_fen"] == 0
    assert view["linked_persons"] == ["a", "b"]
    for rid in a + b:
        assert d.ledger.redemption(rid).status == "held"
        d.capture(rid)
    assert d.person("a").used_fen == 2 * DISCOUNT and d.person("b").used_fen == 2 * DISCOUNT
    assert d.codes(mine("a", 3)) == ["person_cap_reached"]
    assert check_invariants(d.ledger) == []


def test_count_limits_are_per_group():
    d = desk(cap_fen=150_000, person_redemptions_total=2)
    d.granted(mine("a", 1, phone_hash="ph-1"))
    d.granted(mine("b", 1, phone_hash="ph-1"))
    assert d.codes(mine("b", 2)) == ["person_count_limit"]
    assert d.codes(mine("a", 2)) == ["person_count_limit"]
    d.granted(mine("z", 1, phone_hash="ph-2"))  # someone else is not affected


def test_the_link_is_a_ledger_entry_that_replay_and_snapshots_keep():
    d = desk()
    d.granted(mine("a", 1, device_id="dev-1"))
    d.granted(mine("b", 1, device_id="dev-1", card_hash="card-1"))
    entries = d.ledger.take_pending()
    seen = [e for e in entries if isinstance(e, IdentifiersSeen)]
    assert [(e.person_id, e.identifiers, e.linked) for e in seen] == [
        ("a", [("device_id", "dev-1")], []),
        ("b", [("device_id", "dev-1"), ("card_hash", "card-1")], ["a"]),
    ]
    led = replay(d.settings, [encode(e) for e in entries])
    assert person_view(led, CID, "a") == person_view(d.ledger, CID, "a")
    assert led.book(CID).identity.members("b") == ["a", "b"]
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(led, 7))
    assert fresh.book(CID).identity.members("a") == ["a", "b"]
    assert fresh.book(CID).identity.owner(("card_hash", "card-1")) == "b"
    assert person_view(fresh, CID, "b") == person_view(d.ledger, CID, "b")


def test_a_repeated_identifier_adds_no_entry():
    d = desk()
    d.granted(mine("a", 1, device_id="dev-1"))
    d.ledger.take_pending()
    d.granted(mine("a", 2, device_id="dev-1"))
    assert [type(e).__name__ for e in d.ledger.take_pending()] == ["HoldPlaced"]


def test_replay_refuses_a_hold_over_the_groups_cap():
    d = desk()
    d.granted(mine("a", 1, device_id="dev-1"))
    d.granted(mine("a", 2, device_id="dev-1"))
    d.granted(mine("b", 1, device_id="dev-1"))  # capped to what is left: 2,560
    entries = d.ledger.take_pending()
    last = entries[-1]
    assert isinstance(last, HoldPlaced) and last.discount_fen == 10_000 - 2 * DISCOUNT
    forged = [*entries[:-1], _with(last, discount_fen=DISCOUNT)]
    with pytest.raises(AssertionError, match="R7"):
        replay(d.settings, [encode(e) for e in forged])


def _with(e: HoldPlaced, **changes: object) -> HoldPlaced:
    return msgspec.structs.replace(e, **changes)
