"""Deterministic simulation of escrow leases: N nodes, one pool, random interleavings.

Every run is seeded and replayable: a failure prints the seed and the trace of actions.
Actions: grant (from memory, taking a slice when low), commit (the batch's transaction,
which is when a grant is acknowledged), capture, void (credited to the voiding node's
lease, or to the pool when it has none), crash (memory lost), restart (adopts its own
leases under a new incarnation), renew, reclaim (any node ends leases not renewed for
the timeout), close (give the lease back), and time passing.

After every step: Σ held + Σ granted ≤ released, and no fen is lost or created:
pool + Σ live leases' unspent + held + granted = released. Every acknowledged grant is
durable. At the end (everyone closed or reclaimed) nothing is stranded on any node.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from lijian.core.escrow import LIVE, EscrowPolicy, Fenced, NodeEscrow, PoolBook, slice_fen

DAY = "2025-02-12"
RELEASED_FEN = 20_000
POLICY = EscrowPolicy(
    k=2, min_slice_fen=300, max_slice_fen=3_000, low_water_fen=100,
    lease_ttl_ms=1_000, empty_recheck_ms=200,
)  # fmt: skip
SEEDS = 200
STEPS = 400


@dataclass
class Hold:
    hid: int
    amount_fen: int
    state: str = "held"  # held | ending (a void pending in a batch) | captured | voided


@dataclass
class Node:
    node_id: str
    incarnation: int
    esc: NodeEscrow
    alive: bool = True
    pending_grants: list[Hold] = field(default_factory=list)
    pending_voids: list[Hold] = field(default_factory=list)


class World:
    def __init__(self, seed: int, nodes: int) -> None:
        self.rng = random.Random(seed)
        self.book = PoolBook(POLICY)
        self.book.release(DAY, RELEASED_FEN)
        self.now_ms = 0
        self.n_nodes = nodes
        self.incarnations = 0
        self.nodes = [self._new_node(f"n{i}") for i in range(nodes)]
        self.holds: list[Hold] = []  # acknowledged (durable) holds
        self.next_hid = 1
        self.trace: list[str] = []

    def _new_node(self, node_id: str) -> Node:
        self.incarnations += 1
        return Node(node_id, self.incarnations, NodeEscrow(node_id, POLICY))

    # ------------------------------------------------------------------ actions
    def grant(self, n: Node, amount_fen: int) -> str:
        e = n.esc
        if e.sold_out_from_memory(DAY, amount_fen, self.now_ms):
            before = self.book.round_trips
            assert e.charge(DAY, amount_fen) is None
            assert self.book.round_trips == before  # answered from memory
            return "sold_out(memory)"
        need = e.need_fen(DAY, amount_fen, self.now_ms)
        others = 0
        if need:
            try:
                lease, taken, left, others = self.book.take(
                    n.node_id, n.incarnation, DAY, e.lease_id(DAY), need, self.n_nodes, self.now_ms
                )
            except Fenced:
                self._fenced(n)
                return "fenced"
            e.took(DAY, lease.lease_id if lease else None, taken, left + others, self.now_ms)
        if e.charge(DAY, amount_fen) is None:
            if others:
                # Short while other nodes hold slices: wait for the drain, giving our own
                # slice back first (as EscrowWriter._top_up), instead of declining.
                return "wait " + self.close(n)
            # First come, first served across nodes: no other node holds unspent money.
            assert self.book.others_unspent(DAY, n.node_id) == 0, "sold out while stranded"
            return "sold_out"
        h = Hold(self.next_hid, amount_fen)
        self.next_hid += 1
        n.pending_grants.append(h)
        return f"granted h{h.hid}"

    def commit(self, n: Node) -> str:
        charges, credits = n.esc.pending()
        held_delta = sum(h.amount_fen for h in n.pending_grants) - sum(
            h.amount_fen for h in n.pending_voids
        )
        if not charges and not credits and not held_delta:
            return "nothing"
        try:
            self.book.commit_batch(n.incarnation, charges, credits, {DAY: held_delta})
        except Fenced:
            self._fenced(n)
            return "fenced"
        n.esc.committed()
        self.holds.extend(n.pending_grants)  # acknowledged only now
        for h in n.pending_voids:
            h.state = "voided"
        n.pending_grants, n.pending_voids = [], []
        return "committed"

    def _fenced(self, n: Node) -> None:
        """The node's leases are not its own any more: drop the batch and the leases."""
        n.esc.rolled_back()
        for h in n.pending_voids:
            h.state = "held"
        n.pending_grants, n.pending_voids = [], []
        n.esc.end(DAY)

    def capture(self, h: Hold) -> str:
        self.book.capture(DAY, h.amount_fen)
        h.state = "captured"
        return f"captured h{h.hid}"

    def void(self, n: Node, h: Hold) -> str:
        if n.esc.credit(DAY, h.amount_fen) is not None:
            h.state = "ending"  # the row is locked by this node's batch until it commits
            n.pending_voids.append(h)
            return f"void h{h.hid} to lease"
        self.book.void_to_pool(DAY, h.amount_fen)
        h.state = "voided"
        return f"void h{h.hid} to pool"

    def crash(self, n: Node) -> str:
        n.alive = False
        for h in n.pending_voids:
            h.state = "held"  # never committed: the hold is still held
        n.pending_grants, n.pending_voids = [], []  # never acknowledged
        return "crash"

    def restart(self, i: int) -> str:
        old = self.nodes[i]
        n = self.nodes[i] = self._new_node(old.node_id)
        for lease in self.book.adopt(n.node_id, n.incarnation, self.now_ms):
            n.esc.adopted(lease.day, lease.lease_id, lease.unspent_fen)
        return "restart"

    def drain(self, n: Node) -> str:
        """After a batch (or on an idle tick): give back leases of draining pools."""
        if self.commit(n) == "fenced":
            return "fenced"
        back = 0
        for lease in self.book.draining_leases(n.incarnation):
            back += self.book.give_back(n.incarnation, lease.lease_id)
            n.esc.end(lease.day)
            n.esc.pool_seen.pop(lease.day, None)  # our money is in the pool now
        return f"drained {back}"

    def close(self, n: Node) -> str:
        if self.commit(n) == "fenced":
            return "fenced"
        lease = n.esc.end(DAY)
        n.esc.pool_seen.pop(DAY, None)
        if lease is None:
            return "no lease"
        try:
            back = self.book.give_back(n.incarnation, lease.lease_id)
        except Fenced:
            return "fenced"
        return f"gave back {back}"

    # ------------------------------------------------------------------- checks
    def check(self) -> None:
        problems = self.book.check()
        assert not problems, problems
        live_held = sum(h.amount_fen for h in self.holds if h.state in ("held", "ending"))
        captured = sum(h.amount_fen for h in self.holds if h.state == "captured")
        assert self.book.held_fen.get(DAY, 0) == live_held, "acknowledged holds = durable held"
        assert self.book.granted_fen.get(DAY, 0) == captured
        for n in self.nodes:
            lease = n.esc.leases.get(DAY)
            if n.alive and lease is not None:
                row = self.book.leases[lease.lease_id]
                if row.state == LIVE and row.holder == n.incarnation:
                    # memory never promises more than the durable lease holds
                    assert lease.unspent_fen <= row.unspent_fen + lease.pending_credit_fen

    def step(self) -> None:
        r = self.rng
        i = r.randrange(len(self.nodes))
        n = self.nodes[i]
        roll = r.random()
        if not n.alive:
            what = self.restart(i) if roll < 0.3 else self.tick()
        elif roll < 0.40:
            what = self.grant(n, r.choice([1, 7, 50, 120, 299, 800]))
        elif roll < 0.60:
            what = self.commit(n)
        elif roll < 0.66:
            held = [h for h in self.holds if h.state == "held"]
            what = self.capture(r.choice(held)) if held else "-"
        elif roll < 0.74:
            held = [h for h in self.holds if h.state == "held"]
            what = self.void(n, r.choice(held)) if held else "-"
        elif roll < 0.78:
            what = self.crash(n)
        elif roll < 0.84:
            self.book.renew(n.incarnation, n.node_id, self.now_ms)
            what = "renew"
        elif roll < 0.88:
            what = f"reclaimed {self.book.reclaim_expired(self.now_ms)}"
        elif roll < 0.90:
            what = self.close(n)
        elif roll < 0.95:
            what = self.drain(n)
        else:
            what = self.tick()
        self.trace.append(f"t={self.now_ms} {n.node_id}#{n.incarnation}: {what}")
        self.check()

    def tick(self) -> str:
        self.now_ms += self.rng.choice([1, 10, 100, 400])
        return "tick"

    def finish(self) -> None:
        """Everyone alive closes; the dead are reclaimed after the timeout."""
        for n in self.nodes:
            if n.alive:
                self.close(n)
        self.now_ms += POLICY.lease_ttl_ms
        self.book.reclaim_expired(self.now_ms)
        self.check()
        assert all(x.state != LIVE for x in self.book.leases.values())
        held = self.book.held_fen.get(DAY, 0) + self.book.granted_fen.get(DAY, 0)
        assert self.book.pools[DAY].remaining_fen + held == RELEASED_FEN, "money stranded"


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_random_interleavings_never_overspend_and_never_lose_a_fen(nodes):
    for seed in range(SEEDS):
        w = World(seed * 7919 + nodes, nodes)
        try:
            for _ in range(STEPS):
                w.step()
            w.finish()
        except AssertionError:
            print(f"seed={seed * 7919 + nodes} nodes={nodes}\n" + "\n".join(w.trace[-40:]))
            raise
        assert w.book.held_fen.get(DAY, 0) + w.book.granted_fen.get(DAY, 0) <= RELEASED_FEN


