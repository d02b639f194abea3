"""Identity groups are bounded: a group's figures are running totals at its root (equal
to the members' sums, whatever happened), an entry names the groups it joined (not their
members), and a group takes at most GROUP_SIZE_MAX persons: the next one is declined
with ``identity_group_full``, nothing of it is recorded, and the group is flagged once."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from lijian.core.entries import GroupFull, IdentifiersSeen, encode
from lijian.core.identity import GROUP_SIZE_MAX, IdentityGroups
from lijian.core.invariants import check_invariants
from lijian.core.ledger import Ledger
from lijian.core.order import Person
from lijian.core.replay import replay
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from lijian.core.views import person_view
from tests.support import CID, Desk, order
from tests.support import settings as campaign

DISCOUNT = 3_720


def desk(cap_fen: int = 10_000) -> Desk:
    s = campaign(
        identity={"link_by": ["device_id", "card_hash"]},
        limits={"person_savings_cap_fen": cap_fen},
        campaign={"budget_fen": 17 * 10_000_000},
    )
    d = Desk(s)
    d.move("2025-02-12 10:00")
    return d


def mine(pid: str, n: int = 1, **ids: str):
    return msgspec.structs.replace(order(f"{pid}-{n}"), person=Person(pid, True, **ids))


def sums(d: Desk | Ledger, pid: str) -> tuple[int, int, int]:
    """The group's figures summed over its members, the slow way."""
    led = d.ledger if isinstance(d, Desk) else d
    b = led.book(CID)
    used = held = count = 0
    for m in b.identity.members(pid):
        p = b.persons.get(m)
        if p is not None:
            used, held, count = used + p.used_fen, held + p.held_fen, count + p.count_total
    return used, held, count


def totals(d: Desk | Ledger, pid: str) -> tuple[int, int, int]:
    led = d.ledger if isinstance(d, Desk) else d
    t = led.book(CID).identity.totals(pid)
    assert t is not None
    return t.used_fen, t.held_fen, t.count_total


def test_the_group_beyond_its_maximum_declines_and_is_flagged_once():
    d = desk(cap_fen=10**9)
    for i in range(GROUP_SIZE_MAX):
        d.redeem(mine(f"m{i:03d}", device_id="shared"))
    b = d.ledger.book(CID)
    assert b.identity.size("m000") == GROUP_SIZE_MAX
    d.ledger.take_pending()
    out = d.redeem(mine("late-1", device_id="shared"))
    assert out.redemption is None
    assert [c for c, _ in out.reasons] == ["identity_group_full"]
    flagged = d.ledger.take_pending()
    assert flagged == [GroupFull(d.now_ms, CID, "m000", "late-1", GROUP_SIZE_MAX + 1)]
    # The next ones are declined too, and record nothing: no entry at all.
    for i in range(5):
        assert d.codes(mine(f"late-{i + 2}", device_id="shared")) == ["identity_group_full"]
    assert d.ledger.take_pending() == []
    assert b.identity.size("m000") == GROUP_SIZE_MAX and b.identity.find("late-1") == "late-1"
    assert b.identity.full == {"m000": (d.now_ms, GROUP_SIZE_MAX + 1)}
    # Someone else, and a member of the full group, are served as before.
    assert d.redeem(mine("other", device_id="own")).redemption is not None
    assert d.redeem(mine("m005", 2, device_id="shared")).redemption is not None
    # A late person without the shared device is a person of its own.
    assert d.redeem(mine("late-1", 9, device_id="late-own")).redemption is not None
    assert check_invariants(d.ledger) == []


def test_two_groups_are_not_joined_beyond_the_maximum():
    d = desk(cap_fen=10**9)
    half = GROUP_SIZE_MAX // 2 + 1
    for i in range(half):
        d.redeem(mine(f"a{i}", device_id="dev-a"))
        d.redeem(mine(f"b{i}", device_id="dev-b"))
    assert d.redeem(mine("bridge", device_id="dev-a", card_hash="x")).redemption  # joins a
    assert d.codes(mine("bridge", 2, card_hash="x", device_id="dev-b")) == ["identity_group_full"]
    b = d.ledger.book(CID)
    assert b.identity.size("a0") == half + 1 and b.identity.size("b0") == half


