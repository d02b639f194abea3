"""The order a platform or the payment channel submits (quotes and redemptions).

These are msgspec Structs so the HTTP adapter decodes JSON straight into the domain type
(strict types: a float where fen are expected is refused, unknown fields are refused).
msgspec is a pure data library: using it here brings no I/O into the core.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

MAX_ITEMS_PER_ORDER = 500
MAX_QUANTITY = 100_000
MAX_PRICE_FEN = 10**11  # 1 billion CNY per unit: anything above is a client bug

ID_LEN_MAX = 128
DEVICE_ID_LEN_MAX = 128
ADDRESS_TEXT_LEN_MAX = 512

# Every string of the contract: no control character (U+0000-U+001F, U+007F; PostgreSQL
# text cannot hold NUL, and none belongs in an id or a name). The end is "not followed by
# any character", not ``$`` (in Python ``$`` also matches before a trailing newline) nor
# ``\Z`` (not ECMA-262: the pattern is published in /openapi.json). Lone surrogates never
# get here: msgspec refuses ``"\ud800"`` while parsing (problems.lone_surrogate_field
# turns that into a 422), and JSON must be valid UTF-8.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*(?![\s\S])"
TEXT_RE = re.compile(TEXT_PATTERN)
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def text_meta(max_length: int, min_length: int = 0) -> msgspec.Meta:
    """The constraint of a contract string: ``TEXT_PATTERN``, a length in code points."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=TEXT_PATTERN)


def is_text(value: str, max_length: int = ID_LEN_MAX) -> bool:
    """What ``text_meta(max_length)`` accepts, and no lone surrogate either (for strings
    that do not come through msgspec's JSON decoder, such as path parameters)."""
    return (
        len(value) <= max_length
        and TEXT_RE.match(value) is not None
        and (value.isascii() or _SURROGATE_RE.search(value) is None)
    )


# The identifiers of ``[identity] link_by`` are stored as given, so they must never be
# the raw numbers: an 18-character resident ID number (17 digits and a digit or X) or a
# 16-19 digit bank card number is refused (422 naming the field) before anything is
# stored. The channel sends a hash (or any opaque token) instead.
RAW_NUMBER_PATTERN = r"^(?![0-9]{16,19}(?![\s\S]))(?![0-9]{17}[Xx](?![\s\S]))"
IDENTIFIER_PATTERN = RAW_NUMBER_PATTERN + TEXT_PATTERN[1:]
IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)


def identifier_meta(max_length: int) -> msgspec.Meta:
    """A contract string that is not a raw ID or card number (see RAW_NUMBER_PATTERN)."""
    return msgspec.Meta(
        max_length=max_length,
        pattern=IDENTIFIER_PATTERN,
        description="an opaque identifier, never a raw ID number or bank card number",
    )


Id = Annotated[str, text_meta(ID_LEN_MAX, min_length=1)]
DeviceId = Annotated[str, identifier_meta(DEVICE_ID_LEN_MAX)]
IdentifierHash = Annotated[str, identifier_meta(ID_LEN_MAX)]
AddressText = Annotated[str, text_meta(ADDRESS_TEXT_LEN_MAX)]
Fen = Annotated[int, msgspec.Meta(ge=0, le=MAX_PRICE_FEN)]


class Person(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    real_name_verified: bool
    device_id: DeviceId | None = None
    card_hash: IdentifierHash | None = None  # the channel's hash of the bank card number
    phone_hash: IdentifierHash | None = None  # the channel's hash of the phone number


class Location(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    crs: Literal["gcj02", "wgs84", "bd09"]


class Address(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    adcode: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}(?![\s\S])")]
    text: AddressText | None = None


class Item(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]
    unit_price_fen: Fen
    platform_discount_fen: Fen = 0


class Order(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    campaign_id: Id
    platform: Id
    order_id: Id
    payment_channel: Id
    person: Person
    items: Annotated[list[Item], msgspec.Meta(min_length=1, max_length=MAX_ITEMS_PER_ORDER)]
    device_location: Location | None = None
    delivery_address: Address | None = None
    other_government_subsidy: bool = False


class RefundItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]


class RefundRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refund_id: Id
    items: Annotated[list[RefundItem], msgspec.Meta(max_length=MAX_ITEMS_PER_ORDER)] | None = None
    payable_fen: Annotated[int, msgspec.Meta(ge=1, le=MAX_PRICE_FEN)] | None = None