def test_a_dead_nodes_unspent_slice_comes_back_after_the_timeout_not_before():
    w = World(1, 2)
    a = w.nodes[0]
    assert w.grant(a, 120).startswith("granted")
    assert w.commit(a) == "committed"
    assert w.grant(a, 50).startswith("granted")  # in memory only: never acknowledged
    lease = w.book.leases[a.esc.leases[DAY].lease_id]
    taken = lease.taken_fen
    w.crash(a)
    w.now_ms += POLICY.lease_ttl_ms - 1
    assert w.book.reclaim_expired(w.now_ms) == []  # not before the timeout
    assert w.book.pools[DAY].remaining_fen == RELEASED_FEN - taken
    w.now_ms += 1
    assert w.book.reclaim_expired(w.now_ms) == [lease.lease_id]
    # everything but the durable (acknowledged) grant is back: the 50 was never committed
    assert w.book.pools[DAY].remaining_fen == RELEASED_FEN - 120
    w.check()


def test_a_zombie_cannot_commit_against_a_reclaimed_lease():
    w = World(2, 2)
    a = w.nodes[0]
    assert w.grant(a, 120).startswith("granted")
    w.now_ms += POLICY.lease_ttl_ms  # a long pause: the lease is reclaimed meanwhile
    w.book.reclaim_expired(w.now_ms)
    assert w.commit(a) == "fenced"
    assert w.holds == []  # the grant was never acknowledged
    w.check()


