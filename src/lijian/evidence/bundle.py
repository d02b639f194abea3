"""The daily evidence bundle: one campaign day as the ledger decided it, signed.

Content (one JSON object; ``fen`` are integers, times in campaign time)::

    format       "lijian-evidence/1"
    campaign_id, date
    settlement   the R19 settlement of the day, exactly as core/settlement.py computes it
    redemptions  every redemption captured that day: id, person_id (as stored, never an
                 identity number), platform, order_id, payable_fen, discount_fen,
                 captured_at
    refunds      every refund recorded that day: redemption_id, refund_id, platform,
                 kind, card_refund_fen, clawback_fen, created_at
    changes      every operator change that day (pause, resume, amendment proposed,
                 applied or rejected, block, lift): id, kind, at, by (the operator key),
                 reason, and the amendment or block it is about (docs/OPERATIONS.md)
    chain        the day's entries: from_seq/from_head (the previous day's close, or 0 and
                 64 zeros before the first) to to_seq/head (this day's close), see
                 core/chain.py
    signature    {"alg": "Ed25519", "public_key": hex, "value": hex}

The signature is over the canonical bytes of the object without ``signature``: JSON with
sorted keys, no spaces (``","`` and ``":"``), UTF-8, non-ASCII as is. The file is the
canonical bytes of the whole object and one newline, so any changed byte is detected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lijian.core.chain import GENESIS, DayClose
from lijian.core.ledger import Ledger
from lijian.core.settlement import settlement
from lijian.core.views import iso
from lijian.evidence.keys import public_hex

FORMAT = "lijian-evidence/1"
SIGNATURE_ALG = "Ed25519"


class DayNotClosed(ValueError):
    """The day has no close in the ledger yet (today, or outside the campaign)."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_range(closes: list[DayClose], campaign_id: str, day: str) -> dict[str, Any]:
    """The chain from the campaign's previous day close to this day's close."""
    mine = sorted((d for d in closes if d.campaign_id == campaign_id), key=lambda d: d.seq)
    at = next((i for i, d in enumerate(mine) if d.day == day), None)
    if at is None:
        raise DayNotClosed(f"{campaign_id} has no close of {day} in the ledger (not over yet?)")
    prev = mine[at - 1] if at > 0 else None
    return {
        "from_seq": prev.seq if prev else 0,
        "from_head": (prev.head if prev else GENESIS).hex(),
        "to_seq": mine[at].seq,
        "head": mine[at].head.hex(),
    }


def day_payload(
    ledger: Ledger, closes: list[DayClose], campaign_id: str, day: str
) -> dict[str, Any]:
    """The unsigned bundle of ``day`` from a ledger that holds every redemption."""
    chain = chain_range(closes, campaign_id, day)
    b = ledger.book(campaign_id)
    tz, local = b.schedule.tz, b.schedule.local_date
    redemptions: list[dict[str, Any]] = []
    refunds: list[dict[str, Any]] = []
    # The same selection as settlement(): captured redemptions of this campaign.
    for r in ledger.redemptions.values():
        if r.campaign_id != campaign_id or r.captured_ms is None:
            continue
        if local(r.captured_ms).isoformat() == day:
            redemptions.append({
                "id": r.id, "person_id": r.person_id, "platform": r.platform,
                "order_id": r.order_id, "payable_fen": r.payable_fen,
                "discount_fen": r.discount_fen, "captured_at": iso(r.captured_ms, tz),
            })  # fmt: skip
        for f in r.refunds:
            if local(f.ts_ms).isoformat() == day:
                refunds.append({
                    "redemption_id": r.id, "refund_id": f.refund_id, "platform": r.platform,
                    "kind": str(f.kind), "card_refund_fen": f.card_refund_fen,
                    "clawback_fen": f.clawback_fen, "created_at": iso(f.ts_ms, tz),
                })  # fmt: skip
    changes = day_changes(ledger, campaign_id, day)
    redemptions.sort(key=lambda x: (x["captured_at"], x["id"]))
    refunds.sort(key=lambda x: (x["created_at"], x["redemption_id"], x["refund_id"]))
    return {
        "format": FORMAT,
        "campaign_id": campaign_id,
        "date": day,
        "settlement": settlement(ledger, campaign_id, day),
        "redemptions": redemptions,
        "refunds": refunds,
        "changes": changes,
        "chain": chain,
    }


def day_changes(ledger: Ledger, campaign_id: str, day: str) -> list[dict[str, Any]]:
    """Who changed what that day, and why. Only what the change itself fixed (not what
    became of an amendment later), so a bundle made again later has the same bytes."""
    from lijian.core.change_views import change_view
    from lijian.core.status import AmendmentKind, BlockKind, ChangeKind

    b = ledger.book(campaign_id)
    tz, ch = b.schedule.tz, ledger.changes
    out = []
    for c in ch.log:
        if c.campaign_id != campaign_id or b.schedule.local_date(c.at_ms).isoformat() != day:
            continue
        row = change_view(c, tz)
        a = ch.amendments.get(c.ref)
        if a is not None:
            what: dict[str, Any] = {"kind": a.kind, "proposed_by": a.proposed_by}
            if a.kind == AmendmentKind.BUDGET:
                what["delta_fen"] = a.delta_fen
                what["days"] = "remaining" if a.days is None else list(a.days)
            else:
                what["last_date"] = a.last_date
            if c.kind == ChangeKind.AMENDMENT_APPLIED:
                what["split"] = [{"date": d, "fen": f} for d, f in a.split]
            row["amendment"] = what
        bl = ch.blocks.get(c.ref)
        if bl is not None:
            who = {"person_id": bl.person_id} if bl.kind == BlockKind.PERSON else {
                "platform": bl.platform, "sku": bl.sku}  # fmt: skip
            row["block"] = {"kind": bl.kind, **who}
        out.append(row)
    return out


def sign(payload: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    unsigned = {k: v for k, v in payload.items() if k != "signature"}
    sig = key.sign(canonical(unsigned))
    return {
        **unsigned,
        "signature": {
            "alg": SIGNATURE_ALG,
            "public_key": public_hex(key.public_key()),
            "value": sig.hex(),
        },
    }


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    return canonical(bundle) + b"\n"


def file_name(campaign_id: str, day: str) -> str:
    return f"{campaign_id}-{day}.evidence.json"


def write_bundle(bundle: dict[str, Any], out_dir: Path) -> Path:
    """Write atomically (a reader never sees half a bundle); returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name(bundle["campaign_id"], bundle["date"])
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(bundle_bytes(bundle))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


KEY_ENV = "LIJIAN_EVIDENCE_KEY"  # the server's private key file, for bundles over the API


def server_bundle(
    ledger: Ledger, closes: list[DayClose], campaign_id: str, day: str
) -> dict[str, Any]:
    """The signed bundle as the API serves it, with the key named by $LIJIAN_EVIDENCE_KEY.
    Raises NotFound when no key is configured or the day has not closed."""
    from lijian.core.errors import NotFound
    from lijian.evidence.keys import EvidenceKeyError, load_private

    path = os.environ.get(KEY_ENV)
    if not path:
        raise NotFound(f"no evidence key: start the server with {KEY_ENV}=<evidence.key>")
    try:
        key = load_private(Path(path))
        payload = day_payload(ledger, closes, campaign_id, day)
    except (EvidenceKeyError, DayNotClosed) as exc:
        raise NotFound(str(exc)) from None
    return sign(payload, key)
