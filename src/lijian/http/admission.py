"""What a signed request takes from shared state once its signature holds.

Two things: its nonce (remembered, so that a replay is refused) and one token of its
client's rate limit. In one process the app does both itself (``auth.py``,
``ratelimit.py``); with gateways they must be shared, or a nonce replayed to another
gateway would pass and each gateway would allow the client its whole rate. So the
sequencer holds the one :class:`Admission` and gateways send each signed request's
``Ticket`` along with its first command (``lijian.cluster``). One process holds an
``Admission`` too (``LocalAdmission``): the app's pipeline is the same on both, a
``TicketSlot`` handed to the port (``lijian.port.AdmissionPort``) that admits it.

The answers are the ones one process gives, in the same order of checks: a reused nonce
(401) before the role (403, decided by the gateway, which then asks for the nonce only),
the role before the rate limit (429).

Wherever the nonce memory sits beside the ledger (one process, the sequencer) it is
durable (``durable_memory``): accepted nonces are stored in the writer's commits and
loaded back by the next process, and an answer is sent only once its request's nonce is
stored (``hold_answers``), so a replay after a restart, a crash or a takeover is refused.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from lijian.core.errors import EngineStopped
from lijian.durable_nonces import NonceLog
from lijian.http.auth import NONCE_LEN_MAX, NONCE_LEN_MIN, TIMESTAMP_SKEW_MAX_S, NonceMemory
from lijian.http.clients import Client
from lijian.http.problems import Problem
from lijian.http.ratelimit import RateLimiter, retry_after_header
from lijian.port import EnginePort, Ticket, TicketSlot


def nonce_reused() -> Problem:
    return Problem(401, "nonce_reused", "X-Lijian-Nonce was already used by this key")


def rate_limited(client: Client, wait_s: float) -> Problem:
    return Problem(
        429,
        "rate_limited",
        f"more than {client.requests_per_s:g} requests/s (burst {client.burst:g})",
        headers={"Retry-After": retry_after_header(wait_s)},
    )


# A call is sent again at most a few times (each lost connection once); the tickets of
# resent calls are remembered for that count, boundedly (the oldest forgotten first).
RESENDS_MAX = 4
RESENT_REMEMBERED_MAX = 100_000
_NONCE_RE = re.compile(rf"[\x21-\x7e]{{{NONCE_LEN_MIN},{NONCE_LEN_MAX}}}")


def _visible_nonce(nonce: str) -> bool:
    """Exactly ``_NONCE_RE.fullmatch``: printable ASCII (U+0020-U+007E) but the space,
    without a regular expression's call on the hot path."""
    n = len(nonce)
    return (
        NONCE_LEN_MIN <= n <= NONCE_LEN_MAX
        and nonce.isascii()
        and nonce.isprintable()
        and " " not in nonce
    )


def durable_memory(memory: NonceMemory, engine: object) -> NonceLog | None:
    """Make ``memory`` durable through ``engine``'s writer: load the unexpired nonces its
    store holds (before serving), then note every nonce accepted from now on for the
    writer's next commit. None when ``engine`` has no ledger here (a gateway's client)."""
    writer = getattr(engine, "writer", None)
    store = getattr(engine, "store", None)
    if writer is None or store is None:
        return None
    log: NonceLog = writer.nonces
    since_ms = int((memory.clock_s() - memory.ttl_s) * 1000)
    rows, floors = store.load_nonces(since_ms)
    memory.restore(rows, floors)
    memory.on_remember = log.note
    return log


class Answers(Protocol):
    """Where a sequencer puts a call's answer (``cluster/wire.py: Outbox``)."""

    def put(self, item: bytes) -> None: ...


class _AfterNonce:
    """Answers sent once a nonce is stored (see ``Admission.hold_answers``)."""

    __slots__ = ("log", "mark", "out")

    def __init__(self, log: NonceLog, mark: int, out: Answers) -> None:
        self.log = log
        self.mark = mark
        self.out = out

    def put(self, item: bytes) -> None:
        # If the writer fails first, the item is never sent: this sequencer exits
        # (cluster/roles.py) and the gateway answers 503 when the link drops.
        self.log.after(self.mark, self.out.put, item)


