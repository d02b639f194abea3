"""A peer of the sequencer speaking ``lijian.cluster.wire`` with plain sockets: what a
hostile (or broken) program on the link can send, without a gateway in between.

``connect`` is the one place that opens the link: TLS with a gateway's credentials (a
directory made by ``lijian certs new``), as every peer the sequencer answers must hold;
``WireClient`` frames calls and reads answers.
"""

from __future__ import annotations

import itertools
import secrets
import socket
import struct
import time
from pathlib import Path
from typing import Any

import msgspec

from lijian.cluster.tls import SEQUENCER_NAME, client_context
from lijian.cluster.wire import ERROR, OK, PROBLEM, PROGRESS, Answer, decode_answers
from lijian.port import Ticket

TIMEOUT_S = 30.0
_LEN = struct.Struct(">I")


def connect(
    address: tuple[str, int] | str, tls_dir: Path, timeout_s: float = TIMEOUT_S
) -> socket.socket:
    """A connection to the sequencer at ``(host, port)`` or a Unix socket path, TLS with
    the gateway credentials in ``tls_dir`` (ca.pem, cert.pem, key.pem)."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        sock.connect(address)
    else:
        sock = socket.create_connection(address, timeout=timeout_s)
    # The gateway's own context (lijian.cluster.tls): the peer is the real sequencer.
    return client_context(tls_dir).wrap_socket(sock, server_hostname=SEQUENCER_NAME)


def ticket(key_id: str, **kw: Any) -> Ticket:
    """A fresh ticket of ``key_id`` (a new nonce, the real clock's second)."""
    return Ticket(key_id, secrets.token_hex(16), int(time.time()), **kw)


class WireClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._ids = itertools.count(1)
        self.progress: list[Answer] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, messages: list[Any]) -> None:
        body = msgspec.msgpack.encode(messages)
        self.sock.sendall(_LEN.pack(len(body)) + body)

    def _read_exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("the sequencer closed the connection")
            out += chunk
        return bytes(out)

    def answers(self, n: int) -> dict[int, Answer]:
        """The next ``n`` answers (they may come in one frame or several), by call id.
        ``PROGRESS`` messages (a long call still running) are kept in ``progress``."""
        got: dict[int, Answer] = {}
        while len(got) < n:
            (size,) = _LEN.unpack(self._read_exactly(4))
            for a in decode_answers(self._read_exactly(size)):
                if a.kind == PROGRESS:
                    self.progress.append(a)
                else:
                    got[a.call_id] = a
        return got

    def call(self, method: str, args: Any, t: Ticket | None = None) -> Answer:
        """One call, answered; ``args`` is sent as given (a list, or anything at all)."""
        call_id = next(self._ids)
        self.send([[call_id, method, t, args]])
        answer = self.answers(1)[call_id]
        assert answer.call_id == call_id
        return answer

    def ok(self, method: str, args: Any, t: Ticket | None = None) -> Any:
        a = self.call(method, args, t)
        assert a.kind == OK, (method, a)
        return a.payload

    def problem(self, method: str, args: Any, t: Ticket | None = None) -> tuple[int, str, str]:
        """(status, code, detail) of a call answered with a problem."""
        a = self.call(method, args, t)
        assert a.kind == PROBLEM, (method, a)
        status, code, detail, _errors, _headers = a.payload
        return status, code, detail


__all__ = ["ERROR", "OK", "PROBLEM", "PROGRESS", "WireClient", "connect", "ticket"]
