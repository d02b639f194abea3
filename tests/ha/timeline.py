"""Where the seconds without service go after one loss of the leader, read from the logs.

Each phase is in seconds after the kill (wall clock: the harness, Patroni, PostgreSQL
and lijian's JSON lines all write UTC on this machine):

- ``promoted``: the new leader's PostgreSQL accepts writes ("database system is ready to
  accept connections" in its log, after the kill): Patroni's share ends here;
- ``died``: lijian's supervisor saw its sequencer exit (its commit failed);
- ``lease``: a sequencer took the lease on the new primary;
- ``ready``: that sequencer rebuilt the ledger and serves;
- ``linked``: a gateway's link to it is back;
- ``first_201``: the first grant after the outage.

``lijian_s`` is lijian's share: from the promotion to the first grant. It is what lijian
can shrink; Patroni's share is its ``ttl`` and promotion, measured separately.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# lijian's log events (JSON lines) that mark each phase, with a field that must match.
_EVENTS = {
    "died": ("died", "role", "sequencer"),
    "lease": ("lease taken", None, None),
    "ready": ("ready", None, None),
    "linked": ("sequencer connection restored", None, None),
}
_PG_READY = "database system is ready to accept connections"


@dataclass
class Phases:
    promoted: float | None = None
    died: float | None = None
    lease: float | None = None
    ready: float | None = None
    linked: float | None = None
    first_201: float | None = None

    @property
    def lijian_s(self) -> float | None:
        if self.promoted is None or self.first_201 is None:
            return None
        return self.first_201 - self.promoted

    def line(self) -> str:
        def f(v: float | None) -> str:
            return "?" if v is None else f"+{v:.2f}"

        share = self.lijian_s
        return (f"promoted {f(self.promoted)}, sequencer died {f(self.died)}, lease taken "
                f"{f(self.lease)}, ready {f(self.ready)}, gateway linked {f(self.linked)}, "
                f"first 201 {f(self.first_201)} s; lijian's share "
                f"{'?' if share is None else f'{share:.2f}'} s")  # fmt: skip


def _iso_s(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _pg_s(line: str) -> float | None:
    """A PostgreSQL log line's time ("2026-12-07 10:28:38.026 UTC [pid] ...")."""
    try:
        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).timestamp()


def lijian_events(serve_log: Path) -> list[tuple[float, str]]:
    """(time, phase) of every phase event in lijian's log."""
    out: list[tuple[float, str]] = []
    for raw in serve_log.read_text(errors="replace").splitlines():
        if not raw.startswith("{"):
            continue
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        event = str(rec.get("event", ""))
        for phase, (prefix, field, value) in _EVENTS.items():
            if event.startswith(prefix) and (field is None or rec.get(field) == value):
                out.append((_iso_s(str(rec["ts"])), phase))
    return out


def promotions(member_log: Path) -> list[float]:
    """When this member's PostgreSQL became ready for connections (each start or promotion)."""
    out = []
    for line in member_log.read_text(errors="replace").splitlines():
        if _PG_READY in line and (t := _pg_s(line)) is not None:
            out.append(t)
    return out


def phases(workdir: Path, kill_s: float, until_s: float, new_leader: int,
           first_201_s: float | None) -> Phases:  # fmt: skip
    """The phases of the loss at wall time ``kill_s`` (events up to ``until_s``)."""
    p = Phases()
    promoted = [t for t in promotions(workdir / f"patroni{new_leader}.log") if kill_s < t < until_s]
    if promoted:
        p.promoted = promoted[0] - kill_s
    for t, phase in lijian_events(workdir / "serve.log"):
        if kill_s < t < until_s and getattr(p, phase) is None:
            setattr(p, phase, t - kill_s)
    if first_201_s is not None:
        p.first_201 = first_201_s - kill_s
    return p


def distribution(values: list[float]) -> str:
    """min / median / p90 / p99 / max (nearest rank), for the summary lines."""
    v = sorted(values)
    if not v:
        return "none"

    def rank(q: float) -> float:
        return v[max(0, math.ceil(q * len(v)) - 1)]

    return (f"min {v[0]:.2f}, median {statistics.median(v):.2f}, p90 {rank(0.90):.2f}, "
            f"p99 {rank(0.99):.2f}, max {v[-1]:.2f} (n={len(v)})")  # fmt: skip
