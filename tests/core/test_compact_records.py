"""The compact records: fingerprints as bytes, pair-keyed indexes, a person's counts per
day in fields, strings shared between records (lijian.core.book, fingerprint, pair_index)."""

from __future__ import annotations

import hashlib

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from lijian.core.book import Person
from lijian.core.fingerprint import DIGEST_BYTES, packed, shown
from lijian.core.pair_index import KeyIndex, PairIndex
from lijian.core.redemption import Redemption, Refunded
from lijian.core.redemption_columns import RedemptionColumns, from_columns, to_columns
from lijian.core.status import KeyUse, RedemptionStatus


@given(st.text())
def test_any_fingerprint_reads_back_exactly(fp: str) -> None:
    assert shown(packed(fp)) == fp


@given(st.binary(min_size=32, max_size=32))
def test_a_hex_sha256_is_kept_as_its_32_bytes(digest: bytes) -> None:
    fp = digest.hex()
    assert packed(fp) == digest
    assert shown(packed(fp)) == fp


def test_other_fingerprints_are_never_32_bytes_long() -> None:
    assert packed("fp") == b"\xfffp"
    assert len(packed("a" * 31)) == DIGEST_BYTES + 1  # 0xFF twice: 32 would read as a digest
    assert packed("A" * 64) == b"\xff" + b"A" * 64  # upper-case hex is not the gateway's
    assert packed(hashlib.sha256(b"x").hexdigest()) != packed(hashlib.sha256(b"y").hexdigest())


def test_pair_index_reads_as_a_dict_of_pairs() -> None:
    ix: PairIndex[str] = PairIndex()
    ix[("jd", "o-1")] = "rd_1"
    ix[("jd", "o-2")] = "rd_2"
    ix[("meituan", "o-1")] = "rd_3"
    assert (ix.get(("jd", "o-1")), ix.get(("meituan", "o-1")), ix.get(("jd", "o-3"))) == (
        "rd_1",
        "rd_3",
        None,
    )
    assert ("jd", "o-2") in ix and ("meituan", "o-2") not in ix and ("tb", "o-1") not in ix
    assert sorted(ix.items()) == [
        (("jd", "o-1"), "rd_1"),
        (("jd", "o-2"), "rd_2"),
        (("meituan", "o-1"), "rd_3"),
    ]  # what a shard's order registry is reconciled with at start
    del ix[("jd", "o-1")]
    del ix[("meituan", "o-1")]
    assert len(ix) == 1 and list(ix) == [("jd", "o-2")]
    assert ix._by == {"jd": {"o-2": "rd_2"}}  # an emptied platform leaves no dict behind


def test_key_index_keeps_a_hold_as_its_redemption_id() -> None:
    keys = KeyIndex()
    keys[("c", "k1")] = (KeyUse.HOLD, "rd_1", "")
    keys[("c", "k2")] = (KeyUse.REFUND, "rd_1", "rf-1")
    keys.update([(("d", "k1"), (KeyUse.CLAIM, "v-1", ""))])
    assert keys.get(("c", "k1")) == (KeyUse.HOLD, "rd_1", "")
    assert keys.get(("c", "k2")) == (KeyUse.REFUND, "rd_1", "rf-1")
    assert keys.get(("d", "k1")) == (KeyUse.CLAIM, "v-1", "")
    assert keys.get(("d", "k2")) is None and len(keys) == 3
    keys.add_holds(["c"], ["k3"], ["rd_3"])
    assert keys.get(("c", "k3")) == (KeyUse.HOLD, "rd_3", "")
    assert keys._keys.get(("c", "k1")) == "rd_1"  # no tuple kept for a hold


def test_person_counts_per_day() -> None:
    p = Person("p-1")
    assert (p.count_on("2025-02-12"), p.count_by_day()) == (0, {})
    p.add_count("2025-02-12", 1)
    p.add_count("2025-02-12", 1)
    assert (p.day, p.day_count, p.earlier_days) == ("2025-02-12", 2, None)
    p.add_count("2025-02-13", 1)  # a later day: the earlier one moves to the dict
    p.add_count("2025-02-12", -1)  # a release of an earlier day's hold
    p.add_count("2025-02-11", 1)
    assert (p.day, p.day_count) == ("2025-02-13", 1)
    assert p.count_by_day() == {"2025-02-11": 1, "2025-02-12": 1, "2025-02-13": 1}
    assert [p.count_on(d) for d in ("2025-02-11", "2025-02-12", "2025-02-13", "2025-02-14")] == [
        1,
        1,
        1,
        0,
    ]


def _redemption(campaign_id: str, day: str, platform: str, client_id: str, sku: str) -> Redemption:
    return Redemption.new("rd_1", campaign_id, day, "p-1", platform, "o-1", 12_900, 3_720, False,
                          1, 2, ((sku, 1, 12_900),), packed("fp"), client_id, "k-1")  # fmt: skip


def test_records_share_their_campaign_day_platform_client_and_sku() -> None:
    # Strings made at run time (as a decoder makes them), equal but distinct objects.
    a = _redemption(*("".join(["ben", "ch"]), "2025-02-" + "12", "j" + "d", "c" + "1", "S-1"))
    b = _redemption(*("".join(["be", "nch"]), "2025-02-" + "12", "j" + "d", "c" + "1", "S-1"))
    for field in ("campaign_id", "day", "platform", "client_id"):
        assert getattr(a, field) is getattr(b, field), field
    assert a.lines[0][0] is b.lines[0][0]
    assert a.where is b.where  # one object for what they share, the hold's TTL with it
    assert a.line is a.lines[0][0]  # one unit that is the whole order: its SKU alone
    assert a.lines == (("S-1", 1, 12_900),) and a.expires_at_ms == 2
    assert (a.payable_fen, a.discount_fen, a.fingerprint) == (12_900, 3_720, packed("fp"))


def test_a_snapshot_decodes_to_shared_strings_and_equal_records() -> None:
    r = _redemption("bench", "2025-02-12", "jd", "c1", "S-1")
    blob = msgspec.msgpack.encode(to_columns([r, r], {"bench": {"p-1": 0}}))
    x, y = from_columns(msgspec.msgpack.decode(blob, type=RedemptionColumns), ["p-1"])
    assert x == r and y == r
    assert x.day is y.day and x.platform is y.platform and x.lines[0][0] is y.lines[0][0]
    assert x.where is r.where  # the one shared before the snapshot was written


def test_a_refund_keeps_the_capture_time_and_an_order_of_several_units_its_lines() -> None:
    r = _redemption("bench", "2025-02-12", "jd", "c1", "S-1")
    assert (r.captured_ms, r.ended_ms, r.returned_payable_fen, r.refunds) == (None, None, 0, ())
    r.status, r.captured_ms = RedemptionStatus.CAPTURED, 5
    assert (r.captured_ms, r.closed) == (5, 5)
    r.returned_payable_fen += 4_300  # the first refund: its figures take the time's field
    r.status = RedemptionStatus.PARTIALLY_REFUNDED
    assert (r.captured_ms, r.returned_payable_fen, r.card_refunded_fen) == (5, 4_300, 0)
    assert r.closed == Refunded(5, 4_300)
    blob = msgspec.msgpack.encode(r)
    assert msgspec.msgpack.decode(blob, type=Redemption) == r
    two = Redemption.new("rd_2", "bench", "2025-02-12", "p-1", "jd", "o-2", 25_800, 3_720, True,
                         1, 2, (("S-1", 2, 25_800),), packed("fp"), "c1", "k-2")  # fmt: skip
    assert two.line == (("S-1", 2, 25_800),) and two.lines is two.line and two.capped
