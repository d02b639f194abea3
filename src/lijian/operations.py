"""Running a live campaign: the operators' changes as writer commands, and their lists.

``operation_command`` turns one request (pause, resume, propose, approve, reject, block,
lift, and a new campaign's proposal: :mod:`lijian.core.launch`) into a command of the
one writer (``writer.py``): it runs in arrival order between the grants around it,
decides with :mod:`lijian.core.steering`, and its answer is given only once the batch
holding its entry is committed. The same call serves every topology: ``Engine.operate``
in one process, and over the wire from a gateway (``RemoteEngine``).
"""

from __future__ import annotations

from collections.abc import Callable

from lijian.core import launch, risk_review, steering
from lijian.core.book import Book
from lijian.core.change_views import amendment_view, block_view, change_view
from lijian.core.errors import InvalidRequest
from lijian.core.ledger import Ledger
from lijian.core.order import Order
from lijian.core.risk import review_view
from lijian.core.rules import Evaluation
from lijian.core.status import CampaignState
from lijian.core.views import campaign_state, iso
from lijian.jsonish import Json
from lijian.outcome import Outcome
from lijian.writer import BatchContext

OPERATIONS = frozenset(
    {"pause", "resume", "propose", "approve", "reject", "block", "lift", "propose_campaign",
     "review"}
)  # fmt: skip
LISTS = frozenset({"amendments", "blocks", "changes", "review_queue"})


def operation_command(
    op: str, campaign_id: str, body: Json, by: str
) -> Callable[[BatchContext], Outcome]:
    """The writer command of one operator change; ``by`` is the operator's key id."""
    if op not in OPERATIONS:
        raise InvalidRequest(f"unknown operation {op!r}")

    def run(ctx: BatchContext) -> Outcome:
        return decide(ctx.ledger, op, campaign_id, body, by, ctx.now_ms)

    return run


def decide(led: Ledger, op: str, cid: str, body: Json, by: str, now_ms: int) -> Outcome:
    get = body.get  # JSON values of any type: the core checks each one's type and size
    why = get("reason")
    if op == "propose_campaign":  # a new campaign (lijian.core.launch): no book yet
        a = launch.propose_campaign(led, get("settings_toml"), by, why, now_ms)
        return Outcome(201, amendment_view(a, launch.campaign_tz(led, a.campaign_id)))
    if op in ("approve", "reject") and launch.is_new_campaign(led, cid, get("amendment_id")):
        fn = launch.approve_campaign if op == "approve" else launch.reject_campaign
        a = fn(led, cid, get("amendment_id"), by, why, now_ms)
        return Outcome(200, amendment_view(a, launch.campaign_tz(led, cid)))
    b = led.book(cid)  # 404 first: an unknown campaign is never a bad body
    tz = b.schedule.tz
    if op == "pause":
        c = steering.pause(led, cid, by, why, now_ms)
        return Outcome(200, {"campaign_id": cid, "state": CampaignState.PAUSED, "change_id": c.id})
    if op == "resume":
        c = steering.resume(led, cid, by, why, now_ms)
        state = campaign_state(b, led.now_ms)
        return Outcome(200, {"campaign_id": cid, "state": state, "change_id": c.id})
    if op == "propose":
        a = steering.propose(
            led, cid, by, why, get("kind"), get("delta_fen"), get("days"),
            get("last_date"), now_ms,
        )  # fmt: skip
        return Outcome(201, amendment_view(a, tz))
    if op in ("approve", "reject"):
        am_id = get("amendment_id")
        fn = steering.approve if op == "approve" else steering.reject
        return Outcome(200, amendment_view(fn(led, cid, am_id, by, why, now_ms), tz))
    if op == "block":
        bl = steering.add_block(
            led, cid, by, why, get("kind"), get("person_id"), get("platform"),
            get("sku"), now_ms,
        )  # fmt: skip
        return Outcome(201, block_view(bl, tz))
    if op == "review":  # a risk flag dismissed, or its person or SKU blocked
        rv = risk_review.review(led, cid, by, why, get("flag_id"), get("action"),
                                get("person_id"), get("sku"), now_ms)  # fmt: skip
        return Outcome(200, {**review_view(rv), "reviewed_at": iso(rv.ts_ms, tz)})
    bl = steering.lift(led, cid, get("block_id"), by, why, now_ms)
    return Outcome(200, block_view(bl, tz))


def stopped_by_operator(led: Ledger, b: Book, order: Order, ev: Evaluation) -> bool:
    """Whether a pause or a block certainly declines this order (the engine's fast
    decline then asks ``evaluate_state`` for every reason, as the writer would)."""
    if b.paused:
        return True
    ch = led.changes
    if ch.persons and ch.person_blocked(b.id, led.members_of(b, order)):
        return True
    return bool(ch.skus) and ch.sku_blocked(b.id, order.platform, [s for s, _, _ in ev.lines])


def operations_view(led: Ledger, campaign_id: str, what: str) -> Json:
    """``GET …/amendments``, ``…/blocks`` or ``…/changes`` of a campaign, oldest first."""
    if what == "review_queue":  # open risk flags (core/risk_review.py)
        return risk_review.queue_view(led, campaign_id)
    tz = launch.campaign_tz(led, campaign_id)  # also a new campaign's, proposed or rejected
    ch = led.changes
    cid = campaign_id
    if what == "amendments":
        items = [amendment_view(a, tz) for a in ch.amendments.values() if a.campaign_id == cid]
    elif what == "blocks":
        items = [block_view(x, tz) for x in ch.blocks.values() if x.campaign_id == cid]
    elif what == "changes":
        items = [change_view(c, tz) for c in ch.log if c.campaign_id == cid]
    else:
        raise InvalidRequest(f"unknown list {what!r}")
    return {what: items}
