"""The engine's keyed memo (lijian.core.keyed.KeyedMemo): the same keyed orders as
``keyed_order``, from memory for a person seen before, and bounded."""

from __future__ import annotations

import msgspec
import pytest

from lijian.core import keyed as keyed_module
from lijian.core.keyed import KeyedMemo, keyed, keyed_order
from lijian.core.order import Address, Order, Person
from tests.support import order

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def person(n: int) -> Person:
    return Person(f"p-{n}", True, f"dev-{n}", f"card-{n}", None)


def with_person(n: int, p: int) -> Order:
    return msgspec.structs.replace(order(n), person=person(p))


def test_the_memo_keys_as_keyed_order_does_first_time_and_again() -> None:
    memo = KeyedMemo(KEY)
    addr = Address("510104", "  Tianfu   Square 1 ")
    for n in (1, 2, 1, 1, 2):
        o = msgspec.structs.replace(order(n, delivery_address=addr), person=person(n))
        assert memo.keyed_order(o) == keyed_order(KEY, o)
    assert len(memo) == 2
    assert memo.keyed("device_id", "dev-1") == keyed(KEY, "device_id", "dev-1")
    got = memo.keyed_order(with_person(3, 1))
    assert got.person.device_id == keyed(KEY, "device_id", "dev-1")
    assert got.person.card_hash == keyed(KEY, "card_hash", "card-1")
    assert got.person.phone_hash is None


def test_a_memo_under_another_key_keys_otherwise() -> None:
    o = with_person(1, 1)
    assert KeyedMemo(OTHER_KEY).keyed_order(o) == keyed_order(OTHER_KEY, o)
    assert KeyedMemo(OTHER_KEY).keyed_order(o) != KeyedMemo(KEY).keyed_order(o)


def test_the_memo_starts_over_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyed_module, "MEMO_MAX", 3)
    memo = KeyedMemo(KEY)
    for n in range(3):
        memo.keyed_order(with_person(n, n))
    assert len(memo) == 3
    o = with_person(9, 9)
    assert memo.keyed_order(o) == keyed_order(KEY, o)
    assert len(memo) == 1


def test_a_person_without_identifiers_is_not_remembered() -> None:
    """Nothing of such a person's is keyed: the order comes back as keyed_order makes it
    (its address text keyed), and the memo holds nothing for it."""
    memo = KeyedMemo(KEY)
    addr = Address("510104", "  Tianfu   Square 1 ")
    plain = Person("p-7", True)
    o = msgspec.structs.replace(order(7, delivery_address=addr), person=plain)
    got = memo.keyed_order(o)
    assert got == keyed_order(KEY, o) and got.person is plain
    assert got.delivery_address is not None
    assert got.delivery_address.text == keyed(KEY, "address_text", "Tianfu Square 1")
    assert len(memo) == 0
    memo.keyed_order(with_person(8, 8))  # one with identifiers is
    assert len(memo) == 1