def test_an_entry_names_the_groups_it_joined_not_their_members():
    d = desk(cap_fen=10**9)
    for i in range(30):
        d.redeem(mine(f"m{i:02d}", device_id="shared"))
    d.redeem(mine("x", card_hash="card-x"))
    entries = d.ledger.take_pending()
    seen = [e for e in entries if isinstance(e, IdentifiersSeen)]
    assert all(e.linked in ([], ["m00"]) for e in seen)
    sizes = {len(encode(e)) for e in seen[1:30]}
    assert len(sizes) == 1, sizes  # the 2nd and the 30th member's entries are the same size
    d.redeem(mine("y", device_id="shared", card_hash="card-x"))  # joins two groups
    last = [e for e in d.ledger.take_pending() if isinstance(e, IdentifiersSeen)][-1]
    assert last.linked == ["m00", "x"]
    assert d.ledger.book(CID).identity.members("y")[:2] == ["m00", "m01"]


def test_a_ledger_whose_entries_list_every_member_replays_the_same():
    """Entries written before group totals listed every member newly linked."""
    d = desk()
    d.granted(mine("a", device_id="dev-1"))
    d.granted(mine("b", device_id="dev-1"))
    d.granted(mine("c", card_hash="k", device_id="dev-1"))
    entries = d.ledger.take_pending()
    old = [
        msgspec.structs.replace(e, linked=["a", "b"][: len(e.linked) + 1] if e.linked else [])
        if isinstance(e, IdentifiersSeen)
        else e
        for e in entries
    ]
    led = replay(d.settings, [encode(e) for e in old])
    assert person_view(led, CID, "c") == person_view(d.ledger, CID, "c")
    assert person_view(led, CID, "c")["linked_persons"] == ["a", "b"]


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["hold", "capture", "void"]),
        st.integers(0, 7),  # person
        st.sampled_from([None, "d1", "d2", "d3"]),  # device
        st.sampled_from([None, "c1", "c2"]),  # card
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ACTIONS)
def test_running_totals_equal_the_members_sums(actions):
    d = desk(cap_fen=10**9)
    held: list[str] = []
    n = 0
    for act, who, dev, card in actions:
        pid = f"p{who}"
        if act == "hold":
            n += 1
            ids = {k: v for k, v in (("device_id", dev), ("card_hash", card)) if v}
            out = d.redeem(mine(pid, n, **ids))
            if out.redemption is not None:
                held.append(out.redemption.id)
        elif held:
            rid = held.pop(0)
            d.capture(rid) if act == "capture" else d.void(rid)
    led = d.ledger
    pids = [p for p in led.book(CID).persons if led.book(CID).identity.totals(p)]
    for pid in pids:
        assert totals(led, pid) == sums(led, pid)
    again = replay(d.settings, [encode(e) for e in led.take_pending()])
    fresh = Ledger(d.settings)
    restore_snapshot(fresh, encode_snapshot(again, 1))
    for pid in pids:
        assert totals(again, pid) == totals(led, pid) == totals(fresh, pid)
        assert person_view(fresh, CID, pid) == person_view(led, CID, pid)


def test_members_and_totals_after_many_unions_are_linear():
    """Joining one new member at a time into a large group copies no member list (an
    old ledger may hold such a group: replaying it must not be quadratic)."""
    g = IdentityGroups()
    g.record("p0", [("device_id", "d")], lambda _: (1, 0, 1, {"2025-02-12": 1}))
    for i in range(1, 20_000):
        g.record(f"p{i}", [("device_id", "d")], lambda _: (1, 0, 1, {"2025-02-12": 1}))
    t = g.totals("p19999")
    assert t is not None and (t.size, t.used_fen, t.count_by_day) == (
        20_000,
        20_000,
        {"2025-02-12": 20_000},
    )
    assert g.members("p5", limit=3) == ["p0", "p1", "p2"]
    assert len(g.members("p5")) == 20_000
