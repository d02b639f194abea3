"""Campaign settings: the validated, typed form of the TOML of ``docs/SETTINGS.md``.

``parse_settings`` takes the already-parsed TOML document (a dict) and either returns
``Settings`` or raises ``SettingsError`` listing *every* problem at once, each with its
field path (``limits.hold_ttl_s: must be > 0``). Reading the file is an adapter's job
(:mod:`lijian.settings_file`); this module does no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lijian.core import settings_items as si
from lijian.core.categories import CATEGORIES_DEFAULT
from lijian.core.risk_settings import DetectorSettings, read_detectors
from lijian.core.settings_claims import NO_CLAIMS, ClaimsSection, parse_claims
from lijian.core.status import PriceAction

# A limit on everything: a campaign longer than this is a typo, not a campaign.
MAX_CAMPAIGN_DAYS = 366
MAX_TIERS = 32
MAX_BUDGET_FEN = 10**15
MAX_HOLD_TTL_S = 7 * 86_400
MAX_ADMISSION_WINDOW_S = 60  # requests wait open that long: longer would time clients out
MAX_WINDOW_WAITING = 100_000  # one window is decided in one batch of the writer
MAX_ALERT_THRESHOLDS = 10  # per list: each is one event (and its resolution) per tranche
MAX_SPIKE_FACTOR = 1_000
MAX_OVER_REFERENCE_PCT = 1_000  # ten times the reference: beyond that, a typo
LINKABLE_IDENTIFIERS = ("device_id", "card_hash", "phone_hash")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ADCODE_RE = re.compile(r"^[1-9][0-9]{5}$")
_HHMM_RE = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")


# The closed choices of a campaign document, by the names it uses for them.
Leftover = Literal["rollover", "expire"]  # a tranche's money left at its close
DiscountKind = Literal["percent", "threshold"]  # threshold: 满减 tiers
RestoreTiming = Literal["next_day", "immediately", "never"]  # quota back after a refund
ClawbackTarget = Literal["next_tranche", "same_tranche", "forfeit"]


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SettingsError(ValueError):
    """Every problem found in a settings document, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ThresholdTier:
    min_payable_fen: int
    off_fen: int


@dataclass(frozen=True, slots=True)
class CampaignSection:
    id: str
    name: str
    timezone: str
    budget_fen: int
    start_date: dt.date
    end_date: dt.date
    daily_open_min: int  # minutes after local midnight
    daily_close_min: int  # 1440 means 24:00
    tranches: str | dict[dt.date, int]  # "equal" or explicit per-day amounts
    leftover: Leftover
    city_adcode: str
    platforms: tuple[str, ...]
    payment_channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DiscountSection:
    kind: DiscountKind
    rate_bp: int
    tiers: tuple[ThresholdTier, ...]
    max_discount_fen_per_order: int  # 0 = none


@dataclass(frozen=True, slots=True)
class LimitsSection:
    person_savings_cap_fen: int
    person_redemptions_per_day: int  # 0 = unlimited
    person_redemptions_total: int  # 0 = unlimited
    hold_ttl_s: int


@dataclass(frozen=True, slots=True)
class EligibilitySection:
    categories: frozenset[str]
    require_real_name: bool
    require_device_in_city: bool
    require_address_in_city: bool
    whole_order_campaign_goods: bool
    allow_platform_discounts: bool
    allow_other_government_subsidies: bool


@dataclass(frozen=True, slots=True)
class RefundsSection:
    full_refund_restores_quota: RestoreTiming
    partial_refund_restores_quota: bool
    clawback_returns_to: ClawbackTarget


@dataclass(frozen=True, slots=True)
class ReleaseSection:
    # 0: first come, first served. N: the first N s after daily_open are one admission
    # window decided at its end in the draw's order (lijian.core.draw).
    admission_window_s: int = 0
    # Requests that may wait in one window at once; beyond it: 503 with Retry-After.
    max_waiting: int = 50_000


@dataclass(frozen=True, slots=True)
class IdentitySection:
    # Identifiers of the order's person that make two persons one (lijian.core.identity).
    link_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertsSection:
    # Events for the operator's webhooks (lijian.events): today's remaining, and the whole
    # campaign's, fell below these percentages; a decline reason's rate over the last
    # minute is this many times its rate over the 15 minutes before (0 = off).
    tranche_remaining_pct: tuple[int, ...] = ()
    budget_remaining_pct: tuple[int, ...] = ()
    decline_spike_factor: int = 0
    vouchers_left_pct: tuple[int, ...] = ()  # [claims]: today's whole vouchers left


