"""The escrow transactions in PostgreSQL (the rows of ``migrations/0003_escrow.sql``).

Each function is one short transaction on a connection it is given, the SQL twin of a
:class:`lijian.core.escrow.PoolBook` method. The pool row is touched by ``take_slice``,
``give_back``/``reclaim_expired`` and voids that have no lease to go to: per slice, never
per grant. Lock order everywhere (deadlock freedom): advisory keys (sorted) → person rows (sorted)
→ pool rows → lease rows. PostgreSQL's deadlock detector remains the backstop: the
caller retries a transaction it aborted, a bounded number of times.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import psycopg

from lijian.core.entries import TrancheOpened, encode
from lijian.core.escrow import EscrowPolicy, Fenced, slice_fen

Conn = psycopg.Connection[Any]
MAX_TAKE_RETRIES = 8  # the optimistic "remaining ≥ x" update lost a race this many times
MAX_RECLAIM_ROWS = 1_000  # leases ended per reclaim transaction


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for a logical row (order, idempotency key,
    redemption). Collisions only make two unrelated requests wait for each other."""
    h = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


def lock_keys(conn: Conn, keys: Iterable[int]) -> None:
    """Transaction-level advisory locks, taken in ascending order (no lock cycles)."""
    ordered = sorted(set(keys))
    if ordered:
        conn.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM"
            " (SELECT k FROM unnest(%s::bigint[]) AS u(k) ORDER BY k) s",
            (ordered,),
        )


def open_pool(
    conn: Conn, node_id: str, cid: str, day: str, opens_at_ms: int, base_fen: int
) -> None:
    """Open the day's pool once across all nodes: the node that flips it writes the one
    ``TrancheOpened`` entry of the global log, in the same transaction."""
    conn.execute(
        "INSERT INTO pools (campaign_id, day, state) VALUES (%s, %s, 'scheduled')"
        " ON CONFLICT DO NOTHING",
        (cid, day),
    )
    row = conn.execute(
        "UPDATE pools SET state = 'open', released_fen = pending_fen + %s,"
        " remaining_fen = pending_fen + %s, pending_fen = 0"
        " WHERE campaign_id = %s AND day = %s AND state = 'scheduled' RETURNING released_fen",
        (base_fen, base_fen, cid, day),
    ).fetchone()
    if row is not None:
        body = encode(TrancheOpened(opens_at_ms, cid, day, int(row[0])))
        conn.execute("INSERT INTO entries (node_id, body) VALUES (%s, %s)", (node_id, body))


def take_slice(
    conn: Conn,
    *,
    node_id: str,
    holder: str,
    cid: str,
    day: str,
    lease_id: int | None,
    need_fen: int,
    nodes: int,
    policy: EscrowPolicy,
) -> tuple[int | None, int, int, int]:
    """Top up this node's lease (or open one): (lease id or None, slice taken, pool left,
    other nodes' unspent when the pool is nearly empty, else 0).

    ``UPDATE … WHERE remaining_fen >= x``: optimistic, retried when another node took
    first. When the pool cannot cover ``need_fen`` while other nodes hold unspent slices,
    the pool is marked ``draining`` (they give back; see :func:`draining_leases`) and the
    caller may wait for that money. A draining pool hands out exactly what is needed.
    Raises :class:`Fenced` when the node's lease is no longer its own."""
    for _ in range(MAX_TAKE_RETRIES):
        row = conn.execute(
            "SELECT remaining_fen, state, draining FROM pools WHERE campaign_id = %s AND day = %s",
            (cid, day),
        ).fetchone()
        if row is None or row[1] != "open":
            return None, 0, 0, 0
        remaining, draining = int(row[0]), bool(row[2])
        others = 0
        if remaining < need_fen:
            others = _others_unspent(conn, cid, day, node_id)
            if others and not draining:
                conn.execute(
                    "UPDATE pools SET draining = true WHERE campaign_id = %s AND day = %s",
                    (cid, day),
                )
            # Crumbs (smaller orders may still fit, R4) only when no other node holds
            # money: otherwise take nothing and let the caller wait for the drain, so a
            # waiting node never sits on money another node waits for.
            x = 0 if others else remaining
        elif draining:
            x = need_fen  # the endgame: no slice beyond the batch's need
        else:
            x = slice_fen(remaining, nodes, need_fen, policy)
        if x == 0:
            return None, 0, remaining, others
        got = conn.execute(
            "UPDATE pools SET remaining_fen = remaining_fen - %s WHERE campaign_id = %s"
            " AND day = %s AND state = 'open' AND remaining_fen >= %s RETURNING remaining_fen",
            (x, cid, day, x),
        ).fetchone()
        if got is None:
            continue  # another node took first: look again
        left = int(got[0])
        if left < max(need_fen, policy.min_slice_fen) and not others:
            # The endgame: what the other nodes hold decides whether this node may later
            # answer sold-out from memory (NodeEscrow.pool_known_short).
            others = _others_unspent(conn, cid, day, node_id)
        if lease_id is None:
            new = conn.execute(
                "INSERT INTO leases (campaign_id, day, node_id, holder, state, taken_fen)"
                " VALUES (%s, %s, %s, %s, 'live', %s)"
                " ON CONFLICT (campaign_id, day, node_id) WHERE state = 'live' DO NOTHING"
                " RETURNING lease_id",
                (cid, day, node_id, holder, x),
            ).fetchone()
            if new is None:
                raise Fenced(f"{node_id} already has a live lease of {cid}/{day}")
            return int(new[0]), x, left, others
        upd = conn.execute(
            "UPDATE leases SET taken_fen = taken_fen + %s, renewed_at = clock_timestamp()"
            " WHERE lease_id = %s AND state = 'live' AND holder = %s RETURNING lease_id",
            (x, lease_id, holder),
        ).fetchone()
        if upd is None:
            raise Fenced(f"lease {lease_id} is no longer held by {holder}")
        return lease_id, x, left, others
    return None, 0, 0, 0  # lost every race: treat as "look again later"


