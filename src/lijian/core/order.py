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


# The identifiers of an order's person are keyed by the engine before anything stores
# them (lijian.core.keyed), but the raw numbers must not reach it at all: a value shaped
# like a mainland mobile number (11 digits 1[3-9]…, with or without +86 / 86), an
# 18-character resident ID number (17 digits and a digit or X) or a 16-19 digit bank card
# number is refused by the pattern (422 naming the field) before anything is stored;
# a 13-15 digit number with a valid Luhn check digit (a shorter card number) by
# ``Person.__post_init__``, which the pattern cannot express. The channel sends a hash
# (or any opaque token) instead.
RAW_NUMBER_PATTERN = (
    r"^(?![0-9]{16,19}(?![\s\S]))(?![0-9]{17}[Xx](?![\s\S]))"
    r"(?!(?:\+?86)?1[3-9][0-9]{9}(?![\s\S]))"
)
IDENTIFIER_PATTERN = RAW_NUMBER_PATTERN + TEXT_PATTERN[1:]
IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)
CARD_DIGITS_MIN = 13  # the shortest bank card numbers (ISO/IEC 7812)
SHORT_CARD_RE = re.compile(r"[0-9]{13,15}")


def identifier_meta(max_length: int) -> msgspec.Meta:
    """A contract string that is not a raw phone, ID or card number (RAW_NUMBER_PATTERN)."""
    return msgspec.Meta(
        max_length=max_length,
        pattern=IDENTIFIER_PATTERN,
        description="an opaque identifier or the channel's hash, never a raw phone, ID or "
        "bank card number",
    )


def luhn_valid(digits: str) -> bool:
    """The Luhn check of a bank card number (ISO/IEC 7812): every second digit from the
    right doubled, the sum a multiple of 10."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def raw_number_problem(value: str | None) -> str | None:
    """Why ``value`` is a raw number the pattern does not catch (a 13-15 digit card
    number with a valid check digit), or None."""
    if value and SHORT_CARD_RE.fullmatch(value) and luhn_valid(value):
        return "it looks like a bank card number (13-15 digits, valid Luhn check digit)"
    return None


# A device's serial number (SN, IMEI) on a trade-in item: 1-64 printable ASCII
# characters (U+0020-U+007E), compared exactly (lijian.core.items).
SERIAL_LEN_MAX = 64
SERIAL_PATTERN = r"^[\x20-\x7e]*(?![\s\S])"

Id = Annotated[str, text_meta(ID_LEN_MAX, min_length=1)]
Serial = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=SERIAL_LEN_MAX,
        pattern=SERIAL_PATTERN,
        description="the device's serial number (SN or IMEI): 1-64 printable ASCII characters; "
        "a trade-in campaign subsidises each serial once",
        examples=["SN-C02XG0FDH7JY"],
    ),
]
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

    def __post_init__(self) -> None:
        # msgspec turns this into a ValidationError at ``$.person``; the message names
        # the field (http.problems.field_path reads "raw number in field `…`").
        if self.device_id is None and self.card_hash is None and self.phone_hash is None:
            return  # nothing to check: the common person of a rush, on the hot path
        for name in ("device_id", "card_hash", "phone_hash"):
            why = raw_number_problem(getattr(self, name))
            if why:
                raise ValueError(
                    f"raw number in field `{name}`: {why}; send the channel's hash instead"
                )


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
    # One device: an item with a serial is one unit (lijian.core.items refuses others).
    serial: Serial | None = None


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
    voucher_id: Id | None = None  # [claims] mode = "claim": the claimed voucher it pays with


class RefundItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]


class RefundRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refund_id: Id
    items: Annotated[list[RefundItem], msgspec.Meta(max_length=MAX_ITEMS_PER_ORDER)] | None = None
    payable_fen: Annotated[int, msgspec.Meta(ge=1, le=MAX_PRICE_FEN)] | None = None
