"""The dashboard's heartbeat: follow the ledger, build snapshots, hand them to streams.

One ``LiveFeed`` per server. Its task runs on the engine's event loop (started by the
first dashboard request, since extensions are mounted before the loop exists) and every
``TICK_S``:

1. reads the entries committed since the last tick (``tail.py``, bounded pages, off the
   loop) and has the projection follow them (``projection.py``, on the loop: spend by
   category);
2. when caught up with the engine, checks the burn-down against the ledger (drift);
3. if anyone is watching, builds one snapshot per campaign — the engine's status, the
   ledger's daybook (figures per day and platform), spend by category, the HTTP
   layer's decline counters, the last audit — encodes it once, and wakes every
   Server-Sent-Events stream (``routes.py``), which sends it on.

Streams never queue snapshots: each sends the latest one for its campaign, so a slow
browser skips ticks instead of growing a buffer. Reads of the ledger (status, audit,
settlement) happen here, on the loop, as the engine requires.

Which ledger is the truth: the engine's, the one ledger of the campaign (SQLite or
PostgreSQL). The dashboard is served only in the process that holds the ``Engine`` (the
one process, or the sequencer of ``lijian serve --workers N``; gateways pass its pages
through), whose ledger holds every committed entry and more, so status, settlement and
the audit read it and the projection is checked against it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from zoneinfo import ZoneInfo

import msgspec
import structlog

from lijian.core.book import CLOSED, SCHEDULED
from lijian.core.daybook import SettlementRow
from lijian.core.ledger import Ledger
from lijian.core.schedule import from_ms
from lijian.core.settlement import Settlement, settlement
from lijian.core.views import iso, lottery_draw_view
from lijian.dashboard.projection import Projection
from lijian.dashboard.tail import PAGE_ENTRIES, PostgresEntryTail, TailReadError, open_tail
from lijian.engine import Engine
from lijian.http.metrics import Metrics
from lijian.jsonish import Json

TICK_S = 0.5  # the page is at most this (plus a network hop) behind the ledger
PAGES_PER_TICK_MAX = 40  # 200k entries: a restart on a big ledger catches up in steps
GRANTS_SERIES_S = 120  # the grants-per-second chart shows the last two minutes
# The invariant check walks every person and redemption (~0.5 s per million): it may take
# at most 1% of the loop (a small ledger is re-checked every 2 s, a million redemptions
# about every 50 s), and during a rush (writer queue not empty) it waits, at most
# AUDIT_DEFER_MAX_S, so it never slows a grant burst.
AUDIT_INTERVAL_MIN_S = 2.0
AUDIT_LOOP_SHARE_MAX = 0.01
AUDIT_DEFER_MAX_S = 300.0
SETTLEMENT_CACHE_MAX = 16
EVENT_BYTES_MAX = 256 * 1024  # one SSE event; a snapshot is ~20-40 KiB
BURN_POINTS_MAX = 1_440  # one point per minute of a day at most
TAIL_WAIT_REPORT_S = 5.0  # an open writer transaction holding the feed back this long shows

log = structlog.get_logger("lijian.dashboard")
_encode = msgspec.json.Encoder().encode


class LiveFeed:
    def __init__(self, engine: Engine, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics  # lijian.http.metrics.Metrics, for decline counters
        self.ledger: Ledger = engine.ledger
        self.projection = Projection(self.ledger, engine.catalog.category_of)
        self.tail = open_tail(engine.store)
        self.pg_tail = self.tail if isinstance(self.tail, PostgresEntryTail) else None
        self.catching_up = True  # until a read reaches the end of the (settled) log
        self.failure: str | None = None  # the projection stopped (shown on the page)
        self.read_error: str | None = None  # the last tick could not read (transient)
        self.drift: list[str] = []
        self.listeners = 0
        self.payloads: dict[str, tuple[int, bytes]] = {}  # campaign → (version, JSON)
        self._version = 0
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One tick at a time: two interleaved catch-ups would read the same page twice.
        self._ticking: asyncio.Lock | None = None
        self._published_s = -1e18
        self._ticked_s = -1e18
        self._audit: Json | None = None
        self._audit_at_s = -1e18
        self._audit_entries = -1
        self._audit_cost_s = 0.0
        self._settlements: collections.OrderedDict[tuple[str, str, int], Settlement] = (
            collections.OrderedDict()
        )

    # ------------------------------------------------------------- lifecycle
    def ensure_started(self) -> None:
        """Start the task on the running loop (the engine's), once."""
        if self._task is None:
            self._changed = asyncio.Event()
            if self._ticking is None:
                self._ticking = asyncio.Lock()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="lijian-dashboard-feed"
            )

    async def aclose(self) -> None:
        """Stop the task (it also stops with the loop); closes the tail's connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tail.close()  # idempotent; needed when ticks ran without the task

    async def wait_changed(self, timeout_s: float) -> bool:
        """Wait for the next published tick; False on timeout."""
        assert self._changed is not None, "ensure_started() first"
        ev = self._changed
        try:
            await asyncio.wait_for(ev.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                await self.tick()
                await asyncio.sleep(max(0.05, TICK_S - (loop.time() - started)))
        finally:
            self.tail.close()

    async def current(self) -> None:
        """Started, and caught up within the last two ticks: reports read the feed's
        figures, never a projection still at zero."""
        self.ensure_started()
        if time.monotonic() - self._ticked_s >= 2 * TICK_S:
            await self.tick()

    def fresh(self) -> bool:
        """Were snapshots published within the last two ticks? (Not while nobody watched.)"""
        return time.monotonic() - self._published_s < 2 * TICK_S

    async def tick(self) -> None:
        if self._ticking is None:  # a tick outside the task (tests): no lock needed yet
            self._ticking = asyncio.Lock()
        async with self._ticking:
            if self.failure is None:
                try:
                    await self._catch_up()
                except Exception as exc:  # a bug here must not take the server down
                    log.exception("dashboard_projection_failed")
                    self.failure = f"{type(exc).__name__}: {exc}"
            if self.caught_up():
                self.drift = self.projection.drift()
            if self.listeners:
                self._maybe_audit()
                self._publish()
                self._published_s = time.monotonic()
            self._ticked_s = time.monotonic()

    async def _catch_up(self) -> None:
        self.read_error = None
        for _ in range(PAGES_PER_TICK_MAX):
            try:
                page = await self.tail.fetch(self.projection.seq)
            except TailReadError as exc:  # busy file, lost connection: retry next tick
                log.warning("dashboard_read_failed", error=str(exc))
                self.read_error = str(exc)
                return
            follow = self.projection.follow
            for seq, entry in page:
                follow(seq, entry)
            if len(page) < PAGE_ENTRIES:
                self.catching_up = False
                return
        # A restart on a big ledger: the rest comes in the next ticks. Until then the
        # figures are those of an old prefix of the log: shown as such, reports wait.
        self.catching_up = True

    def ready(self) -> str | None:
        """Why the projection's figures cannot be served now, or None: a report must not
        show a projection still halfway through the log."""
        if self.failure is not None:
            return f"the dashboard's feed stopped: {self.failure}"
        if self.catching_up:
            return f"catching up with the ledger (at seq {self.projection.seq})"
        return None

    def caught_up(self) -> bool:
        return (
            self.failure is None and self.projection.applied == self.engine.ledger.entries_applied
        )

    def behind(self) -> int:
        """Entries the engine has applied that the page does not show yet."""
        return max(0, self.engine.ledger.entries_applied - self.projection.applied)

    def feed_problems(self) -> list[str]:
        out = [p for p in (self.failure, self.read_error) if p]
        if self.catching_up and self.failure is None:
            out.append(f"catching up with the ledger (at seq {self.projection.seq})")
        tail = self.pg_tail
        if tail is not None and tail.waiting_s() >= TAIL_WAIT_REPORT_S:
            out.append(
                f"waiting {tail.waiting_s():.0f} s for {tail.writers} open transaction(s) "
                f"writing entries; showing seq <= {tail.horizon}"
            )
        return out + self.drift[:5]

    def _publish(self) -> None:
        changed = False
        for cid in self.engine.campaign_ids:
            body = _encode(self.snapshot(cid))
            if len(body) > EVENT_BYTES_MAX:  # bounded events, whatever the data
                body = _encode({"campaign_id": cid, "error": "snapshot_too_large"})
            old = self.payloads.get(cid)
            if old is None or old[1] != body:
                self._version += 1
                self.payloads[cid] = (self._version, body)
                changed = True
        if changed and self._changed is not None:
            # Wake every stream, then arm a fresh event for the next tick.
            self._changed.set()
            self._changed = asyncio.Event()

    # -------------------------------------------------------------- snapshot
    def status(self, cid: str) -> Json:
        """The API's status figures (``GET /v1/campaigns/{id}/status``): the engine's."""
        return self.engine.status(cid)

    def snapshot(self, cid: str) -> Json:
        e = self.engine
        st = self.status(cid)
        c = self.projection.campaign(cid)
        b = c.book
        now_ms = e.now_ms()
        today = b.schedule.local_date(now_ms).isoformat()
        platforms = c.totals_by_platform()
        totals = SettlementRow()
        for m in platforms.values():
            totals.add(m)
        now_s = now_ms // 1000
        grants = [c.grants_by_s.get(s, 0) for s in range(now_s - GRANTS_SERIES_S + 1, now_s + 1)]
        d = c.days.get(today)
        window = st.get("admission_window")  # a campaign with an admission window
        return {
            "campaign_id": cid,
            "name": b.settings.campaign.name,
            "now": st["now"],
            "state": st["state"],
            "today": st["today"],
            "next_release_at": st["next_release_at"],
            # Fair release: the window and its draw (commitment, then the seed).
            "draw": lottery_draw_view(self.ledger, b, today, now_ms)
            if b.tranches.get(today)
            else None,
            "window_waiting": window.get("waiting") if isinstance(window, dict) else None,
            "budget": {
                k: st[k] for k in ("budget_fen", "granted_fen", "held_fen", "clawed_back_fen")
            },
            "burn": self.burn(cid, today),
            "grants_per_s": {
                "series": grants,
                "last_s": grants[-1],
                "peak_today": d.peak_grants_per_s if d else 0,
                "holds_today": d.holds if d else 0,
            },
            "declines": self.declines(cid),
            "platforms": [{"platform": p, **m.view()} for p, m in sorted(platforms.items())],
            "categories": [
                {"category": k, "net_subsidy_fen": v}
                for k, v in sorted(c.by_category.items(), key=lambda kv: -kv[1])
                if v
            ],
            "totals": totals.view(),
            "audit": self.audit(),
            "feed": {
                "seq": self.projection.seq,
                "behind": self.behind(),
                "ok": not self.feed_problems(),
                "problems": self.feed_problems(),
            },
        }

    def burn(self, cid: str, date: str) -> Json | None:
        c = self.projection.campaign(cid)
        t = c.book.tranches.get(date)
        if t is None:
            return None
        d = c.days.get(date)
        points = sorted(d.burn.items())[-BURN_POINTS_MAX:] if d else []
        offset = from_ms(t.opens_at_ms, c.book.schedule.tz).utcoffset()
        return {
            "date": date,
            "utc_offset_min": int(offset.total_seconds() // 60) if offset else 0,
            "closed": t.state == CLOSED,
            "opens_at_ms": t.opens_at_ms,
            "closes_at_ms": t.closes_at_ms,
            "released_fen": _released(t.state, t.released_fen, t.base_fen, t.inflow_pending_fen),
            "points": points,
        }

    def declines(self, cid: str) -> dict[str, int] | None:
        """Declines by reason since the server started (the HTTP layer's counters)."""
        if self.metrics is None:
            return None
        out: dict[str, int] = {}
        for family in self.metrics.declines.collect():
            for s in family.samples:
                if s.name.endswith("_total") and s.labels.get("campaign") == cid and s.value:
                    out[s.labels["reason"]] = int(s.value)
        return out

    # ------------------------------------------------------- history, reports
    def history(self, cid: str) -> list[Json]:
        """One row per day: the tranche (engine) and what settled on that day."""
        c = self.projection.campaign(cid)
        b = c.book
        tz = b.schedule.tz
        # A voucher of the campaign's last day may expire the day after: its row too.
        days = sorted(set(b.tranches) | {k for k, v in c.days.items()
                                         if v.settled or v.vouchers_expired})  # fmt: skip
        claims = b.settings.claims.on
        rows = []
        for day in days:
            t = b.tranches.get(day)
            d = c.days.get(day)
            total = SettlementRow()
            for m in d.settled.values() if d else ():
                total.add(m)
            row: Json = {"date": day, **total.view()}
            if t is not None:
                row.update(
                    state=t.state,
                    released_fen=_released(
                        t.state, t.released_fen, t.base_fen, t.inflow_pending_fen
                    ),
                    granted_fen=t.granted_fen,
                    held_fen=t.held_fen,
                    rolled_out_fen=t.rolled_out_fen,
                    first_sold_out_at=iso(d.first_sold_out_ms if d else None, tz),
                    holds=d.holds if d else 0,
                    peak_grants_per_s=d.peak_grants_per_s if d else 0,
                )
            if claims:  # [claims]: claimed, used and expired on the day (the daybook's)
                row.update(
                    vouchers_claimed=d.vouchers_claimed if d else 0,
                    vouchers_used=d.vouchers_used if d else 0,
                    vouchers_expired=d.vouchers_expired if d else 0,
                    vouchers_expired_fen=d.vouchers_expired_fen if d else 0,
                )
            rows.append(row)
        return rows

    def campaign_days(self, cid: str) -> list[str]:
        return list(self.projection.campaign(cid).book.tranches)

    def settlement(self, cid: str, day: str) -> Settlement:
        """core.settlement (what the API answers), cached until the ledger changes: it
        scans every redemption, so repeated clicks must not repeat the scan."""
        key = (cid, day, self.ledger.entries_applied)
        hit = self._settlements.get(key)
        if hit is None:
            hit = settlement(self.ledger, cid, day)
            self._settlements[key] = hit
            while len(self._settlements) > SETTLEMENT_CACHE_MAX:
                self._settlements.popitem(last=False)
        return hit

    def _maybe_audit(self) -> None:
        from lijian.audit import audit_ledger

        now_s = time.monotonic()
        entries = self.ledger.entries_applied
        interval_s = max(AUDIT_INTERVAL_MIN_S, self._audit_cost_s / AUDIT_LOOP_SHARE_MAX)
        if entries == self._audit_entries or now_s - self._audit_at_s < interval_s:
            return
        busy = self.engine.writer.queue_depth > 0
        if busy and now_s - self._audit_at_s < AUDIT_DEFER_MAX_S:
            return
        rep = audit_ledger(self.ledger, None)
        self._audit_cost_s = time.monotonic() - now_s
        self._audit_at_s, self._audit_entries = now_s, entries
        self._audit = {
            "ok": rep.ok,
            "entries": rep.entries,
            # Real time, shown in the campaign's zone like every other time on the page.
            "checked_at": iso(int(time.time() * 1000), self._zone()),
            "checks": [{"name": ch["name"], "ok": ch["ok"]} for ch in rep.checks],
            "violations": rep.violations[:5],
        }

    def _zone(self) -> ZoneInfo:
        """The time zone of the first campaign (the page shows every time in it)."""
        return next(iter(self.projection.campaigns.values())).book.schedule.tz

    def audit(self) -> Json | None:
        """The last audit (None until the first one ran)."""
        return self._audit


def _released(state: str, released_fen: int, base_fen: int, inflow_fen: int) -> int:
    # A scheduled tranche has released nothing yet: show what it will release.
    return base_fen + inflow_fen if state == SCHEDULED else released_fen
