"""A new campaign over the API on the pure ledger: proposal, four eyes, its book made
from the proposal's text live and on replay, snapshots, and a start-up file of its id."""

import copy

import pytest

from lijian.core import launch
from lijian.core.entries import decode, encode
from lijian.core.errors import (
    AmendmentNotFound,
    CampaignNotFound,
    Conflict,
    Forbidden,
    SettingsInvalid,
)
from lijian.core.invariants import balances, check_invariants
from lijian.core.ledger import Ledger
from lijian.core.replay import replay
from lijian.core.settings import parse_settings
from lijian.core.settings_text import (
    SETTINGS_TOML_MAX_BYTES,
    CampaignSettingsDiffer,
    settings_from_toml,
)
from lijian.core.snapshot import encode_snapshot, restore_snapshot
from tests.http.harness import dump_toml
from tests.support import CID, Desk, order, seed_doc

NEW = "chengdu-2025-wave-2"
TRANCHE_FEN = 176_470_588  # the seed budget, 3,000,000,000 fen, over 17 days


def wave_doc(**campaign: object) -> dict:
    doc = copy.deepcopy(seed_doc())
    doc["campaign"].update({"id": NEW, "name": "wave 2", **campaign})
    return doc


TEXT = dump_toml(wave_doc())


@pytest.fixture
def desk():
    d = Desk()
    d.move("2025-02-12 10:00")
    return d


def created(d: Desk) -> str:
    a = launch.propose_campaign(d.ledger, TEXT, "op-a", "next wave", d.now_ms)
    launch.approve_campaign(d.ledger, NEW, a.id, "op-b", "agreed", d.now_ms)
    return a.id


def test_a_proposal_waits_for_another_key_then_the_campaign_grants(desk):
    a = launch.propose_campaign(desk.ledger, TEXT, "op-a", "next wave", desk.now_ms)
    assert (a.id, a.kind, a.campaign_id, a.status, a.settings_toml) == (
        "am_000001", "campaign", NEW, "proposed", TEXT,
    )  # fmt: skip
    with pytest.raises(CampaignNotFound):  # not served before its approval
        desk.redeem(order(1, campaign_id=NEW))
    with pytest.raises(Forbidden) as e:
        launch.approve_campaign(desk.ledger, NEW, a.id, "op-a", "mine", desk.now_ms)
    assert e.value.code == "four_eyes_required" and NEW not in desk.ledger.books
    launch.approve_campaign(desk.ledger, NEW, a.id, "op-b", "agreed", desk.now_ms)
    t = desk.tranche("2025-02-12", cid=NEW)
    assert (t.state, t.released_fen) == ("open", TRANCHE_FEN)  # released by its schedule
    assert desk.redeem(order(2, campaign_id=NEW)).redemption.discount_fen == 3_720
    assert t.available_fen == TRANCHE_FEN - 3_720
    with pytest.raises(Conflict) as again:
        launch.approve_campaign(desk.ledger, NEW, a.id, "op-c", "twice", desk.now_ms)
    assert again.value.code == "amendment_not_pending"
    assert check_invariants(desk.ledger) == []


def test_an_id_taken_or_proposed_is_refused_and_a_rejected_one_is_free(desk):
    with pytest.raises(Conflict) as e:
        launch.propose_campaign(desk.ledger, dump_toml(seed_doc()), "op-a", "r", desk.now_ms)
    assert e.value.code == "campaign_exists"
    a = launch.propose_campaign(desk.ledger, TEXT, "op-a", "r", desk.now_ms)
    with pytest.raises(Conflict) as e:
        launch.propose_campaign(desk.ledger, TEXT, "op-b", "r", desk.now_ms)
    assert e.value.code == "campaign_exists"
    launch.reject_campaign(desk.ledger, NEW, a.id, "op-a", "not now", desk.now_ms)
    assert desk.ledger.changes.amendments[a.id].status == "rejected"
    with pytest.raises(AmendmentNotFound):
        launch.approve_campaign(desk.ledger, CID, a.id, "op-b", "wrong id", desk.now_ms)
    again = launch.propose_campaign(desk.ledger, TEXT, "op-a", "now", desk.now_ms)
    assert again.id == "am_000002"
    assert len(desk.ledger.changes.log) == 3  # proposed, rejected, proposed: nothing else


def test_every_problem_of_a_file_is_listed_and_nothing_is_recorded(desk):
    desk.ledger.take_pending()  # the release of 10:00
    doc = wave_doc(budget_fen=-1, daily_open="25:00")
    doc["limits"]["hold_ttl_s"] = 0
    with pytest.raises(SettingsInvalid) as e:
        launch.propose_campaign(desk.ledger, dump_toml(doc), "op-a", "r", desk.now_ms)
    fields = [f for f, _ in e.value.problems]
    assert fields == ["campaign.budget_fen", "campaign.daily_open", "limits.hold_ttl_s"]
    with pytest.raises(SettingsInvalid) as e:
        launch.propose_campaign(desk.ledger, "[campaign", "op-a", "r", desk.now_ms)
    assert e.value.problems[0][0] == "body" and "not valid TOML" in e.value.problems[0][1]
    with pytest.raises(SettingsInvalid):
        launch.propose_campaign(
            desk.ledger, TEXT + "#" * SETTINGS_TOML_MAX_BYTES, "op-a", "r", desk.now_ms
        )
    assert desk.ledger.changes.log == [] and desk.ledger.take_pending() == []


def test_the_one_replay_and_a_snapshot_make_the_same_campaign(desk):
    created(desk)
    desk.redeem(order(1, campaign_id=NEW))
    desk.move("2025-02-13 10:30")
    bodies = [encode(e) for e in desk.ledger.take_pending()]
    again = replay(desk.settings, bodies)  # the seed file only: the new one from its entries
    assert list(again.books) == [CID, NEW]
    assert balances(again) == balances(desk.ledger)
    assert check_invariants(again) == []
    fresh = Ledger(desk.settings)
    restore_snapshot(fresh, encode_snapshot(again, len(bodies)))
    assert balances(fresh) == balances(again)
    assert fresh.books[NEW].settings.raw == again.books[NEW].settings.raw
    kinds = [type(decode(b)).__name__ for b in bodies[:4]]
    # The seed's release, the proposal, the approval and in its commit the new release.
    assert kinds == ["TrancheOpened", "CampaignProposed", "AmendmentApplied", "TrancheOpened"]


def test_a_start_up_file_of_its_id_is_accepted_only_with_the_same_settings(desk):
    created(desk)
    bodies = [encode(e) for e in desk.ledger.take_pending()]
    same = replay([*desk.settings, settings_from_toml(TEXT)], bodies)
    assert balances(same) == balances(replay(desk.settings, bodies))
    other = parse_settings(wave_doc(budget_fen=1_700_000))
    with pytest.raises(CampaignSettingsDiffer, match=f"campaign '{NEW}' was created over the API"):
        replay([*desk.settings, other], bodies)
    snap = encode_snapshot(replay(desk.settings, bodies), len(bodies))
    with pytest.raises(CampaignSettingsDiffer):
        restore_snapshot(Ledger([*desk.settings, other]), snap)
