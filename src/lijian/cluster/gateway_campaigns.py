"""A gateway's campaigns: their settings, and the upload of their catalogues.

The settings come with the sequencer's hello (the same files parsed at both ends); a
campaign created over the API later is asked for by id when first named, and kept once
known (a campaign's settings never change). A catalogue goes to the sequencer in parts
(the link carries no large frame), which store nothing until their end names the
campaign. Nothing here decides an answer: the sequencer does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from lijian.cluster.gateway_policy import SequencerUnavailable, as_ids, as_int, as_str
from lijian.cluster.wire import Method, catalog_parts, price_parts
from lijian.core.errors import CampaignNotFound, InvalidRequest
from lijian.core.settings import Settings
from lijian.core.settings_text import settings_from_toml
from lijian.jsonish import Json

T = TypeVar("T")  # what a call's answer is converted to


class CampaignBook(Protocol):
    """What the link keeps of the campaigns (``RemoteEngine`` in gateway.py)."""

    @property
    def info(self) -> Json: ...  # the hello's answer; empty until a sequencer answered

    @property
    def known(self) -> dict[str, Settings]: ...  # the campaigns' settings, by id

    @property
    def uploads(self) -> Iterator[int]: ...  # ids of catalogue uploads


def hello_settings(hello: Json) -> dict[str, Settings]:
    """The campaigns' settings the hello carries (their TOML texts), by id."""
    settings = {}
    texts = hello["settings"]
    assert isinstance(texts, list), "the hello's settings are TOML texts"
    for text in texts:
        s = settings_from_toml(text)
        settings[s.campaign.id] = s
    return settings


class RemoteCampaigns:
    """Mixed into RemotePort (gateway.py), which provides ``_call`` and ``_link``."""

    _link: CampaignBook

    def _call(
        self, method: Method, args: tuple[object, ...], convert: Callable[[object], T]
    ) -> asyncio.Future[T]:
        raise NotImplementedError

    @property
    def campaign_ids(self) -> list[str]:
        return list(self._link.known)

    def settings(self, campaign_id: str) -> Settings:
        if not self._link.info:
            raise SequencerUnavailable("no answer from the sequencer yet")
        s = self._link.known.get(campaign_id)
        if s is None:
            raise CampaignNotFound(f"unknown campaign {campaign_id!r}")
        return s

    async def campaign_settings(self, campaign_id: str) -> Settings:
        """A campaign's settings: known since the hello, or asked for. A campaign created
        over the API while this gateway was connected is asked for when first named (it
        is never remembered as unknown), so every gateway serves it from the moment it
        was approved. Kept once known: a campaign's settings never change."""
        link = self._link
        if not link.info:
            raise SequencerUnavailable("no answer from the sequencer yet")
        s = link.known.get(campaign_id)
        if s is None:
            text = await self._call(Method.CAMPAIGN, (campaign_id,), as_str)
            s = link.known[campaign_id] = settings_from_toml(text)
        return s

    async def campaign_list(self) -> list[Settings]:
        if not self._link.info:
            return []
        ids = await self._call(Method.CAMPAIGNS, (), as_ids)
        return [await self.campaign_settings(cid) for cid in ids]

    async def catalog_upsert(
        self,
        rows: list[tuple[str, str, str]],
        categories: dict[str, int] | None = None,
        campaign_id: str | None = None,
        prices: list[tuple[str, str, int]] | None = None,
    ) -> int:
        """Sent in parts of about ``CATALOG_PART_BYTES`` (the link carries no large
        frame), one after another, then ended with ``campaign_id``: the sequencer checks
        the rows against that campaign, counts the categories from the rows themselves
        (``categories`` is not sent) and stores all or none. The parts carry no ticket;
        the end carries the request's."""
        if campaign_id is None:
            raise InvalidRequest("a catalogue upload names its campaign", ("campaign_id",))
        upload_id = next(self._link.uploads)
        for part in catalog_parts(rows):
            await self._call(Method.CATALOG_ROWS, (upload_id, part), as_int)
        for price_part in price_parts(prices or []):
            await self._call(Method.CATALOG_PRICES, (upload_id, price_part), as_int)
        return await self._call(Method.CATALOG, (upload_id, len(rows), campaign_id), as_int)