def _others_unspent(conn: Conn, cid: str, day: str, node_id: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(sum(taken_fen + credited_fen - charged_fen - returned_fen), 0)"
        " FROM leases WHERE campaign_id = %s AND day = %s AND state = 'live' AND node_id <> %s",
        (cid, day, node_id),
    ).fetchone()
    return int(row[0]) if row else 0


DRAINING_LEASES_SQL = (
    "SELECT l.lease_id, l.campaign_id, l.day FROM leases l JOIN pools p"
    " ON p.campaign_id = l.campaign_id AND p.day = l.day"
    " WHERE l.holder = %s AND l.state = 'live' AND p.draining"
    " AND l.taken_fen + l.credited_fen - l.charged_fen - l.returned_fen > 0"
)


def draining_leases(conn: Conn, holder: str) -> list[tuple[int, str, str]]:
    """This incarnation's live leases with unspent money on a draining pool: (lease id,
    campaign, day). The node gives them back: another node is short."""
    return draining_rows(conn.execute(DRAINING_LEASES_SQL, (holder,)).fetchall())


def draining_rows(rows: list[tuple[Any, ...]]) -> list[tuple[int, str, str]]:
    return [(int(a), str(b), str(c)) for a, b, c in rows]


def charge_leases_pipelined(
    conn: Conn, holder: str, charges: dict[int, int], credits: dict[int, int]
) -> list[tuple[int, psycopg.Cursor[Any]]]:
    """The batch's lease figures, fenced (live and ours), for a pipeline: the caller
    checks that each cursor returned a row, else raises Fenced and rolls back."""
    out = []
    for lid in sorted(set(charges) | set(credits)):
        cur = conn.cursor()
        cur.execute(
            "UPDATE leases SET charged_fen = charged_fen + %s, credited_fen = credited_fen + %s,"
            " renewed_at = clock_timestamp()"
            " WHERE lease_id = %s AND state = 'live' AND holder = %s RETURNING lease_id",
            (charges.get(lid, 0), credits.get(lid, 0), lid, holder),
        )
        out.append((lid, cur))
    return out


def money_to_pool(conn: Conn, cid: str, day: str, to_day: str | None, amount_fen: int) -> None:
    """A hold ended on a node with no live lease of its day: back to that day's pool while
    it is open, else where the entry says (``to_day``: the next tranche; None: lost), the
    same place a replay of the entry puts it (``Ledger._apply_release``)."""
    row = conn.execute(
        "UPDATE pools SET remaining_fen = remaining_fen + %s, sold_out_at_ms = NULL"
        " WHERE campaign_id = %s AND day = %s AND state = 'open' RETURNING day",
        (amount_fen, cid, day),
    ).fetchone()
    if row is not None or to_day is None:
        return
    inflow_to_pool(conn, cid, to_day, amount_fen)


def inflow_to_pool(conn: Conn, cid: str, day: str, amount_fen: int) -> psycopg.Cursor[Any]:
    """New money for a day (a refund's clawback, R17): released again where the day's
    pool is open, pending where it is scheduled, as ``Ledger._send``/``_credit`` replay
    it. Returns the cursor of the pool's state (the caller asserts it was not closed)."""
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO pools (campaign_id, day, state, pending_fen) VALUES (%s, %s, 'scheduled', %s)"
        " ON CONFLICT (campaign_id, day) DO UPDATE SET"
        " pending_fen = pools.pending_fen + CASE WHEN pools.state = 'scheduled'"
        " THEN excluded.pending_fen ELSE 0 END,"
        " remaining_fen = pools.remaining_fen + CASE WHEN pools.state = 'open'"
        " THEN excluded.pending_fen ELSE 0 END,"
        " released_fen = pools.released_fen + CASE WHEN pools.state = 'open'"
        " THEN excluded.pending_fen ELSE 0 END,"
        " sold_out_at_ms = CASE WHEN pools.state = 'open' THEN NULL ELSE pools.sold_out_at_ms END"
        " RETURNING state",
        (cid, day, amount_fen),
    )
    return cur


