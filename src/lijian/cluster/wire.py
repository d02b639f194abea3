"""The transport between gateways and the sequencer: msgpack frames over one stream.

A frame is a 4-byte big-endian length and a msgpack array of messages. One connection per
gateway (TCP, or a Unix socket on one machine); each side writes every message that is
ready in one frame per event-loop turn, so batching follows the load (one message at a
quiet moment, thousands in a rush) with no timer.

Gateway → sequencer, one message per command: ``[call_id, method, ticket | nil, args]``
(``args`` a msgpack array, decoded by the sequencer with the method's own types, so an
``Order`` arrives as the same msgspec Struct the HTTP layer decoded).

Sequencer → gateway: ``[call_id, kind, payload]`` with kind ``OK`` (the method's result),
``PROBLEM`` (an HTTP problem: status, code, detail, errors, headers) or ``ERROR`` (an
engine error: code, detail, fields, status), each the call's one answer; before it, a
call that takes long (the end of a catalogue upload) may get ``PROGRESS`` messages
(payload: the catalogue rows the ledger has stored so far), which say the sequencer is
still at it. ``call_id`` 0 is the hello.

Every stream is TLS 1.3 with certificates on both sides (``tls.py``), and every frame is
bounded before it is read: a frame from a gateway at most ``REQUEST_FRAME_BYTES_MAX``,
one message in it at most its method's ``args_bytes_max`` (a catalogue upload travels
as parts, ``CATALOG_PART_BYTES`` each); an answer frame at most
``ANSWER_FRAME_BYTES_MAX`` (reports are larger than commands, and come from the
authenticated sequencer). A writer starts a new frame past ``FRAME_TARGET_BYTES``.

Why plain asyncio streams and not ZeroMQ: on uvloop with msgspec they carry a batch with
no extra thread or copy, gateways are few (one connection each), and the framing is the
only protocol code needed; docs/SCALE-OUT.md has the measured figures.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from enum import StrEnum

import msgspec

from lijian.port import Ticket


class Method(StrEnum):
    """Every call a gateway may send, named once for both ends: the gateway sends these
    (``gateway.py``, its policy in ``gateway_policy.py``) and the sequencer serves each
    (``sequencer.py``, which asserts it serves them all and nothing else)."""

    HELLO = "hello"  # the link's own: the campaigns' settings at connect time
    ADMIT = "admit"  # a ticket alone (a request answered without the engine)
    FRESH = "fresh"  # whether a nonce is unused (a request whose signature failed)
    REDEEM = "redeem"
    QUOTE = "quote"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    CATALOG_ROWS = "catalog_rows"  # a catalogue upload's parts, then its end
    CATALOG_PRICES = "catalog_prices"
    CATALOG = "catalog"
    CLOCK = "clock"
    REDEMPTION = "redemption"
    PERSON = "person"
    STATUS = "status"
    PUBLIC = "public"
    SETTLEMENT = "settlement"
    RISK = "risk"
    AUDIT = "audit"
    EVIDENCE = "evidence"
    EVENTS = "events"
    HEALTH = "health"
    GAUGES = "gauges"
    METRICS = "metrics"
    OPERATE = "operate"
    OPERATIONS = "operations"
    CLAIM = "claim"
    VOUCHER = "voucher"
    VOUCHERS = "vouchers"
    CAMPAIGN = "campaign"  # a campaign created over the API since the hello
    CAMPAIGNS = "campaigns"


MiB = 1024 * 1024
FRAME_TARGET_BYTES = 1 * MiB  # a writer closes a frame once it holds this much
# A command: an order is at most 64 KiB of JSON (http/types.py), less as msgpack.
ARGS_BYTES_MAX = 128 * 1024
CATALOG_PART_BYTES = 512 * 1024  # a gateway sends a catalogue in parts of about this
# Per method, where a message may be larger than a command (the part's rows, encoded).
ARGS_BYTES_MAX_BY_METHOD: dict[str, int] = {Method.CATALOG_ROWS: 1 * MiB}
# Frames a sequencer reads: one frame's worth of messages plus one more message (the
# largest a method takes, with its call id, method name and ticket).
REQUEST_FRAME_BYTES_MAX = FRAME_TARGET_BYTES + max(ARGS_BYTES_MAX_BY_METHOD.values()) + 64 * 1024
ANSWER_FRAME_BYTES_MAX = 256 * MiB  # a report (settlement, evidence) of a busy day
MESSAGES_PER_FRAME_MAX = 16_384  # a writer drains at most this many per frame
# Written but not yet taken by the peer: a peer that stops reading is dropped past this
# (two of the largest answers), rather than growing this process without end.
UNSENT_BYTES_MAX = 2 * ANSWER_FRAME_BYTES_MAX
_LEN = struct.Struct(">I")

OK, PROBLEM, ERROR, PROGRESS = 0, 1, 2, 3

encode = msgspec.msgpack.Encoder().encode


class WireError(Exception):
    """The peer broke the protocol (frame too large, undecodable): drop the connection."""


class Call(msgspec.Struct, array_like=True):
    call_id: int
    method: str  # a Method's value; an unknown one is that call's refusal (sequencer.py)
    ticket: msgspec.Raw  # a Ticket or nil, decoded per call (decode_ticket): a bad one
    args: msgspec.Raw  # is that call's refusal, not the connection's end


decode_ticket = msgspec.msgpack.Decoder(Ticket | None).decode


class Answer(msgspec.Struct, array_like=True):
    call_id: int
    kind: int
    payload: object  # the method's result as msgpack builtins, converted by its caller


decode_calls = msgspec.msgpack.Decoder(list[Call]).decode
decode_answers = msgspec.msgpack.Decoder(list[Answer]).decode


def array_header(n: int) -> bytes:
    """msgpack's header of an array of ``n`` items (the frame joins encoded items)."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 65_536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def args_bytes_max(method: str) -> int:
    return ARGS_BYTES_MAX_BY_METHOD.get(method, ARGS_BYTES_MAX)


