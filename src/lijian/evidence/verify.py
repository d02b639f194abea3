"""Verify a daily evidence bundle without the database: only the file and the public key.

Checks, each named in the result when it fails:

- ``format``: the file is one canonical JSON object of this format (``lijian-evidence/3``)
  or of ``lijian-evidence/2``, every field of its type (``schema.py``; anything else is
  this one failure, never an exception). A /2 bundle, issued before /3, gets every check
  /2 had and a note that it lists no vouchers, lotteries, items or risk rows (those
  checks are /3's only); a /2 bundle carrying a /3 field is refused;
- ``signature``: Ed25519 over the canonical bytes without ``signature``, by the given key;
- ``chain``: the range is well formed, its ``entries`` hash from ``from_head`` to ``head``
  (core/chain.py) and end at the campaign's close of the date; with ``head``, that is
  the head the public feed published for the day;
- ``rows``: the rows are exactly what the entries say: each capture and refund of the
  campaign dated that day has its row with the figures of its hold, and no row is
  invented or changed (a row that is not in the range, a capture after the day's close,
  is checked by the next day's bundle, see ``previous``);
- ``rows`` also: the vouchers, lottery draws, trade-in items and risk rows are exactly
  the campaign's entries of those kinds in the range, in order (``range_rows.py``), and
  ``voucher_campaigns`` names exactly the vouchers from before the range they need;
- ``settlement``: each platform's count, GMV, discount, clawback and net, and the
  totals, follow from the rows;
- with ``previous``: that bundle also verifies, is the same campaign's *previous day*
  (a missing day between them fails), this chain starts at its head, the holds this
  bundle quotes from that day are the ones in its entries (and so are the campaigns of
  the vouchers it quotes), and the captures and refunds of that day which came after
  its close are its rows.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lijian.core.chain import link_all, parse_head
from lijian.core.settlement import FIELDS
from lijian.evidence.bundle import FORMAT, SIGNATURE_ALG, bundle_bytes, canonical
from lijian.evidence.keys import public_hex, signature_holds
from lijian.evidence.range_check import check_range_rows, check_voucher_origins
from lijian.evidence.schema import (
    FORMAT_2,
    V3_ONLY,
    Bundle,
    BundleV2,
    DayFacts,
    Row,
    facts_of,
    from_v2,
    is_v2,
    local_day,
)

MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # a day of a big city is tens of MB; refuse beyond
MAX_FAILURES_LISTED = 50


class BundleUnreadable(ValueError):
    """Not a file that can be checked at all (exit 2 rather than 1)."""


@dataclass
class Verdict:
    path: str
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not failures: what was not checked

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, check: str, why: str) -> None:
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(f"{check}: {why}")


def read_bundle(path: Path) -> tuple[bytes, object]:
    """The file's bytes and its JSON (or why it is not JSON)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise BundleUnreadable(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleUnreadable(f"{path}: larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        return raw, json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return raw, exc


def verify_file(
    path: Path, key: Ed25519PublicKey, previous: Path | None = None, head: str | None = None
) -> Verdict:
    """Every check of the module's docstring; ``head``: the day's head as published."""
    v, b, facts = _verify(path, key)
    if b is None:
        return v
    if head is not None and head.lower() != b.chain.head:
        v.fail("chain", f"head {b.chain.head[:16]}… is not the published {head[:16]}…")
    if previous is not None:
        _check_previous(v, b, facts, previous, key)
    return v


def _verify(path: Path, key: Ed25519PublicKey) -> tuple[Verdict, Bundle | None, DayFacts | None]:
    raw, doc = read_bundle(path)
    v = Verdict(str(path))
    b = _check_format(v, raw, doc)
    if b is None:
        return v, None, None
    assert isinstance(doc, dict)  # _check_format read it as one
    _check_signature(v, doc, b, key)
    facts = _check_chain(v, b)
    if facts is not None:
        _check_rows(v, b, facts)
        _check_changes(v, b, facts)
        if not is_v2(b):  # /2 has no such rows: what it holds is checked as /2 did
            check_range_rows(v.fail, b, facts)
    _check_settlement(v, b)
    if is_v2(b):
        v.notes.append(
            f"{path} is format 2 ({FORMAT_2}, from before {FORMAT}): it does not list "
            "vouchers, lotteries, items or risk rows; its other contents are checked"
        )
    return v, b, facts


def _check_format(v: Verdict, raw: bytes, doc: object) -> Bundle | None:
    if isinstance(doc, Exception):
        v.fail("format", f"not JSON ({doc})")
        return None
    if not isinstance(doc, dict) or doc.get("format") not in (FORMAT, FORMAT_2):
        v.fail("format", f"not a {FORMAT} or {FORMAT_2} bundle")
        return None
    extra = [k for k in V3_ONLY if k in doc]
    if doc["format"] == FORMAT_2 and extra:
        # Signed as /2 yet carrying /3 rows: not what any builder wrote; refused whole
        # rather than checked as either format.
        v.fail("format", f"a {FORMAT_2} bundle with {FORMAT} fields ({', '.join(extra)})")
        return None
    try:
        if doc["format"] == FORMAT_2:
            b = from_v2(msgspec.convert(doc, BundleV2))
        else:
            b = msgspec.convert(doc, Bundle)
    except msgspec.ValidationError as exc:
        v.fail("format", f"malformed content ({exc})")
        return None
    try:
        dt.date.fromisoformat(b.date)
    except ValueError:
        v.fail("format", f"date {b.date[:40]!r} is not YYYY-MM-DD")
        return None
    if bundle_bytes(doc) != raw:
        v.fail("format", "the file is not in canonical form (bytes were changed)")
    return b


