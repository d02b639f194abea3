"""The contract's endpoints (docs/API.md), each a thin call into ``lijian.engine.Engine``.

A handler checks what only HTTP knows (content type, Idempotency-Key, path and query
parameters, the platform a platform client is bound to), decodes the body straight into
the core's msgspec types, calls the engine and shapes the answer. Business rules live in
the engine; a refusal raised here happens before the engine is called, so it changes no
state. Roles per endpoint are in ``routes()``, next to the paths, so the permission
table of docs/API.md can be read in one place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import parse_qs

import msgspec

from lijian.core.errors import CampaignNotFound, LijianError
from lijian.core.order import Order, RefundRequest
from lijian.core.risk import FLAGS_PAGE_DEFAULT
from lijian.core.settings import Settings
from lijian.core.settlement import settlement_csv
from lijian.core.views import iso
from lijian.http.arguments import (
    check_catalog,
    check_clock,
    check_day,
    check_events_page,
    check_id,
    check_idempotency_key,
    check_risk_page,
    invalid,
)
from lijian.http.metrics import Metrics
from lijian.http.ndjson import CatalogParser
from lijian.http.problems import Problem, from_decode_error, too_large
from lijian.http.types import (
    ADVANCE_S_MAX,
    JSON,
    JSON_BODY_MAX_BYTES,
    Call,
    ClientGone,
    ClockRequest,
    Empty,
    Receive,
    Reply,
    Route,
    json_reply,
)
from lijian.jsonish import Json
from lijian.outcome import Outcome
from lijian.port import EnginePort, SequencerPort

CATALOG_BODY_MAX_BYTES = 256 * 1024 * 1024  # 1,000,000 lines are ~80 MB

ALL = frozenset({"channel", "platform", "operator", "auditor"})
CHANNEL_OPS = frozenset({"channel", "operator"})
READERS = frozenset({"channel", "operator", "auditor"})  # redemptions and persons
OPERATOR = frozenset({"operator"})
REPORTS = frozenset({"operator", "auditor"})
QUOTERS = frozenset({"channel", "platform", "operator"})
CATALOG_WRITERS = frozenset({"platform", "operator"})

REPLAYED = [(b"idempotent-replayed", b"true")]
CSV = b"text/csv; charset=utf-8"
EVENTS_LIMIT_DEFAULT = 100


T = TypeVar("T")  # what a decoder makes of a body

_decode_order = msgspec.json.Decoder(Order).decode
_decode_refund = msgspec.json.Decoder(RefundRequest).decode
_decode_empty = msgspec.json.Decoder(Empty).decode
_decode_clock = msgspec.json.Decoder(ClockRequest).decode
# application/octet-stream too: the NDJSON bytes from clients generated from /openapi.json
# by tools that send a non-JSON body only as a byte stream (http/openapi_extras.py).
NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/octet-stream"}
)


def _media_type(call: Call) -> str:
    ct = call.headers.get(b"content-type", b"")
    return ct.split(b";", 1)[0].strip().lower().decode("latin-1")


def require_json(call: Call) -> None:
    # The exact bytes every client sends come first: no split, strip, lower, decode.
    if call.headers.get(b"content-type") == JSON:
        return
    if _media_type(call) != "application/json":
        raise Problem(415, "unsupported_media_type", "Content-Type must be application/json")


def decode(call: Call, decoder: Callable[[bytes], T], checked_type: bool = False) -> T:
    if not checked_type:
        require_json(call)
    try:
        return decoder(call.body)
    except msgspec.DecodeError as exc:
        raise from_decode_error(exc, body=call.body) from None


def idempotency_key(call: Call) -> str:
    raw = call.headers.get(b"idempotency-key")
    if raw is None:
        raise Problem(400, "idempotency_key_required", "the Idempotency-Key header is required")
    # latin-1 maps bytes one to one, so the rule on text sees every byte sent.
    return check_idempotency_key(raw.decode("latin-1"))


def path_id(call: Call, name: str) -> str:
    return check_id(name, call.params[name])


QUERY_FIELDS_MAX = 16  # no endpoint takes more than two: a longer query is refused


def query_param(call: Call, name: str) -> str | None:
    try:
        # Blank values kept: "after=" is a bad value (422), not an absent one.
        values = parse_qs(
            call.query.decode("latin-1"), keep_blank_values=True, max_num_fields=QUERY_FIELDS_MAX
        )
    except ValueError:  # more fields than QUERY_FIELDS_MAX
        msg = f"at most {QUERY_FIELDS_MAX} query parameters"
        raise Problem(422, "invalid_request", msg, [{"field": "query", "message": msg}]) from None
    found = values.get(name)
    return found[-1] if found else None


def no_fields(call: Call) -> None:
    """Capture/void: accept an empty body or a JSON object without fields."""
    if call.body.strip():
        decode(call, _decode_empty)


def outcome_reply(out: Outcome) -> Reply:
    return json_reply(out.status, out.body, REPLAYED if out.replayed else None)


class ApiHost(Protocol):
    """What the handlers read of the app that serves them (``app.LijianApp``)."""

    engine: EnginePort
    metrics: Metrics
    sequencer: SequencerPort | None  # a gateway's: the ledger is the sequencer's
    ready: bool
    draining: bool


class Api:
    def __init__(self, app: ApiHost) -> None:
        self.app = app
        # No engine of its own: a handler calls ``call.engine``, which for a signed
        # request is the one that carries its ticket (a gateway sends it along).
        self.metrics = app.metrics
        self.count_redemptions = app.sequencer is None

    def routes(self) -> list[Route]:
        r = [
            Route("POST", "/v1/quotes", self.quote, QUOTERS),
            Route("POST", "/v1/redemptions", self.redeem, CHANNEL_OPS),
            Route("GET", "/v1/redemptions/{redemption_id}", self.redemption, READERS),
            Route("POST", "/v1/redemptions/{redemption_id}/capture", self.capture, CHANNEL_OPS),
            Route("POST", "/v1/redemptions/{redemption_id}/void", self.void, CHANNEL_OPS),
            Route("POST", "/v1/redemptions/{redemption_id}/refunds", self.refund, CHANNEL_OPS),
            Route("GET", "/v1/campaigns", self.campaigns, REPORTS),
            Route("GET", "/v1/campaigns/{campaign_id}", self.campaign, REPORTS),
            Route("GET", "/v1/campaigns/{campaign_id}/status", self.status, ALL),
            Route("GET", "/v1/campaigns/{campaign_id}/persons/{person_id}", self.person, READERS),
            Route(
                "PUT",
                "/v1/campaigns/{campaign_id}/catalog",
                self.catalog,
                CATALOG_WRITERS,
                reader=read_catalog,
                body_max_bytes=CATALOG_BODY_MAX_BYTES,
            ),
            Route("GET", "/v1/campaigns/{campaign_id}/settlement", self.settlement, REPORTS),
            Route("GET", "/v1/campaigns/{campaign_id}/audit", self.audit, REPORTS),
            Route("GET", "/v1/campaigns/{campaign_id}/risk", self.risk, REPORTS),
            Route("GET", "/v1/campaigns/{campaign_id}/evidence", self.evidence, REPORTS),
            Route("POST", "/v1/admin/clock", self.clock, OPERATOR),
            Route("GET", "/v1/admin/events", self.events, REPORTS),
            # Operations: no signature (docs/API.md).
            Route("GET", "/healthz", self.healthz, None),
            Route("GET", "/readyz", self.readyz, None),
            Route("GET", "/metrics", self.prometheus, None),
            Route("GET", "/openapi.json", self.openapi, None),
            Route("GET", "/public/campaigns/{campaign_id}", self.public, None),
        ]
        return [
            Route(x.method, x.template, x.handler, x.roles, x.reader, x.body_max_bytes,
                  f"{x.method} {x.template}")
            for x in r
        ]  # fmt: skip

    def _own_platform(self, call: Call, platform: str) -> None:
        c = call.client
        if c is not None and c.role == "platform" and platform != c.platform:
            raise Problem(
                403, "forbidden", f"client {c.key_id!r} speaks only for platform {c.platform!r}"
            )

    # -------------------------------------------------------------- orders
    async def quote(self, call: Call) -> Reply:
        order: Order = decode(call, _decode_order)
        self._own_platform(call, order.platform)
        return json_reply(200, await call.engine.quote_order(order))

    async def redeem(self, call: Call) -> Reply:
        # The hot endpoint: decode() inlined (same checks, same order, same answers);
        # a call saved is a visible share of a sold-out decline.
        require_json(call)  # 415 before the key: a request in the wrong format is malformed
        key = idempotency_key(call)
        try:
            order: Order = _decode_order(call.body)
        except msgspec.DecodeError as exc:
            raise from_decode_error(exc, body=call.body) from None
        client = call.client
        assert client is not None
        out = call.engine.redeem_submit(order, client.key_id, key, call.fingerprint())
        if not isinstance(out, Outcome):
            out = await out
        if self.count_redemptions:  # (a gateway's are counted by the sequencer)
            if out.status == 201:
                if not out.replayed:
                    self.metrics.granted(order.campaign_id)
            elif out.status == 200:
                self.metrics.declined(order.campaign_id, out.body["reasons"])
        return outcome_reply(out)

    async def redemption(self, call: Call) -> Reply:
        return json_reply(200, await call.engine.read_redemption(path_id(call, "redemption_id")))

    async def capture(self, call: Call) -> Reply:
        rid = path_id(call, "redemption_id")
        no_fields(call)
        return outcome_reply(await call.engine.capture(rid))

    async def void(self, call: Call) -> Reply:
        rid = path_id(call, "redemption_id")
        no_fields(call)
        return outcome_reply(await call.engine.void(rid))

    async def refund(self, call: Call) -> Reply:
        rid = path_id(call, "redemption_id")
        require_json(call)
        key = idempotency_key(call)
        req: RefundRequest = decode(call, _decode_refund, checked_type=True)
        assert call.client is not None
        out = await call.engine.refund(rid, req, call.client.key_id, key, call.fingerprint())
        return outcome_reply(out)

    # ----------------------------------------------------------- campaigns
    @staticmethod
    def _settings_view(s: Settings) -> Json:
        out: Json = msgspec.to_builtins(dict(s.raw))  # TOML dates → "YYYY-MM-DD"
        return out

    async def campaigns(self, call: Call) -> Reply:
        every = await call.engine.campaign_list()
        if not every:  # a gateway whose sequencer has not answered yet: it cannot know them
            raise Problem(503, "sequencer_unavailable", "no answer from the sequencer yet",
                          headers={"Retry-After": "1"})  # fmt: skip
        return json_reply(200, {"campaigns": [self._settings_view(s) for s in every]})

    async def campaign(self, call: Call) -> Reply:
        s = await call.engine.campaign_settings(path_id(call, "campaign_id"))
        return json_reply(200, self._settings_view(s))

    async def status(self, call: Call) -> Reply:
        return json_reply(200, await call.engine.read_status(path_id(call, "campaign_id")))

    async def person(self, call: Call) -> Reply:
        cid, pid = path_id(call, "campaign_id"), path_id(call, "person_id")
        return json_reply(200, await call.engine.read_person(cid, pid))

    async def catalog(self, call: Call) -> Reply:
        cid = path_id(call, "campaign_id")
        if _media_type(call) not in NDJSON_TYPES:
            raise Problem(
                415, "unsupported_media_type", "Content-Type must be application/x-ndjson"
            )
        s = await call.engine.campaign_settings(cid)  # 404 for an unknown campaign
        parser: CatalogParser = call.parsed
        if parser.error is not None:
            e = parser.error
            raise Problem(
                400 if e.malformed else 422,
                "malformed_json" if e.malformed else "invalid_request",
                f"line {e.line}: {e.message}; nothing was stored",
                [{"field": e.field, "message": e.message, "line": e.line}],
            )
        for platform, line in parser.platforms.items():
            self._own_platform_line(call, platform, line)
        by_line = {"platform": parser.platforms, "category": parser.categories}
        check_catalog(cid, s, sorted(parser.platforms, key=parser.platforms.__getitem__),
                      sorted(parser.categories, key=parser.categories.__getitem__),
                      lambda field, value: by_line[field][value])  # fmt: skip
        # The category limit depends on what is stored: the engine checks it (CatalogFull).
        n = await call.engine.catalog_upsert(
            parser.rows, parser.categories, campaign_id=cid, prices=parser.prices
        )
        return json_reply(200, {"upserted": n})

    def _own_platform_line(self, call: Call, platform: str, line: int) -> None:
        c = call.client
        if c is not None and c.role == "platform" and platform != c.platform:
            msg = f"client {c.key_id!r} may only write platform {c.platform!r}"
            raise Problem(
                403,
                "forbidden",
                f"line {line}: {msg}; nothing was stored",
                [{"field": "platform", "message": msg, "line": line}],
            )

    # ------------------------------------------------------------- reports
    async def settlement(self, call: Call) -> Reply:
        cid = path_id(call, "campaign_id")
        await call.engine.campaign_settings(cid)  # 404 before 422: the resource must exist
        day = check_day(query_param(call, "date"))
        report = await call.engine.settlement_report(cid, day)
        accept = call.headers.get(b"accept", b"").lower()
        if b"text/csv" in accept:
            return Reply(200, settlement_csv(report).encode(), CSV)
        return json_reply(200, report)

    async def evidence(self, call: Call) -> Reply:
        """The signed evidence bundle of a closed day, byte for byte as ``lijian evidence``
        writes it (so ``lijian verify`` checks the body as saved)."""
        from lijian.evidence.bundle import bundle_bytes

        cid = path_id(call, "campaign_id")
        await call.engine.campaign_settings(cid)
        day = check_day(query_param(call, "date"))
        bundle = await call.engine.evidence_report(cid, day)
        return Reply(200, bundle_bytes(bundle), JSON)

    async def events(self, call: Call) -> Reply:
        """The operator events after ``after=evt_…`` (all when absent), oldest first."""
        from lijian.events.model import AFTER_MESSAGE, AFTER_SHAPE

        raw_after, raw_limit = query_param(call, "after"), query_param(call, "limit")
        if raw_after is not None and not AFTER_SHAPE.match(raw_after):
            raise invalid("after", AFTER_MESSAGE)  # blank is a bad value, not an absent one
        limit = EVENTS_LIMIT_DEFAULT
        if raw_limit is not None:
            limit = int(raw_limit) if raw_limit.isdigit() and len(raw_limit) <= 4 else 0
        check_events_page(0, limit)
        # the engine reads ``after`` (one ledger's id, or a sharded gateway's cursor)
        return json_reply(200, await call.engine.read_events(raw_after or "", limit))

    async def risk(self, call: Call) -> Reply:
        """A page of a day's risk flags (docs/RISK.md), oldest first."""
        cid = path_id(call, "campaign_id")
        await call.engine.campaign_settings(cid)  # 404 before 422: the resource must exist
        day = check_day(query_param(call, "date"))
        after, limit = (_small_int(query_param(call, k), d) for k, d in (("after", 0),
                        ("limit", FLAGS_PAGE_DEFAULT)))  # fmt: skip
        check_risk_page(after, limit)
        return json_reply(200, await call.engine.read_risk(cid, day, after, limit))

    async def audit(self, call: Call) -> Reply:
        cid = path_id(call, "campaign_id")
        await call.engine.campaign_settings(cid)
        return json_reply(200, await call.engine.audit_report(cid))

    async def clock(self, call: Call) -> Reply:
        if not call.engine.manual_clock:
            raise Problem(404, "not_found", "the server's clock is not manual")
        req: ClockRequest = decode(call, _decode_clock)
        if (req.now is None) == (req.advance_s is None):
            msg = "give exactly one of now and advance_s"
            raise invalid("now", msg, msg)
        target_ms = None
        if req.now is not None:
            try:
                moment = dt.datetime.fromisoformat(req.now)
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise invalid("now", "an RFC 3339 time with offset, e.g. 2025-02-12T10:00:00+08:00")
            try:
                target_ms = int(moment.timestamp() * 1000)
            except (OverflowError, ValueError):
                target_ms = -1  # refused by check_clock, with the range
        advance_ms = None if req.advance_s is None else req.advance_s * 1000
        check_clock(target_ms, advance_ms, ADVANCE_S_MAX * 1000)
        now_ms = await call.engine.set_clock(target_ms, advance_ms)
        tz = call.engine.settings(call.engine.campaign_ids[0]).tz
        return json_reply(200, {"now": iso(now_ms, tz)})

    # ---------------------------------------------------------- operations
    async def healthz(self, call: Call) -> Reply:
        return json_reply(200, {"ok": True})

    async def readyz(self, call: Call) -> Reply:
        try:
            h = await call.engine.health()
        except LijianError:  # a gateway whose sequencer cannot be reached
            h = {"ok": False, "queue_depth": 0}
        # On PostgreSQL: what a commit survives; refusing (--require-sync-standby, no
        # synchronous standby) is not ready (store/pg_durability.py).
        durability = h.get("durability")
        refusing = isinstance(durability, dict) and bool(durability.get("refusing"))
        ready = self.app.ready and bool(h["ok"]) and not refusing
        body = {"ready": ready, "draining": self.app.draining, "queue_depth": h["queue_depth"]}
        if durability is not None:
            body["durability"] = durability
        return json_reply(200 if ready else 503, body)

    async def prometheus(self, call: Call) -> Reply:
        from prometheus_client import CONTENT_TYPE_LATEST

        sequencer = self.app.sequencer
        if sequencer is not None:  # a gateway: the ledger's half is the sequencer's
            ledger: bytes = await sequencer.ledger_metrics()
            return Reply(200, self.metrics.render_http() + ledger, CONTENT_TYPE_LATEST.encode())
        self.metrics.ledger_gauges = await call.engine.gauges()
        return Reply(200, self.metrics.render(), CONTENT_TYPE_LATEST.encode())

    async def openapi(self, call: Call) -> Reply:
        from lijian.http.openapi import spec_bytes

        return Reply(200, spec_bytes(), b"application/json")

    async def public(self, call: Call) -> Reply:
        cid = path_id(call, "campaign_id")
        try:
            body = await call.engine.read_public(cid)
        except CampaignNotFound as exc:
            raise Problem(404, exc.code, exc.detail) from None
        # Consumer apps poll this during a rush: let caches absorb it for a second.
        return json_reply(200, body, [(b"cache-control", b"public, max-age=1")])


async def read_catalog(call: Call, receive: Receive) -> tuple[CatalogParser, str]:
    """Stream an NDJSON body: parse lines as they arrive, hash every byte for the
    signature, stop at the size limit. Parsing stops at the first bad line, hashing
    does not: the signature is checked before any parse error is reported."""
    parser = CatalogParser()
    digest = hashlib.sha256()
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > CATALOG_BODY_MAX_BYTES:
            raise too_large(CATALOG_BODY_MAX_BYTES)
        digest.update(chunk)
        parser.feed(chunk)
        if not msg.get("more_body", False):
            break
    parser.close()
    return parser, digest.hexdigest()


__all__ = ["CATALOG_BODY_MAX_BYTES", "JSON_BODY_MAX_BYTES", "Api"]


def _small_int(raw: str | None, default: int) -> int:
    """A query parameter of at most 10 digits; -1 (refused by the check) otherwise."""
    if raw is None:
        return default
    return int(raw) if raw.isdigit() and len(raw) <= 10 else -1