def give_back(conn: Conn, holder: str, lease_id: int) -> int:
    """End our lease cleanly: its durable unspent goes back to the pool. Returns it."""
    found = conn.execute(
        "SELECT campaign_id, day FROM leases WHERE lease_id = %s", (lease_id,)
    ).fetchone()
    if found is None:
        raise Fenced(f"no lease {lease_id}")
    _lock_pool(conn, str(found[0]), str(found[1]))
    row = conn.execute(
        "SELECT campaign_id, day, taken_fen + credited_fen - charged_fen - returned_fen"
        " FROM leases WHERE lease_id = %s AND state = 'live' AND holder = %s FOR UPDATE",
        (lease_id, holder),
    ).fetchone()
    if row is None:
        raise Fenced(f"lease {lease_id} is no longer held by {holder}")
    return _end_lease(conn, lease_id, str(row[0]), str(row[1]), int(row[2]), "returned")


def give_back_unless_fenced(conn: Conn, holder: str, lease_id: int) -> int:
    """``give_back`` in a savepoint of its own; 0 when the lease is no longer ours (it was
    reclaimed or adopted meanwhile: its money is back in the pool already)."""
    try:
        with conn.transaction():
            return give_back(conn, holder, lease_id)
    except Fenced:
        return 0


def _lock_pool(conn: Conn, cid: str, day: str) -> None:
    conn.execute("SELECT 1 FROM pools WHERE campaign_id = %s AND day = %s FOR UPDATE", (cid, day))


def _end_lease(conn: Conn, lease_id: int, cid: str, day: str, unspent_fen: int, state: str) -> int:
    assert unspent_fen >= 0, f"lease {lease_id} overspent by {-unspent_fen} fen"
    conn.execute(
        "UPDATE leases SET returned_fen = returned_fen + %s, state = %s WHERE lease_id = %s",
        (unspent_fen, state, lease_id),
    )
    conn.execute(
        "UPDATE pools SET remaining_fen = remaining_fen + %s WHERE campaign_id = %s AND day = %s",
        (unspent_fen, cid, day),
    )
    return unspent_fen


def adopt_leases(conn: Conn, node_id: str, holder: str) -> list[tuple[int, str, str, int]]:
    """A restarted node takes over its own live leases under a new incarnation (fencing
    out the old process). Returns (lease id, campaign, day, durable unspent)."""
    rows = conn.execute(
        "UPDATE leases SET holder = %s, renewed_at = clock_timestamp()"
        " WHERE node_id = %s AND state = 'live'"
        " RETURNING lease_id, campaign_id, day, taken_fen + credited_fen - charged_fen"
        " - returned_fen",
        (holder, node_id),
    ).fetchall()
    return [(int(a), str(b), str(c), int(d)) for a, b, c, d in rows]


def renew(conn: Conn, node_id: str, holder: str) -> int:
    cur = conn.execute(
        "UPDATE leases SET renewed_at = clock_timestamp()"
        " WHERE node_id = %s AND holder = %s AND state = 'live'",
        (node_id, holder),
    )
    return cur.rowcount


def reclaim_expired(conn: Conn, ttl_ms: int) -> int:
    """End leases not renewed for ``ttl_ms`` (their holder died or hung): the durable
    unspent (taken + credited − *durable* charges − returned) goes back to the pool.
    Grants the dead node made in memory but never committed were never acknowledged, so
    their money is rightly back. Returns the fen returned."""
    stale = "state = 'live' AND renewed_at < clock_timestamp() - make_interval(secs => %s / 1000.0)"
    days = conn.execute(
        f"SELECT DISTINCT campaign_id, day FROM leases WHERE {stale} ORDER BY 1, 2", (ttl_ms,)
    ).fetchall()
    for cid, day in days:  # pool rows first: the lock order of take_slice
        _lock_pool(conn, str(cid), str(day))
    rows = conn.execute(
        "SELECT lease_id, campaign_id, day, taken_fen + credited_fen - charged_fen - returned_fen"
        f" FROM leases WHERE {stale} ORDER BY lease_id LIMIT %s FOR UPDATE",
        (ttl_ms, MAX_RECLAIM_ROWS),
    ).fetchall()
    return sum(
        _end_lease(conn, int(lid), str(c), str(d), int(u), "reclaimed") for lid, c, d, u in rows
    )
