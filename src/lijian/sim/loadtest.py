"""``lijian loadtest``: drive a running ``lijian serve`` over HTTP, for rehearsals.

Requests go through :class:`lijian.client.AsyncLijianClient` (the one signer, the one
way to build a request), without its retries: a load test reports what the server
answered, a 503 included. Before any load, one signed request per client checks the
URL and the credentials, so a wrong secret or a stopped server is one line, not a run
full of 401s.
Arrivals follow the simulator's arrival model squeezed into ``duration_s``: the same
population, orders and rush curve, open loop (an arrival is sent at its time whether or
not earlier ones were answered, up to ``concurrency`` in flight). A grant is captured
right away, or voided (failed payment), or left to expire (abandoned), at the
simulator's rates.

Bounded on purpose: at most ``max_requests`` redemptions, at most ``duration_s`` of
sending plus a short grace for answers, requests only to the given URL (no redirects
followed) and, unless ``allow_remote``, only to a loopback address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import math
import secrets
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

import httpx
import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from lijian.client import AsyncLijianClient, Credentials, calls
from lijian.core.settings import Settings
from lijian.http.clients import Client, ClientsError, load_clients
from lijian.sim.arrivals import sample_offset_ms
from lijian.sim.config import ArrivalCurve, SimConfig
from lijian.sim.runner import World, build_world, stream

MAX_DURATION_S = 3_600.0
MAX_REQUESTS = 1_000_000
MAX_CONCURRENCY = 1_024
MAX_RATE_PER_S = 100_000.0
GRACE_S = 30.0  # after the last arrival, wait at most this long for answers
TIMEOUT_S = 10.0
CATALOG_TIMEOUT_S = 120.0  # a synthetic catalogue of 20,000 lines, parsed and stored
CATALOG_SKUS = 20_000
LOADTEST_PERSONS = 20_000


class LoadtestError(Exception):
    """Bad input (URL, clients, limits): printed, exit status 2."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    url: str
    campaign_id: str = "chengdu-2025-spring"  # informational: orders carry the file's id
    rate_per_s: float = 200.0  # arrivals per second at the opening instant (the peak)
    duration_s: float = 30.0
    max_requests: int = 20_000
    concurrency: int = 64
    seed: int = 2025
    allow_remote: bool = False
    upload_catalog: bool = True
    sim: SimConfig = field(
        default_factory=lambda: SimConfig(persons=LOADTEST_PERSONS, catalog_skus=CATALOG_SKUS)
    )

    @property
    def sim_cfg(self) -> SimConfig:
        return dataclasses.replace(self.sim, seed=self.seed)

    def problems(self) -> list[str]:
        out = []
        if not 0 < self.rate_per_s <= MAX_RATE_PER_S:
            out.append(f"rate must be in (0, {MAX_RATE_PER_S:g}]")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            out.append(f"duration-s must be in (0, {MAX_DURATION_S:g}]")
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            out.append(f"max-requests must be in [1, {MAX_REQUESTS}]")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            out.append(f"concurrency must be in [1, {MAX_CONCURRENCY}]")
        return out


