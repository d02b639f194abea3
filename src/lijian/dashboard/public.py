"""A one-second server-side cache for ``GET /public/campaigns/{id}`` (consumer apps).

At 10:00 every consumer app polls the public feed at once; a CDN absorbs most of it
(``Cache-Control: public, max-age=1``), and this cache makes the origin answer each
campaign from one encoded body per second whatever the poll rate, so the engine's loop
spends its time on grants. The body is the same for everyone (no personal data, no
cookies read or set), which is what makes it safe to share in a CDN.

The HTTP layer owns the route; it uses this as::

    self.public_feed = PublicFeedCache(engine)            # Api.__init__
    body = self.public_feed.get(cid)                      # Api.public (raises
    return Reply(200, body, JSON, PUBLIC_HEADERS)         #  CampaignNotFound)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import msgspec

from lijian.jsonish import Json

PUBLIC_TTL_S = 1.0  # never older than the max-age the response announces
PUBLIC_HEADERS = [(b"cache-control", b"public, max-age=1")]

_encode = msgspec.json.Encoder().encode


class PublicSource(Protocol):
    campaign_ids: list[str]

    def public_status(self, campaign_id: str) -> Json: ...


class PublicFeedCache:
    def __init__(
        self,
        engine: PublicSource,
        ttl_s: float = PUBLIC_TTL_S,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        assert 0 < ttl_s <= PUBLIC_TTL_S
        self.engine = engine
        self.ttl_s = ttl_s
        self.clock_s = clock_s
        # Keyed by loaded campaigns only (an unknown id raises before it is stored), so
        # the cache holds at most one body per campaign.
        self._bodies: dict[str, tuple[float, bytes]] = {}

    def get(self, campaign_id: str) -> bytes:
        """The encoded public view, at most ``ttl_s`` old (call on the engine's loop)."""
        now_s = self.clock_s()
        hit = self._bodies.get(campaign_id)
        if hit is not None and now_s - hit[0] < self.ttl_s:
            return hit[1]
        body = _encode(self.engine.public_status(campaign_id))
        self._bodies[campaign_id] = (now_s, body)
        return body