def test_a_restarted_node_adopts_its_lease_and_fences_the_old_process():
    w = World(3, 2)
    a = w.nodes[0]
    assert w.grant(a, 120).startswith("granted")
    assert w.commit(a) == "committed"
    old = a
    w.restart(0)
    new = w.nodes[0]
    assert new.esc.unspent_fen(DAY) == w.book.leases[new.esc.leases[DAY].lease_id].unspent_fen
    assert w.grant(old, 7).startswith("granted")  # the old process still runs, in memory
    assert w.commit(old) == "fenced"
    assert w.grant(new, 7).startswith("granted") and w.commit(new) == "committed"
    w.check()


def test_sold_out_is_answered_from_memory_once_the_pool_is_empty():
    w = World(4, 2)
    a, b = w.nodes
    while w.grant(a, 299).startswith("granted"):
        assert w.commit(a) == "committed"
    assert w.book.pools[DAY].remaining_fen < 299
    trips = w.book.round_trips
    for _ in range(1_000):
        assert w.grant(a, 299) == "sold_out(memory)"
    assert w.book.round_trips == trips  # no pool round trip for a thousand sold-outs
    w.now_ms += POLICY.empty_recheck_ms  # after the recheck interval, one look again
    assert w.grant(a, 299) == "sold_out"
    assert w.book.round_trips == trips + 1
    # b is short while a still holds crumbs: b waits for the drain rather than decline
    assert w.grant(b, 299).startswith("wait")
    assert w.book.draining[DAY] and w.drain(a).startswith("drained")
    assert w.grant(b, 299) == "sold_out"  # nobody holds money now: b knows for itself
    assert w.grant(b, 299) == "sold_out(memory)"


def test_a_short_node_has_the_others_slices_drained_before_it_declines():
    w = World(5, 2)
    a, b = w.nodes
    assert w.grant(a, 50).startswith("granted") and w.commit(a) == "committed"
    held_by_a = a.esc.unspent_fen(DAY)
    assert held_by_a > 800
    while (out := w.grant(b, 800)).startswith("granted"):  # b empties the pool
        assert w.commit(b) == "committed"
    assert out.startswith("wait")  # a still holds a slice: no sold-out yet
    assert w.drain(a) == f"drained {held_by_a}"
    granted = 0
    while (out := w.grant(b, 800)).startswith("granted"):
        assert w.commit(b) == "committed"
        granted += 800
    assert out.startswith("sold_out") and granted >= held_by_a - 800
    assert w.book.pools[DAY].remaining_fen + b.esc.unspent_fen(DAY) < 800  # nothing stranded


def test_slices_shrink_as_the_pool_empties_and_never_exceed_it():
    p = EscrowPolicy(k=4, min_slice_fen=100, max_slice_fen=10_000)
    assert slice_fen(1_000_000, 2, 1, p) == 10_000  # capped
    assert slice_fen(40_000, 2, 1, p) == 5_000  # remaining / (k × nodes)
    assert slice_fen(2_000, 2, 1, p) == 250
    assert slice_fen(300, 2, 1, p) == 100  # the floor
    assert slice_fen(50, 2, 1, p) == 50  # never more than the pool
    assert slice_fen(50, 2, 60, p) == 0  # cannot cover the need: take nothing
    assert slice_fen(5_000, 2, 4_000, p) == 4_000  # at least the need
