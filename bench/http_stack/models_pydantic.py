"""The same order and answer as pydantic v2 models (used by FastAPI)."""

from __future__ import annotations

from typing import Annotated, Literal

from common import payable_fen, redemption_fields
from pydantic import BaseModel, ConfigDict, Field

Fen = Annotated[int, Field(ge=0, strict=True)]
Ident = Annotated[str, Field(min_length=1, max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Person(_Strict):
    id: Ident
    real_name_verified: bool
    device_id: str | None = None


class DeviceLocation(_Strict):
    lng: Annotated[float, Field(ge=-180, le=180)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    crs: Literal["gcj02", "wgs84", "bd09"]


class DeliveryAddress(_Strict):
    adcode: Annotated[str, Field(pattern=r"^\d{6}$")]
    text: str | None = None


class Item(_Strict):
    sku: Ident
    quantity: Annotated[int, Field(gt=0, le=10_000, strict=True)]
    unit_price_fen: Fen
    platform_discount_fen: Fen = 0


class Order(_Strict):
    campaign_id: Ident
    platform: Ident
    order_id: Ident
    payment_channel: Ident
    person: Person
    items: Annotated[list[Item], Field(min_length=1, max_length=200)]
    device_location: DeviceLocation | None = None
    delivery_address: DeliveryAddress | None = None
    other_government_subsidy: bool = False


class Redemption(BaseModel):
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
