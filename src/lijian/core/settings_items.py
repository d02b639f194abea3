"""The per-item rules of a trade-in campaign: ``[discount]`` and ``[limits]`` keys.

A trade-in subsidy (国补 2025) is decided per unit, not per order: a rate per product
category, a cap on one unit's discount, a price ceiling above which a unit is not
eligible, a count of subsidised units per category per person, and the device's serial.
These keys live in the ``[discount]`` and ``[limits]`` tables beside the order-level
ones; their defaults change nothing, so a campaign that does not name them (the seed
campaign) behaves exactly as before.

This module only reads and checks them (``lijian campaign check`` lists every problem
with its field path); ``lijian.core.items`` applies them. It does not import
``lijian.core.settings`` (which calls it): problems go back as (path, why).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# Keys this module reads; lijian.core.settings marks them as known in its tables.
DISCOUNT_ITEM_KEYS = (
    "category_rate_bp",
    "max_discount_fen_per_item",
    "category_max_discount_fen_per_item",
    "max_unit_price_fen",
    "category_max_unit_price_fen",
)
LIMIT_ITEM_KEYS = (
    "person_items_per_category",
    "person_items_per_category_overrides",
    "require_serial",
)

CATEGORY_TABLE_MAX = 64  # entries of one per-category table: one per category at most
ITEMS_PER_CATEGORY_MAX = 10_000  # subsidised units of one category per person
UNIT_FEN_MAX = 10**11  # as lijian.core.order.MAX_PRICE_FEN: above it, a typo

Report = Callable[[str, str], None]  # (field path, why)


@dataclass(frozen=True, slots=True)
class ItemRules:
    """The per-item keys as parsed; every default is "no such rule"."""

    category_rate_bp: Mapping[str, int] = field(default_factory=dict)  # overrides rate_bp
    max_discount_fen_per_item: int = 0  # 0 = none; the most one unit's discount can be
    # Extensions beyond the contract's keys: one campaign's ceilings and caps differ by
    # category (a phone's 500 CNY, an appliance's 2,000 CNY), which one value cannot say.
    category_max_discount_fen_per_item: Mapping[str, int] = field(default_factory=dict)
    max_unit_price_fen: int = 0  # 0 = none; a unit priced above it is not eligible
    category_max_unit_price_fen: Mapping[str, int] = field(default_factory=dict)
    person_items_per_category: int = 0  # 0 = unlimited
    person_items_per_category_overrides: Mapping[str, int] = field(default_factory=dict)
    require_serial: bool = False

    @property
    def per_item(self) -> bool:
        """The discount is computed per unit (any per-item discount key is set)."""
        return bool(
            self.category_rate_bp
            or self.max_discount_fen_per_item
            or self.category_max_discount_fen_per_item
            or self.max_unit_price_fen
            or self.category_max_unit_price_fen
        )

    @property
    def counted(self) -> bool:
        """Subsidised units are counted per category and person."""
        return bool(self.person_items_per_category or self.person_items_per_category_overrides)

    def rate_bp(self, category: str, default_bp: int) -> int:
        return self.category_rate_bp.get(category, default_bp)

    def unit_cap_fen(self, category: str) -> int:
        """0 = no cap on one unit's discount."""
        return self.category_max_discount_fen_per_item.get(category, self.max_discount_fen_per_item)

    def unit_ceiling_fen(self, category: str) -> int:
        """0 = no price ceiling."""
        return self.category_max_unit_price_fen.get(category, self.max_unit_price_fen)

    def units_allowed(self, category: str) -> int:
        """0 = unlimited."""
        return self.person_items_per_category_overrides.get(
            category, self.person_items_per_category
        )


def _int(report: Report, path: str, value: object, low: int, high: int) -> int:
    # bool is an int in Python; a money or count field must not accept `true`.
    if isinstance(value, bool) or not isinstance(value, int):
        report(path, f"must be an integer, got {type(value).__name__}")
        return 0
    if not low <= value <= high:
        report(path, f"must be {low}..{high}")
        return 0
    return value


def _category_table(
    report: Report,
    path: str,
    value: object,
    categories: frozenset[str] | None,
    low: int,
    high: int,
) -> dict[str, int]:
    if not isinstance(value, Mapping):
        report(path, f"must be a table of category = integer, got {type(value).__name__}")
        return {}
    if len(value) > CATEGORY_TABLE_MAX:
        report(path, f"must have at most {CATEGORY_TABLE_MAX} categories")
        return {}
    out: dict[str, int] = {}
    for cat, v in value.items():
        if categories is not None and cat not in categories:
            report(f"{path}.{cat}", "is not one of eligibility.categories")
            continue
        n = _int(report, f"{path}.{cat}", v, low, high)
        if n or low == 0:
            out[str(cat)] = n
    return dict(sorted(out.items()))


def parse_item_rules(
    doc: Mapping[str, object], categories: frozenset[str] | None
) -> tuple[ItemRules, list[tuple[str, str]]]:
    """The per-item keys of ``[discount]`` and ``[limits]`` and every problem found, as
    (field path, why) (``categories``: the campaign's, None when they had problems)."""
    found: list[tuple[str, str]] = []

    def report(path: str, why: str) -> None:
        found.append((path, why))

    d = doc.get("discount")
    d = d if isinstance(d, Mapping) else {}
    lim = doc.get("limits")
    lim = lim if isinstance(lim, Mapping) else {}

    # Each key by its path ("section.key"): a number 0..high, or a table of categories.
    def value(path: str, default: object) -> object:
        section, key = path.split(".", 1)
        return (d if section == "discount" else lim).get(key, default)

    def table(path: str, low: int, high: int) -> dict[str, int]:
        return _category_table(report, path, value(path, {}), categories, low, high)

    def number(path: str, high: int) -> int:
        return _int(report, path, value(path, 0), 0, high)

    rates = table("discount.category_rate_bp", 1, 10_000)
    cap = number("discount.max_discount_fen_per_item", UNIT_FEN_MAX)
    caps = table("discount.category_max_discount_fen_per_item", 1, UNIT_FEN_MAX)
    ceiling = number("discount.max_unit_price_fen", UNIT_FEN_MAX)
    ceilings = table("discount.category_max_unit_price_fen", 1, UNIT_FEN_MAX)
    per_cat = number("limits.person_items_per_category", ITEMS_PER_CATEGORY_MAX)
    overrides = table("limits.person_items_per_category_overrides", 0, ITEMS_PER_CATEGORY_MAX)
    serial = lim.get("require_serial", False)
    if not isinstance(serial, bool):
        report("limits.require_serial", f"must be a bool, got {type(serial).__name__}")
        serial = False
    rules = ItemRules(rates, cap, caps, ceiling, ceilings, per_cat, overrides, serial)
    kind = d.get("kind")
    if rules.per_item and kind == "threshold":
        report("discount.kind", 'per-item rules (rates, caps, ceilings per unit) need "percent"')
    return rules, found
