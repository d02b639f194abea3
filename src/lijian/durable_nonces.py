"""The nonces of accepted signed requests, on their way to the ledger's store.

A nonce only protects while it is remembered. The memory (``http/auth.py``) lives in
the ledger process, so a restart, a sequencer replaced by its supervisor or a standby
that takes over would forget every nonce and accept a captured request again for the
rest of its 300 s window. So each nonce the memory accepts is also noted here, and the
writer (``writer.py``) writes what is noted in its next commit, in the same transaction
as the batch's entries: a command's nonce is durable no later than the command itself
(it is noted before the command is queued, and batches commit in order). An answer that
did not go through the writer (a read, a decline from memory, a refusal after the
signature) waits for the commit that carries its nonce (``wait``, or ``after`` for an
answer already encoded) before it is sent: an answer a client saw always has its nonce on
disk. A restart loads the unexpired
nonces back into the memory before it serves (``http/admission.py: durable_memory``).

Cost: one row per signed request in a commit that happens anyway for writes, and for
reads one group commit of latency (reads arriving together share it).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable

from lijian.core.errors import EngineOverloaded, EngineStopped

# Nonces noted and not yet handed to a commit. Each belongs to a request being served,
# so the connection limits bound it long before this; beyond it a request is answered 503.
PENDING_MAX = 200_000
# Expired rows are deleted at most this often (one indexed DELETE in a commit).
PRUNE_EVERY_MS = 10_000

NonceRow = tuple[str, str, int, int]  # (key id, nonce, request timestamp s, seen at ms)
Put = Callable[[bytes], None]  # where a held answer goes (a link's Outbox.put): never raises


class NonceLog:
    def __init__(self, ttl_ms: int) -> None:
        assert ttl_ms > 0
        self.ttl_ms = ttl_ms
        self.pending: list[NonceRow] = []
        self.noted = 0  # nonces noted since start; a request's mark is its count
        self.durable = 0  # the first ``durable`` nonces noted are committed
        self.failed: BaseException | None = None
        self.wake: Callable[[], None] | None = None  # the writer's: commit soon
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        # Answers held for their nonce (``after``): in mark order, and the few that came
        # out of order (a slow call answered after younger ones) on a heap beside them.
        self._held: deque[tuple[int, Put, bytes]] = deque()
        self._held_late: list[tuple[int, int, Put, bytes]] = []
        self._order = itertools.count()
        self._newest_seen_ms = 0
        self._pruned_ms = 0

    def note(self, key_id: str, nonce: str, ts_s: int, seen_s: float) -> int:
        """Queue a nonce for the next commit; its mark (what ``wait`` takes)."""
        if self.failed is not None:
            raise EngineStopped("the engine is not running")
        if len(self.pending) >= PENDING_MAX:
            raise EngineOverloaded("too many nonces waiting for a commit")
        seen_ms = int(seen_s * 1000)
        self.pending.append((key_id, nonce, ts_s, seen_ms))
        self._newest_seen_ms = max(self._newest_seen_ms, seen_ms)
        self.noted += 1
        if self.wake is not None:
            self.wake()
        return self.noted

    def take(self) -> tuple[list[NonceRow], int, int]:
        """What the next commit writes: the rows, the mark they reach, and the moment
        before which stored nonces have expired (0: no pruning in this commit)."""
        rows, self.pending = self.pending, []
        before_ms = 0
        newest = self._newest_seen_ms
        if newest - self._pruned_ms >= PRUNE_EVERY_MS:
            self._pruned_ms = newest
            before_ms = newest - self.ttl_ms
        return rows, self.noted, max(0, before_ms)

    def committed(self, upto: int) -> None:
        """The nonces up to mark ``upto`` are on disk: release the answers waiting."""
        assert upto >= self.durable, "commits reach the disk in order"
        self.durable = upto
        w = self._waiters
        while w and w[0][0] <= upto:
            fut = heapq.heappop(w)[2]
            if not fut.done():
                fut.set_result(None)
        held = self._held
        while held and held[0][0] <= upto:
            _, put, item = held.popleft()
            put(item)
        late = self._held_late
        while late and late[0][0] <= upto:
            _, _, put, item = heapq.heappop(late)
            put(item)

    def fail(self, exc: BaseException) -> None:
        """The writer stopped: nothing noted will be committed by this process."""
        self.failed = exc
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(EngineStopped(f"engine failed: {exc!r}"))
        self._waiters.clear()
        # No answer leaves without its nonce stored: the gateway answers 503 when the
        # link drops (this sequencer exits, cluster/roles.py).
        self._held.clear()
        self._held_late.clear()

    def after(self, mark: int, put: Put, item: bytes) -> None:
        """``put(item)`` once the nonce of ``mark`` is durable: now if it is, else in the
        commit's return that makes it so (``committed``), never if the writer fails.

        What ``wait`` does for one answer, without a future, a callback and a loop turn
        of its own per answer: a sequencer holds one answer per signed call, each
        released with the thousands its commit stores. Bounded as the nonces are: one
        answer per nonce noted and not yet committed (``PENDING_MAX``)."""
        if mark <= self.durable:
            put(item)
            return
        if self.failed is not None:
            return
        held = self._held
        if not held or held[-1][0] <= mark:
            held.append((mark, put, item))
        else:
            heapq.heappush(self._held_late, (mark, next(self._order), put, item))

    def wait(self, mark: int) -> asyncio.Future[None] | None:
        """None when the nonce of ``mark`` is durable, else a future resolved when it is."""
        if mark <= self.durable:
            return None
        if self.failed is not None:
            raise EngineStopped("the engine is not running")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (mark, next(self._order), fut))
        return fut
