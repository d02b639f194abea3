"""Prometheus metrics for ``GET /metrics`` (one registry per app, so tests can run many).

The counters and the latency histogram bumped on the request path are plain ints in
dicts, exposed at scrape time by a collector: prometheus_client's ``Counter.inc()``
takes a lock and ``Histogram.observe()`` walks the buckets in Python, ~1 µs a request
together (measured), while a dict update and a ``bisect`` cost ~0.2 µs. No lock is
needed: every update and every scrape runs on the event loop thread. Label values come
only from bounded sets (routes, loaded campaign ids, the contract's reason codes, client
key ids); anything else a client sends is folded into ``"other"``.

Ledger figures (tranche remaining, granted, held) are read at scrape time by a collector
that runs on the event loop, the only thread that touches the ledger.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from lijian.core.rules import MESSAGES
from lijian.jsonish import Json
from lijian.port import EnginePort

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
COMMIT_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class LoopCounter(Collector):
    """A labelled counter kept as ``values[label tuple] = count`` (loop thread only)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.values: dict[tuple[str, ...], int] = {}

    def inc(self, *labels: str) -> None:
        v = self.values
        v[labels] = v.get(labels, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, n in list(self.values.items()):
            fam.add_metric(labels, n)
        yield fam


class LoopHistogram(Collector):
    """A histogram with one label: per label value, a count per bucket and the sum."""

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float]):
        self.name = name
        self.documentation = documentation
        self.label = label
        self.bounds = list(buckets)  # ascending; one more slot for +Inf
        self.series: dict[str, tuple[list[int], list[float]]] = {}

    def child(self, value: str) -> tuple[list[int], list[float]]:
        """(counts per bucket, [sum]) of one label value, made on first use."""
        s = self.series.get(value)
        if s is None:
            s = self.series[value] = ([0] * (len(self.bounds) + 1), [0.0])
        return s

    def collect(self) -> Iterator[HistogramMetricFamily]:
        fam = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        # The le labels exactly as prometheus_client writes them.
        names = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        for value, (counts, total) in list(self.series.items()):
            cumulative, acc = [], 0
            for name, n in zip(names, counts, strict=True):
                acc += n
                cumulative.append((name, acc))
            fam.add_metric([value], cumulative, total[0])
        yield fam