def check_target(url: str, allow_remote: bool) -> None:
    """Refuse anything but an http(s) URL on a loopback address (unless allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadtestError(f"--url must be http(s)://host[:port], got {url!r}")
    if allow_remote:
        return
    host = parts.hostname
    try:
        addrs = {str(ai[4][0]) for ai in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise LoadtestError(f"cannot resolve {host!r}: {exc}") from exc
    for a in addrs:
        if not ipaddress.ip_address(a.split("%")[0]).is_loopback:
            raise LoadtestError(
                f"{host} resolves to {a}, not a loopback address; pass --allow-remote to "
                "rehearse against another host you run"
            )


def pick_clients(clients: dict[str, Client], key_id: str | None) -> tuple[Client, Client | None]:
    """(channel client to redeem with, operator client for catalogue and clock or None)."""
    if key_id is not None:
        channel = clients.get(key_id)
        if channel is None:
            raise LoadtestError(f"no client {key_id!r} in the clients file")
        if channel.role not in ("channel", "operator"):
            raise LoadtestError(f"client {key_id!r} has role {channel.role}: need channel")
    else:
        found = [c for c in clients.values() if c.role == "channel"]
        if not found:
            raise LoadtestError("the clients file has no client with role channel")
        channel = found[0]
    ops = [c for c in clients.values() if c.role == "operator"]
    return channel, (ops[0] if ops else None)


def arrival_offsets_s(cfg: LoadConfig) -> list[float]:
    """The rush curve in ``duration_s``: peak ``rate_per_s`` at t=0, same shape as a day."""
    curve = ArrivalCurve(
        preopen_share=0.0,
        burst_share=cfg.sim.curve.burst_share,
        burst_tau_s=min(cfg.sim.curve.burst_tau_s, cfg.duration_s / 4),
        background_weights=(1.0,),
    )
    w = cfg.duration_s
    per_arrival_peak = (
        curve.burst_share / (curve.burst_tau_s * -math.expm1(-w / curve.burst_tau_s))
        + (1 - curve.burst_share) / w
    )
    n = min(cfg.max_requests, max(1, round(cfg.rate_per_s / per_arrival_peak)))
    rng = stream(cfg.sim_cfg, "loadtest-arrivals")
    return sorted(sample_offset_ms(curve, rng, w) / 1000 for _ in range(n))


@dataclass(slots=True)
class Results:
    sent: int = 0
    answered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "redeem 201", "capture 200"
    declines: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    late_starts: int = 0  # arrivals that waited for a free slot > 100 ms
    elapsed_s: float = 0.0

    def record(self, kind: str, status: int, ms: float) -> None:
        self.statuses[f"{kind} {status}"] += 1
        self.latency_ms.setdefault(kind, []).append(ms)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    xs = sorted(values)
    k = max(0, min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1))
    return xs[k]


class LoadRunner:
    def __init__(
        self,
        cfg: LoadConfig,
        http: AsyncLijianClient,
        channel: Client,
        operator: Client | None,
        world: World,
    ) -> None:
        self.cfg = cfg
        self.channel = http.with_credentials(Credentials(channel.key_id, channel.secret))
        self.operator = (
            http.with_credentials(Credentials(operator.key_id, operator.secret))
            if operator
            else None
        )
        self.world = world
        self.results = Results()
        self.rng = stream(cfg.sim_cfg, "loadtest-orders")
        self.run_tag = secrets.token_hex(3)  # order ids must be new on a long-lived server

    async def post(
        self, api: AsyncLijianClient, path: str, obj: object, key: str | None = None
    ) -> httpx.Response:
        body = json.dumps(obj, separators=(",", ":")).encode() if obj is not None else b""
        return await api.request("POST", path, body, "application/json", key)

    async def check_credentials(self) -> None:
        """One signed read per client before any load (a status read: every role may)."""
        path = f"/v1/campaigns/{self.cfg.campaign_id}/status"
        for api in (self.channel, self.operator):
            if api is None:
                continue
            assert api.creds is not None
            try:
                r = await api.request("GET", path)
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
                raise LoadtestError(f"cannot reach {self.cfg.url}: {reason}") from None
            if r.status_code != 200:
                raise LoadtestError(_refusal(api.creds.key_id, r))

    async def upload_catalog(self) -> int:
        assert self.operator is not None
        rows = self.world.catalog.rows
        body = "".join(
            json.dumps({"sku": s, "category": c, "platform": p}) + "\n" for p, s, c in rows
        ).encode()
        path = f"/v1/campaigns/{self.cfg.campaign_id}/catalog"
        call = calls.raw("PUT", path, body, calls.NDJSON)
        r = await self.operator.send(call, timeout_s=CATALOG_TIMEOUT_S)
        if r.status_code != 200:
            raise LoadtestError(f"catalogue upload: HTTP {r.status_code}: {r.text[:300]}")
        return int(r.json().get("upserted", 0))

    async def one(self, i: int, sem: asyncio.Semaphore) -> None:
        res, sim = self.results, self.cfg.sim
        p = self.world.population.pick(self.rng)
        order, _ = self.world.factory.make(self.rng, p, f"LT{self.run_tag}")
        u = self.rng.random()
        obj = msgspec.to_builtins(order)
        key = f"lt-{self.run_tag}-{i}"
        async with sem:
            res.sent += 1
            t0 = time.perf_counter()
            try:
                r = await self.post(self.channel, "/v1/redemptions", obj, key)
            except httpx.HTTPError as exc:
                res.errors[type(exc).__name__] += 1
                return
            res.record("redeem", r.status_code, (time.perf_counter() - t0) * 1000)
            res.answered += 1
            if r.status_code == 200:
                for reason in r.json().get("reasons", []):
                    res.declines[reason.get("code", "?")] += 1
                return
            if r.status_code != 201:
                res.errors[f"redeem HTTP {r.status_code}"] += 1
                return
            if sim.pay_fail_rate <= u < sim.pay_fail_rate + sim.abandon_rate:
                return  # abandoned: the server's hold TTL ends it
            kind = "void" if u < sim.pay_fail_rate else "capture"
            rid = r.json()["id"]
            t1 = time.perf_counter()
            try:
                r2 = await self.post(self.channel, f"/v1/redemptions/{rid}/{kind}", None)
            except httpx.HTTPError as exc:
                res.errors[type(exc).__name__] += 1
                return
            res.record(kind, r2.status_code, (time.perf_counter() - t1) * 1000)

    async def run(self, progress: Progress | None = None) -> Results:
        offsets = arrival_offsets_s(self.cfg)
        task = progress.add_task("redemptions", total=len(offsets)) if progress else None
        sem = asyncio.Semaphore(self.cfg.concurrency)
        start = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()

        def done(t: asyncio.Task[None]) -> None:
            pending.discard(t)
            if progress is not None and task is not None:
                progress.advance(task)

        for i, off in enumerate(offsets):
            delay = start + off - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.1:
                self.results.late_starts += 1
            t = asyncio.create_task(self.one(i, sem))
            pending.add(t)
            t.add_done_callback(done)
        if pending:
            _, late = await asyncio.wait(pending, timeout=GRACE_S)
            for t in late:
                t.cancel()
            if late:
                self.results.errors["not answered within the grace period"] += len(late)
        self.results.elapsed_s = time.perf_counter() - start
        return self.results


async def run_loadtest(
    cfg: LoadConfig,
    settings: Settings,
    channel: Client,
    operator: Client | None,
    console: Console | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    set_clock: str | None = None,
) -> Results:
    """Run one load test. ``transport`` lets tests answer without a socket."""
    problems = cfg.problems()
    if problems:
        raise LoadtestError("; ".join(problems))
    if transport is None:
        check_target(cfg.url, cfg.allow_remote)
    world = build_world(settings, cfg.sim_cfg)
    limits = httpx.Limits(
        max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
    )
    async with AsyncLijianClient(
        cfg.url, None, timeout_s=TIMEOUT_S, transport=transport, limits=limits, retries_max=0
    ) as http:
        runner = LoadRunner(cfg, http, channel, operator, world)
        await runner.check_credentials()
        if cfg.upload_catalog:
            if runner.operator is None:
                raise LoadtestError("uploading the catalogue needs an operator client")
            n = await runner.upload_catalog()
            if console:
                console.print(f"catalogue: {n:,} SKUs uploaded")
        if set_clock is not None:
            if runner.operator is None:
                raise LoadtestError("setting the clock needs an operator client")
            r = await runner.post(runner.operator, "/v1/admin/clock", {"now": set_clock})
            if r.status_code != 200:
                raise LoadtestError(f"clock: HTTP {r.status_code}: {r.text[:300]}")
        if console is None:
            return await runner.run()
        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*cols, TimeElapsedColumn(), console=console) as bar:
            return await runner.run(bar)


def _refusal(key_id: str, r: httpx.Response) -> str:
    try:
        doc = r.json()
    except ValueError:
        doc = {}
    code = doc.get("code", "") if isinstance(doc, dict) else ""
    what = f"HTTP {r.status_code} {code}".strip()
    if r.status_code == 401:
        return f"the server refused key {key_id!r}: {what} (check its secret in the clients file)"
    return f"key {key_id!r}: {what}: {r.text[:200]}"


class Latency(TypedDict):
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


class LoadSummary(TypedDict):
    """What a load test measured (printed as a table; ``--json`` prints it as it is)."""

    sent: int
    answered: int
    elapsed_s: float
    throughput_per_s: float
    statuses: dict[str, int]
    declines_by_reason: dict[str, int]
    latency: dict[str, Latency]
    late_starts: int
    errors: dict[str, int]


def summary(res: Results) -> LoadSummary:
    """The report as a dict (printed as a table; ``--json`` prints it as it is)."""
    lat: dict[str, Latency] = {
        kind: {
            "count": len(v),
            "p50_ms": round(percentile(v, 50), 2),
            "p90_ms": round(percentile(v, 90), 2),
            "p99_ms": round(percentile(v, 99), 2),
            "max_ms": round(max(v), 2),
        }
        for kind, v in sorted(res.latency_ms.items())
        if v
    }
    return {
        "sent": res.sent,
        "answered": res.answered,
        "elapsed_s": round(res.elapsed_s, 3),
        "throughput_per_s": round(res.answered / res.elapsed_s, 1) if res.elapsed_s else 0.0,
        "statuses": dict(sorted(res.statuses.items())),
        "declines_by_reason": dict(res.declines.most_common()),
        "latency": lat,
        "late_starts": res.late_starts,
        "errors": dict(sorted(res.errors.items())),
    }


def print_summary(doc: LoadSummary, console: Console) -> None:
    console.print(
        f"{doc['answered']:,} of {doc['sent']:,} redemptions answered in {doc['elapsed_s']} s: "
        f"{doc['throughput_per_s']:,} per second; arrivals started late: {doc['late_starts']:,}"
    )
    t = Table(title="latency (ms)", title_justify="left")
    for col in ("request", "count", "p50", "p90", "p99", "max"):
        t.add_column(col, justify="left" if col == "request" else "right")
    for kind, v in doc["latency"].items():
        t.add_row(
            kind,
            f"{v['count']:,}",
            *(f"{v[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")),
        )
    console.print(t)
    t2 = Table(title="answers", title_justify="left")
    t2.add_column("what")
    t2.add_column("count", justify="right")
    for k, n in doc["statuses"].items():
        t2.add_row(k, f"{n:,}")
    for k, n in doc["declines_by_reason"].items():
        t2.add_row(f"declined: {k}", f"{n:,}")
    for k, n in doc["errors"].items():
        t2.add_row(f"[red]error: {k}[/red]", f"{n:,}")
    console.print(t2)


def run_loadtest_command(
    url: str,
    clients_file: Path,
    key_id: str | None,
    console: Console,
    campaign: Path,
    set_clock: str | None = None,
    as_json: bool = False,
    **knobs: Any,
) -> int:
    """``lijian loadtest``: 0 when every request was answered without error, 1 if not,
    2 on bad input."""
    from lijian.core.settings import SettingsError
    from lijian.inputs import load_settings_file

    try:
        settings = load_settings_file(campaign)
        channel, operator = pick_clients(load_clients(clients_file), key_id)
        cfg = LoadConfig(url=url, campaign_id=settings.id, **knobs)
        res = asyncio.run(
            run_loadtest(cfg, settings, channel, operator, console, set_clock=set_clock)
        )
    except (LoadtestError, ClientsError, SettingsError) as exc:
        # One line on stderr, never wrapped or styled: scripts read it.
        sys.stderr.write(f"lijian loadtest: {' '.join(str(exc).split())}\n")
        return 2
    doc = summary(res)
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print_summary(doc, console)
    return 0 if not res.errors else 1
