"""The sharded gateway's map (cluster/shards.py), on shards that answer from memory: who
owns a campaign, where an id goes, and the misconfigurations refused rather than split."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lijian.cluster.gateway_policy import SequencerUnavailable
from lijian.cluster.shards import ShardedEngine, _merged, placed_shard, shard_node
from lijian.core.errors import CampaignNotFound
from lijian.http.problems import Problem


class FakeShard:
    """What ShardedEngine reads of a RemoteEngine: its hello and its campaigns."""

    def __init__(self, node: str, campaigns: list[str], registry: bool = True) -> None:
        self.info: dict[str, Any] = {"node": node, "order_registry": registry, "settings": []}
        self.known: dict[str, Any] = {cid: f"settings of {cid}" for cid in campaigns}
        self.asked: list[str] = []
        self.created: dict[str, Any] = {}  # approved over the API since the hello

    def settings(self, campaign_id: str) -> Any:
        return self.known[campaign_id]

    async def campaign_settings(self, campaign_id: str) -> Any:
        self.asked.append(campaign_id)
        if campaign_id in self.created:  # as RemotePort: kept once known
            self.known[campaign_id] = self.created[campaign_id]
        if campaign_id not in self.known:
            raise Problem(404, "campaign_not_found", f"unknown campaign {campaign_id!r}")
        return self.known[campaign_id]


def sharded(*shards: FakeShard) -> ShardedEngine:
    it = iter(shards)
    return ShardedEngine([["x"]] * len(shards), ssl_context=None,  # type: ignore[arg-type]
                         make=lambda _addresses: next(it))  # type: ignore[arg-type,return-value]  # fmt: skip


def test_the_node_is_read_from_redemption_and_voucher_ids() -> None:
    assert shard_node("rd_a1w03a70000000001") == "a"
    assert shard_node("rd_shard1w03a70000000001") == "shard"
    assert shard_node("vc_bzzzzzz0000000042") == "b"
    assert shard_node("rd_1w03a70000000001") is None  # too short to hold a node
    assert shard_node("nonsense") is None
    assert shard_node("xx_a1w03a70000000001") is None


def test_campaigns_and_ids_go_to_the_shard_that_has_them() -> None:
    a, b = FakeShard("a", ["chengdu"]), FakeShard("b", ["mianyang", "deyang"])
    s = sharded(a, b)
    assert s.known_owner("chengdu") is a and s.known_owner("deyang") is b
    assert s.campaign_ids == ["chengdu", "mianyang", "deyang"]
    assert s.settings("mianyang") == "settings of mianyang"
    assert s.shard_of_id("rd_b1w03a70000000001") is b
    assert s.shard_of_id("rd_a1w03a70000000001") is a
    assert s.shard_of_id("rd_c1w03a70000000001") is a  # no such node: the first (its 404)
    with pytest.raises(CampaignNotFound):
        s.settings("nowhere")
    # A campaign created since the hellos: asked of every shard, found where it is.
    b.created["suining"] = "settings of suining"
    assert asyncio.run(s.owner_of("suining")) is b
    assert s.known_owner("suining") is b  # and known from then on
    assert asyncio.run(s.owner_of("nowhere")) is a  # unknown everywhere: its placed shard
    assert a.asked == ["suining", "nowhere"] and b.asked == ["suining", "nowhere"]


def test_a_new_campaign_is_placed_alike_by_every_gateway() -> None:
    """``POST /v1/campaigns``'s shard: a function of the id and the shards' nodes (not of
    a gateway's ``--shard`` order), spreading campaigns evenly; a shard added later
    takes its share and moves none between the others."""
    ids = [f"api-{i:08x}" for i in range(1000)]
    ab = ["ab"[placed_shard(c, ["a", "b"])] for c in ids]
    assert ab == ["ba"[placed_shard(c, ["b", "a"])] for c in ids]
    assert (ab.count("a"), ab.count("b")) == (508, 492)
    abc = ["abc"[placed_shard(c, ["a", "b", "c"])] for c in ids]
    assert (abc.count("a"), abc.count("b"), abc.count("c")) == (327, 317, 356)
    assert all(x == y for x, y in zip(abc, ab, strict=True) if x != "c")
    # A campaign no shard has (a proposal's, until approved) is routed to its place.
    a, b = FakeShard("a", []), FakeShard("b", [])
    s = sharded(a, b)
    on_b = ids[ab.index("b")]
    assert asyncio.run(s.owner_of(on_b)) is b and s.placed(on_b) is b
    assert asyncio.run(s.owner_of(ids[ab.index("a")])) is a


def test_a_campaign_on_two_shards_is_refused_not_split(caplog: pytest.LogCaptureFixture) -> None:
    s = sharded(FakeShard("a", ["chengdu"]), FakeShard("b", ["chengdu", "mianyang"]))
    with pytest.raises(Problem) as e:
        s.known_owner("chengdu")
    assert e.value.status == 503
    assert "campaign 'chengdu' is served by nodes a, b" in e.value.detail
    assert "shards misconfigured" in caplog.text
    assert s.known_owner("mianyang") is not None  # the others are served


@pytest.mark.parametrize(
    ("shards", "why"),
    [
        ((FakeShard("a", ["x"]), FakeShard("a", ["y"])), "two sequencers name the same node"),
        ((FakeShard("a", ["x"]), FakeShard("b", ["y"], registry=False)), "has no --order-registry"),
    ],
)
def test_a_misconfigured_pair_answers_503_with_why(shards: tuple[FakeShard, ...], why: str) -> None:
    s = sharded(*shards)
    for call in (lambda: s.known_owner("x"), lambda: s.shard_of_id("rd_a1w03a70000000001")):
        with pytest.raises(Problem) as e:
            call()
        assert e.value.status == 503 and why in e.value.detail
        assert e.value.headers == {"Retry-After": "1"}


def test_no_answer_from_one_shard_is_503_not_404() -> None:
    """While a shard has not answered its hello, a campaign nobody answered for may be
    its: 503 (retry), never a 404 that another gateway would not give."""
    a, b = FakeShard("a", ["chengdu"]), FakeShard("b", ["mianyang"])
    b.info, b.known = {}, {}
    s = sharded(a, b)
    with pytest.raises(SequencerUnavailable):
        s.settings("mianyang")
    with pytest.raises(SequencerUnavailable):
        asyncio.run(s.owner_of("mianyang"))
    with pytest.raises(SequencerUnavailable):
        s.known_owner("chengdu")  # every shard checked, even for a known campaign


def test_metrics_of_shards_are_one_text_labelled_by_shard() -> None:
    a = (b"# HELP lijian_held_fen Held.\n# TYPE lijian_held_fen gauge\n"
         b'lijian_held_fen{campaign="x"} 5.0\n# HELP lijian_up Up.\n# TYPE lijian_up gauge\n'
         b"lijian_up 1.0\n")  # fmt: skip
    b = (b"# HELP lijian_held_fen Held.\n# TYPE lijian_held_fen gauge\n"
         b'lijian_held_fen{campaign="y"} 7.0\n# HELP lijian_up Up.\n# TYPE lijian_up gauge\n'
         b"lijian_up 1.0\n")  # fmt: skip
    assert _merged([("a", a), ("b", b)]).decode().splitlines() == [
        "# HELP lijian_held_fen Held.",
        "# TYPE lijian_held_fen gauge",
        'lijian_held_fen{campaign="x",shard="a"} 5.0',
        'lijian_held_fen{campaign="y",shard="b"} 7.0',
        "# HELP lijian_up Up.",
        "# TYPE lijian_up gauge",
        'lijian_up{shard="a"} 1.0',
        'lijian_up{shard="b"} 1.0',
    ]
