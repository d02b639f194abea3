"""Escrow leases: a tranche pool in the database, spent by N nodes from memory.

Model (O'Neil 1986 escrow; Balegas 2015 bounded counters)
----------------------------------------------------------
A tranche's money that no node holds lives in one **pool row** per (campaign, day):
``remaining_fen``. A node that wants to grant takes a **slice** of it in one small
transaction and records it in its own **lease row** (``taken_fen``); from then on it
grants from memory, and nothing else touches the pool until it runs low. Per lease the
database holds the durable figures::

    unspent_fen = taken_fen + credited_fen - charged_fen - returned_fen

``charged_fen`` grows in the same transaction as the node's grant entries (so it counts
exactly the *durable* grants); ``credited_fen`` is money of holds voided or expired on
this node while the tranche is open (it is free again, and it is this node's to spend);
``returned_fen`` is what went back to the pool when the lease ended: at the day's close,
at a clean shutdown, or when another node **reclaims** it after ``lease_ttl_ms`` without
a renewal (its holder died). A reclaim is computed from the durable figures alone, so a
dead node's grants that were never committed were never acknowledged and their money
comes back; grants that were committed stay spent.

Every money movement keeps, per tranche::

    pool.remaining + Σ live leases' unspent + Σ held + Σ granted = released      (1)
    Σ held + Σ granted ≤ released                                                (2)

and (2) follows from (1) since every term is ≥ 0: no node can spend what it did not take.
That is the global rule "granted ≤ released" with no hot row: the pool row is touched
once per *slice*, not per grant, and per-person caps live on per-person rows.

Slices shrink as the pool empties, so little is stranded on nodes that will not use it::

    slice = clamp(remaining // (k × nodes), min_slice_fen, max_slice_fen)

never less than what the node needs right now, never more than the pool holds. Once a
node has seen the pool *and the other nodes' slices* short of the smallest grant it
must make, it answers sold-out from memory, without a round trip, for
``empty_recheck_ms`` (voids and returns may refill the pool; the recheck bounds how long
such money waits).

Drain on empty: a node whose take finds the pool short while other nodes hold unspent
slices takes nothing, marks the pool **draining** and waits; the others give their
unspent back (after their batch, or on an idle tick), and a draining pool hands out
exactly what each batch needs. So the last fen of a tranche goes to the first request
that can use it, whichever node holds it: sold-out is answered only when no other node
holds money (asserted by the simulation at every sold-out).

Fencing: a lease row carries its holder's **incarnation**. A restarted node adopts its
own live leases under a new incarnation at once (no need to wait for the timeout), and
every charge is conditional on (state = live, holder = incarnation), so a zombie (an old
process that did not die, or a node whose lease was reclaimed while it paused) can never
commit a grant against money it no longer holds.

This module is pure: :class:`NodeEscrow` is a node's in-memory side and :class:`PoolBook`
is a model of the rows, with each transaction a method. The simulation test drives them
through random interleavings; the PostgreSQL adapter implements the same transactions in
SQL (``lijian.escrow.pg``) and uses :class:`NodeEscrow` and :func:`slice_fen` as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LIVE, RETURNED, RECLAIMED = "live", "returned", "reclaimed"
MAX_LEASES_PER_NODE_DAY = 1_000_000  # a bound, not a target: a node tops up one lease


@dataclass(frozen=True, slots=True)
class EscrowPolicy:
    """How slices are sized and how long a lease lives without a renewal."""

    k: int = 4  # each node takes about 1/(k × nodes) of what remains
    min_slice_fen: int = 5_000  # 50 CNY: a few grants' worth, so a take is not per grant
    max_slice_fen: int = 20_000_000  # 200,000 CNY: bounds what one dead node strands
    low_water_fen: int = 2_000  # top up before a batch when unspent falls below this
    lease_ttl_ms: int = 10_000  # a lease not renewed for this long may be reclaimed
    empty_recheck_ms: int = 1_000  # a pool seen empty is looked at again after this

    def __post_init__(self) -> None:
        assert self.k >= 1 and 0 < self.min_slice_fen <= self.max_slice_fen
        assert self.low_water_fen >= 0 and self.lease_ttl_ms > 0 and self.empty_recheck_ms >= 0


def slice_fen(remaining_fen: int, nodes: int, need_fen: int, policy: EscrowPolicy) -> int:
    """How much a node takes from a pool holding ``remaining_fen`` (0 = cannot cover need).

    At least ``need_fen`` (what the node must cover now), else nothing: a partial slice
    below the need would strand money on a node that cannot use it (R4: no partial grant).
    """
    assert remaining_fen >= 0 and nodes >= 1 and need_fen >= 0
    if remaining_fen == 0 or remaining_fen < need_fen:
        return 0
    share = remaining_fen // (policy.k * nodes)
    want = max(need_fen, min(policy.max_slice_fen, max(policy.min_slice_fen, share)))
    out = min(remaining_fen, want)
    assert need_fen <= out <= remaining_fen
    return out


# ----------------------------------------------------------------- the rows (model)
@dataclass(slots=True)
class PoolRow:
    released_fen: int
    remaining_fen: int


@dataclass(slots=True)
class LeaseRow:
    lease_id: int
    node_id: str
    day: str
    holder: int  # incarnation of the node process that may charge it (fencing token)
    taken_fen: int = 0
    charged_fen: int = 0
    credited_fen: int = 0
    returned_fen: int = 0
    renewed_at_ms: int = 0
    state: str = LIVE

    @property
    def unspent_fen(self) -> int:
        return self.taken_fen + self.credited_fen - self.charged_fen - self.returned_fen


class Fenced(Exception):
    """A charge against a lease that is no longer this incarnation's (reclaimed/adopted)."""


