"""The public feed's one-second server-side cache."""

from __future__ import annotations

import json

import pytest

from lijian.core.errors import CampaignNotFound
from lijian.dashboard.public import PublicFeedCache


class Engine:
    def __init__(self) -> None:
        self.campaign_ids = ["c-1"]
        self.calls = 0
        self.remaining_fen = 100

    def public_status(self, campaign_id: str) -> dict[str, object]:
        if campaign_id not in self.campaign_ids:
            raise CampaignNotFound(f"unknown campaign {campaign_id!r}")
        self.calls += 1
        return {"campaign_id": campaign_id, "today": {"remaining_fen": self.remaining_fen}}


def test_the_body_is_shared_for_at_most_one_second():
    now = [0.0]
    e = Engine()
    cache = PublicFeedCache(e, clock_s=lambda: now[0])
    first = cache.get("c-1")
    e.remaining_fen = 50
    now[0] = 0.99
    assert cache.get("c-1") is first and e.calls == 1
    now[0] = 1.0
    assert json.loads(cache.get("c-1"))["today"]["remaining_fen"] == 50 and e.calls == 2


def test_an_unknown_campaign_is_refused_and_not_stored():
    cache = PublicFeedCache(Engine())
    with pytest.raises(CampaignNotFound):
        cache.get("nope")
    assert cache._bodies == {}
    with pytest.raises(AssertionError):
        PublicFeedCache(Engine(), ttl_s=5.0)  # longer than the max-age it announces
