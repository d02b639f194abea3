"""Verify a daily evidence bundle without the database: only the file and the public key.

Checks, each named in the result when it fails:

- ``format``: the file is one canonical JSON object (see bundle.py) of this format;
- ``signature``: Ed25519 over the canonical bytes without ``signature``, by the given key;
- ``rows``: every listed redemption was captured, and every refund created, on the date;
- ``settlement``: each platform's count, GMV, discount, clawback and net, and the
  totals, follow from the listed redemptions and refunds;
- ``chain``: the range is well formed (seqs ascending, heads of 64 hex characters);
- with ``previous``: that bundle also verifies, is the same campaign's *previous day*
  (a missing day between them fails), and this chain starts at its head.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lijian.core.chain import parse_head
from lijian.core.settlement import FIELDS
from lijian.evidence.bundle import FORMAT, SIGNATURE_ALG, bundle_bytes, canonical
from lijian.evidence.keys import public_hex, signature_holds

MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # a day of a big city is tens of MB; refuse beyond
MAX_FAILURES_LISTED = 50


class BundleUnreadable(ValueError):
    """Not a file that can be checked at all (exit 2 rather than 1)."""


@dataclass
class Verdict:
    path: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, check: str, why: str) -> None:
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(f"{check}: {why}")


def read_bundle(path: Path) -> tuple[bytes, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise BundleUnreadable(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleUnreadable(f"{path}: larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        return raw, json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return raw, exc


def verify_file(path: Path, key: Ed25519PublicKey, previous: Path | None = None) -> Verdict:
    raw, doc = read_bundle(path)
    v = Verdict(str(path))
    if not _check_format(v, raw, doc):
        return v
    _check_signature(v, doc, key)
    _check_rows(v, doc)
    _check_settlement(v, doc)
    _check_chain(v, doc)
    if previous is not None:
        _check_previous(v, doc, previous, key)
    return v


def _check_format(v: Verdict, raw: bytes, doc: Any) -> bool:
    if isinstance(doc, Exception):
        v.fail("format", f"not JSON ({doc})")
        return False
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        v.fail("format", f"not a {FORMAT} bundle")
        return False
    need = ("campaign_id", "date", "settlement", "redemptions", "refunds", "chain", "signature")
    missing = [k for k in need if k not in doc]
    if missing:
        v.fail("format", "missing " + ", ".join(missing))
        return False
    try:
        dt.date.fromisoformat(str(doc["date"]))
        for r in doc["redemptions"]:
            _ints(r, ("payable_fen", "discount_fen"))
        for f in doc["refunds"]:
            _ints(f, ("card_refund_fen", "clawback_fen"))
        for row in [*doc["settlement"]["platforms"], doc["settlement"]["totals"]]:
            _ints(row, FIELDS)
        _ints(doc["chain"], ("from_seq", "to_seq"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        v.fail("format", f"malformed content ({exc!r})")
        return False
    if bundle_bytes(doc) != raw:
        v.fail("format", "the file is not in canonical form (bytes were changed)")
    return True


def _ints(row: Any, keys: tuple[str, ...]) -> None:
    for k in keys:
        if type(row[k]) is not int:
            raise ValueError(f"{k} is not an integer")


def _check_signature(v: Verdict, doc: dict[str, Any], key: Ed25519PublicKey) -> None:
    sig = doc["signature"]
    if not isinstance(sig, dict) or sig.get("alg") != SIGNATURE_ALG:
        v.fail("signature", f"not an {SIGNATURE_ALG} signature")
        return
    if sig.get("public_key") != public_hex(key):
        v.fail("signature", "signed by another key than the one given")
    try:
        value = bytes.fromhex(str(sig.get("value")))
    except ValueError:
        v.fail("signature", "value is not hex")
        return
    unsigned = {k: x for k, x in doc.items() if k != "signature"}
    if not signature_holds(key, value, canonical(unsigned)):
        v.fail("signature", "does not verify with the given public key (content or key wrong)")


def _check_rows(v: Verdict, doc: dict[str, Any]) -> None:
    day = doc["date"]
    for r in doc["redemptions"]:
        if str(r.get("captured_at", ""))[:10] != day:
            v.fail("rows", f"redemption {r.get('id')} was not captured on {day}")
    for f in doc["refunds"]:
        if str(f.get("created_at", ""))[:10] != day:
            v.fail("rows", f"refund {f.get('refund_id')} was not recorded on {day}")


def _check_settlement(v: Verdict, doc: dict[str, Any]) -> None:
    st = doc["settlement"]
    if st.get("campaign_id") != doc["campaign_id"] or st.get("date") != doc["date"]:
        v.fail("settlement", "is for another campaign or day")
    sums: dict[str, dict[str, int]] = {}
    for r in doc["redemptions"]:
        row = sums.setdefault(r["platform"], dict.fromkeys(FIELDS, 0))
        row["count"] += 1
        row["gmv_fen"] += r["payable_fen"]
        row["discount_fen"] += r["discount_fen"]
    for f in doc["refunds"]:
        sums.setdefault(f["platform"], dict.fromkeys(FIELDS, 0))["clawback_fen"] += f[
            "clawback_fen"
        ]
    listed = {p["platform"]: p for p in st["platforms"]}
    totals = dict.fromkeys(FIELDS, 0)
    for platform in sorted(set(sums) | set(listed)):
        want = sums.get(platform, dict.fromkeys(FIELDS, 0))
        want["net_subsidy_fen"] = want["discount_fen"] - want["clawback_fen"]
        got = listed.get(platform)
        for k in FIELDS:
            totals[k] += want[k]
            if got is None or got[k] != want[k]:
                shown = "absent" if got is None else got[k]
                v.fail(
                    "settlement",
                    f"{platform} {k} is {shown}, the listed rows give {want[k]}",
                )
    for k in FIELDS:
        if st["totals"][k] != totals[k]:
            v.fail("settlement", f"totals {k} is {st['totals'][k]}, the rows give {totals[k]}")


def _check_chain(v: Verdict, doc: dict[str, Any]) -> None:
    c = doc["chain"]
    if parse_head(c.get("from_head")) is None or parse_head(c.get("head")) is None:
        v.fail("chain", "heads must be 64 hex characters")
    if not 0 <= c["from_seq"] < c["to_seq"]:
        v.fail("chain", f"range {c['from_seq']}..{c['to_seq']} is not ascending")


def _check_previous(v: Verdict, doc: dict[str, Any], previous: Path, key: Ed25519PublicKey) -> None:
    try:
        prev_v = verify_file(previous, key)
    except BundleUnreadable as exc:
        v.fail("previous", str(exc))
        return
    for failure in prev_v.failures:
        v.fail("previous", f"{previous}: {failure}")
    if not prev_v.ok:
        return
    _, prev = read_bundle(previous)
    if prev["campaign_id"] != doc["campaign_id"]:
        v.fail("previous", f"is of campaign {prev['campaign_id']}, not {doc['campaign_id']}")
        return
    want = dt.date.fromisoformat(doc["date"]) - dt.timedelta(days=1)
    if prev["date"] != want.isoformat():
        v.fail("previous", f"day missing: the previous bundle is {prev['date']}, not {want}")
    pc, c = prev["chain"], doc["chain"]
    if (pc["to_seq"], pc["head"]) != (c["from_seq"], c["from_head"]):
        v.fail(
            "chain",
            f"does not continue the previous bundle (it ends at seq {pc['to_seq']} "
            f"{pc['head'][:16]}…, this starts at seq {c['from_seq']} {c['from_head'][:16]}…)",
        )
