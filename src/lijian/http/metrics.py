"""Prometheus metrics for ``GET /metrics`` (one registry per app, so tests can run many).

Counters are bumped on the request path, so their labelled children are cached in plain
dicts: ``Counter.labels()`` costs ~4 µs, a dict hit ~50 ns. Label values come only from
bounded sets (routes, loaded campaign ids, the contract's reason codes, client key ids);
anything else a client sends is folded into ``"other"``.

Ledger figures (tranche remaining, granted, held) are read at scrape time by a collector
that runs on the event loop, the only thread that touches the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lijian.core.rules import MESSAGES
from lijian.engine import Engine

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
COMMIT_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self, engine: Engine, extra: Callable[[], dict[str, float]] | None = None):
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._campaigns = set(engine.campaign_ids)
        self.requests = Counter(
            "lijian_http_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "lijian_http_request_duration_seconds",
            "Time from request start to response sent",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.grants = Counter(
            "lijian_grants", "Redemptions granted (held), replays excluded", ["campaign"],
            registry=r,
        )  # fmt: skip
        self.declines = Counter(
            "lijian_declines",
            "Redemption declines, by reason (a decline may carry several reasons)",
            ["campaign", "reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "lijian_auth_failures", "401 answers by code", ["code"], registry=r
        )
        self.rate_limited = Counter(
            "lijian_rate_limited", "429 answers by client", ["client"], registry=r
        )
        self.batch_entries = Histogram(
            "lijian_writer_batch_entries",
            "Ledger entries per group commit",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "lijian_writer_commit_seconds",
            "Duration of one group commit (one transaction, one fsync)",
            buckets=COMMIT_BUCKETS_S,
            registry=r,
        )
        r.register(_LedgerCollector(engine, extra))
        self._req: dict[tuple[str, int], Any] = {}
        self._lat: dict[str, Any] = {}
        self._grant: dict[str, Any] = {}
        self._decl: dict[tuple[str, str], Any] = {}

    def on_batch(self, entries: int, commit_s: float) -> None:
        """The writer's ``on_batch`` hook (runs on the loop after each commit)."""
        self.batch_entries.observe(entries)
        self.commit_seconds.observe(commit_s)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        c = self._req.get((route, status))
        if c is None:
            c = self._req[(route, status)] = self.requests.labels(route, str(status))
        c.inc()
        h = self._lat.get(route)
        if h is None:
            h = self._lat[route] = self.latency.labels(route)
        h.observe(seconds)

    def _campaign(self, cid: str) -> str:
        return cid if cid in self._campaigns else "other"

    def granted(self, campaign_id: str) -> None:
        cid = self._campaign(campaign_id)
        c = self._grant.get(cid)
        if c is None:
            c = self._grant[cid] = self.grants.labels(cid)
        c.inc()

    def declined(self, campaign_id: str, reasons: list[dict[str, str]]) -> None:
        cid = self._campaign(campaign_id)
        for r in reasons:
            code = r["code"] if r["code"] in MESSAGES else "other"
            c = self._decl.get((cid, code))
            if c is None:
                c = self._decl[(cid, code)] = self.declines.labels(cid, code)
            c.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LedgerCollector(Collector):
    """Scrape-time gauges from the ledger (called on the loop by ``render``)."""

    def __init__(self, engine: Engine, extra: Callable[[], dict[str, float]] | None) -> None:
        self.engine = engine
        self.extra = extra

    def collect(self) -> Iterator[GaugeMetricFamily]:
        e = self.engine
        names = {
            "remaining": "Money left in today's tranche",
            "released": "Money released into today's tranche",
            "held": "Money held (not yet captured) in today's tranche",
            "granted": "Money granted (captured, net of clawbacks) from today's tranche",
        }
        today = {k: GaugeMetricFamily(f"lijian_tranche_{k}_fen", v, labels=["campaign"])
                 for k, v in names.items()}  # fmt: skip
        budget = GaugeMetricFamily(
            "lijian_campaign_granted_fen",
            "Captured discounts net of clawbacks",
            labels=["campaign"],
        )
        for cid in e.campaign_ids:
            st = e.status(cid)
            budget.add_metric([cid], st["granted_fen"])
            t = st["today"]
            if t is not None:
                for k, fam in today.items():
                    fam.add_metric([cid], t[f"{k}_fen"])
        yield from today.values()
        yield budget
        stats = e.writer.stats
        yield GaugeMetricFamily(
            "lijian_writer_queue_depth", "Commands waiting for the writer", e.writer.queue_depth
        )
        yield GaugeMetricFamily(
            "lijian_writer_last_batch_entries", "Entries in the last commit", stats.last_batch_size
        )
        yield GaugeMetricFamily(
            "lijian_writer_max_batch_entries", "Largest commit so far", stats.max_batch_size
        )
        for name, value in (self.extra() if self.extra else {}).items():
            yield GaugeMetricFamily(name, name, value)