class Metrics:
    def __init__(self, engine: EnginePort, extra: Callable[[], dict[str, float]] | None = None):
        self.engine = engine
        # The ledger's figures, fetched from the engine (``EnginePort.gauges``) by the
        # /metrics handler just before ``render``: a gateway has to ask the sequencer.
        self.ledger_gauges: Json = {"status": {}, "writer": {}}
        # Two registries: what this process's HTTP did, and what the ledger did. A gateway
        # renders its own first and the sequencer's ledger half after it (render_http +
        # the sequencer's render_ledger), so /metrics on any gateway shows the one ledger.
        self.registry = CollectorRegistry(auto_describe=True)
        self.ledger_registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        lr = self.ledger_registry
        self._campaigns = set(engine.campaign_ids)
        self.requests = LoopCounter(
            "lijian_http_requests", "HTTP requests answered", ["route", "status"]
        )
        self.latency = LoopHistogram(
            "lijian_http_request_duration_seconds",
            "Time from request start to response sent",
            "route",
            LATENCY_BUCKETS_S,
        )
        self.grants = LoopCounter(
            "lijian_grants", "Redemptions granted (held), replays excluded", ["campaign"]
        )
        self.declines = LoopCounter(
            "lijian_declines",
            "Redemption declines, by reason (a decline may carry several reasons)",
            ["campaign", "reason"],
        )
        self.auth_failures = LoopCounter("lijian_auth_failures", "401 answers by code", ["code"])
        self.rate_limited = LoopCounter("lijian_rate_limited", "429 answers by client", ["client"])
        http_side: list[Collector] = [self.requests, self.latency]
        for c in [*http_side, self.auth_failures, self.rate_limited]:
            r.register(c)
        lr.register(self.grants)
        lr.register(self.declines)
        self.batch_entries = Histogram(
            "lijian_writer_batch_entries",
            "Ledger entries per group commit",
            buckets=BATCH_BUCKETS,
            registry=lr,
        )
        self.commit_seconds = Histogram(
            "lijian_writer_commit_seconds",
            "Duration of one group commit (one transaction, one fsync)",
            buckets=COMMIT_BUCKETS_S,
            registry=lr,
        )
        lr.register(_LedgerCollector(self))
        r.register(_ExtraCollector(extra))
        self._bounds = self.latency.bounds
        self._req = self.requests.values
        self._decl = self.declines.values
        self._grant = self.grants.values

    def on_batch(self, entries: int, commit_s: float) -> None:
        """The writer's ``on_batch`` hook (runs on the loop after each commit)."""
        self.batch_entries.observe(entries)
        self.commit_seconds.observe(commit_s)

    def route(self, route: str) -> Callable[[int, float], None]:
        """The per-request recorder of one route: bound once, so a request pays two dict
        updates and a bisect, no label lookups."""
        counts, total = self.latency.child(route)
        req, bounds = self._req, self._bounds
        keys: dict[int, tuple[str, str]] = {}

        def observe(status: int, seconds: float) -> None:
            key = keys.get(status)
            if key is None:
                key = keys[status] = (route, str(status))
            req[key] = req.get(key, 0) + 1
            counts[bisect_left(bounds, seconds)] += 1
            total[0] += seconds

        return observe

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        key = (route, str(status))
        self._req[key] = self._req.get(key, 0) + 1
        counts, total = self.latency.child(route)
        counts[bisect_left(self._bounds, seconds)] += 1
        total[0] += seconds

    def _campaign(self, cid: str) -> str:
        """The label of a campaign: its id if it is served (a label per campaign, never
        per id a client made up), else "other"."""
        if cid in self._campaigns:
            return cid
        if cid in self.engine.campaign_ids:  # created over the API since this one started
            self._campaigns.add(cid)
            return cid
        return "other"

    def granted(self, campaign_id: str) -> None:
        key = (self._campaign(campaign_id),)
        self._grant[key] = self._grant.get(key, 0) + 1

    def declined(self, campaign_id: str, reasons: list[dict[str, str]]) -> None:
        cid = self._campaign(campaign_id)
        decl = self._decl
        for r in reasons:
            code = r["code"]
            key = (cid, code if code in MESSAGES else "other")
            decl[key] = decl.get(key, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(self.ledger_registry)

    def render_http(self) -> bytes:
        return generate_latest(self.registry)

    def render_ledger(self) -> bytes:
        return generate_latest(self.ledger_registry)


class _LedgerCollector(Collector):
    """Scrape-time gauges from the ledger (called on the loop by ``render``)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        g = self.metrics.ledger_gauges
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
        for cid, status in _table(g["status"]).items():
            st = _table(status)
            budget.add_metric([cid], _number(st["granted_fen"]))
            if st["today"] is not None:
                t = _table(st["today"])
                for k, fam in today.items():
                    fam.add_metric([cid], _number(t[f"{k}_fen"]))
        yield from today.values()
        yield budget
        w = _table(g["writer"])
        yield GaugeMetricFamily(
            "lijian_writer_queue_depth",
            "Commands waiting for the writer",
            _number(w.get("queue_depth", 0)),
        )
        yield GaugeMetricFamily(
            "lijian_writer_last_batch_entries",
            "Entries in the last commit",
            _number(w.get("last_batch_entries", 0)),
        )
        yield GaugeMetricFamily(
            "lijian_writer_max_batch_entries",
            "Largest commit so far",
            _number(w.get("max_batch_entries", 0)),
        )
        yield from _durability_families(w.get("durability"))
        yield from _event_families(_table(g.get("events") or {}))


# The gauges come as JSON (``EnginePort.gauges``: from this process's engine, or through
# the port of a sequencer): tables and numbers, checked as they are read.
def _table(value: object) -> Json:
    assert isinstance(value, dict), value
    return value


def _number(value: object) -> float:
    assert isinstance(value, int | float), value
    return value


def _durability_families(d: object) -> Iterator[GaugeMetricFamily]:
    """What a commit survives on PostgreSQL (store/pg_durability.py); nothing on SQLite."""
    if d is None:
        return
    d = _table(d)
    if d["sync_standbys"] is not None:
        yield GaugeMetricFamily(
            "lijian_postgres_sync_standbys",
            "Synchronous standbys attached to the primary",
            _number(d["sync_standbys"]),
        )
    commit = GaugeMetricFamily(
        "lijian_postgres_synchronous_commit",
        "synchronous_commit in force on the ledger's sessions (1 for the setting)",
        labels=["setting"],
    )
    setting = d["synchronous_commit"]
    if setting is not None:
        assert isinstance(setting, str), setting
        commit.add_metric([setting], 1)
    yield commit
    flags = {
        "lijian_postgres_sync_standby": (
            "Every commit waits for a synchronous standby",
            "sync_standby",
        ),
        "lijian_postgres_sync_standby_required": ("--require-sync-standby is set", "required"),
        "lijian_postgres_refusing": ("Commands refused: no synchronous standby", "refusing"),
    }
    for name, (text, key) in flags.items():
        yield GaugeMetricFamily(name, text, float(bool(d[key])))


def _event_families(ev: Json) -> Iterator[Metric]:
    """The outbox and its webhook deliveries (lijian.events), one series per receiver."""
    yield CounterMetricFamily(
        "lijian_events_recorded",
        "Operator events committed to the outbox",
        _number(ev.get("recorded", 0)),
    )
    yield CounterMetricFamily(
        "lijian_events_dropped",
        "Events not recorded: more were waiting for a commit than the outbox holds",
        _number(ev.get("dropped", 0)),
    )
    fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
        "delivered": CounterMetricFamily(
            "lijian_webhook_deliveries", "Events a receiver answered 2xx to", labels=["receiver"]
        ),
        "failures": CounterMetricFamily(
            "lijian_webhook_failures",
            "Failed delivery attempts (no connection, timeout, non-2xx); each is retried",
            labels=["receiver"],
        ),
        "lag_s": GaugeMetricFamily(
            "lijian_webhook_lag_seconds",
            "Age of the oldest event a receiver has not got yet (0: caught up)",
            labels=["receiver"],
        ),
    }
    for url, st in _table(ev.get("receivers") or {}).items():
        for key, fam in fams.items():
            fam.add_metric([url], _number(_table(st)[key]))
    yield from fams.values()


class _ExtraCollector(Collector):
    """This process's own gauges (nonces remembered, restarts, gateways connected)."""

    def __init__(self, extra: Callable[[], dict[str, float]] | None) -> None:
        self.extra = extra

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in (self.extra() if self.extra else {}).items():
            yield GaugeMetricFamily(name, name, value)