@dataclass(frozen=True, slots=True)
class RiskSection:
    # A unit priced more than this percentage above its SKU's reference price (the
    # catalogue's reference_price_fen) is flagged or declined; None = not checked.
    max_price_over_reference_pct: int | None = None
    price_action: PriceAction = PriceAction.FLAG
    detectors: DetectorSettings = field(default_factory=DetectorSettings)  # risk_settings.py


@dataclass(frozen=True, slots=True)
class Settings:
    campaign: CampaignSection
    discount: DiscountSection
    limits: LimitsSection
    eligibility: EligibilitySection
    refunds: RefundsSection
    release: ReleaseSection = ReleaseSection()
    identity: IdentitySection = IdentitySection()
    alerts: AlertsSection = AlertsSection()
    risk: RiskSection = RiskSection()
    claims: ClaimsSection = NO_CLAIMS  # [claims] (lijian.core.settings_claims)
    items: si.ItemRules = field(default_factory=si.ItemRules)  # lijian.core.settings_items
    # The document as parsed, kept (and replayed) by the ledger; the simulator copies
    # it and edits its tables in place, unchecked.
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.campaign.id

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.campaign.timezone)


T = TypeVar("T")


class _Reader:
    """Reads one table, records problems with full paths, and flags unknown keys."""

    def __init__(self, doc: Mapping[str, object], path: str, problems: list[Problem]) -> None:
        self.doc = doc
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self._p(key), message))

    def get(
        self, key: str, kind: type[T], default: T | None, check: Callable[[T], str | None]
    ) -> T:
        self.seen.add(key)
        if key not in self.doc:
            if default is None:
                self.problem(key, "is required")
            return default  # type: ignore[return-value]  # a problem is recorded; caller aborts
        value = self.doc[key]
        # bool is an int in Python; a money field must not accept `true`.
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.problem(key, f"must be an integer, got {type(value).__name__}")
            return default  # type: ignore[return-value]
        if not isinstance(value, kind):
            self.problem(key, f"must be a {kind.__name__}, got {type(value).__name__}")
            return default  # type: ignore[return-value]
        message = check(value)
        if message:
            self.problem(key, message)
        return value

    def finish(self) -> None:
        for key in self.doc:
            if key not in self.seen:
                self.problem(key, "unknown key")


def _ok(_: object) -> str | None:
    return None


def _positive(v: int) -> str | None:
    return None if 0 < v <= MAX_BUDGET_FEN else "must be > 0"


def _non_negative(v: int) -> str | None:
    return None if 0 <= v <= MAX_BUDGET_FEN else "must be >= 0"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"

    return check


def _parse_date(r: _Reader, key: str) -> dt.date | None:
    raw = r.doc.get(key)
    r.seen.add(key)
    if raw is None:
        r.problem(key, "is required")
        return None
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return raw
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            pass
    r.problem(key, f"must be a date YYYY-MM-DD, got {raw!r}")
    return None


def _parse_hhmm(r: _Reader, key: str) -> int | None:
    raw = r.get(key, str, "", _ok)
    m = _HHMM_RE.match(raw) if raw else None
    if not m:
        if raw:
            r.problem(key, f"must be HH:MM (00:00-24:00), got {raw!r}")
        return None
    minutes = int(m.group(1)) * 60 + int(m.group(2))
    if minutes > 1440:
        r.problem(key, "must not be after 24:00")
        return None
    return minutes


def _str_list(r: _Reader, key: str, default: tuple[str, ...] | None) -> tuple[str, ...]:
    r.seen.add(key)
    if key not in r.doc:
        if default is None:
            r.problem(key, "is required")
            return ()
        return default
    raw = r.doc[key]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        r.problem(key, "must be a list of non-empty strings")
        return ()
    if not raw:
        r.problem(key, "must not be empty")
    if len(set(raw)) != len(raw):
        r.problem(key, "has duplicates")
    return tuple(raw)