@dataclass(slots=True)
class PoolBook:
    """The database side as plain data: pool rows and lease rows, one method per
    transaction. ``round_trips`` counts transactions, for the sold-out-from-memory test."""

    policy: EscrowPolicy
    pools: dict[str, PoolRow] = field(default_factory=dict)
    leases: dict[int, LeaseRow] = field(default_factory=dict)
    held_fen: dict[str, int] = field(default_factory=dict)  # durable holds, per day
    granted_fen: dict[str, int] = field(default_factory=dict)  # durable captures, per day
    draining: dict[str, bool] = field(default_factory=dict)  # day -> a node was short
    round_trips: int = 0
    _next_lease: int = 1

    def release(self, day: str, amount_fen: int) -> None:
        """The tranche opens (or receives an inflow): money enters the pool."""
        assert amount_fen >= 0
        p = self.pools.setdefault(day, PoolRow(0, 0))
        p.released_fen += amount_fen
        p.remaining_fen += amount_fen

    def take(
        self,
        node_id: str,
        holder: int,
        day: str,
        lease_id: int | None,
        need_fen: int,
        nodes: int,
        now_ms: int,
    ) -> tuple[LeaseRow | None, int, int, int]:
        """Top up the lease the node holds (``lease_id``), or open one when it holds none.

        Returns (lease, slice taken, pool left, other nodes' unspent when the pool is
        nearly empty). Drain on empty: when the pool cannot cover ``need_fen`` while other
        nodes hold unspent slices, the pool turns ``draining`` (they give back, see
        :meth:`draining_leases`), nothing is taken and the node waits for that money; a
        draining pool hands out exactly what is needed. Fenced if the node's lease is no
        longer its own: its memory is stale and its pending grants must not commit."""
        self.round_trips += 1
        lease = None
        if lease_id is not None:
            lease = self.leases[lease_id]
            if lease.state != LIVE or lease.holder != holder:
                raise Fenced(f"lease {lease_id} is {lease.state}, holder {lease.holder}")
        p = self.pools[day]
        others = 0
        if p.remaining_fen < need_fen:
            others = self.others_unspent(day, node_id)
            if others:
                self.draining[day] = True
            x = 0 if others else p.remaining_fen  # crumbs only when nobody else holds any
        elif self.draining.get(day):
            x = need_fen
        else:
            x = slice_fen(p.remaining_fen, nodes, need_fen, self.policy)
        if x == 0:
            return None, 0, p.remaining_fen, others
        if lease is None:
            assert self._live_lease(node_id, day) is None, "one live lease per node and day"
            lease = LeaseRow(self._next_lease, node_id, day, holder, renewed_at_ms=now_ms)
            self.leases[lease.lease_id] = lease
            self._next_lease += 1
        p.remaining_fen -= x
        lease.taken_fen += x
        lease.renewed_at_ms = now_ms
        if p.remaining_fen < max(need_fen, self.policy.min_slice_fen) and not others:
            others = self.others_unspent(day, node_id)
        return lease, x, p.remaining_fen, others

    def others_unspent(self, day: str, node_id: str) -> int:
        return sum(
            x.unspent_fen
            for x in self.leases.values()
            if x.day == day and x.state == LIVE and x.node_id != node_id
        )

    def draining_leases(self, holder: int) -> list[LeaseRow]:
        """The holder's live leases with unspent money on draining pools: to give back."""
        self.round_trips += 1
        return [
            x
            for x in self.leases.values()
            if x.holder == holder
            and x.state == LIVE
            and self.draining.get(x.day)
            and x.unspent_fen > 0
        ]

    def commit_batch(
        self,
        holder: int,
        charges: dict[int, int],
        credits: dict[int, int],
        held_by_day: dict[str, int],
    ) -> None:
        """The grant batch's transaction: charge/credit leases, record holds, atomically."""
        self.round_trips += 1
        for lid in (*charges, *credits):
            lease = self.leases[lid]
            if lease.state != LIVE or lease.holder != holder:
                raise Fenced(f"lease {lid} is {lease.state}, holder {lease.holder}")
        for lid, fen in charges.items():
            self.leases[lid].charged_fen += fen
        for lid, fen in credits.items():
            self.leases[lid].credited_fen += fen
        for day, fen in held_by_day.items():
            self.held_fen[day] = self.held_fen.get(day, 0) + fen
            assert self.held_fen[day] >= 0

    def capture(self, day: str, amount_fen: int) -> None:
        """A hold becomes a grant (no lease or pool is touched: the money stays spent)."""
        self.round_trips += 1
        assert 0 < amount_fen <= self.held_fen.get(day, 0)
        self.held_fen[day] -= amount_fen
        self.granted_fen[day] = self.granted_fen.get(day, 0) + amount_fen

    def void_to_pool(self, day: str, amount_fen: int) -> None:
        """A hold ends on a node without a live lease of its day: its money goes to the pool."""
        self.round_trips += 1
        assert 0 < amount_fen <= self.held_fen.get(day, 0)
        self.held_fen[day] -= amount_fen
        self.pools[day].remaining_fen += amount_fen

    def renew(self, holder: int, node_id: str, now_ms: int) -> None:
        self.round_trips += 1
        for lease in self.leases.values():
            if lease.node_id == node_id and lease.state == LIVE and lease.holder == holder:
                lease.renewed_at_ms = now_ms

    def give_back(self, holder: int, lease_id: int) -> int:
        """A clean return (close of day, shutdown): the unspent part goes to the pool."""
        self.round_trips += 1
        lease = self.leases[lease_id]
        if lease.state != LIVE or lease.holder != holder:
            raise Fenced(f"lease {lease_id} is {lease.state}")
        return self._end(lease, RETURNED)

    def reclaim_expired(self, now_ms: int) -> list[int]:
        """Any node may end leases not renewed for ``lease_ttl_ms``, from durable figures."""
        self.round_trips += 1
        out = []
        for lease in self.leases.values():
            if lease.state == LIVE and now_ms - lease.renewed_at_ms >= self.policy.lease_ttl_ms:
                self._end(lease, RECLAIMED)
                out.append(lease.lease_id)
        return out

    def adopt(self, node_id: str, new_holder: int, now_ms: int) -> list[LeaseRow]:
        """A restarted node takes over its own live leases (fencing out the old process)."""
        self.round_trips += 1
        mine = [x for x in self.leases.values() if x.node_id == node_id and x.state == LIVE]
        for lease in mine:
            lease.holder = new_holder
            lease.renewed_at_ms = now_ms
        return mine

    def _end(self, lease: LeaseRow, state: str) -> int:
        back = lease.unspent_fen
        assert back >= 0, f"lease {lease.lease_id} overspent: {back}"
        lease.returned_fen += back
        lease.state = state
        self.pools[lease.day].remaining_fen += back
        return back

    def _live_lease(self, node_id: str, day: str) -> LeaseRow | None:
        for lease in self.leases.values():
            if lease.node_id == node_id and lease.day == day and lease.state == LIVE:
                return lease
        return None

    def check(self) -> list[str]:
        """Invariants (1) and (2) per day, and no lease below zero."""
        out: list[str] = []
        for day, p in self.pools.items():
            live = [x for x in self.leases.values() if x.day == day and x.state == LIVE]
            for x in live:
                if x.unspent_fen < 0:
                    out.append(f"{day}: lease {x.lease_id} unspent {x.unspent_fen} < 0")
            held, granted = self.held_fen.get(day, 0), self.granted_fen.get(day, 0)
            total = p.remaining_fen + sum(x.unspent_fen for x in live) + held + granted
            if total != p.released_fen:
                out.append(f"{day}: pool + leases + held + granted = {total} != {p.released_fen}")
            if held + granted > p.released_fen:
                out.append(f"{day}: held {held} + granted {granted} > released {p.released_fen}")
            if p.remaining_fen < 0:
                out.append(f"{day}: pool below zero")
        return out


