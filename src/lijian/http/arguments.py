"""The rules on a command's arguments, one set for every door into the engine.

The HTTP endpoints (``api.py``) and the sequencer (``lijian.cluster.sequencer``, which
takes the same commands from gateways) both call these before the engine sees anything,
so a command that one process refuses is refused by the sequencer too, with the same
problem: an id that is too long or not text, an Idempotency-Key, a report's day, a page
of events, a clock move, a catalogue's platforms and categories. Each raises the
``Problem`` (or the engine's error) that answers the request; nothing has run then.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from operator import itemgetter
from typing import Annotated, NoReturn

import msgspec

from lijian.clock import check_manual_ms
from lijian.core.errors import CampaignNotFound, NotFound, RedemptionNotFound
from lijian.core.order import ID_LEN_MAX, is_text, text_meta
from lijian.core.risk import FLAGS_PAGE_MAX
from lijian.core.settings import Settings
from lijian.http.problems import FieldError, Problem

PATH_ID_LEN_MAX = ID_LEN_MAX  # ids in the core are 1-128 characters
IDEMPOTENCY_KEY_LEN_MAX = 255
FINGERPRINT_LEN = 64  # hex SHA-256 (types.Call.fingerprint)
EVENTS_LIMIT_MAX = 500  # the outbox's own page limit (events/outbox.py)
EVENTS_AFTER_MAX = 2**63 - 1  # a seq the stores hold in a signed 64-bit column
CATALOG_LINES_MAX = 2_000_000  # one upload; the contract needs 1,000,000
DISTINCT_PLATFORMS_MAX = 64
DISTINCT_CATEGORIES_MAX = 255  # the catalogue stores a category as one byte
CATEGORY_LEN_MAX = 64
# The one category a line may name outside the campaign's list: it takes a SKU out of
# the campaign (its orders are then declined not_campaign_goods). Every other unknown
# category is refused with its line: a typo ("electronics") must not silently turn a
# platform's goods into non-campaign goods.
WITHDRAWN_CATEGORY = "withdrawn"
# SKUs and platforms are ids of the order contract; a category is the same kind of text,
# shorter.
Category = Annotated[str, text_meta(CATEGORY_LEN_MAX, min_length=1)]
# A catalogue row as the sequencer receives it: (platform, sku, category). msgspec checks
# the lengths while decoding; platforms and categories must then be the campaign's
# (``check_catalog``), and the SKUs are checked joined (``check_skus``): the text pattern
# on each field costs seconds for a million rows on the sequencer's one loop.
_Sized = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_LEN_MAX)]
CatalogRow = tuple[
    _Sized, _Sized, Annotated[str, msgspec.Meta(min_length=1, max_length=CATEGORY_LEN_MAX)]
]
# A SKU's reference price (its ordinary price before the campaign): whole fen, above
# zero; more than 100 million yuan is a typo, not a price.
REFERENCE_PRICE_FEN_MAX = 10**10
ReferencePriceFen = Annotated[int, msgspec.Meta(ge=1, le=REFERENCE_PRICE_FEN_MAX)]
# A reference price as the sequencer receives it: (platform, sku, reference_price_fen).
PriceRow = tuple[_Sized, _Sized, ReferencePriceFen]
_NOT_TEXT_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_IDEMPOTENCY_KEY_RE = re.compile(rf"[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_LEN_MAX}}}")
_FINGERPRINT_RE = re.compile(rf"[0-9a-f]{{{FINGERPRINT_LEN}}}")
_LOWER_HEX = "0123456789abcdef"


def invalid(
    field: str, message: str, detail: str | None = None, line: int | None = None
) -> Problem:
    """The 422 of one field: ``field: message`` unless a ``detail`` is given (``line``:
    the catalogue row it is on)."""
    error: FieldError = {"field": field, "message": message}
    if line is not None:
        error["line"] = line
    return Problem(422, "invalid_request", detail or f"{field}: {message}", [error])


def check_id(name: str, value: str) -> str:
    """A path id (``campaign_id``, ``redemption_id``, ``person_id``): at most
    ``PATH_ID_LEN_MAX`` characters (422); one that is not text is unknown (404)."""
    if len(value) > PATH_ID_LEN_MAX:
        raise invalid(name, f"at most {PATH_ID_LEN_MAX} characters")
    if not value.isprintable() and not is_text(value, PATH_ID_LEN_MAX):
        # No id holds a control character (the contract refuses them), and PostgreSQL
        # cannot even be asked about a NUL: the answer for an unknown id, unasked.
        what = name.removesuffix("_id")
        error = {"campaign": CampaignNotFound, "redemption": RedemptionNotFound}.get(what)
        raise (error or NotFound)(f"unknown {what} {value!r}")
    return value


def check_idempotency_key(value: str) -> str:
    # Exactly _IDEMPOTENCY_KEY_RE.fullmatch (printable ASCII is U+0020-U+007E), without
    # a regular expression's call on the hot path.
    if not (0 < len(value) <= IDEMPOTENCY_KEY_LEN_MAX and value.isascii() and value.isprintable()):
        raise invalid(
            "header:Idempotency-Key",
            f"1-{IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters",
            f"Idempotency-Key: 1-{IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters",
        )
    return value


def check_fingerprint(value: str) -> str:
    """A request's fingerprint (hex SHA-256): the gateway computes it, never a client."""
    # Exactly _FINGERPRINT_RE.fullmatch: what is left after stripping hex digits from
    # both ends is empty only if every character is one.
    if len(value) != FINGERPRINT_LEN or value.strip(_LOWER_HEX) != "":
        raise invalid("fingerprint", f"{FINGERPRINT_LEN} lowercase hex digits")
    return value


