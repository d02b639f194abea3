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
engine error: code, detail, fields, status). ``call_id`` 0 is the hello.

Why plain asyncio streams and not ZeroMQ: on uvloop with msgspec they carry a batch with
no extra thread or copy, gateways are few (one connection each), and the framing is the
only protocol code needed; docs/SCALE-OUT.md has the measured figures.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from lijian.http.admission import Ticket

FRAME_BYTES_MAX = 384 * 1024 * 1024  # a 256 MiB catalogue upload is one message
MESSAGES_PER_FRAME_MAX = 16_384  # a writer drains at most this many per frame
_LEN = struct.Struct(">I")

OK, PROBLEM, ERROR = 0, 1, 2

encode = msgspec.msgpack.Encoder().encode


class WireError(Exception):
    """The peer broke the protocol (frame too large, undecodable): drop the connection."""


class Call(msgspec.Struct, array_like=True):
    call_id: int
    method: str
    ticket: msgspec.Raw  # a Ticket or nil, decoded per call (decode_ticket): a bad one
    args: msgspec.Raw  # is that call's refusal, not the connection's end


decode_ticket = msgspec.msgpack.Decoder(Ticket | None).decode


class Answer(msgspec.Struct, array_like=True):
    call_id: int
    kind: int
    payload: Any


decode_calls = msgspec.msgpack.Decoder(list[Call]).decode
decode_answers = msgspec.msgpack.Decoder(list[Answer]).decode


def array_header(n: int) -> bytes:
    """msgpack's header of an array of ``n`` items (the frame joins encoded items)."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 65_536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def frame(items: list[bytes]) -> bytes:
    body = array_header(len(items)) + b"".join(items)
    if len(body) > FRAME_BYTES_MAX:
        raise WireError(f"frame of {len(body)} bytes exceeds {FRAME_BYTES_MAX}")
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The next frame's body; ``asyncio.IncompleteReadError`` when the peer closed."""
    head = await reader.readexactly(4)
    (n,) = _LEN.unpack(head)
    if n > FRAME_BYTES_MAX:
        raise WireError(f"frame of {n} bytes exceeds {FRAME_BYTES_MAX}")
    return await reader.readexactly(n)


class Outbox:
    """Messages waiting to be written on one stream: flushed once per loop turn."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
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
            for i in range(0, len(items), MESSAGES_PER_FRAME_MAX):
                self.writer.write(frame(items[i : i + MESSAGES_PER_FRAME_MAX]))
        except (ConnectionError, RuntimeError, WireError):
            self.closed = True

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
