"""A gateway's link to the sequencer: its time limits, back-off, and what may be resent.

The policy ``RemoteEngine`` (gateway.py) follows, kept apart so that the numbers and the
rules a reader checks are in one short place: how long each call and each connection
attempt may take, which calls are quick (given up on a silent link), which are safe to
send again after a lost connection, and which never take the request's ticket.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import msgspec

from lijian.cluster.wire import Method, WireError
from lijian.core.errors import LijianError
from lijian.core.settings import MAX_ADMISSION_WINDOW_S
from lijian.outcome import Outcome
from lijian.port import Ticket

INFLIGHT_MAX = 100_000  # as many as the sequencer's queue holds
CALL_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0  # at start, before serving 503s: the sequencer may be recovering
# One address: TCP connect and TLS handshake, then its first answer. A sequencer that
# died leaves its listening socket to the supervisor that made it: a connect then lands
# in the listen backlog and nobody answers. Bounded, so the next address is tried soon.
CONNECT_ATTEMPT_TIMEOUT_S = 2.0
HANDSHAKE_TIMEOUT_S = 2.0
FIRST_ANSWER_S = 3.0
# Back-off from the first to the longest wait. The longest is short because it is added
# to every outage: a sequencer back after a database failover is found at most this long
# after it serves (each attempt costs one connect and a ping; a gateway makes at most
# 1/RECONNECT_DELAY_S[1] a second per address, however long the outage).
RECONNECT_DELAY_S = (0.1, 0.5)
RECONNECT_LOG_EVERY_S = 10.0
SWEEP_EVERY_S = 0.2
# The promise: 503 with Retry-After within 2 s when no sequencer can answer. Calls kept
# for a resend after a lost connection wait at most RESEND_WAIT_S for a new one; on a
# connection that answers nothing (not even a ping, sent after PING_AFTER_S of silence
# while calls wait) for LINK_SILENT_S, the quick calls sent that long ago get their 503.
RESEND_WAIT_S = 0.4
PING_AFTER_S = 0.4
LINK_SILENT_S = 1.2
PING_METHOD = Method.HEALTH  # unsigned and cheap; any answer, even a 503, shows it is alive
# Calls the sequencer answers in milliseconds: only these are given up on a silent link.
# A catalogue upload, a clock move or a report may keep the sequencer busy for seconds;
# they wait for their own deadline.
M = Method
QUICK = frozenset(
    (M.HELLO, M.ADMIT, M.FRESH, M.REDEEM, M.QUOTE, M.CAPTURE, M.VOID, M.REFUND,
     M.REDEMPTION, M.PERSON, M.STATUS, M.PUBLIC, M.HEALTH, M.CLAIM, M.VOUCHER, M.VOUCHERS)
)  # fmt: skip
WINDOW_WAIT_S = float(MAX_ADMISSION_WINDOW_S)  # a redemption may wait that long for its window
# The end of a catalogue upload stores every row (1,000,000 of them: seconds on a quiet
# machine, minutes on an overloaded one). A busy sequencer is not a lost one: while it
# stores, it sends PROGRESS every second (cluster/uploads.py), and each one gives the
# call CATALOG_STALL_S more, up to a limit derived from the upload's size
# (``catalog_wait_s``). Only a sequencer that says nothing for CATALOG_STALL_S (its loop
# blocked that long, or gone) or passes that limit makes the end a 503, whose detail
# says the outcome is unknown and a resend safe (the same rows store the same catalogue).
CATALOG_STALL_S = 60.0
CATALOG_ROW_WAIT_S = 0.0006  # per row: 1,000,000 rows may take 10 minutes
CATALOG_OUTCOME_UNKNOWN = (
    "; the upload may or may not have been stored: sending it again is safe (the same "
    "rows store the same catalogue)"
)


def catalog_wait_s(n_rows: int) -> float:
    """The longest the end of an upload of ``n_rows`` rows waits, progress or not."""
    return CALL_TIMEOUT_S + CATALOG_STALL_S + n_rows * CATALOG_ROW_WAIT_S


# Calls that may be sent again after a lost connection: the ledger decides each at most
# once (idempotency keys, hold states) or they only read. A resend carries its ticket
# marked ``resent``: the sequencer admits it again without a second rate token, a few
# times at most, since the first send may have taken its nonce.
RESENDABLE = frozenset(
    (M.HELLO, M.REDEEM, M.QUOTE, M.CAPTURE, M.VOID, M.REFUND, M.REDEMPTION, M.PERSON,
     M.STATUS, M.PUBLIC, M.SETTLEMENT, M.AUDIT, M.EVIDENCE, M.EVENTS, M.HEALTH, M.GAUGES,
     M.METRICS, M.OPERATIONS, M.CAMPAIGN, M.CAMPAIGNS, M.RISK, M.CLAIM, M.VOUCHER, M.VOUCHERS)
)  # fmt: skip
# Not "operate": an operator's change (a pause, an approval) is not idempotent, so a lost
# answer is a 503 and the operator reads the change log before trying again.
# Calls that never take the request's ticket: a catalogue upload's parts store nothing
# (the sequencer bounds them per connection); the upload's end is its signed command.
# A campaign's settings asked for on the way (one this gateway has not seen yet) are the
# link's own too: the request's own call that follows takes its ticket.
UNSIGNED_PARTS = frozenset((M.CATALOG_ROWS, M.CATALOG_PRICES, M.CAMPAIGN, M.CAMPAIGNS))
# What ends a connection (the sequencer stopped, or it sent what cannot be read).
LINK_LOST = (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, WireError,
         msgspec.DecodeError)  # fmt: skip


def backoff_waits_s() -> Iterator[tuple[float, float]]:
    """The back-off's waits after each round of failed attempts, as (least, most): a
    wait is drawn in that range (jitter, so that gateways started together spread)."""
    ceiling_s = RECONNECT_DELAY_S[0]
    while True:
        yield ceiling_s / 2, ceiling_s
        ceiling_s = min(ceiling_s * 2, RECONNECT_DELAY_S[1])


def attempts_at_most(window_s: float, addresses: int = 1) -> int:
    """The most connection attempts a gateway makes in ``window_s`` while no sequencer
    answers: one per address per round, rounds separated by the shortest waits."""
    rounds, elapsed_s = 1, 0.0
    for least_s, _ in backoff_waits_s():
        elapsed_s += least_s
        if elapsed_s > window_s:
            return rounds * addresses
        rounds += 1
    raise AssertionError("unreachable")


def unavailable(p: Pending, why: str) -> SequencerUnavailable:
    """The 503 of a call given up: for a catalogue upload's end, its outcome unknown."""
    return SequencerUnavailable(why + (CATALOG_OUTCOME_UNKNOWN if p.cap_s is not None else ""))


