"""Catalogue uploads at the sequencer: parts in, bounded, then stored with progress.

A catalogue upload arrives as parts (``catalog_rows``, each at most 1 MiB, then
``catalog_prices``) and ends with ``catalog``, which stores the rows exactly as one call
did: every row or none. Each part's rows are checked as they arrive (a bad one is named
by its line in the whole upload, and drops the upload). Parts carry no ticket: they
store nothing, and the end is the signed command.

Every bound holds against a gateway that sends whatever it likes:

- parts wait in the connection's memory, at most ``UPLOADS_PER_LINK_MAX`` uploads per
  connection, ``a.CATALOG_LINES_MAX`` rows per upload and ``BUFFERED_ROWS_MAX`` rows in
  all, all connections together; a lost connection drops its parts (the upload is not
  repeated: its client gets 503 and sends it again);
- an ended upload's rows stay counted in ``buffered_rows`` until the ledger has stored
  them (or refused them), and a connection has at most ``STORING_PER_LINK_MAX`` ends
  being stored: so ending uploads one after another cannot pile rows up in the writer's
  queue beyond the same ``BUFFERED_ROWS_MAX`` (the next part or end is 503
  ``overloaded`` with ``Retry-After``);
- while an end is being stored, the sequencer tells its gateway so (``PROGRESS``, every
  ``PROGRESS_EVERY_S``, carrying the catalogue rows the ledger has made durable so
  far): a slow sequencer is then not mistaken for a lost one, and the gateway waits for
  the outcome (cluster/gateway_policy.py, ``CATALOG_STALL_S``). One timer per end being
  stored, so at most ``STORING_PER_LINK_MAX`` per connection; a progress message is a
  few bytes on the connection's own outbox, which drops a peer that stops reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field

import msgspec

from lijian.cluster.wire import PROGRESS, Outbox, encode
from lijian.engine import Engine
from lijian.http import arguments as a
from lijian.http.problems import Problem, from_decode_error

UPLOADS_PER_LINK_MAX = 2  # catalogue uploads a gateway has in progress at once
STORING_PER_LINK_MAX = 2  # ended uploads a connection has being stored at once
# Catalogue rows waiting for the end of their upload or for their storing, all gateways
# together: an upload is at most CATALOG_LINES_MAX rows, so two may be on their way.
BUFFERED_ROWS_MAX = 2 * a.CATALOG_LINES_MAX
PROGRESS_EVERY_S = 1.0  # while an end is stored: far below the gateway's CATALOG_STALL_S

Rows = list[tuple[str, str, str]]
Prices = list[tuple[str, str, int]]


@dataclass(eq=False)
class Link:
    """One authenticated gateway connection."""

    gateway: str  # its certificate's name
    out: Outbox
    writer: asyncio.StreamWriter
    uploads: dict[int, Rows] = field(default_factory=dict)  # catalogue parts so far
    prices: dict[int, Prices] = field(default_factory=dict)  # their reference prices
    storing: int = 0  # ended uploads of this connection the ledger is storing


def check_end(upload_id: int, n_rows: int, cid: str) -> None:
    if not 0 <= n_rows <= a.CATALOG_LINES_MAX:
        raise a.invalid("n_rows", f"an integer 0..{a.CATALOG_LINES_MAX}")
    a.check_id("campaign_id", cid)


def busy(detail: str) -> Problem:
    return Problem(503, "overloaded", detail, headers={"Retry-After": "1"})


class CatalogIntake:
    """The sequencer's side of catalogue uploads (module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.buffered_rows = 0  # parts received, and ended uploads not yet stored

    def rows(self, link: Link, upload_id: int, raw_rows: msgspec.Raw) -> int:
        have = link.uploads.get(upload_id)
        try:
            rows = a.decode_rows(raw_rows)
        except msgspec.ValidationError as exc:
            self.drop(link, upload_id)
            raise rows_problem(exc, len(have or ())) from None
        if have is None:
            if len(link.uploads) >= UPLOADS_PER_LINK_MAX:
                # The oldest was abandoned (its gateway's call timed out): a gateway
                # sends an upload's parts one after another and then ends it. Were it
                # still going, its end finds fewer rows than it sent, and fails.
                self.drop(link, next(iter(link.uploads)))
            have = link.uploads[upload_id] = []
        if len(have) + len(rows) > a.CATALOG_LINES_MAX:
            self.drop(link, upload_id)
            msg = f"a catalogue upload has at most {a.CATALOG_LINES_MAX} lines"
            raise Problem(413, "payload_too_large", msg)
        if self.buffered_rows + len(rows) > BUFFERED_ROWS_MAX:
            self.drop(link, upload_id)
            raise busy("too many catalogue rows on their way to the ledger")
        have.extend(rows)
        self.buffered_rows += len(rows)
        return len(have)

    def prices(self, link: Link, upload_id: int, raw_prices: msgspec.Raw) -> int:
        """An upload's reference prices, after its rows; bounded as the rows are."""
        try:
            prices = a.decode_prices(raw_prices)
        except msgspec.ValidationError as exc:
            self.drop(link, upload_id)
            raise from_decode_error(exc, "reference_price_fen") from None
        rows = link.uploads.get(upload_id, [])
        have = link.prices.setdefault(upload_id, [])
        if len(have) + len(prices) > len(rows):  # at most one a row: sent after the rows
            self.drop(link, upload_id)
            raise busy("catalogue upload's reference prices outnumber its rows")
        have.extend(prices)
        self.buffered_rows += len(prices)
        return len(have)

    def drop(self, link: Link, upload_id: int) -> None:
        self.buffered_rows -= len(link.uploads.pop(upload_id, ()))
        self.buffered_rows -= len(link.prices.pop(upload_id, ()))
        assert self.buffered_rows >= 0

    def drop_all(self, link: Link) -> None:
        for upload_id in list(link.uploads) + list(link.prices):
            self.drop(link, upload_id)

    def end(self, link: Link, upload_id: int, n_rows: int, cid: str) -> Coroutine[None, None, int]:
        """Store the upload's rows: a coroutine, whose rows stay counted until it ends."""
        rows = link.uploads.get(upload_id, [])
        prices = link.prices.get(upload_id, [])
        counted = len(rows) + len(prices)
        if link.storing >= STORING_PER_LINK_MAX:
            self.drop(link, upload_id)
            raise busy(f"{link.storing} catalogue uploads of this connection are being stored")
        if len(rows) != n_rows:  # a part was lost: store nothing
            self.drop(link, upload_id)
            raise busy(f"catalogue upload incomplete: {len(rows)} of {n_rows} rows")
        link.uploads.pop(upload_id, None)  # no longer the connection's: the ledger's
        link.prices.pop(upload_id, None)
        try:
            stored = self._checked(cid, rows, prices)
        except BaseException:
            self.buffered_rows -= counted
            raise
        link.storing += 1

        async def store() -> int:
            try:
                return await stored
            finally:
                link.storing -= 1
                self.buffered_rows -= counted

        return store()

    def _checked(self, cid: str, rows: Rows, prices: Prices) -> Coroutine[None, None, int]:
        """A catalogue upload checked by the HTTP parser's rules: each row's fields (as
        its part arrived: ``rows``), the lines, the campaign's platforms and categories,
        the distinct limits. The engine's coroutine that stores it."""
        s = self.engine.settings(cid)  # 404 for an unknown campaign
        if len(rows) > a.CATALOG_LINES_MAX:
            raise a.invalid("$", f"more than {a.CATALOG_LINES_MAX} lines")
        platforms, categories = a.first_seen(rows)
        line_of = a.line_in(rows)
        a.check_catalog(cid, s, platforms, categories, line_of)
        a.check_skus(rows)
        if prices:
            named = {(p, sku) for p, sku, _ in rows}
            if any((p, sku) not in named for p, sku, _ in prices):
                raise a.invalid("reference_price_fen", "a reference price names no row")
        return self.engine.catalog_upsert(rows, campaign_id=cid, prices=prices or None)

    def keep_informed(self, out: Outbox, call_id: int, fut: asyncio.Future[object]) -> None:
        """``PROGRESS`` for ``call_id`` every ``PROGRESS_EVERY_S`` until ``fut`` ends.
        On the connection's own outbox, not after the ticket's nonce: it tells nothing
        but that the sequencer is still at it."""
        loop = asyncio.get_running_loop()

        def beat() -> None:
            if fut.done() or out.closed:
                return
            out.put(encode((call_id, PROGRESS, self.engine.uploads.stored_rows)))
            loop.call_later(PROGRESS_EVERY_S, beat)

        loop.call_later(PROGRESS_EVERY_S, beat)


def rows_problem(exc: msgspec.ValidationError, lines_before: int = 0) -> Problem:
    """A bad catalogue row, named by its line as the NDJSON parser names it (a part's
    rows come after ``lines_before`` lines of its upload)."""
    p = from_decode_error(exc, "rows")
    field_name = p.errors[0]["field"] if p.errors else ""
    # msgspec names ``[LINE-1][COLUMN]``: the line is 1-based, the column a field
    head, _, rest = field_name.removeprefix("$").removeprefix("[").partition("]")
    if not head.isdigit():
        return p
    line = lines_before + int(head) + 1
    name = {"[0]": "platform", "[1]": "sku", "[2]": "category"}.get(rest, "$")
    message = p.errors[0]["message"]
    return a.invalid(name, message, f"line {line}: {message}; nothing was stored", line=line)