def _check_signature(v: Verdict, doc: dict[str, object], b: Bundle, key: Ed25519PublicKey) -> None:
    sig = b.signature
    if sig.alg != SIGNATURE_ALG:
        v.fail("signature", f"not an {SIGNATURE_ALG} signature")
        return
    if sig.public_key != public_hex(key):
        v.fail("signature", "signed by another key than the one given")
    try:
        value = bytes.fromhex(sig.value)
    except ValueError:
        v.fail("signature", "value is not hex")
        return
    unsigned = {k: x for k, x in doc.items() if k != "signature"}
    if not signature_holds(key, value, canonical(unsigned)):
        v.fail("signature", "does not verify with the given public key (content or key wrong)")


def _check_chain(v: Verdict, b: Bundle) -> DayFacts | None:
    """The range's shape and its entries against its heads; the day's facts from them."""
    c = b.chain
    start, end = parse_head(c.from_head), parse_head(c.head)
    if start is None or end is None:
        v.fail("chain", "heads must be 64 hex characters")
        return None
    if not 0 <= c.from_seq < c.to_seq:
        v.fail("chain", f"range {c.from_seq}..{c.to_seq} is not ascending")
    try:
        bodies = [bytes.fromhex(x) for x in b.entries]
    except ValueError:
        v.fail("chain", "an entry is not hex")
        return None
    if not bodies or link_all(start, bodies)[-1] != end:
        v.fail("chain", "the entries do not hash from from_head to head (an entry was "
                        "dropped, changed or added)")  # fmt: skip
        return None
    facts, problem = facts_of(b, bodies)
    if problem:
        v.fail("chain", problem)
        return None
    return facts


@dataclass(frozen=True, slots=True)
class _Listed:
    """Redemptions or refunds, as the checks name them."""

    noun: str
    verb: str  # what its entry did on its day
    at: str  # the row's time


_REDEMPTIONS = _Listed("redemption", "captured", "captured_at")
_REFUNDS = _Listed("refund", "recorded", "created_at")
Key = TypeVar("Key", str, tuple[str, str])


def _shown(k: str | tuple[str, str]) -> str:
    """A redemption by its id, a refund by its refund id."""
    return k if isinstance(k, str) else k[1]


def _check_rows(v: Verdict, b: Bundle, facts: DayFacts) -> None:
    for problem in facts.problems:
        v.fail("rows", problem)
    listed = {r.id: msgspec.structs.asdict(r) for r in b.redemptions}
    _check_listed(v, _REDEMPTIONS, b.date, listed, len(b.redemptions), facts.redemptions,
                  facts.in_range, facts.close_ms)  # fmt: skip
    refunds = {(f.redemption_id, f.refund_id): msgspec.structs.asdict(f) for f in b.refunds}
    _check_listed(v, _REFUNDS, b.date, refunds, len(b.refunds), facts.refunds,
                  facts.refunds_in_range, facts.close_ms)  # fmt: skip


def _check_listed(
    v: Verdict,
    kind: _Listed,
    day: str,
    listed: dict[Key, Row],
    count: int,
    want: dict[Key, Row],
    in_range: set[Key],
    close_ms: int,
) -> None:
    """The rows of one kind (``count`` in the bundle, ``listed`` by key) are exactly the
    ones the entries say (``want``) were made on ``day``."""
    noun, verb = kind.noun, kind.verb
    if len(listed) != count:
        v.fail("rows", f"a {noun} is listed twice")
    for k, row in want.items():
        got = listed.get(k)
        if got is None:
            v.fail("rows", f"{noun} {_shown(k)} was {verb} on {day} (entries) but is not listed")
        elif got != row:
            v.fail("rows", f"{noun} {_shown(k)} is not as its entries say")
    for k, got in listed.items():
        if str(got[kind.at])[:10] != day:
            v.fail("rows", f"{noun} {_shown(k)} was not {verb} on {day}")
        elif k not in want and (k in in_range or not _after(got[kind.at], close_ms)):
            v.fail("rows", f"{noun} {_shown(k)} is listed but its entries say otherwise")


