"""The ledger key's uses: identifiers keyed before they are stored, and the key's id.

Why: the identifiers of ``[identity] link_by`` (a device id, the channel's hash of a card
or a phone number) link persons only by equality, so the ledger needs no more than a
value that is equal when they are equal. An unkeyed hash of a phone number is reversed by
trying the billion numbers there are; an HMAC under a secret the ledger does not hold is
not. So the engine keys every identifier it receives, before anything stores or logs it:
``hex(HMAC-SHA256(key, kind "\\n" value))``. Equal values stay equal (the groups are the
same as with the values sent); the kind is in the message so that one value under two
kinds gives two unrelated keyed values.

The key is 32 random bytes that live beside the ledger, never in it (lijian.ledger_key).
The ledger records only its id (``LedgerKeyed``), ``hex(HMAC-SHA256(key, KEY_ID_MESSAGE))``,
so that a start with another key, which would key the same value differently and split
every group, is refused. Pure: hmac and hashlib only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import msgspec

from lijian.core.order import Order, Person

KEY_BYTES = 32
KEY_ID_MESSAGE = b"lijian ledger key id v1"


def key_id(key: bytes) -> str:
    """What the ledger stores of its key: an HMAC of a constant under it (hex)."""
    assert len(key) == KEY_BYTES, "a ledger key is 32 bytes"
    return hmac.new(key, KEY_ID_MESSAGE, hashlib.sha256).hexdigest()


def keyed(key: bytes, kind: str, value: str) -> str:
    """The stored form of an identifier: hex(HMAC-SHA256(key, kind "\\n" value))."""
    msg = f"{kind}\n{value}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def keyed_order(key: bytes, order: Order) -> Order:
    """The order with its person's identifiers and its delivery address text keyed: what
    the ledger decides on and stores (the engine calls this first, for redemptions and
    quotes alike). The address text is keyed after its spaces are collapsed, so that
    ``shared_identity_cluster`` (core/detectors.py) sees one address however it is
    spaced; the adcode stays as sent (the rules check it against the city)."""
    return _keyed_order(lambda kind, value: keyed(key, kind, value), order)


def _keyed_order(key_of: Callable[[str, str], str], order: Order) -> Order:
    order = _keyed_address(key_of, order)
    p = order.person
    if not (p.device_id or p.card_hash or p.phone_hash):
        return order
    person = msgspec.structs.replace(
        p,
        device_id=key_of("device_id", p.device_id) if p.device_id else p.device_id,
        card_hash=key_of("card_hash", p.card_hash) if p.card_hash else p.card_hash,
        phone_hash=key_of("phone_hash", p.phone_hash) if p.phone_hash else p.phone_hash,
    )
    return msgspec.structs.replace(order, person=person)


def _keyed_address(key_of: Callable[[str, str], str], order: Order) -> Order:
    a = order.delivery_address
    if a is not None and a.text:
        text = " ".join(a.text.split())
        address = msgspec.structs.replace(a, text=key_of("address_text", text))
        order = msgspec.structs.replace(order, delivery_address=address)
    return order


MEMO_MAX = 2_000_000  # persons remembered (~270 B each, measured: ~0.55 GB at most)


class KeyedMemo:
    """``keyed_order`` under one key, fast: the engine's own, made with its key.

    Two savings, the same values. The key's HMAC state is set up once and copied for
    each identifier (``hmac.new`` sets it up again on every call: most of an HMAC's cost
    for a short value). And a person comes back with every order, with the same
    identifiers, so its keyed form is remembered, by the person as sent (frozen, so
    equal persons key the same): an order from a person seen before is keyed without an
    HMAC. A memo is never shared between keys (a new key starts an empty one) and it is
    bounded: at ``MEMO_MAX`` persons it starts over (forgetting costs a recomputation,
    never a different value)."""

    __slots__ = ("_hmac", "_persons")

    def __init__(self, key: bytes) -> None:
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)  # copied, never updated
        self._persons: dict[Person, Person] = {}  # as sent → keyed

    def __len__(self) -> int:
        return len(self._persons)

    def keyed(self, kind: str, value: str) -> str:
        """``keyed(key, kind, value)``: the same message, under the same key."""
        h = self._hmac.copy()
        h.update(f"{kind}\n{value}".encode())
        return h.hexdigest()

    def keyed_order(self, order: Order) -> Order:
        """``keyed_order`` under this memo's key."""
        p = order.person
        if not (p.device_id or p.card_hash or p.phone_hash):
            # Nothing of the person's to key: nothing remembered (a person of a campaign
            # that links no identities cost the memo ~120 B for its own copy).
            return _keyed_address(self.keyed, order)
        person = self._persons.get(p)
        if person is None:
            person = _keyed_order(self.keyed, order).person
            if len(self._persons) >= MEMO_MAX:
                self._persons.clear()
            self._persons[p] = person
        if person is not p:
            order = msgspec.structs.replace(order, person=person)
        return _keyed_address(self.keyed, order)
