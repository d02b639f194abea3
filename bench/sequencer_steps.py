"""Where one sequencer core spends its CPU per forwarded decline, in one process (no TLS,
no socket): the sequencer's app as ``lijian sequencer`` builds it (``cluster/roles.py:
sequencer_app``; its engine on a SQLite file, the two campaigns of
``bench/sequencer_bench.py``, the second sold out by a first grant), fed that bench's
pre-encoded ``redeem`` frames, its answers taken as a link's outbox takes them.

    .venv/bin/python -m bench.sequencer_steps [--frames 80] [--rounds 8]

Prints the loop thread's CPU per forwarded sold-out decline (``time.thread_time``, so
other processes on a shared machine count less than in a rate):

* served as the sequencer serves a frame (``Sequencer._serve``: a frame's redemptions
  step by step, ``_redeems``) and one call at a time through every step (``_dispatch``
  per call, as before that), in alternating rounds of the same frames: best and median
  round of each;
* each step alone, over 3,000 calls in a loop (best of 7): how the path divides, the
  code of each step hot (the served path costs more than their sum: its steps evict
  each other's code and data).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from bench.http_load import CLIENTS_TOML, CLOCK, campaign_toml
from bench.sequencer_bench import (
    GRANTS_BUDGET_FEN,
    GRANTS_CID,
    ID_WIDTH,
    SOLDOUT_BUDGET_FEN,
    SOLDOUT_CID,
    redeem_message,
    redeem_template,
)
from lijian.cluster import roles, wire
from lijian.cluster.order_decode import order_decoder
from lijian.cluster.sequencer import Sequencer, _ok, _outcome
from lijian.cluster.tls import new_set
from lijian.cluster.uploads import Link
from lijian.core.keyed import keyed_order
from lijian.core.order import Order
from lijian.http.server import ServeOptions
from lijian.serving import load_inputs

CALLS_PER_FRAME = 512  # as a synthetic gateway's window sends them
FRAMES_IN_FLIGHT = 3  # three gateways' frames before the commit that answers them
STEP_CALLS, STEP_REPEATS = 3_000, 7
FRAMES_MAX, ROUNDS_MAX = 2_000, 50


class Answers:
    """A link's outbox as the sequencer sees it; wakes the driver once ``want`` arrived."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.want = 0
        self.arrived: asyncio.Future[None] | None = None

    def put(self, item: bytes) -> None:
        self.items.append(item)
        if self.arrived is not None and len(self.items) >= self.want and not self.arrived.done():
            self.arrived.set_result(None)

    async def until(self, n: int) -> None:
        if len(self.items) < n:
            self.want, self.arrived = n, asyncio.get_running_loop().create_future()
            await self.arrived


def frames(parts: list[bytes], tag: str, count: int) -> list[bytes]:
    """``count`` frames of fresh redeem calls (each its own nonce, order, person, key)."""
    out = []
    for f in range(count):
        items = [
            redeem_message(parts, i, f"{tag}{f:05d}{i:0{ID_WIDTH - len(tag) - 5}d}".encode())
            for i in range(CALLS_PER_FRAME)
        ]
        out.append(wire.frame(items, wire.REQUEST_FRAME_BYTES_MAX)[4:])
    return out


async def drive(
    bodies: list[bytes], serve: Callable[[list[wire.Call]], None], out: Answers
) -> float:
    """Loop-thread CPU µs per call: ``FRAMES_IN_FLIGHT`` frames served, then their answers
    waited for (they leave with the commit that stores the calls' nonces)."""
    t0, n = time.thread_time(), 0
    for i in range(0, len(bodies), FRAMES_IN_FLIGHT):
        before, k = len(out.items), 0
        for body in bodies[i : i + FRAMES_IN_FLIGHT]:
            calls = wire.decode_calls(body)
            serve(calls)
            k += len(calls)
        await out.until(before + k)
        n += k
    return 1e6 * (time.thread_time() - t0) / n


