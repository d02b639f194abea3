"""What the slow-client limits (``lijian.http.guard``) cost per request, in process.

    .venv/bin/python -m bench.guard_bench [--requests 50000] [--rounds 3]

uvicorn's httptools protocol and lijian's ``GuardedProtocol`` each serve the same
kept-alive connection (a transport that only collects the bytes written): a GET is fed
to ``data_received``, the loop runs the ASGI task (a trivial app) until the answer is
written, then the next request. CPU time per request (``time.process_time``) is printed
per round, alternating plain and guarded, so other work on the machine disturbs both
alike; no sockets, no wrk. ``python -m bench.http_bench`` measures the whole server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from lijian.http.guard import Limits, guarded_protocol

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: lijian\r\nUser-Agent: bench\r\n\r\n"
BODY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"15")]


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += len(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def serve(protocol_class: type[HttpToolsProtocol], requests: int) -> float:
    """CPU µs per request on one kept-alive connection."""
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    proto = protocol_class(config, state, {}, _loop=asyncio.get_running_loop())
    transport = Transport()
    proto.connection_made(transport)
    t0 = time.process_time()
    for _ in range(requests):
        proto.data_received(REQUEST)
        while state.tasks:  # the ASGI task writes the answer
            await asyncio.sleep(0)
    dt_s = time.process_time() - t0
    assert not transport.closed and transport.written >= requests * len(BODY)
    proto.connection_lost(None)
    return dt_s / requests * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    guarded = guarded_protocol(Limits())
    results: dict[str, list[float]] = {"plain": [], "guarded": []}
    uvloop.install()
    for r in range(args.rounds):
        for name, cls in (("plain", HttpToolsProtocol), ("guarded", guarded)):
            us = asyncio.run(serve(cls, args.requests))
            results[name].append(us)
            print(f"round {r + 1} {name:8s} {us:6.2f} µs/request")
    plain, guard = statistics.median(results["plain"]), statistics.median(results["guarded"])
    print(f"median: plain {plain:.2f} µs, guarded {guard:.2f} µs, "
          f"difference {guard - plain:+.2f} µs/request ({(guard / plain - 1) * 100:+.1f}%)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
