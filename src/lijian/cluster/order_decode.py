"""An order's arguments decoded from the wire as ``core/order.py``'s strict types decode
them, at a fraction of the cost for the orders a rush is made of.

msgspec checks a ``pattern=`` constraint by calling a Python regular expression on each
string (seven of them in a plain order) and runs ``Person.__post_init__``: most of what
a forwarded decline's arguments cost the sequencer. Here the arguments are first decoded
with twins of the order's types that have every constraint but the patterns and the
raw-number check (lengths, ranges, literals, unknown fields, types: msgspec's own, in C),
then each string is checked by a condition that *implies* its pattern (printable ASCII
implies "no control character"; an identifier with a character that is neither a digit,
``+`` nor ``X`` cannot be a raw phone, ID or card number), and the real ``Order`` is built
from the twin's fields. Whenever the twin refuses, or a string is not plainly one of
those (non-ASCII text, an all-digit identifier, an empty one …), the arguments are decoded
again by the strict decoder, whose result or error is the answer: an order that decodes
here decodes to an equal ``Order`` there, and every refusal is the strict decoder's own
(same exception, same message). ``tests/cluster/test_order_decode.py`` holds the twins to
the real types' constraints and both decoders to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import msgspec

from lijian.core.order import (
    ADDRESS_TEXT_LEN_MAX,
    DEVICE_ID_LEN_MAX,
    ID_LEN_MAX,
    MAX_ITEMS_PER_ORDER,
    MAX_QUANTITY,
    SERIAL_LEN_MAX,
    Address,
    Fen,
    Item,
    Location,
    Order,
    Person,
)

# The real types' constraints without their patterns (core/order.py: Id, DeviceId,
# IdentifierHash, Serial, AddressText, the adcode's).
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_LEN_MAX)]
_DeviceId = Annotated[str, msgspec.Meta(max_length=DEVICE_ID_LEN_MAX)]
_IdentifierHash = Annotated[str, msgspec.Meta(max_length=ID_LEN_MAX)]
_Serial = Annotated[str, msgspec.Meta(min_length=1, max_length=SERIAL_LEN_MAX)]
_AddressText = Annotated[str, msgspec.Meta(min_length=0, max_length=ADDRESS_TEXT_LEN_MAX)]
_Quantity = Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]


class _Person(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: _Id
    real_name_verified: bool
    device_id: _DeviceId | None = None
    card_hash: _IdentifierHash | None = None
    phone_hash: _IdentifierHash | None = None


class _Address(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    adcode: str
    text: _AddressText | None = None


class _Item(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: _Id
    quantity: _Quantity
    unit_price_fen: Fen
    platform_discount_fen: Fen = 0
    serial: _Serial | None = None


class _Order(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    campaign_id: _Id
    platform: _Id
    order_id: _Id
    payment_channel: _Id
    person: _Person
    items: Annotated[list[_Item], msgspec.Meta(min_length=1, max_length=MAX_ITEMS_PER_ORDER)]
    device_location: Location | None = None  # no pattern: the real type
    delivery_address: _Address | None = None
    other_government_subsidy: bool = False
    voucher_id: _Id | None = None


TWINS: dict[type[msgspec.Struct], type[msgspec.Struct]] = {
    Order: _Order, Person: _Person, Item: _Item, Address: _Address,
}  # fmt: skip

# The characters a raw phone, ID or card number is made of (RAW_NUMBER_PATTERN,
# SHORT_CARD_RE): a string with any other character is none of them.
_RAW_NUMBER_CHARS = "0123456789+Xx"


def _opaque(s: str) -> bool:
    """An identifier IDENTIFIER_PATTERN accepts and ``Person.__post_init__`` does not
    refuse: printable ASCII, with a character no raw number has."""
    return s.isascii() and s.isprintable() and s.strip(_RAW_NUMBER_CHARS) != ""


def _exact(o: _Order) -> Order | None:
    """The real ``Order`` of a twin whose every string is plainly valid; None when one
    is not plainly so (the strict decoder then decides). Printable ASCII (U+0020-U+007E)
    implies TEXT_PATTERN (no U+0000-U+001F, U+007F) and is exactly SERIAL_PATTERN; the
    strings are joined to be checked at once (on the hot path)."""
    p = o.person
    texts = [o.campaign_id, o.platform, o.order_id, o.payment_channel, p.id]
    if o.voucher_id is not None:
        texts.append(o.voucher_id)
    items = []
    for i in o.items:
        texts.append(i.sku)
        if i.serial is not None:
            texts.append(i.serial)
        items.append(Item(i.sku, i.quantity, i.unit_price_fen, i.platform_discount_fen, i.serial))
    a = o.delivery_address
    address = None
    if a is not None:
        code = a.adcode  # exactly ^[0-9]{6}(?![\s\S]): six ASCII digits
        if not (len(code) == 6 and code.isascii() and code.isdigit()):
            return None
        if a.text is not None:
            texts.append(a.text)
        address = Address(code, a.text)
    joined = "".join(texts)
    if not (joined.isascii() and joined.isprintable()):
        return None
    if not (
        (p.device_id is None or _opaque(p.device_id))
        and (p.card_hash is None or _opaque(p.card_hash))
        and (p.phone_hash is None or _opaque(p.phone_hash))
    ):
        return None
    # Person.__post_init__ runs here and accepts: its identifiers are opaque.
    person = Person(p.id, p.real_name_verified, p.device_id, p.card_hash, p.phone_hash)
    return Order(
        o.campaign_id, o.platform, o.order_id, o.payment_channel, person, items,
        o.device_location, address, o.other_government_subsidy, o.voucher_id,
    )  # fmt: skip


def order_decoder(*rest: object) -> Callable[[bytes], tuple[object, ...]]:
    """Decode msgpack arguments ``(Order, *rest)`` exactly as
    ``msgspec.msgpack.Decoder(tuple[Order, *rest])`` does: the same value, or the same
    error (``rest``: decoded alike by both)."""
    strict = msgspec.msgpack.Decoder(tuple[(Order, *rest)]).decode  # type: ignore[valid-type]
    twin = msgspec.msgpack.Decoder(tuple[(_Order, *rest)]).decode  # type: ignore[valid-type]

    def decode(raw: bytes) -> tuple[object, ...]:
        try:
            args: tuple[object, ...] = twin(raw)
        except Exception:  # (the strict decoder refuses it too: its error is the answer)
            return strict(raw)
        first = args[0]
        assert isinstance(first, _Order)
        order = _exact(first)
        if order is None:
            return strict(raw)
        return (order, *args[1:])

    return decode