def frame(items: list[bytes], max_bytes: int = ANSWER_FRAME_BYTES_MAX) -> bytes:
    body = array_header(len(items)) + b"".join(items)
    if len(body) > max_bytes:
        raise WireError(f"frame of {len(body)} bytes exceeds {max_bytes}")
    return _LEN.pack(len(body)) + body


def frames(items: list[bytes], max_bytes: int) -> list[bytes]:
    """``items`` as frames of at most ``MESSAGES_PER_FRAME_MAX`` messages, each closed
    once it holds ``FRAME_TARGET_BYTES`` (so a frame is at most that plus one message)."""
    # The usual case, every message of a loop turn in one frame: sized in C, not by a
    # Python step per message (each side frames every request and every answer).
    if 0 < len(items) < MESSAGES_PER_FRAME_MAX and sum(map(len, items)) < FRAME_TARGET_BYTES:
        return [frame(items, max_bytes)]
    out: list[bytes] = []
    start, size = 0, 0
    for i, item in enumerate(items):
        size += len(item)
        if size >= FRAME_TARGET_BYTES or i + 1 - start == MESSAGES_PER_FRAME_MAX:
            out.append(frame(items[start : i + 1], max_bytes))
            start, size = i + 1, 0
    if start < len(items):
        out.append(frame(items[start:], max_bytes))
    return out


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    """The next frame's body, refused (``WireError``) before it is read when it is
    longer than ``max_bytes``; ``asyncio.IncompleteReadError`` when the peer closed."""
    head = await reader.readexactly(4)
    (n,) = _LEN.unpack(head)
    if n > max_bytes:
        raise WireError(f"frame of {n} bytes exceeds {max_bytes}")
    return await reader.readexactly(n)


class Outbox:
    """Messages waiting to be written on one stream: flushed once per loop turn."""

    def __init__(self, writer: asyncio.StreamWriter, max_bytes: int) -> None:
        self.writer = writer
        self.max_bytes = max_bytes
        self._items: list[bytes] = []
        self._scheduled = False
        self.closed = False

    def put(self, item: bytes) -> None:
        if self.closed:
            return
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        items, self._items = self._items, []
        if self.closed or not items:
            return
        try:
            for f in frames(items, self.max_bytes):
                self.writer.write(f)
        except (ConnectionError, RuntimeError, WireError):
            # Nothing more can go out: end the connection, so that both sides see it
            # lost (the gateway reconnects) rather than wait on a stream that is mute.
            self.closed = True
            self.writer.close()
            return
        if self.writer.transport.get_write_buffer_size() > UNSENT_BYTES_MAX:
            self.closed = True
            self.writer.close()  # its reader sees the end: the connection is dropped

    def close(self) -> None:
        self.closed = True
        self._items.clear()


def parse_address(spec: str) -> tuple[str, str | int]:
    """``unix:/path`` → ("unix", path); ``HOST:PORT`` → (host, port)."""
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise ValueError("unix: needs a socket path")
        return "unix", path
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"sequencer address must be HOST:PORT or unix:PATH, got {spec!r}")
    return host.strip("[]"), int(port)


def catalog_parts(rows: list[tuple[str, str, str]]) -> Iterator[list[tuple[str, str, str]]]:
    """Consecutive slices of ``rows`` of at most ``CATALOG_PART_BYTES`` encoded (a
    character is at most 4 bytes of UTF-8, a row's msgpack headers at most 16)."""
    start, size = 0, 0
    for i, (a, b, c) in enumerate(rows):
        row_bytes = 4 * (len(a) + len(b) + len(c)) + 16
        if size + row_bytes > CATALOG_PART_BYTES and i > start:
            yield rows[start:i]
            start, size = i, 0
        size += row_bytes
    if start < len(rows):
        yield rows[start:]


def price_parts(prices: list[tuple[str, str, int]]) -> Iterator[list[tuple[str, str, int]]]:
    """``catalog_parts`` for reference prices (an integer is at most 9 bytes)."""
    start, size = 0, 0
    for i, (a, b, _) in enumerate(prices):
        row_bytes = 4 * (len(a) + len(b)) + 25
        if size + row_bytes > CATALOG_PART_BYTES and i > start:
            yield prices[start:i]
            start, size = i, 0
        size += row_bytes
    if start < len(prices):
        yield prices[start:]
