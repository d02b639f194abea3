"""The engine's side of campaigns created over the API (:mod:`lijian.core.launch`).

The ledger makes a new campaign's book when its approval is applied, live and on
replay; what lives beside the ledger follows it here:

- the ``campaigns`` table of the store keeps the settings of ``--campaign`` files, which
  ``lijian audit`` replays with. A campaign created over the API is not written there (its
  settings are in its entries), and a file new to the table is written only after
  recovery, so that a file naming an API campaign with other settings is refused (one
  line, :class:`~lijian.core.settings_text.CampaignSettingsDiffer`) without leaving a row
  that would make the next audit or start replay with the wrong settings;
- each campaign's geography, loaded once per campaign when first needed;
- the draw commitments of a new campaign's future days (``[release]
  admission_window_s``), committed right after its approval;
- the settings texts gateways parse (the sequencer's hello and its ``campaign`` call).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from lijian.core.errors import CampaignNotFound
from lijian.core.ledger import Ledger
from lijian.core.rules import GeoPort
from lijian.core.settings import Settings
from lijian.core.status import AmendmentKind, AmendmentStatus
from lijian.inputs import NoGeo, settings_fingerprint
from lijian.outcome import Outcome
from lijian.store import Store


def save_known_files(store: Store, settings: Iterable[Settings]) -> list[Settings]:
    """Record (and check against the table) the files of campaigns the table has; return
    the others, to be recorded once recovery has shown the ledger accepts them."""
    known = {cid for cid, _ in store.campaigns()}
    later = []
    for s in settings:
        if s.campaign.id in known:
            store.save_campaign(s.campaign.id, settings_fingerprint(s))
        else:
            later.append(s)
    return later


def save_new_files(store: Store, settings: Iterable[Settings]) -> None:
    for s in settings:
        store.save_campaign(s.campaign.id, settings_fingerprint(s))


class CampaignGeo:
    """Each campaign's geography (``GeoPort``), loaded once, when first asked for: a
    campaign created over the API has none loaded at start-up."""

    def __init__(self, ledger: Callable[[], Ledger], loader: Callable[[str], GeoPort]) -> None:
        self._ledger = ledger
        self._loader = loader
        self._loaded: dict[str, GeoPort] = {}

    def __getitem__(self, campaign_id: str) -> GeoPort:
        geo = self._loaded.get(campaign_id)
        if geo is None:
            s = self._ledger().book(campaign_id).settings
            geo = self._loader(s.campaign.city_adcode) if needs_geo(s) else NoGeo()
            self._loaded[campaign_id] = geo
        return geo

    def load_all(self) -> None:
        """Every known campaign's geography, now: at start, before the first request,
        which would otherwise wait for the boundary's import and index (about a second
        on a busy machine, on the loop: every request behind it waits too)."""
        for campaign_id in self._ledger().books:
            self[campaign_id]


def needs_geo(s: Settings) -> bool:
    """Whether a campaign's rules ask where the device or the address is."""
    e = s.eligibility
    return e.require_device_in_city or e.require_address_in_city


def created_texts(led: Ledger) -> list[str]:
    """The settings files of the campaigns created over the API, oldest first."""
    return [
        a.settings_toml
        for a in led.changes.amendments.values()
        if a.kind == AmendmentKind.CAMPAIGN and a.status == AmendmentStatus.APPLIED
        and a.settings_toml is not None
    ]  # fmt: skip


def campaign_text(led: Ledger, file_texts: dict[str, str], campaign_id: str) -> str:
    """The settings file a campaign is served with: its ``--campaign`` file's text, or
    the text of its approved proposal. Unknown or not yet approved: 404."""
    if campaign_id in led.books:
        text = file_texts.get(campaign_id)
        if text is not None:
            return text
        for a in led.changes.amendments.values():
            if (a.kind == AmendmentKind.CAMPAIGN and a.campaign_id == campaign_id
                    and a.status == AmendmentStatus.APPLIED and a.settings_toml):  # fmt: skip
                return a.settings_toml
    raise CampaignNotFound(f"unknown campaign {campaign_id!r}")


class _Seeding(Protocol):
    async def seed_days(self) -> int: ...


class _Approving(Protocol):
    """What ``after_operation`` uses of the engine."""

    @property
    def geo(self) -> CampaignGeo: ...

    @property
    def windows(self) -> _Seeding: ...


async def after_operation(engine: _Approving, op: str, out: Outcome) -> None:
    """What follows a new campaign's approval outside the ledger: its geography, and the
    draw commitments of its days if it releases through an admission window."""
    if op != "approve" or out.body.get("kind") != AmendmentKind.CAMPAIGN:
        return
    _ = engine.geo[out.body["campaign_id"]]  # loaded now, not by its first redemption
    await engine.windows.seed_days()