def _check_changes(v: Verdict, b: Bundle, facts: DayFacts) -> None:
    """Every change entry of the range dated the bundle's day is listed, and every listed
    change is such an entry (or came after the day's close: the next range has it)."""
    listed: dict[str, object] = {}
    for c in b.changes:
        cid = c.get("id")
        if not isinstance(cid, str) or cid in listed:
            v.fail("changes", "a change has no id, or is listed twice")
            return
        listed[cid] = c.get("at")
    for cid, ts_ms in facts.changes.items():
        if local_day(ts_ms, facts.tz) == b.date and cid not in listed:
            v.fail("changes", f"change {cid} was made on {b.date} (entries) but is not listed")
    for cid, at in listed.items():
        if cid not in facts.changes and not _after(at, facts.close_ms):
            v.fail("changes", f"change {cid} is listed but is not in the entries")


def _after(text: object, close_ms: int) -> bool:
    """Whether a row's time is after the day's close: only such a row can be missing
    from the range (it is in the next day's, checked with that bundle's ``previous``)."""
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return False
    if moment.tzinfo is None:
        return False
    return moment.timestamp() * 1000 >= close_ms


def _check_settlement(v: Verdict, b: Bundle) -> None:
    st = b.settlement
    if st.campaign_id != b.campaign_id or st.date != b.date:
        v.fail("settlement", "is for another campaign or day")
    sums: dict[str, dict[str, int]] = {}
    for r in b.redemptions:
        row = sums.setdefault(r.platform, dict.fromkeys(FIELDS, 0))
        row["count"] += 1
        row["gmv_fen"] += r.payable_fen
        row["discount_fen"] += r.discount_fen
    for f in b.refunds:
        sums.setdefault(f.platform, dict.fromkeys(FIELDS, 0))["clawback_fen"] += f.clawback_fen
    listed = {p.platform: msgspec.structs.asdict(p) for p in st.platforms}
    totals = dict.fromkeys(FIELDS, 0)
    for platform in sorted(set(sums) | set(listed)):
        want = sums.get(platform, dict.fromkeys(FIELDS, 0))
        want["net_subsidy_fen"] = want["discount_fen"] - want["clawback_fen"]
        got = listed.get(platform)
        for k in FIELDS:
            totals[k] += want[k]
            if got is None or got[k] != want[k]:
                shown = "absent" if got is None else got[k]
                v.fail("settlement", f"{platform} {k} is {shown}, the listed rows give {want[k]}")
    given = msgspec.structs.asdict(st.totals)
    for k in FIELDS:
        if given[k] != totals[k]:
            v.fail("settlement", f"totals {k} is {given[k]}, the rows give {totals[k]}")


def _check_previous(
    v: Verdict, b: Bundle, facts: DayFacts | None, previous: Path, key: Ed25519PublicKey
) -> None:
    try:
        prev_v, prev, prev_facts = _verify(previous, key)
    except BundleUnreadable as exc:
        v.fail("previous", str(exc))
        return
    for failure in prev_v.failures:
        v.fail("previous", f"{previous}: {failure}")
    v.notes.extend(prev_v.notes)
    if not prev_v.ok or prev is None or prev_facts is None:
        return
    if prev.campaign_id != b.campaign_id:
        v.fail("previous", f"is of campaign {prev.campaign_id}, not {b.campaign_id}")
        return
    want = dt.date.fromisoformat(b.date) - dt.timedelta(days=1)
    if prev.date != want.isoformat():
        v.fail("previous", f"day missing: the previous bundle is {prev.date}, not {want}")
    pc, c = prev.chain, b.chain
    if (pc.to_seq, pc.head) != (c.from_seq, c.from_head):
        v.fail(
            "chain",
            f"does not continue the previous bundle (it ends at seq {pc.to_seq} "
            f"{pc.head[:16]}…, this starts at seq {c.from_seq} {c.from_head[:16]}…)",
        )
        return
    if facts is None:
        return
    # Holds this bundle quotes from the day before are the ones in that day's entries.
    for rid, hold in facts.quoted_holds.items():
        there = prev_facts.holds.get(rid)
        if there is not None and there != hold:
            v.fail("previous", f"the hold of {rid} is not the one in {previous}'s entries")
    check_voucher_origins(v.fail, b, prev_facts, previous)
    # That day's captures and refunds after its close are in this range: its rows.
    late = facts.dated(prev.date)
    rows = {r.id: msgspec.structs.asdict(r) for r in prev.redemptions}
    _check_late(v, _REDEMPTIONS, prev.date, rows, late.redemptions, prev_facts.redemptions)
    frows = {(f.redemption_id, f.refund_id): msgspec.structs.asdict(f) for f in prev.refunds}
    _check_late(v, _REFUNDS, prev.date, frows, late.refunds, prev_facts.refunds)


def _check_late(
    v: Verdict,
    kind: _Listed,
    day: str,
    listed: dict[Key, Row],
    late: dict[Key, Row],
    there: dict[Key, Row],
) -> None:
    """The previous bundle's rows (``listed``) of ``day``: those this range made after
    that day's close (``late``) are among them, and each is in one day's entries."""
    for k, row in late.items():
        if listed.get(k) != row:
            v.fail("previous", f"{kind.noun} {_shown(k)} {kind.verb} on {day} is not its row there")
    for k in set(listed) - set(there) - set(late):
        v.fail("previous", f"{kind.noun} {_shown(k)} listed there is in neither day's entries")
