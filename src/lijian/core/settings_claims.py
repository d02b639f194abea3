"""The ``[claims]`` section: claimed vouchers (领券) instead of a discount decided at payment.

Absent, or ``mode = "instant"``: the campaign works as it always did (Chengdu: the
discount is decided at payment). ``mode = "claim"``: a person first claims a voucher of
``voucher_value_fen`` from the day's tranche (lijian.core.vouchers), then pays with it.
Parsed here, apart from :mod:`lijian.core.settings`, which calls ``parse_claims`` once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

ClaimMode = Literal["instant", "claim"]
Allocation = Literal["first_come", "lottery"]

MAX_BUDGET_FEN = 10**15  # as lijian.core.settings
MAX_VALID_DAYS = 366  # a voucher valid longer than a campaign can last is a typo
MAX_CLAIMS_PER_PERSON = 10_000
MAX_LOTTERY_REGISTER_S = 86_400
_DAYS_RE = re.compile(r"^P([1-9][0-9]{0,2})D$")
_HHMM_RE = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")
_KEYS = ("mode", "voucher_value_fen", "valid_for", "claim_open", "claim_close",
         "person_claims_per_day", "person_claims_total", "allocation", "lottery_register_s",
         "per_category")  # fmt: skip

# Records one problem: (field path, why). lijian.core.settings passes its own list's.
Report = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class ClaimsSection:
    mode: ClaimMode = "instant"
    voucher_value_fen: int = 0
    valid_days: int = 0  # 0: "day" (until that day's close); N: "PND", N days from the claim
    claim_open_min: int | None = None  # None: the campaign's daily_open
    claim_close_min: int | None = None  # None: the campaign's daily_close
    person_claims_per_day: int = 1  # 0 = unlimited
    person_claims_total: int = 0  # 0 = unlimited
    allocation: Allocation = "first_come"
    lottery_register_s: int = 0
    per_category: bool = False

    @property
    def on(self) -> bool:
        """Whether the campaign hands out claimed vouchers."""
        return self.mode == "claim"

    @property
    def valid_for(self) -> str:
        """The settings' spelling of the validity: "day" or "PND"."""
        return "day" if self.valid_days == 0 else f"P{self.valid_days}D"


NO_CLAIMS = ClaimsSection()


