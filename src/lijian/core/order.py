"""The order a platform or the payment channel submits (quotes and redemptions).

These are msgspec Structs so the HTTP adapter decodes JSON straight into the domain type
(strict types: a float where fen are expected is refused, unknown fields are refused).
msgspec is a pure data library: using it here brings no I/O into the core.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MAX_ITEMS_PER_ORDER = 500
MAX_QUANTITY = 100_000
MAX_PRICE_FEN = 10**11  # 1 billion CNY per unit: anything above is a client bug

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Fen = Annotated[int, msgspec.Meta(ge=0, le=MAX_PRICE_FEN)]


class Person(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    real_name_verified: bool
    device_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class Location(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    crs: Literal["gcj02", "wgs84", "bd09"]


class Address(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    adcode: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
    text: Annotated[str, msgspec.Meta(max_length=512)] | None = None


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
