"""The order and the 201 answer as msgspec Structs (used by Litestar, Starlette, raw ASGI)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from common import payable_fen, redemption_fields

Fen = Annotated[int, msgspec.Meta(ge=0)]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Person(msgspec.Struct, forbid_unknown_fields=True):
    id: Ident
    real_name_verified: bool
    device_id: str | None = None


class DeviceLocation(msgspec.Struct, forbid_unknown_fields=True):
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    crs: Literal["gcj02", "wgs84", "bd09"]


class DeliveryAddress(msgspec.Struct, forbid_unknown_fields=True):
    adcode: Annotated[str, msgspec.Meta(pattern=r"^\d{6}$")]
    text: str | None = None


class Item(msgspec.Struct, forbid_unknown_fields=True):
    sku: Ident
    quantity: Annotated[int, msgspec.Meta(gt=0, le=10_000)]
    unit_price_fen: Fen
    platform_discount_fen: Fen = 0


class Order(msgspec.Struct, forbid_unknown_fields=True):
    campaign_id: Ident
    platform: Ident
    order_id: Ident
    payment_channel: Ident
    person: Person
    items: Annotated[list[Item], msgspec.Meta(min_length=1, max_length=200)]
    device_location: DeviceLocation | None = None
    delivery_address: DeliveryAddress | None = None
    other_government_subsidy: bool = False


class Redemption(msgspec.Struct):
    id: str
    status: str
    campaign_id: str
    platform: str
    order_id: str
    person_id: str
    payable_fen: int
    discount_fen: int
    pay_fen: int
    capped: bool
    expires_at: str
    tranche_date: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    code: str
    detail: str = ""


def redemption_for(order: Order) -> Redemption:
    payable = payable_fen(
        [(i.quantity, i.unit_price_fen, i.platform_discount_fen) for i in order.items]
    )
    return Redemption(
        status="held",
        campaign_id=order.campaign_id,
        platform=order.platform,
        order_id=order.order_id,
        person_id=order.person.id,
        **redemption_fields(payable),  # type: ignore[arg-type]
    )


def problem(status: int, code: str, detail: str) -> bytes:
    return msgspec.json.encode(
        Problem(
            type=f"https://lijian.example/problems/{code}",
            title=code.replace("_", " "),
            status=status,
            code=code,
            detail=detail,
        )
    )
