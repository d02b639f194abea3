"""``lijian audit --order-registry URL``: a shard's ledger against the order registry.

The invariant of sharded campaigns (docs/SCALE-OUT.md, "R15 across ledgers"): every order
active in a ledger (held or captured) has its row in ``order_claims`` naming that
campaign, and every campaign of the ledger has its row in ``shard_campaigns``, all of
them naming one node. A missing row would let another shard grant the same order; a row
naming another campaign means the order draws on two. Both are findings of the audit.

A row of this node's campaigns with no active order here is not one: it is what a crash
between a claim and its hold leaves, conservative, and the shard's next start deletes it.
On a shard that serves meanwhile, an order voided or expired between the ledger's read
and the registry's is found without its row: the next audit no longer finds it (a real
mismatch stays). Reads are paged (``PAGE``), each statement under the registry's timeout.
"""

from __future__ import annotations

from lijian.core.ledger import Ledger

PAGE = 10_000  # orders looked up per statement
CHECK_CAMPAIGNS = "order registry: every campaign owned by this ledger's node"
CHECK_ORDERS = "order registry: every active order's row names its campaign (R15)"


class RegistryUnreadable(Exception):
    """The registry did not answer, or holds no registry tables: nothing was checked."""


def check_registry(ledger: Ledger, url: str) -> list[tuple[str, list[str]]]:
    """The two checks (module doc) and their findings, in the report's order."""
    import psycopg

    from lijian.cluster.order_claims import _OWNERS, CONNECT_TIMEOUT_S, _options

    active = {k: ledger.redemptions[rid] for k, rid in ledger.active_orders.items()}
    campaigns = sorted(ledger.books)
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True,
                             options=_options(url)) as c:  # fmt: skip
            owners: dict[str, str] = dict(
                c.execute(
                    "SELECT campaign_id, node FROM shard_campaigns WHERE campaign_id = ANY(%s)",
                    (campaigns,),
                ).fetchall()
            )
            rows: dict[tuple[str, str], str] = {}
            keys = sorted(active)
            for i in range(0, len(keys), PAGE):
                page = keys[i : i + PAGE]
                got = c.execute(_OWNERS, ([k[0] for k in page], [k[1] for k in page]))
                rows.update({(str(p), str(o)): str(cid) for p, o, cid in got.fetchall()})
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistryUnreadable(f"order registry: {first}") from None
    nodes = {str(owners[cid]) for cid in campaigns if cid in owners}
    camp_problems = [f"campaign {cid}: no row in shard_campaigns" for cid in campaigns
                     if cid not in owners]  # fmt: skip
    if len(nodes) > 1:
        named = ", ".join(f"{cid} (node {owners[cid]!r})" for cid in campaigns if cid in owners)
        camp_problems.append(f"this ledger's campaigns are owned by several nodes: {named}")
    order_problems = []
    for k in sorted(active):
        r, row = active[k], rows.get(k)
        if row is None:
            order_problems.append(f"order {k[0]}/{k[1]}: active in campaign {r.campaign_id} "
                                  f"({r.id}) with no row in order_claims")  # fmt: skip
        elif row != r.campaign_id:
            order_problems.append(f"order {k[0]}/{k[1]}: active in campaign {r.campaign_id} "
                                  f"({r.id}), its row names campaign {row}")  # fmt: skip
    return [(CHECK_CAMPAIGNS, camp_problems), (CHECK_ORDERS, order_problems)]