class _Table:
    """Reads ``[claims]``: each value checked, each problem reported with its path."""

    def __init__(self, doc: Mapping[str, object], report: Report) -> None:
        self.doc, self.report, self.bad = doc, report, False

    def problem(self, key: str, message: str) -> None:
        self.bad = True
        self.report(f"claims.{key}", message)

    def get_int(self, key: str, default: int | None, lo: int, hi: int) -> int:
        if key not in self.doc:
            if default is None:
                self.problem(key, "is required")
            return default or 0
        v = self.doc[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.problem(key, f"must be an integer, got {type(v).__name__}")
            return default or 0
        if not lo <= v <= hi:
            self.problem(key, f"must be {lo}..{hi}" if lo == 0 else "must be > 0")
        return v

    def get_str(self, key: str, default: str, choices: tuple[str, ...] = ()) -> str:
        v = self.doc.get(key, default)
        if not isinstance(v, str):
            self.problem(key, f"must be a str, got {type(v).__name__}")
            return default
        if choices and v not in choices:
            self.problem(key, f"must be one of {', '.join(choices)}; got {v!r}")
            return default
        return v

    def hhmm(self, key: str) -> int | None:
        if key not in self.doc:
            return None
        raw = self.get_str(key, "")
        m = _HHMM_RE.match(raw)
        if not m or int(m.group(1)) * 60 + int(m.group(2)) > 1440:
            self.problem(key, f"must be HH:MM (00:00-24:00), got {raw!r}")
            return None
        return int(m.group(1)) * 60 + int(m.group(2))

    def valid_days(self) -> int:
        raw = self.get_str("valid_for", "day")
        if raw == "day":
            return 0
        m = _DAYS_RE.match(raw)
        if not m or int(m.group(1)) > MAX_VALID_DAYS:
            self.problem("valid_for", f'must be "day" or "PND" (ISO 8601 days, '
                         f"1..{MAX_VALID_DAYS}), got {raw!r}")  # fmt: skip
            return 0
        return int(m.group(1))


class _Hours(Protocol):  # the [campaign] section's daily hours
    @property
    def daily_open_min(self) -> int: ...
    @property
    def daily_close_min(self) -> int: ...


class _Cap(Protocol):  # the [limits] section
    @property
    def person_savings_cap_fen(self) -> int: ...


class _Refunds(Protocol):  # the [refunds] section
    @property
    def full_refund_restores_quota(self) -> str: ...


def _without_claims(doc: Mapping[str, object], report: Report) -> ClaimsSection | None:
    """A campaign without vouchers: [alerts] vouchers_left_pct would never fire."""
    alerts = doc.get("alerts")
    if isinstance(alerts, Mapping) and alerts.get("vouchers_left_pct"):
        report("alerts.vouchers_left_pct", 'needs [claims] mode = "claim"')
        return None
    return NO_CLAIMS


def parse_claims(
    doc: Mapping[str, object],
    report: Report,
    campaign: _Hours | None,
    limits: _Cap | None,
    refunds: _Refunds | None,
) -> ClaimsSection | None:
    """The ``[claims]`` table (absent: ``NO_CLAIMS``), every problem reported with its
    field; None when there was one. It is checked against the other sections parsed
    (None when they are wrong: their own problems are listed)."""
    day_open_close = (campaign.daily_open_min, campaign.daily_close_min) if campaign else None
    cap_fen = limits.person_savings_cap_fen if limits else None
    full_refund_restores = refunds.full_refund_restores_quota if refunds else None
    if "claims" not in doc:
        return _without_claims(doc, report)
    raw = doc["claims"]
    if not isinstance(raw, Mapping):
        report("claims", "must be a table")
        return None
    r = _Table(raw, report)
    for key in raw:
        if key not in _KEYS:
            r.problem(key, "unknown key")
    mode = r.get_str("mode", "instant", get_args(ClaimMode))
    on = mode == "claim"
    value = r.get_int("voucher_value_fen", None if on else 0, 1 if on else 0, MAX_BUDGET_FEN)
    days = r.valid_days()
    open_min, close_min = r.hhmm("claim_open"), r.hhmm("claim_close")
    per_day = r.get_int("person_claims_per_day", 1, 0, MAX_CLAIMS_PER_PERSON)
    total = r.get_int("person_claims_total", 0, 0, MAX_CLAIMS_PER_PERSON)
    allocation = r.get_str("allocation", "first_come", get_args(Allocation))
    register_s = r.get_int("lottery_register_s", 0, 0, MAX_LOTTERY_REGISTER_S)
    per_category = r.doc.get("per_category", False)
    if not isinstance(per_category, bool):
        r.problem("per_category", f"must be a bool, got {type(per_category).__name__}")
    if day_open_close is not None:
        day_open, day_close = day_open_close
        o = day_open if open_min is None else open_min
        c = day_close if close_min is None else close_min
        if open_min is not None and not day_open <= open_min < day_close:
            r.problem("claim_open", "must be within the campaign's daily_open .. daily_close")
        if close_min is not None and not day_open < close_min <= day_close:
            r.problem("claim_close", "must be within the campaign's daily_open .. daily_close")
        if c <= o:
            r.problem("claim_close", "must be after claim_open")
        elif allocation == "lottery" and o * 60 + register_s >= c * 60:
            r.problem("lottery_register_s", "the draw must be before claim_close")
    if allocation == "lottery":
        if register_s == 0:
            r.problem("lottery_register_s", 'must be > 0 when allocation = "lottery"')
        if not on:
            r.problem("allocation", 'a lottery needs mode = "claim"')
    elif register_s:
        r.problem("lottery_register_s", 'is only for allocation = "lottery"')
    if on and cap_fen is not None and value > cap_fen:
        r.problem("voucher_value_fen", f"must not exceed limits.person_savings_cap_fen ({cap_fen})")
    if not on and set(raw) - {"mode"}:
        r.problem("mode", 'the other [claims] keys need mode = "claim"')
    if not on and _without_claims(doc, report) is None:
        r.bad = True
    if on and full_refund_restores == "next_day":
        # A full refund gives the voucher's use back at once (a new voucher, which counts
        # against the savings cap): the quota the order used must come back at once too.
        report("refunds.full_refund_restores_quota",
               'must be "immediately" or "never" with [claims] mode = "claim"')  # fmt: skip
        return None
    if r.bad:
        return None
    return ClaimsSection(
        mode,  # type: ignore[arg-type]  # one of ClaimMode, checked above
        value,
        days,
        open_min,
        close_min,
        per_day,
        total,
        allocation,  # type: ignore[arg-type]
        register_s,
        bool(per_category),
    )
