"""Pure campaign rules: payable, discount, stateless eligibility, refund split.

Everything here is a function of its arguments. Ports (catalogue, geography) are
protocols; the adapters live outside the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lijian.core.detectors import categories_of
from lijian.core.errors import InvalidRequest
from lijian.core.items import item_facts
from lijian.core.money import floor_div_mul, percent_off_fen
from lijian.core.order import Order
from lijian.core.settings import DiscountSection, Settings
from lijian.core.status import DeclineCode, PriceAction

Reason = tuple[str, str]  # (stable code, human message)

# One message per decline code (a test checks that every DeclineCode has one).
MESSAGES: dict[DeclineCode, str] = {
    "campaign_not_found": "活动不存在 (unknown campaign)",
    "campaign_not_started": "活动尚未开始 (campaign not started)",
    "campaign_ended": "活动已结束 (campaign ended)",
    "tranche_not_open": "今日额度尚未开放 (today's tranche is not open)",
    "sold_out": "今日额度已抢完 (sold out today)",
    "budget_exhausted": "活动总额度已用完 (campaign budget used up)",
    "person_cap_reached": "个人优惠额度已用完 (personal savings cap reached)",
    "person_count_limit": "优惠次数已达上限 (redemption count limit reached)",
    "not_real_name_verified": "未完成实名认证 (not real-name verified)",
    "location_missing": "缺少手机定位 (device location missing)",
    "location_outside_city": "手机定位不在活动城市 (device not in the city)",
    "address_outside_city": "收货地址不在活动城市 (delivery address not in the city)",
    "not_campaign_goods": "订单含非活动商品 (order has non-campaign goods)",
    "platform_not_participating": "平台未参与活动 (platform not participating)",
    "payment_channel_not_supported": "支付渠道不支持 (payment channel not supported)",
    "other_government_subsidy": "不可与其他政府补贴叠加 (other government subsidy on order)",
    "platform_discount_not_allowed": "不可与平台优惠叠加 (platform discounts not allowed)",
    "discount_zero": "订单金额过小 (order too small for a discount)",
    "identity_group_full": "关联账户过多 (too many persons linked by these identifiers)",
    "campaign_paused": "活动已暂停 (campaign paused by the operator)",
    "person_blocked": "该用户已被暂停参与活动 (person blocked by the operator)",
    "sku_blocked": "订单含被暂停的商品 (an item's SKU is blocked by the operator)",
    "price_above_reference": "商品价格高于参考价 (an item is priced above its reference price)",
    "claims_sold_out": "今日消费券已领完 (no vouchers left today)",
    "claim_window_closed": "不在领券时间 (outside the hours of claims)",
    "person_claim_limit": "领券次数已达上限 (claim limit reached)",
    "voucher_required": "需使用消费券 (an order of this campaign pays with a voucher)",
    "voucher_not_found": "消费券不存在 (unknown voucher)",
    "voucher_not_yours": "消费券不属于该用户 (the voucher is another person's)",
    "voucher_expired": "消费券已过期 (the voucher has expired)",
    "voucher_used": "消费券已使用 (the voucher is used or held by another order)",
    "voucher_category_mismatch": "消费券品类不符 (an item is not of the voucher's category)",
    "item_price_above_limit": "商品单价超过补贴上限 (an item's unit price is above the ceiling)",
    "person_category_limit": "该品类已达上限 (the person's limit for this category is reached)",
    "serial_required": "缺少商品序列号 (an item's serial number is missing)",
    "serial_already_subsidised": "该序列号已享受补贴 (this serial number was already subsidised)",
}


def reason(code: DeclineCode) -> Reason:
    return (code, MESSAGES[code])


class CatalogPort(Protocol):
    def category_of(self, platform: str, sku: str) -> str | None: ...

    def reference_price_fen(self, platform: str, sku: str) -> int | None: ...


class GeoPort(Protocol):
    def device_in_city(self, lng: float, lat: float, crs: str) -> bool: ...

    def address_in_city(self, adcode: str) -> bool: ...


def line_payable_fen(quantity: int, unit_price_fen: int, platform_discount_fen: int) -> int:
    gross = quantity * unit_price_fen
    if platform_discount_fen > gross:
        raise InvalidRequest("platform_discount_fen exceeds quantity × unit_price_fen", ("items",))
    return gross - platform_discount_fen


def discount_fen(payable: int, d: DiscountSection) -> int:
    """R5 percent or 满减 threshold tiers, then the optional per-order maximum."""
    if payable <= 0:
        return 0
    if d.kind == "percent":
        off = percent_off_fen(payable, d.rate_bp)
    else:
        off = 0
        for tier in d.tiers:  # sorted by min_payable_fen: the best reachable tier wins
            if payable >= tier.min_payable_fen:
                off = tier.off_fen
        off = min(off, payable)
    if d.max_discount_fen_per_order:
        off = min(off, d.max_discount_fen_per_order)
    assert 0 <= off <= payable
    return off


def static_reasons(
    order: Order, s: Settings, catalog: CatalogPort, geo: GeoPort, discount: int
) -> list[Reason]:
    """Every decline reason that does not depend on ledger state (R5, R8-R15)."""
    out: list[Reason] = []
    c, e = s.campaign, s.eligibility
    if order.platform not in c.platforms:
        out.append(reason("platform_not_participating"))
    if order.payment_channel not in c.payment_channels:
        out.append(reason("payment_channel_not_supported"))
    if e.require_real_name and not order.person.real_name_verified:
        out.append(reason("not_real_name_verified"))
    if e.require_device_in_city:
        loc = order.device_location
        if loc is None:
            out.append(reason("location_missing"))
        elif not geo.device_in_city(loc.lng, loc.lat, loc.crs):
            out.append(reason("location_outside_city"))
    if e.require_address_in_city:
        addr = order.delivery_address
        if addr is None or not geo.address_in_city(addr.adcode):
            out.append(reason("address_outside_city"))
    if e.whole_order_campaign_goods:
        for item in order.items:
            cat = catalog.category_of(order.platform, item.sku)
            if cat is None or cat not in e.categories:
                out.append(reason("not_campaign_goods"))
                break
    else:  # Without R13, at least one campaign item must be present.
        for item in order.items:  # (loops, not ``any`` over a generator: the hot path)
            if catalog.category_of(order.platform, item.sku) in e.categories:
                break
        else:
            out.append(reason("not_campaign_goods"))
    if order.other_government_subsidy and not e.allow_other_government_subsidies:
        out.append(reason("other_government_subsidy"))
    if not e.allow_platform_discounts:
        for item in order.items:
            if item.platform_discount_fen:
                out.append(reason("platform_discount_not_allowed"))
                break
    if discount <= 0:
        out.append(reason("discount_zero"))
    pct, action = s.risk.max_price_over_reference_pct, s.risk.price_action
    if pct is not None and action is PriceAction.DECLINE and above_reference(order, pct, catalog):
        out.append(reason("price_above_reference"))
    return out


def above_reference(order: Order, pct: int, catalog: CatalogPort) -> list[tuple[str, int, int]]:
    """(sku, unit_price_fen, reference_price_fen) of the order's items priced above their
    reference by more than ``pct`` percent: unit × 100 > reference × (100 + pct), exact
    in integers. A SKU without a reference price is never above it. One dict lookup an
    item: this runs on the hot path."""
    out: list[tuple[str, int, int]] = []
    for item in order.items:
        ref = catalog.reference_price_fen(order.platform, item.sku)
        if ref is not None and item.unit_price_fen * 100 > ref * (100 + pct):
            out.append((item.sku, item.unit_price_fen, ref))
    return out


def refund_split_fen(
    payable: int, discount: int, returned_before: int, returned_now: int
) -> tuple[int, int]:
    """R18: cumulative card refund = floor(R × C / P), cumulative clawback = R − that.

    Returns (card_refund_fen, clawback_fen) for *this* refund, as the difference of the
    cumulative figures, so that rounding never accumulates and a return of the whole
    order refunds exactly C = P − D to the card and claws back exactly D.
    """
    assert 0 <= discount <= payable and payable > 0
    assert returned_now > 0 and returned_before + returned_now <= payable
    paid = payable - discount
    r0, r1 = returned_before, returned_before + returned_now
    card0, card1 = floor_div_mul(r0, paid, payable), floor_div_mul(r1, paid, payable)
    card, claw = card1 - card0, (r1 - card1) - (r0 - card0)
    assert card >= 0 and claw >= 0 and card + claw == returned_now
    return card, claw


def returned_value_fen(line_payable: int, quantity: int, before_qty: int, now_qty: int) -> int:
    """Payable value of returning ``now_qty`` more units of an order line, exact in total:
    cumulative value floor(L × k / q), so returning all q units gives exactly L."""
    assert before_qty >= 0 and before_qty + now_qty <= quantity and quantity > 0
    before = floor_div_mul(line_payable, before_qty, quantity)
    after = floor_div_mul(line_payable, before_qty + now_qty, quantity)
    return after - before


@dataclass(slots=True)
class Evaluation:
    """What the stateless rules found for an order (computed outside the writer)."""

    payable_fen: int
    discount_fen: int  # before the person cap
    reasons: list[Reason]
    lines: list[tuple[str, int, int]]  # (sku, quantity, line payable fen)
    # (sku, unit_price_fen, reference_price_fen) of items priced above their reference
    # when [risk] price_action is "flag": granted, and the grant flagged (core/risk.py).
    over_reference: list[tuple[str, int, int]] = field(default_factory=list)
    # Trade-in items (lijian.core.items): subsidised units per category, and serials;
    # both empty unless the campaign has per-item rules or an item carries a serial.
    units: list[tuple[str, int]] = field(default_factory=list)
    serials: list[str] = field(default_factory=list)
    # (category, payable fen) of the order when [risk] category_bulk is on (detectors.py)
    categories: list[tuple[str, int]] = field(default_factory=list)


def evaluate_order(order: Order, s: Settings, catalog: CatalogPort, geo: GeoPort) -> Evaluation:
    """The stateless half of the rules: payable = Σ(quantity × unit_price_fen −
    platform_discount_fen) (docs/API.md, R15), the discount (R5) and every stateless reason."""
    # One loop for the lines and their sum (no comprehension or generator frames: this
    # runs for every redemption, on the loop thread).
    lines: list[tuple[str, int, int]] = []
    payable = 0
    for i in order.items:
        lp = line_payable_fen(i.quantity, i.unit_price_fen, i.platform_discount_fen)
        lines.append((i.sku, i.quantity, lp))
        payable += lp
    if len(lines) > 1 and len({sku for sku, _, _ in lines}) != len(lines):
        raise InvalidRequest("each sku may appear once per order", ("items",))
    facts = item_facts(order, lines, s, catalog)  # None: no per-item rule, no serial
    if facts is not None and facts.discount_fen is not None:
        disc = facts.discount_fen  # per unit (lijian.core.items)
    else:
        disc = discount_fen(payable, s.discount)
    ev = Evaluation(payable, disc, static_reasons(order, s, catalog, geo, disc), lines)
    if facts is not None:
        ev.reasons += [reason(code) for code in facts.reasons]
        ev.units, ev.serials = facts.units, facts.serials
    risk = s.risk
    if risk.max_price_over_reference_pct is not None and risk.price_action is PriceAction.FLAG:
        ev.over_reference = above_reference(order, risk.max_price_over_reference_pct, catalog)
    if risk.detectors.category_bulk_factor is not None:
        ev.categories = categories_of(order, lines, catalog.category_of)
    return ev