def catalog_late(p: Pending, stall_s: float) -> SequencerUnavailable:
    """The 503 of an upload's end past its deadline: silent too long, or past its cap."""
    assert p.cap_s is not None
    if p.deadline_s >= p.cap_s:
        return unavailable(p, f"the upload was not stored within {p.cap_s - p.sent_s:.0f} s")
    return unavailable(p, f"no word from the sequencer on this upload for {stall_s:g} s")


class SequencerUnavailable(LijianError):
    """No answer from the sequencer (down, unreachable, or too slow): 503, retry later."""

    code = "sequencer_unavailable"


# What an answer's payload (msgpack builtins) becomes for the port's caller: the
# sequencer sends each method's result in one shape (sequencer.py), checked here.
def as_outcome(payload: object) -> Outcome:
    assert isinstance(payload, list), "an outcome travels as [status, body, replayed]"
    status, body, replayed = payload
    return Outcome(status, body, replayed)


def as_json(payload: object) -> dict[str, object]:
    assert isinstance(payload, dict), "a view travels as a JSON object"
    return payload


def as_none(payload: object) -> None:
    assert payload is None


def as_int(payload: object) -> int:
    assert isinstance(payload, int)
    return payload


def as_str(payload: object) -> str:
    assert isinstance(payload, str)
    return payload


def as_bytes(payload: object) -> bytes:
    assert isinstance(payload, bytes)
    return payload


def as_bool(payload: object) -> bool:
    assert isinstance(payload, bool)
    return payload


def as_ids(payload: object) -> list[str]:
    assert isinstance(payload, list) and all(isinstance(x, str) for x in payload)
    return payload


class Waiting(Protocol):
    """What a pending call needs of its future, whatever the result's type."""

    def done(self) -> bool: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


# (method, args, ticket): a call as it is sent, and sent again after a lost connection
Sent = tuple[Method, tuple[object, ...], Ticket | None]


class Pending:
    """A call waiting for its answer."""

    __slots__ = ("cap_s", "deadline_s", "fut", "quick", "resend", "sent_s", "settle")

    def __init__(self, fut: Waiting, settle: Callable[[object], None], deadline_s: float,
                 resend: Sent | None, quick: bool, cap_s: float | None = None) -> None:  # fmt: skip
        self.fut = fut
        # Calls whose deadline PROGRESS moves (the end of a catalogue upload): how far.
        self.cap_s = cap_s
        self.quick = quick
        self.sent_s = time.monotonic()
        self.settle = settle  # the answer's payload, converted, as the future's result
        self.deadline_s = deadline_s
        # (method, args, ticket) to send again after a lost connection, if safe
        self.resend = resend
