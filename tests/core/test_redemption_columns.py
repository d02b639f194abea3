"""A snapshot's redemptions and persons as columns (lijian.core.redemption_columns,
person_columns) and the pair indexes filled from columns (PairIndex.fill): the same
records and the same indexes as record by record, whatever the mix of campaigns,
platforms, clients and fates."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from lijian.core.book import PendingRestore, Person
from lijian.core.fingerprint import packed
from lijian.core.pair_index import PairIndex
from lijian.core.person_columns import PersonColumns
from lijian.core.person_columns import from_columns as persons_from_columns
from lijian.core.person_columns import to_columns as persons_to_columns
from lijian.core.redemption import Redemption, Refund
from lijian.core.redemption_columns import (
    RedemptionColumns,
    active_columns,
    expiries,
    from_columns,
    per_where,
    to_columns,
)
from lijian.core.status import RedemptionStatus, RefundKind

S = RedemptionStatus
PERSONS = {"a": ["p-1", "p-2"], "b": ["p-1", "p-3"]}  # campaign → its persons, in order


def _places() -> dict[str, dict[str, int]]:
    places, offset = {}, 0
    for cid, pids in PERSONS.items():
        places[cid] = {pid: offset + i for i, pid in enumerate(pids)}
        offset += len(pids)
    return places


def _records() -> list[Redemption]:
    out = []
    fates = [S.HELD, S.CAPTURED, S.VOIDED, S.EXPIRED, S.PARTIALLY_REFUNDED, S.HELD]
    for i, fate in enumerate(fates * 2):
        cid = "ab"[i % 2]
        r = Redemption.new(
            f"rd_{i}", cid, "2025-02-12" if i < 6 else "2025-02-13", PERSONS[cid][i // 3 % 2],
            ("jd", "vip")[i % 4 // 2], f"o-{i % 5}", 12_900 + i, 1_935 + i, cid == "a",
            100 + i, 100 + i + 900_000,
            (("S-1", 1, 12_900 + i),) if i % 3 else (("S-1", 2, 6_000), ("S-2", 1, 900 + i)),
            packed(f"fp-{i}"), "c1" if cid == "a" else "c2", f"k-{i}",
        )  # fmt: skip
        r.status = fate
        if fate in (S.VOIDED, S.EXPIRED):
            r.ended_ms = 500 + i
        elif fate != S.HELD:
            r.captured_ms = 400 + i
        if fate == S.PARTIALLY_REFUNDED:
            r.returned_payable_fen, r.card_refunded_fen = 4_300, 3_000
            r.refunds = (
                Refund("rf-1", 600, RefundKind.PARTIAL, 4_300, 3_000, 1_300, 0, None,
                       packed("fq"), "c1", "rk-1", (S.PARTIALLY_REFUNDED, 4_300, 3_000, 1_300, 1)),
            )  # fmt: skip
        out.append(r)
    return out


def test_columns_give_back_equal_records_in_order_with_shared_strings() -> None:
    reds = _records()
    blob = msgspec.msgpack.encode(to_columns(reds, _places()))
    cols = msgspec.msgpack.decode(blob, type=RedemptionColumns)
    assert len(cols.wheres) == len({r.where for r in reds}) < len(reds)  # each where once
    assert len(cols.lines) == len({r.line for r in reds}) < len(reds)  # each line once
    person_ids = ["".join(["p-", n]) for n in "1213"]  # decoded: distinct copies of the ids
    back = from_columns(cols, person_ids)
    assert back == reds
    assert [r.id for r in back] == [f"rd_{i}" for i in range(12)]
    places = _places()
    for r in back:  # each names its person with its own campaign's person's string
        assert r.person_id is person_ids[places[r.campaign_id][r.person_id]]
    for r, x in zip(reds, back, strict=True):  # one Where shared by the records of one value
        assert [r.where == o.where for o in reds] == [x.where is o.where for o in back]
    refunded = [r for r in back if r.ever_refunded]
    assert [r.status for r in refunded] == [S.PARTIALLY_REFUNDED] * 2
    assert refunded[0].refunds == reds[4].refunds and refunded[0].card_refunded_fen == 3_000


def test_the_indexes_columns_are_what_each_record_says() -> None:
    reds = _records()
    cols = msgspec.msgpack.decode(
        msgspec.msgpack.encode(to_columns(reds, _places())), type=RedemptionColumns
    )
    back = from_columns(cols, [p for pids in PERSONS.values() for p in pids])
    platforms, orders, ids = active_columns(cols, lambda w: w.platform)
    live = [r for r in reds if r.status not in (S.VOIDED, S.EXPIRED)]
    assert list(zip(platforms, orders, ids, strict=True)) == [
        (r.platform, r.order_id, r.id) for r in live
    ]
    assert per_where(cols, lambda w: w.client_id) == [r.client_id for r in reds]
    held = [r for r in back if r.status == S.HELD]
    assert expiries(cols) == [(r.expires_at_ms, r.id) for r in held]
    assert len(live) == 8 and len(held) == 4


def test_no_redemptions_make_empty_columns() -> None:
    cols = to_columns([], {})
    assert cols == RedemptionColumns([], [], [], [], [], [], [], [], [], [], [], [])
    assert from_columns(cols, []) == []


pairs = st.lists(
    st.tuples(
        st.sampled_from(["jd", "vip", "tb"]),
        st.sampled_from(["o1", "o2", "o3", "o4"]),
        st.integers(0, 9),
    ),
    max_size=40,
)


@given(pairs, pairs)
def test_fill_is_update_of_the_same_pairs_in_the_same_order(before, added) -> None:
    """The same entries, the same values for repeated pairs (the last), the same order of
    platforms and of orders within each: what iterating the index shows."""
    one: PairIndex[int] = PairIndex(((a, b), v) for a, b, v in before)
    two: PairIndex[int] = PairIndex(((a, b), v) for a, b, v in before)
    one.update(((a, b), v) for a, b, v in added)
    two.fill([a for a, _, _ in added], [b for _, b, _ in added], [v for _, _, v in added])
    assert list(two.items()) == list(one.items())
    assert list(two._by) == list(one._by)


def test_persons_as_columns_come_back_equal_with_one_string_per_day() -> None:
    one = Person("p-1", 3_000, 0, "2025-02-13", 1, {"2025-02-12": 2})
    two = Person("p-2", 0, 1_935, "2025-02-13", 1, None, [PendingRestore(9, "rd_1", "rf-1", 500)])
    three = Person("p-3")  # no day counted (its only hold voided)
    persons = [one, two, three]
    blob = msgspec.msgpack.encode(persons_to_columns(persons))
    cols = msgspec.msgpack.decode(blob, type=PersonColumns)
    assert cols.days == ["2025-02-13", None] and cols.day_of == [0, 0, 1]
    back = persons_from_columns(cols)
    assert back == persons
    assert back[0].day is back[1].day  # decoded once, shared
    assert [p.person_id for p in back] == cols.ids and back[0].person_id is cols.ids[0]
    assert persons_from_columns(persons_to_columns([])) == []
