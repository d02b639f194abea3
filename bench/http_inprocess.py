"""``python -m bench.http_bench --in-process N``: the application alone, without
uvicorn, sockets or wrk. The app ``lijian serve`` builds is called as an ASGI callable
with pre-built scopes (pre-signed requests, the same three phases as the wrk run), and
the CPU time per request is printed: on a machine shared with other work, the steadier
figure for our own code.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.http_load import (
    CATALOG_SKUS,
    CLIENTS_TOML,
    CLOCK,
    DISCOUNT_FEN,
    SECRETS,
    campaign_toml,
    order_body,
)
from lijian.http.auth import sign


class _Sink:
    """The ``send`` of one in-process request: keeps the status and the body."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def __call__(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            self.status = msg["status"]
        else:
            self.body = msg.get("body", b"")


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        "scheme": "http", "method": method, "root_path": "", "path": path,
        "raw_path": path.encode(), "query_string": b"", "headers": headers, "state": {},
    }  # fmt: skip


def _signed(method: str, path: str, body: bytes, key: str, nonce: str, **extra: str) -> Any:
    ts = str(int(time.time()))
    sig = sign(SECRETS[key].encode(), method, path, ts, nonce, body)
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    headers += [(b"x-lijian-key", key.encode()), (b"x-lijian-timestamp", ts.encode()),
                (b"x-lijian-nonce", nonce.encode()), (b"x-lijian-signature", sig.encode())]  # fmt: skip
    return _scope(method, path, headers), body


def _redemption(cid: str, n: str) -> Any:
    return _signed("POST", "/v1/redemptions", order_body(cid, n).encode(), "unionpay",
                   f"{n}-nonce-0123456789", **{"Content-Type": "application/json",
                   "Idempotency-Key": f"idem-{n}"})  # fmt: skip


async def _call(app: Any, reqs: list[Any], expect: int) -> None:
    sink = _Sink()
    for scope, body in reqs:
        msg = {"type": "http.request", "body": body, "more_body": False}

        async def receive(msg: dict[str, Any] = msg) -> dict[str, Any]:
            return msg

        await app(scope, receive, sink)
        if sink.status != expect:
            raise RuntimeError(f"{scope['path']}: {sink.status} {sink.body[:300]!r}")


async def _in_process_phase(
    work: Path, phase: str, n: int, access_log: bool, concurrent: bool = False
) -> tuple[float, float]:
    """CPU µs per request: the process's (all threads), and the event loop's thread alone
    (this coroutine's: HTTP handling, the engine, the writer's task; the rest is the
    other threads', the committer's above all)."""
    from lijian.http.server import ServeOptions
    from lijian.serving import build_app

    cid = f"bench-{phase}"
    budget = DISCOUNT_FEN + 100 if phase == "soldout" else 10**13
    d = work / phase
    d.mkdir(parents=True)
    (d / "campaign.toml").write_text(campaign_toml(cid, budget, budget < 10**6))
    (d / "clients.toml").write_text(CLIENTS_TOML)
    opts = ServeOptions([d / "campaign.toml"], d / "clients.toml", str(d / "bench.db"),
                        clock=CLOCK, log_level="warning", access_log=access_log,
                        extensions=("lijian.dashboard:mount",))  # fmt: skip
    app = build_app(opts)
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(msg: dict[str, Any]) -> None:
        started.set()

    await lifespan.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, lifespan_send))
    await started.wait()
    try:
        catalog = "".join(
            json.dumps({"sku": f"SKU-{i}", "category": "fresh_food", "platform": "jd"}) + "\n"
            for i in range(CATALOG_SKUS)
        ).encode()
        put = _signed("PUT", f"/v1/campaigns/{cid}/catalog", catalog, "ops",
                      "catalog-nonce-0123456789", **{"Content-Type": "application/x-ndjson"})  # fmt: skip
        await _call(app, [put], 200)
        if phase == "soldout":  # the one grant, then the decline that records the sell-out
            await _call(app, [_redemption(cid, "first")], 201)
            await _call(app, [_redemption(cid, "second")], 200)
        if phase == "healthz":
            reqs = [(_scope("GET", "/healthz", [(b"host", b"127.0.0.1:8000")]), b"")] * n
        else:
            reqs = [_redemption(cid, f"{phase}-{i:08d}") for i in range(n)]
        expect = {"healthz": 200, "soldout": 200, "grants": 201}[phase]
        warm, reqs = reqs[: n // 10], reqs[n // 10 :]
        await _call(app, warm, expect)
        # The pre-built requests are the bench's, not the server's: out of the collector's
        # sight, as the server freezes what it built at start-up (gc_tuning.tune_gc).
        gc.collect()
        gc.freeze()
        c0, t0 = time.process_time(), time.thread_time()
        if phase == "grants" or concurrent:  # 64 callers in flight, like wrk's connections
            k = len(reqs) // 64
            await asyncio.gather(
                *(_call(app, reqs[i * k : (i + 1) * k], expect) for i in range(64))
            )
            done = 64 * k
        else:
            await _call(app, reqs, expect)
            done = len(reqs)
        return (
            1e6 * (time.process_time() - c0) / done,
            1e6 * (time.thread_time() - t0) / done,
        )
    finally:
        gc.unfreeze()
        await lifespan.put({"type": "lifespan.shutdown"})
        await task


def in_process(n: int, access_log: bool) -> int:
    """Each phase; the sold-out declines also with 64 callers in flight (wrk's shape):
    one after another, each waits alone for the commit that stores its nonce."""
    import uvloop

    from lijian.http.logs import configure

    configure("warning")  # what the wrk phases run with
    work = Path(tempfile.mkdtemp(prefix="lijian-http-inproc-"))
    try:
        rows = [(p, uvloop.run(_in_process_phase(work, p, n, access_log)))
                for p in ("healthz", "soldout", "grants")]  # fmt: skip
        rows.insert(2, ("soldout64", uvloop.run(
            _in_process_phase(work / "64", "soldout", n, access_log, concurrent=True))))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"in-process, {n:,} calls per phase (the first tenth as warm-up); CPU µs per request")
    print("(both threads of the process: the grants include the writer and its commits;")
    print("the loop thread's alone beside it; the rest is mostly the committer thread's)\n")
    print("| phase | CPU µs/request | loop thread µs/request |\n|---|---:|---:|")
    names = {"healthz": "GET /healthz", "soldout": "POST /v1/redemptions, sold out (200)",
             "soldout64": "POST /v1/redemptions, sold out (200), 64 in flight",
             "grants": "POST /v1/redemptions, granted (201)"}  # fmt: skip
    for phase, (us, loop_us) in rows:
        print(f"| {names[phase]} | {us:.1f} | {loop_us:.1f} |")
    return 0