async def start(d: Path) -> tuple[Sequencer, Any, Callable[[], Any]]:
    """The sequencer's app started (its ASGI lifespan, by hand), the catalogues loaded."""
    for cid, budget in ((GRANTS_CID, GRANTS_BUDGET_FEN), (SOLDOUT_CID, SOLDOUT_BUDGET_FEN)):
        (d / f"{cid}.toml").write_text(campaign_toml(cid, budget, budget < 10**6))
    (d / "clients.toml").write_text(CLIENTS_TOML)
    new_set(d / "tls", ["gateway-1"])
    opts = ServeOptions(
        campaigns=[d / f"{cid}.toml" for cid in (GRANTS_CID, SOLDOUT_CID)],
        clients=d / "clients.toml", db=str(d / "bench.db"), clock=CLOCK,
        log_level="warning", access_log=False,
    )  # fmt: skip
    app = roles.sequencer_app(opts, load_inputs(opts), None, d / "tls" / "sequencer")
    seq = next(
        f.__self__ for f in app.on_stopping if isinstance(getattr(f, "__self__", None), Sequencer)
    )
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    await inbox.put({"type": "lifespan.startup"})
    life = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    )
    while not sent:
        await asyncio.sleep(0.01)
    assert sent[0]["type"] == "lifespan.startup.complete", sent
    rows = [("jd", f"SKU-{i}", "fresh_food") for i in range(1_000)]
    for cid in (GRANTS_CID, SOLDOUT_CID):
        await seq.engine.catalog_upsert(rows, campaign_id=cid)

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await life

    return seq, app, stop


