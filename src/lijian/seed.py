"""Where the seed campaign and its example inputs live, found from the package (never
from the working directory, so every command works from any directory)."""

from __future__ import annotations

import json
from pathlib import Path

# src/lijian/seed.py → the checkout's campaigns/ (an editable install, what `make venv`
# makes; the file is the commented reference every doc points to).
SEED_CAMPAIGN = Path(__file__).resolve().parents[2] / "campaigns" / "chengdu-2025-spring.toml"
SEED_CAMPAIGN_ID = "chengdu-2025-spring"
# Its example catalogue (NDJSON), for trying it: example_catalog() below, in a file.
SEED_GOODS = SEED_CAMPAIGN.with_name("chengdu-2025-spring-goods.ndjson")
SEED_CATEGORIES = (
    "apparel_shoes_hats", "home_textiles", "beauty_skincare", "fresh_food",
    "alcohol_beverages", "sports_outdoor", "auto_supplies", "nutrition_health",
    "maternal_baby_toys",
)  # fmt: skip
SEED_PLATFORMS = ("jd", "vip")
EXAMPLE_SKUS_PER_PLATFORM = 20


def example_catalog() -> bytes:
    """A small catalogue for trying the API: JD-1 … JD-20 and VIP-1 … VIP-20 over the
    seed's nine categories (JD-1 is home_textiles, the walk-through's SKU)."""
    lines = [
        json.dumps({"sku": f"{p.upper()}-{i}", "category": SEED_CATEGORIES[i % 9], "platform": p})
        for p in SEED_PLATFORMS
        for i in range(1, EXAMPLE_SKUS_PER_PLATFORM + 1)
    ]
    return ("\n".join(lines) + "\n").encode()