def check_day(value: str | None) -> str:
    """A report's ``date`` query parameter: a real day, YYYY-MM-DD."""
    if value is None or not _DATE_RE.match(value) or not _valid_date(value):
        raise invalid("date", "required, a date YYYY-MM-DD")
    return value


def _valid_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def check_events_page(after_seq: int, limit: int) -> None:
    if not 0 <= after_seq <= EVENTS_AFTER_MAX:
        raise invalid("after", "an event id evt_… from an earlier page or delivery")
    if not 1 <= limit <= EVENTS_LIMIT_MAX:
        raise invalid("limit", f"an integer 1..{EVENTS_LIMIT_MAX}")


RISK_AFTER_MAX = 10**9  # far more flags than a day holds


def check_risk_page(after: int, limit: int) -> None:
    """``GET …/risk``'s ``after`` (flags already read) and ``limit`` (one page)."""
    if not 0 <= after <= RISK_AFTER_MAX:
        raise invalid("after", f"an integer 0..{RISK_AFTER_MAX}: the flags already read")
    if not 1 <= limit <= FLAGS_PAGE_MAX:
        raise invalid("limit", f"an integer 1..{FLAGS_PAGE_MAX}")


def check_clock(target_ms: int | None, advance_ms: int | None, advance_ms_max: int) -> None:
    """A manual clock move: exactly one of a target and an advance, each in range. (That
    the clock only moves forward is the engine's to decide, in its writer's order.)"""
    if (target_ms is None) == (advance_ms is None):
        raise invalid("now", "give exactly one of now and advance_s")
    if target_ms is not None:
        try:
            check_manual_ms(target_ms)
        except ValueError as exc:
            raise invalid("now", str(exc)) from None
    if advance_ms is not None and not 0 <= advance_ms <= advance_ms_max:
        raise invalid("advance_s", f"an integer 0..{advance_ms_max // 1000} (seconds)")


def first_seen(rows: list[tuple[str, str, str]]) -> tuple[list[str], list[str]]:
    """(platforms, categories) of rows, each in the order of its first row. In C (a
    million rows take a fraction of a second): the sequencer's loop is the writer's."""
    return list(dict.fromkeys(map(itemgetter(0), rows))), list(
        dict.fromkeys(map(itemgetter(2), rows))
    )


def line_in(rows: list[tuple[str, str, str]]) -> Callable[[str, str], int]:
    """``line_of`` for ``check_catalog`` over rows: found when a refusal names it."""
    column = {"platform": 0, "category": 2}

    def line_of(field: str, value: str) -> int:
        c = column[field]
        return next(n for n, row in enumerate(rows, 1) if row[c] == value)

    return line_of


def check_catalog(
    cid: str,
    s: Settings,
    platforms: list[str],
    categories: list[str],
    line_of: Callable[[str, str], int],
) -> None:
    """What a catalogue upload to campaign ``cid`` may name: its platforms, and its
    categories or ``withdrawn``, within the distinct limits. ``platforms`` and
    ``categories`` are in the order of their first line; ``line_of(field, value)`` is
    that line, which the refusal names."""
    for what, seen, cap in (
        ("platform", platforms, DISTINCT_PLATFORMS_MAX),
        ("category", categories, DISTINCT_CATEGORIES_MAX),
    ):
        if len(seen) > cap:
            _line_problem(what, f"too many distinct {what} values", line_of(what, seen[cap]))
    for platform in platforms:
        if platform not in s.campaign.platforms:
            msg = f"platform {platform!r} does not take part in campaign {cid!r}"
            _line_problem("platform", msg, line_of("platform", platform))
    for c in categories:
        if c not in s.eligibility.categories and c != WITHDRAWN_CATEGORY:
            known = ", ".join(sorted(s.eligibility.categories))
            msg = (
                f"category {c!r} is not one of the campaign's ({known}); "
                f"{WITHDRAWN_CATEGORY!r} takes a SKU out of the campaign"
            )
            _line_problem("category", msg, line_of("category", c))


def check_skus(rows: list[tuple[str, str, str]]) -> None:
    """Every SKU is text (no control character, no lone surrogate): one scan over them
    all joined, in C; the row is looked for only when one is found."""
    skus = "".join(map(itemgetter(1), rows))
    if _NOT_TEXT_RE.search(skus) is None:
        return
    line = next(n for n, r in enumerate(rows, 1) if _NOT_TEXT_RE.search(r[1]))
    _line_problem("sku", "a SKU is text without control characters", line)


def _line_problem(field: str, message: str, line: int) -> NoReturn:
    raise invalid(field, message, f"line {line}: {message}; nothing was stored", line=line)


def decode_rows(raw: bytes) -> list[tuple[str, str, str]]:
    """Catalogue rows from msgpack, each field's length checked (``msgspec.ValidationError``);
    then ``check_catalog`` (platforms, categories) and ``check_skus``."""
    rows: list[tuple[str, str, str]] = _decode_rows(raw)
    return rows


_decode_rows = msgspec.msgpack.Decoder(list[CatalogRow]).decode


def decode_prices(raw: bytes) -> list[tuple[str, str, int]]:
    """Reference prices from msgpack, each checked as the NDJSON parser checks it
    (``msgspec.ValidationError``); each must name a row of its upload (the caller's)."""
    prices: list[tuple[str, str, int]] = _decode_prices(raw)
    return prices


_decode_prices = msgspec.msgpack.Decoder(list[PriceRow]).decode