def _table(
    doc: Mapping[str, object], key: str, problems: list[Problem], required: bool
) -> Mapping[str, object]:
    value = doc.get(key)
    if value is None:
        if required:
            problems.append(Problem(key, "section is required"))
        return {}
    if not isinstance(value, Mapping):
        problems.append(Problem(key, "must be a table"))
        return {}
    return value


def _campaign(doc: Mapping[str, object], problems: list[Problem]) -> CampaignSection | None:
    r = _Reader(_table(doc, "campaign", problems, True), "campaign", problems)
    before = len(problems)
    cid = r.get(
        "id",
        str,
        None,
        lambda v: None if _ID_RE.match(v) else "must be 1-64 chars of a-z 0-9 . _ - ",
    )
    name = r.get("name", str, None, lambda v: None if v.strip() else "must not be empty")
    tz_name = r.get("timezone", str, "Asia/Shanghai", _ok)
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        r.problem("timezone", f"unknown time zone {tz_name!r}")
    budget = r.get("budget_fen", int, None, _positive)
    start = _parse_date(r, "start_date")
    end = _parse_date(r, "end_date")
    if start and end:
        if end < start:
            r.problem("end_date", "must not be before start_date")
        elif (end - start).days + 1 > MAX_CAMPAIGN_DAYS:
            r.problem("end_date", f"a campaign lasts at most {MAX_CAMPAIGN_DAYS} days")
    open_min = _parse_hhmm(r, "daily_open")
    close_min = _parse_hhmm(r, "daily_close")
    if open_min is not None and close_min is not None and close_min <= open_min:
        r.problem("daily_close", "must be after daily_open")
    tranches = _tranches(r, start, end, budget)
    leftover = r.get("leftover", str, "rollover", _one_of(*get_args(Leftover)))
    adcode = r.get(
        "city_adcode",
        str,
        None,
        lambda v: None if _ADCODE_RE.match(v) else "must be a 6-digit adcode",
    )
    platforms = _str_list(r, "platforms", None)
    channels = _str_list(r, "payment_channels", None)
    r.finish()
    if len(problems) > before or start is None or end is None:
        return None
    assert open_min is not None and close_min is not None and tranches is not None
    return CampaignSection(
        id=cid,
        name=name,
        timezone=tz_name,
        budget_fen=budget,
        start_date=start,
        end_date=end,
        daily_open_min=open_min,
        daily_close_min=close_min,
        tranches=tranches,
        leftover=cast(Leftover, leftover),
        city_adcode=adcode,
        platforms=platforms,
        payment_channels=channels,
    )


def _tranches(
    r: _Reader, start: dt.date | None, end: dt.date | None, budget: int | None
) -> str | dict[dt.date, int] | None:
    r.seen.add("tranches")
    raw = r.doc.get("tranches", "equal")
    if raw == "equal":
        return "equal"
    if not isinstance(raw, Mapping):
        r.problem("tranches", 'must be "equal" or a table of "YYYY-MM-DD" = fen')
        return None
    out: dict[dt.date, int] = {}
    for key, amount in raw.items():
        path = f"tranches.{key}"
        try:
            day = dt.date.fromisoformat(str(key))
        except ValueError:
            r.problem(path, "key must be a date YYYY-MM-DD")
            continue
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            r.problem(path, "must be a non-negative integer number of fen")
            continue
        if start and end and not start <= day <= end:
            r.problem(path, "date is outside start_date..end_date")
            continue
        out[day] = amount
    if budget is not None and out and sum(out.values()) != budget:
        r.problem(
            "tranches",
            f"per-day amounts sum to {sum(out.values())} fen, budget_fen is {budget}: "
            "they must be equal to the fen",
        )
    return dict(sorted(out.items()))