def steps(seq: Sequencer, link: Link, parts: list[bytes], tag: str) -> dict[str, float]:
    """CPU µs per call of each step alone, over ``STEP_CALLS`` fresh calls (best of
    ``STEP_REPEATS``): the steps of ``_redeems``, in its order."""
    adm, engine, redeem = seq.admission, seq.engine, seq.methods["redeem"]
    decode_only = order_decoder(str, str, str)
    strict = msgspec.msgpack.Decoder(tuple[Order, str, str, str]).decode
    best: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., object], *data: Any) -> Any:
        t0 = time.thread_time()
        result = fn(*data)
        us = 1e6 * (time.thread_time() - t0) / STEP_CALLS
        best[name] = min(best.get(name, us), us)
        return result

    hook = seq.on_redeemed
    assert hook is not None
    for r in range(STEP_REPEATS):
        items = [
            redeem_message(parts, i, f"{tag}{r:02d}{i:0{ID_WIDTH - len(tag) - 2}d}".encode())
            for i in range(STEP_CALLS)
        ]
        body = wire.frame(items, wire.REQUEST_FRAME_BYTES_MAX)[4:]
        calls = timed("the frame's calls decoded (wire.decode_calls)", wire.decode_calls, body)
        tickets = timed(
            "ticket decoded", lambda cs: [wire.decode_ticket(c.ticket) for c in cs], calls
        )
        timed("ticket admitted (nonce, rate token)", lambda ts: [adm.admit(t) for t in ts], tickets)
        timed(
            "answer held for its nonce",
            lambda ts: [adm.hold_answers(link.out) for _ in ts],
            tickets,
        )
        args = timed(
            "arguments decoded and checked", lambda cs: [redeem.decode(c.args) for c in cs], calls
        )
        timed(
            "  of which the order's decode (order_decode.py)",
            lambda cs: [decode_only(c.args) for c in cs],
            calls,
        )
        timed(
            "  (msgspec's strict decode of the same, as before order_decode.py)",
            lambda cs: [strict(c.args) for c in cs],
            calls,
        )
        timed("client allowed (its role)", lambda ts, xs: [
            seq._forbidden("redeem", t, a, link) for t, a in zip(ts, xs, strict=True)
        ], tickets, args)  # fmt: skip
        orders = [a[0] for a in args]
        keyed = timed("  order keyed", lambda os: [keyed_order(engine._key, o) for o in os], orders)
        timed("  order evaluated (rules, geography, catalogue)", lambda os: [
            engine.evaluate(o) for o in os
        ], keyed)  # fmt: skip
        ready = timed("prepared (keyed and evaluated)", lambda os: [
            engine.redeem_prepare(o) for o in os
        ], orders)  # fmt: skip
        outcomes = timed("decided (the fast decline: ledger state)", lambda ps, xs: [
            engine.redeem_decide(p, a[1], a[2], a[3]) for p, a in zip(ps, xs, strict=True)
        ], ready, args)  # fmt: skip
        timed("counted (metrics)", lambda os: [hook(SOLDOUT_CID, o) for o in os], outcomes)
        timed(
            "answer encoded", lambda os: [_ok(i, _outcome(o)) for i, o in enumerate(os)], outcomes
        )
    return best


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="lijian-sequencer-steps-") as tmp:
        seq, _app, stop = await start(Path(tmp))
        try:
            out = Answers()
            link = Link("gateway-1", out, None)  # type: ignore[arg-type]  # an outbox's put
            parts = redeem_template(SOLDOUT_CID)
            # The one grant that sells the campaign out.
            seq._serve(wire.decode_calls(_one(parts)), link)
            await out.until(1)
            first = wire.decode_answers(wire.frame(out.items[:1])[4:])[0]
            assert first.kind == wire.OK and first.payload[0] == 201, first

            def served_frame(calls: list[wire.Call]) -> None:
                seq._serve(calls, link)

            def one_at_a_time(calls: list[wire.Call]) -> None:
                for c in calls:
                    seq._dispatch(c, link)

            await drive(frames(parts, "w", 6), served_frame, out)  # warm
            served: list[float] = []
            alone: list[float] = []
            for r in range(args.rounds):
                bodies = frames(parts, f"s{r:02d}", args.frames // 2)
                served.append(await drive(bodies, served_frame, out))
                bodies = frames(parts, f"a{r:02d}", args.frames // 2)
                alone.append(await drive(bodies, one_at_a_time, out))
            last = wire.decode_answers(wire.frame(out.items[-1:])[4:])[0]
            status, body, _ = last.payload
            assert status == 200 and "sold_out" in [x["code"] for x in body["reasons"]], last
            per_step = steps(seq, link, parts, "t")
        finally:
            await stop()
    n = args.rounds * (args.frames // 2) * CALLS_PER_FRAME
    print("command: python -m bench.sequencer_steps " + " ".join(sys.argv[1:]))
    print(f"{n:,} forwarded sold-out declines each way, {CALLS_PER_FRAME} calls a frame, "
          f"{FRAMES_IN_FLIGHT} frames a commit; loop-thread CPU µs per decline\n")  # fmt: skip
    print("| path | best round | median round |\n|---|---:|---:|")
    for name, xs in (("a frame's redemptions step by step (_serve)", served),
                     ("one call at a time through every step (_dispatch)", alone)):  # fmt: skip
        print(f"| {name} | {min(xs):.1f} | {statistics.median(xs):.1f} |")
    print(f"\n| step alone, {STEP_CALLS:,} calls (best of {STEP_REPEATS}) | CPU µs per call |")
    print("|---|---:|")
    for name, us in per_step.items():
        print(f"| {name} | {us:.2f} |")


def _one(parts: list[bytes]) -> bytes:
    return wire.frame([redeem_message(parts, 1, b"first".ljust(ID_WIDTH, b"0"))])[4:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=80, help="frames per round, both paths")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    if not 2 <= args.frames <= FRAMES_MAX:
        ap.error(f"--frames: 2..{FRAMES_MAX}")
    if not 1 <= args.rounds <= ROUNDS_MAX:
        ap.error(f"--rounds: 1..{ROUNDS_MAX}")
    uvloop.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