# ------------------------------------------------------------ the node (in memory)
@dataclass(slots=True)
class LocalLease:
    lease_id: int
    unspent_fen: int  # what this node may still grant: durable unspent − pending charges
    pending_charge_fen: int = 0  # granted in memory, not yet committed
    pending_credit_fen: int = 0  # voids/expiries in memory, not yet committed


@dataclass(slots=True)
class NodeEscrow:
    """A node's in-memory escrow: one lease per open day, sold-out knowledge per day.

    The engine asks :meth:`need_fen` before a batch (and takes a slice if > 0), grants
    with :meth:`charge` from memory, and after the batch's commit calls
    :meth:`committed`; if the commit fails it calls :meth:`rolled_back`.
    """

    node_id: str
    policy: EscrowPolicy
    leases: dict[str, LocalLease] = field(default_factory=dict)
    pool_seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # day -> (fen, at ms)

    def lease_id(self, day: str) -> int | None:
        lease = self.leases.get(day)
        return lease.lease_id if lease else None

    def unspent_fen(self, day: str) -> int:
        lease = self.leases.get(day)
        return lease.unspent_fen if lease else 0

    def need_fen(
        self, day: str, demand_fen: int, now_ms: int, smallest_fen: int | None = None
    ) -> int:
        """What to ask the pool for before granting ``demand_fen`` more (0 = don't ask).

        ``demand_fen`` may be a whole batch's; ``smallest_fen`` is its smallest single
        grant: the pool known short of the batch may still fit that one (R4), so the
        memory answers "don't ask" only when even the smallest cannot fit."""
        have = self.unspent_fen(day)
        if have >= demand_fen and have >= self.policy.low_water_fen:
            return 0
        least = demand_fen if smallest_fen is None else min(smallest_fen, demand_fen)
        if self.pool_known_short(day, max(1, least - have), now_ms):
            return 0
        return max(0, demand_fen - have)

    def pool_known_short(self, day: str, need_fen: int, now_ms: int) -> bool:
        """True when the pool was seen, recently, holding less than ``need_fen``."""
        seen = self.pool_seen.get(day)
        if seen is None:
            return False
        fen, at_ms = seen
        return fen < need_fen and now_ms - at_ms < self.policy.empty_recheck_ms

    def sold_out_from_memory(self, day: str, amount_fen: int, now_ms: int) -> bool:
        """Certain sold-out with no round trip: the lease and the known pool cannot cover."""
        have = self.unspent_fen(day)
        return have < amount_fen and self.pool_known_short(day, amount_fen - have, now_ms)

    def took(
        self, day: str, lease_id: int | None, taken_fen: int, pool_left_fen: int, now_ms: int
    ) -> None:
        """The result of a take transaction (``lease_id`` None: the pool could not cover)."""
        self.pool_seen[day] = (pool_left_fen, now_ms)
        if lease_id is None:
            return
        lease = self.leases.get(day)
        if lease is None:
            lease = self.leases[day] = LocalLease(lease_id, 0)
        assert lease.lease_id == lease_id, "one live lease per node and day"
        lease.unspent_fen += taken_fen

    def adopted(self, day: str, lease_id: int, unspent_fen: int) -> None:
        """After a restart: a live lease of this node, with its durable unspent."""
        assert unspent_fen >= 0
        self.leases[day] = LocalLease(lease_id, unspent_fen)

    def charge(self, day: str, amount_fen: int) -> int | None:
        """Grant from memory: the lease id charged, or None (does not fit)."""
        lease = self.leases.get(day)
        if lease is None or lease.unspent_fen < amount_fen:
            return None
        lease.unspent_fen -= amount_fen
        lease.pending_charge_fen += amount_fen
        return lease.lease_id

    def credit(self, day: str, amount_fen: int) -> int | None:
        """A hold of ``day`` ended here while its tranche is open: spend it again.
        None: no live lease of that day here (the caller sends the money to the pool)."""
        lease = self.leases.get(day)
        if lease is None:
            return None
        lease.unspent_fen += amount_fen
        lease.pending_credit_fen += amount_fen
        return lease.lease_id

    def pending(self) -> tuple[dict[int, int], dict[int, int]]:
        """(charges, credits) by lease id, to write in the batch's transaction."""
        ch = {
            x.lease_id: x.pending_charge_fen for x in self.leases.values() if x.pending_charge_fen
        }
        cr = {
            x.lease_id: x.pending_credit_fen for x in self.leases.values() if x.pending_credit_fen
        }
        return ch, cr

    def committed(self) -> None:
        for x in self.leases.values():
            x.pending_charge_fen = x.pending_credit_fen = 0

    def rolled_back(self) -> None:
        """The batch did not commit: its grants were not made, its voids not recorded."""
        for x in self.leases.values():
            x.unspent_fen += x.pending_charge_fen - x.pending_credit_fen
            x.pending_charge_fen = x.pending_credit_fen = 0

    def end(self, day: str) -> LocalLease | None:
        """Forget the lease of ``day`` (returned, reclaimed or fenced)."""
        return self.leases.pop(day, None)