def _discount(doc: Mapping[str, object], problems: list[Problem]) -> DiscountSection | None:
    r = _Reader(_table(doc, "discount", problems, True), "discount", problems)
    before = len(problems)
    kind = r.get("kind", str, None, _one_of(*get_args(DiscountKind)))
    r.seen.update(si.DISCOUNT_ITEM_KEYS)  # read by lijian.core.settings_items
    rate_bp = r.get("rate_bp", int, 0, lambda v: None if 0 <= v <= 10_000 else "must be 0..10000")
    if kind == "percent" and rate_bp == 0:
        r.problem("rate_bp", 'must be > 0 when kind = "percent"')
    tiers: list[ThresholdTier] = []
    r.seen.add("tiers")
    raw_tiers = r.doc.get("tiers", [])
    if not isinstance(raw_tiers, list) or len(raw_tiers) > MAX_TIERS:
        r.problem("tiers", f"must be a list of at most {MAX_TIERS} tables")
        raw_tiers = []
    for i, t in enumerate(raw_tiers):
        tr = _Reader(t if isinstance(t, Mapping) else {}, f"discount.tiers[{i}]", problems)
        mp = tr.get("min_payable_fen", int, 0, _non_negative)
        off = tr.get("off_fen", int, None, _positive)
        tr.finish()
        if isinstance(mp, int) and isinstance(off, int):
            if off > mp > 0:
                tr.problem("off_fen", "must not exceed min_payable_fen")
            tiers.append(ThresholdTier(mp, off))
    if kind == "threshold" and not raw_tiers:
        r.problem("tiers", 'at least one tier is required when kind = "threshold"')
    max_off = r.get("max_discount_fen_per_order", int, 0, _non_negative)
    r.finish()
    if len(problems) > before:
        return None
    tiers.sort(key=lambda t: t.min_payable_fen)
    return DiscountSection(cast(DiscountKind, kind), rate_bp, tuple(tiers), max_off)


def _limits(doc: Mapping[str, object], problems: list[Problem]) -> LimitsSection | None:
    r = _Reader(_table(doc, "limits", problems, True), "limits", problems)
    before = len(problems)
    cap = r.get("person_savings_cap_fen", int, None, _positive)
    r.seen.update(si.LIMIT_ITEM_KEYS)  # read by lijian.core.settings_items
    per_day = r.get("person_redemptions_per_day", int, 0, _non_negative)
    total = r.get("person_redemptions_total", int, 0, _non_negative)
    ttl = r.get(
        "hold_ttl_s",
        int,
        900,
        lambda v: None if 0 < v <= MAX_HOLD_TTL_S else f"must be 1..{MAX_HOLD_TTL_S}",
    )
    r.finish()
    return None if len(problems) > before else LimitsSection(cap, per_day, total, ttl)


def _eligibility(doc: Mapping[str, object], problems: list[Problem]) -> EligibilitySection | None:
    r = _Reader(_table(doc, "eligibility", problems, False), "eligibility", problems)
    before = len(problems)
    cats = _str_list(r, "categories", CATEGORIES_DEFAULT)
    flags = {
        k: r.get(k, bool, d, _ok)
        for k, d in (
            ("require_real_name", True),
            ("require_device_in_city", True),
            ("require_address_in_city", True),
            ("whole_order_campaign_goods", True),
            ("allow_platform_discounts", True),
            ("allow_other_government_subsidies", False),
        )
    }
    r.finish()
    if len(problems) > before:
        return None
    return EligibilitySection(categories=frozenset(cats), **flags)


def _refunds(doc: Mapping[str, object], problems: list[Problem]) -> RefundsSection | None:
    r = _Reader(_table(doc, "refunds", problems, False), "refunds", problems)
    before = len(problems)
    full = r.get(
        "full_refund_restores_quota",
        str,
        "next_day",
        _one_of(*get_args(RestoreTiming)),
    )
    partial = r.get("partial_refund_restores_quota", bool, False, _ok)
    claw = r.get(
        "clawback_returns_to",
        str,
        "next_tranche",
        _one_of(*get_args(ClawbackTarget)),
    )
    r.finish()
    if len(problems) > before:
        return None
    return RefundsSection(cast(RestoreTiming, full), partial, cast(ClawbackTarget, claw))


def _release(doc: Mapping[str, object], problems: list[Problem]) -> ReleaseSection | None:
    r = _Reader(_table(doc, "release", problems, False), "release", problems)
    before = len(problems)
    window = r.get(
        "admission_window_s",
        int,
        0,
        lambda v: (
            None if 0 <= v <= MAX_ADMISSION_WINDOW_S else f"must be 0..{MAX_ADMISSION_WINDOW_S}"
        ),
    )
    waiting = r.get(
        "max_waiting",
        int,
        50_000,
        lambda v: None if 0 < v <= MAX_WINDOW_WAITING else f"must be 1..{MAX_WINDOW_WAITING}",
    )
    r.finish()
    return None if len(problems) > before else ReleaseSection(window, waiting)


