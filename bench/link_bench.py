"""What TLS costs on the sequencer link: the same frames over a Unix socket, plain and
TLS 1.3 with client certificates (the link's own contexts, ``cluster/tls.py``).

    .venv/bin/python -m bench.link_bench [--calls 200000] [--window 512]

One process, one uvloop loop: a server that answers every message of a frame as the
sequencer frames answers (``wire.Outbox``), and a client that keeps ``--window`` calls
in flight, each a message the size of a redemption (about 700 bytes) answered by one the
size of a 201 (about 400 bytes). CPU time per call counts both ends, so it is the
link's whole cost per command (framing, copying, encryption), steadier than a rate on a
shared machine. Handshakes are not in it: a gateway makes one per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import tempfile
import time
from pathlib import Path

import uvloop

from lijian.cluster import wire
from lijian.cluster.tls import SEQUENCER_NAME, client_context, new_set, server_context

REQUEST = b"r" * 700
ANSWER = {"id": "r" * 26, "status": "held", "discount_fen": 3720, "pad": "x" * 300}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    out = wire.Outbox(writer, wire.ANSWER_FRAME_BYTES_MAX)
    try:
        while True:
            for c in wire.decode_calls(await wire.read_frame(reader, wire.REQUEST_FRAME_BYTES_MAX)):
                out.put(wire.encode((c.call_id, wire.OK, ANSWER)))
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        writer.close()


async def _run(path: str, tls: Path | None, calls: int, window: int) -> tuple[float, float]:
    sctx = server_context(tls / "sequencer") if tls else None
    cctx = client_context(tls / "gateway-1") if tls else None
    server = await asyncio.start_unix_server(_serve, path, ssl=sctx)
    kw = {"ssl": cctx, "server_hostname": SEQUENCER_NAME} if cctx else {}
    reader, writer = await asyncio.open_unix_connection(path, **kw)  # type: ignore[arg-type]
    out = wire.Outbox(writer, wire.REQUEST_FRAME_BYTES_MAX)
    sent = done = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while done < calls:
        while sent < calls and sent - done < window:
            sent += 1
            out.put(wire.encode((sent, "redeem", None, [REQUEST])))
        done += len(wire.decode_answers(await wire.read_frame(reader, wire.ANSWER_FRAME_BYTES_MAX)))
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    writer.close()
    server.close()
    await server.wait_closed()
    os.unlink(path)
    return wall_s, cpu_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--window", type=int, default=512, help="calls in flight")
    ap.add_argument("--rounds", type=int, default=3, help="alternating plain/TLS runs each")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        new_set(Path(d) / "tls", ["gateway-1"])
        figures: dict[str, list[tuple[float, float]]] = {"plain": [], "TLS 1.3": []}
        for _ in range(args.rounds):
            for name, tls in (("plain", None), ("TLS 1.3", Path(d) / "tls")):
                got = uvloop.run(_run(f"{d}/s.sock", tls, args.calls, args.window))
                figures[name].append(got)
    print(f"{args.calls:,} calls, {args.window} in flight, best of {args.rounds}\n")
    print("| link | calls/s | CPU µs per call (both ends) |")
    print("|---|---:|---:|")
    best = {}
    for name, runs in figures.items():
        wall_s = min(w for w, _ in runs)
        cpu_s = min(c for _, c in runs)
        best[name] = cpu_s
        print(f"| {name} | {args.calls / wall_s:,.0f} | {cpu_s / args.calls * 1e6:.2f} |")
    extra_us = (best["TLS 1.3"] - best["plain"]) / args.calls * 1e6
    print(f"\nTLS adds {extra_us:.2f} µs of CPU per call")


if __name__ == "__main__":
    main()
