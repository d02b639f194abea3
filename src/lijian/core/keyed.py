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

import msgspec

from lijian.core.order import Order

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
    p = order.person
    a = order.delivery_address
    if a is not None and a.text:
        text = " ".join(a.text.split())
        address = msgspec.structs.replace(a, text=keyed(key, "address_text", text))
        order = msgspec.structs.replace(order, delivery_address=address)
    if not (p.device_id or p.card_hash or p.phone_hash):
        return order
    person = msgspec.structs.replace(
        p,
        device_id=keyed(key, "device_id", p.device_id) if p.device_id else p.device_id,
        card_hash=keyed(key, "card_hash", p.card_hash) if p.card_hash else p.card_hash,
        phone_hash=keyed(key, "phone_hash", p.phone_hash) if p.phone_hash else p.phone_hash,
    )
    return msgspec.structs.replace(order, person=person)