class Admission:
    def __init__(
        self,
        clients: dict[str, Client],
        clock_s: Callable[[], float] = time.time,
        nonces: NonceMemory | None = None,
        nonce_log: NonceLog | None = None,
    ) -> None:
        self.clients = clients
        self.clock_s = clock_s
        self.nonces = nonces if nonces is not None else NonceMemory(clock_s=clock_s)
        self.nonce_log = nonce_log  # set: the memory is durable (durable_memory)
        self.limiter = RateLimiter()
        self._resent: OrderedDict[tuple[str, str], int] = OrderedDict()

    def hold_answers(self, out: Answers) -> Answers:
        """``out``, or one that holds answers back until the nonce the last ``admit``
        remembered is stored: call it right after ``admit``."""
        log = self.nonce_log
        if log is None:
            return out
        mark = self.nonces.last_mark
        if mark <= log.durable:
            return out
        if log.failed is not None:
            raise EngineStopped("the engine is not running")
        return _AfterNonce(log, mark, out)

    def admit(self, t: Ticket) -> Problem | None:
        """Take the ticket's nonce and rate token; the problem to answer, or None."""
        client = self.clients.get(t.key_id)
        if client is None:  # the gateway's clients file names a key the sequencer's lacks
            return Problem(401, "unknown_key", "unknown X-Lijian-Key")
        if t.resent and not self.nonces.is_fresh(t.key_id, t.nonce, t.ts_s):
            return self._admit_resent(t)
        # The checks a gateway made of the request's headers, made again: the ticket is
        # all the sequencer sees of the request.
        if abs(self.clock_s() - t.ts_s) > TIMESTAMP_SKEW_MAX_S:
            return Problem(401, "timestamp_out_of_window",
                           f"X-Lijian-Timestamp is more than {TIMESTAMP_SKEW_MAX_S} s from "
                           "the server's real clock")  # fmt: skip
        if not _visible_nonce(t.nonce):
            return Problem(401, "nonce_invalid",
                           f"X-Lijian-Nonce: {NONCE_LEN_MIN}-{NONCE_LEN_MAX} visible ASCII "
                           "characters")  # fmt: skip
        return self.take(t, client)

    def take(self, t: Ticket, client: Client) -> Problem | None:
        """``admit`` without checking the ticket's timestamp and nonce again: for the
        process that checked them in the request's headers (``LocalAdmission``)."""
        if not self.nonces.remember(t.key_id, t.nonce, t.ts_s):
            return nonce_reused()
        if t.take_rate:
            wait_s = self.limiter.take(client)
            if wait_s > 0:
                return rate_limited(client, wait_s)
        return None

    def _admit_resent(self, t: Ticket) -> Problem | None:
        """A call sent again whose nonce was taken (by its first send, which reached
        this sequencer): admitted without a rate token, at most ``RESENDS_MAX`` times."""
        key = (t.key_id, t.nonce)
        n = self._resent.pop(key, 0) + 1
        if n > RESENDS_MAX:
            return nonce_reused()
        self._resent[key] = n
        while len(self._resent) > RESENT_REMEMBERED_MAX:
            self._resent.popitem(last=False)
        return None

    def is_fresh(self, key_id: str, nonce: str, ts_s: int) -> bool:
        """Whether the nonce is unused, without taking it (a request that failed its
        signature or its size: one process answers ``nonce_reused`` for those too)."""
        return self.nonces.is_fresh(key_id, nonce, ts_s)


class LocalAdmission:
    """The ``AdmissionPort`` of one process, whose ledger is here: a ticket is admitted
    at once (before its handler, as the sequencer admits a gateway's before the call it
    rides with), by the same ``Admission`` the sequencer holds, and an answer leaves
    only once its nonce is stored (``stored``)."""

    def __init__(self, admission: Admission, engine: EnginePort) -> None:
        self.admission = admission
        self.engine = engine

    def _take(self, slot: TicketSlot) -> Problem | None:
        ticket, slot.ticket = slot.ticket, None
        assert ticket is not None, "a ticket is admitted once"
        nonces = self.admission.nonces
        before = nonces.last_mark
        # Its headers were checked in this process (Authenticator.precheck): its key is
        # known, its timestamp and nonce well formed.
        client = self.admission.clients[ticket.key_id]
        problem = self.admission.take(ticket, client)
        if nonces.last_mark != before:  # this ticket's nonce was remembered: wait for it
            slot.mark = nonces.last_mark
        return problem

    def carrier(self, slot: TicketSlot) -> EnginePort:
        self.admit_now(slot)
        return self.engine

    async def admit(self, slot: TicketSlot) -> None:
        self.admit_now(slot)

    def admit_now(self, slot: TicketSlot) -> None:
        problem = self._take(slot)
        if problem is not None:
            raise problem

    async def nonce_is_fresh(self, key_id: str, nonce: str, ts_s: int) -> bool:
        return self.admission.is_fresh(key_id, nonce, ts_s)

    def stored(self, slot: TicketSlot) -> asyncio.Future[None] | None:
        log = self.admission.nonce_log
        if log is None or not slot.mark:
            return None
        return log.wait(slot.mark)
