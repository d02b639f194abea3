"""The nine product categories of the seed campaign (R2), the default of
``[eligibility] categories`` in docs/SETTINGS.md."""

CATEGORIES_DEFAULT = (
    "apparel_shoes_hats",
    "home_textiles",
    "beauty_skincare",
    "fresh_food",
    "alcohol_beverages",
    "sports_outdoor",
    "auto_supplies",
    "nutrition_health",
    "maternal_baby_toys",
)