def _identity(doc: Mapping[str, object], problems: list[Problem]) -> IdentitySection | None:
    r = _Reader(_table(doc, "identity", problems, False), "identity", problems)
    before = len(problems)
    link_by: tuple[str, ...] = ()
    if "link_by" in r.doc and r.doc["link_by"] == []:
        r.seen.add("link_by")  # the documented default, written out
    else:
        link_by = _str_list(r, "link_by", ())
    unknown = [k for k in link_by if k not in LINKABLE_IDENTIFIERS]
    if unknown:
        r.problem("link_by", f"unknown identifier(s) {unknown}; use {list(LINKABLE_IDENTIFIERS)}")
    r.finish()
    return None if len(problems) > before else IdentitySection(link_by)


def _pct_list(r: _Reader, key: str) -> tuple[int, ...]:
    r.seen.add(key)
    raw = r.doc.get(key, [])
    if not isinstance(raw, list) or not all(type(x) is int and 0 < x < 100 for x in raw):
        r.problem(key, "must be a list of whole percentages between 1 and 99")
        return ()
    if len(raw) > MAX_ALERT_THRESHOLDS or len(set(raw)) != len(raw):
        r.problem(key, f"must hold at most {MAX_ALERT_THRESHOLDS} distinct percentages")
        return ()
    return tuple(sorted(raw, reverse=True))


def _alerts(doc: Mapping[str, object], problems: list[Problem]) -> AlertsSection | None:
    r = _Reader(_table(doc, "alerts", problems, False), "alerts", problems)
    before = len(problems)
    tranche = _pct_list(r, "tranche_remaining_pct")
    budget = _pct_list(r, "budget_remaining_pct")
    factor = r.get(
        "decline_spike_factor",
        int,
        0,
        lambda v: None if 0 <= v <= MAX_SPIKE_FACTOR else f"must be 0..{MAX_SPIKE_FACTOR}",
    )
    vouchers = _pct_list(r, "vouchers_left_pct")
    r.finish()
    return None if len(problems) > before else AlertsSection(tranche, budget, factor, vouchers)


def _risk(doc: Mapping[str, object], problems: list[Problem]) -> RiskSection | None:
    r = _Reader(_table(doc, "risk", problems, False), "risk", problems)
    before = len(problems)
    pct: int | None = None
    if "max_price_over_reference_pct" in r.doc:
        top = MAX_OVER_REFERENCE_PCT
        pct = r.get("max_price_over_reference_pct", int, 0,
                    lambda v: None if 0 <= v <= top else f"must be 0..{top}")  # fmt: skip
    actions = tuple(PriceAction)
    action = r.get("price_action", str, PriceAction.FLAG.value, _one_of(*actions))
    detectors = read_detectors(r)
    r.finish()
    return None if len(problems) > before else RiskSection(pct, PriceAction(action), detectors)


def parse_settings(doc: Mapping[str, object]) -> Settings:
    """Validate a whole settings document; raise ``SettingsError`` with every problem."""
    problems: list[Problem] = []
    known = {"campaign", "discount", "limits", "eligibility", "refunds", "release", "identity",
             "alerts", "risk", "claims"}  # fmt: skip
    for key in doc:
        if key not in known:
            problems.append(Problem(key, "unknown section"))
    campaign = _campaign(doc, problems)
    discount = _discount(doc, problems)
    limits = _limits(doc, problems)
    eligibility = _eligibility(doc, problems)
    refunds = _refunds(doc, problems)
    release = _release(doc, problems)
    identity = _identity(doc, problems)
    alerts = _alerts(doc, problems)
    risk = _risk(doc, problems)
    claims = parse_claims(
        doc, lambda p, m: problems.append(Problem(p, m)), campaign, limits, refunds
    )
    items, found = si.parse_item_rules(doc, eligibility.categories if eligibility else None)
    problems += [Problem(path, why) for path, why in found]
    if problems:
        raise SettingsError(problems)
    assert campaign and discount and limits and eligibility and refunds
    assert release and identity and alerts and risk and claims
    return Settings(campaign, discount, limits, eligibility, refunds, release, identity, alerts,
                    risk, claims, items, raw=dict(doc))  # fmt: skip
