"""The admission window's draw: commitment, HMAC keys, rounds, and the order they give.

The expected values are recomputed here with hashlib/hmac directly, the way anyone
verifying a published seed would (docs/FAIRNESS.md), not with lijian's functions."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from lijian.core.draw import commitment, draw_key, draw_order, is_seed, out_of_order, rounds

SEED = "00" * 32
CID = "chengdu-2025-spring"
DAY = "2025-02-12"


def verify_key(seed: str, person_key: str, round_no: int) -> str:
    msg = (CID + "\n" + DAY + "\n" + person_key + "\n" + str(round_no)).encode()
    return hmac.new(seed.encode("ascii"), msg, hashlib.sha256).hexdigest()


def test_commitment_is_sha256_of_the_seed_as_ascii():
    assert commitment(SEED) == "60e05bd1b195af2f94112fa7197a5c88289058840ce7c6df9693756bc6250f55"
    assert commitment(SEED) == hashlib.sha256(SEED.encode("ascii")).hexdigest()


def test_draw_key_is_the_documented_hmac():
    assert draw_key(SEED, CID, DAY, "p-1", 1) == (
        "3c51093801d88b9d1aa1f9d48d84dc0aeb20eb066d67c830e40e1bcee1c33d69"
    )
    assert draw_key(SEED, CID, DAY, "p-1", 2) == verify_key(SEED, "p-1", 2)


def test_seeds_are_64_lower_case_hex():
    assert is_seed("ab" * 32)
    assert not is_seed("AB" * 32) and not is_seed("ab" * 31) and not is_seed("zz" * 32)


def test_rounds_count_each_persons_requests_in_arrival_order():
    assert rounds(["a", "b", "a", "c", "b", "a"]) == [1, 1, 2, 1, 2, 3]


def test_order_is_round_by_round_then_by_key():
    arrivals = ["a", "b", "a", "c", "b", "a"]
    got = draw_order(SEED, CID, DAY, arrivals)
    rs = rounds(arrivals)
    expected = sorted(range(6), key=lambda i: (rs[i], verify_key(SEED, arrivals[i], rs[i])))
    assert got == expected
    # Round 1 (a, b, c) entirely before round 2 (a, b), before round 3 (a).
    assert [rs[i] for i in got] == [1, 1, 1, 2, 2, 3]
    assert got == [3, 0, 1, 4, 2, 5]


def test_another_seed_gives_another_order_of_the_same_arrivals():
    arrivals = [f"p-{i}" for i in range(20)]
    orders = {tuple(draw_order(f"{n:064x}", CID, DAY, arrivals)) for n in range(5)}
    assert len(orders) == 5


@given(st.lists(st.sampled_from("abcdefgh"), max_size=60), st.integers(0, 2**256 - 1))
def test_a_persons_second_request_never_beats_another_persons_first(arrivals, n):
    order = draw_order(f"{n:064x}", CID, DAY, arrivals)
    assert sorted(order) == list(range(len(arrivals)))
    rs = rounds(arrivals)
    seen_rounds = [rs[i] for i in order]
    assert seen_rounds == sorted(seen_rounds)
    # Each person's own requests keep their arrival order.
    for p in set(arrivals):
        mine = [i for i in order if arrivals[i] == p]
        assert mine == sorted(mine)


def test_out_of_order_names_a_grant_that_jumped_the_draw():
    drawn = ["r3", "r1", "r2"]
    assert out_of_order(drawn, ["r3", "r2"]) == []
    assert out_of_order(drawn, ["r1", "r3"]) == ["r3 was granted out of the draw's order (drawn 1)"]
    assert out_of_order(drawn, ["r9"]) == [
        "r9 was granted in the window's decision but did not arrive in it"
    ]
