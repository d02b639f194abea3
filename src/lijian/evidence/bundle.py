"""The daily evidence bundle: one campaign day as the ledger decided it, signed.

Content (one JSON object; ``fen`` are integers, times in campaign time)::

    format       "lijian-evidence/3"
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
    vouchers, lotteries, items, risk
                 every voucher, lottery draw, trade-in item and risk entry of the
                 campaign in the chain's range, each naming its entry (range_rows.py)
    voucher_campaigns
                 the campaign of each voucher held, used or expired in the range but
                 claimed before it: {voucher_id, campaign_id}
    chain        the day's entries: from_seq/from_head (the previous day's close, or 0 and
                 64 zeros before the first) to to_seq/head (this day's close), see
                 core/chain.py
    time_zone    the campaign's zone (the rows' local dates)
    entries      hex of every stored entry body of that range, in order: they hash from
                 from_head to head, so the rows (which ``verify`` derives from them)
                 are bound to the head the public feed published
    holds        hex of the HoldPlaced of redemptions captured or refunded in the range
                 but held before it (their figures; bound to an earlier day's head)
    signature    {"alg": "Ed25519", "public_key": hex, "value": hex}

The signature is over the canonical bytes of the object without ``signature``: JSON with
sorted keys, no spaces (``","`` and ``":"``), UTF-8, non-ASCII as is. The file is the
canonical bytes of the whole object and one newline, so any changed byte is detected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NotRequired, TypedDict
from zoneinfo import ZoneInfo

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lijian.core.book import Book
from lijian.core.chain import GENESIS, DayClose
from lijian.core.entries import HoldCaptured, HoldPlaced, RefundRecorded, decode, encode
from lijian.core.fingerprint import shown
from lijian.core.ledger import Ledger
from lijian.core.redemption import Redemption
from lijian.core.settlement import book_settlement
from lijian.core.views import iso
from lijian.core.vouchers import Vouchers
from lijian.evidence.keys import public_hex
from lijian.evidence.range_rows import range_rows, vouchers_before
from lijian.evidence.schema import RedemptionRow, RefundRow

FORMAT = "lijian-evidence/3"
SIGNATURE_ALG = "Ed25519"


class DayNotClosed(ValueError):
    """The day has no close in the ledger yet (today, or outside the campaign)."""


class ChainRange(TypedDict):
    from_seq: int
    from_head: str
    to_seq: int
    head: str


class Payload(TypedDict):
    """The unsigned bundle (the module's docstring; ``schema.Bundle`` reads it back)."""

    format: str
    campaign_id: str
    date: str
    settlement: Mapping[str, object]  # core/settlement.py's document, as it is
    redemptions: list[dict[str, object]]  # schema.RedemptionRow's fields
    refunds: list[dict[str, object]]  # schema.RefundRow's fields
    chain: ChainRange
    time_zone: str
    entries: list[str]
    holds: list[str]
    vouchers: list[dict[str, object]]  # range_rows.py's rows, as they are
    lotteries: list[dict[str, object]]
    items: list[dict[str, object]]
    risk: list[dict[str, object]]
    voucher_campaigns: list[dict[str, str]]
    changes: NotRequired[list[dict[str, object]]]


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_range(closes: list[DayClose], campaign_id: str, day: str) -> ChainRange:
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


class DayRows:
    """The rows of one campaign day's bundle, collected over redemptions given in parts
    (the engine collects a large ledger in slices between requests, lijian/reports.py)."""

    def __init__(self, b: Book, day: str) -> None:
        self.b = b
        self.day = day
        # The rows in the shape ``verify`` reads them back (evidence/schema.py).
        self.redemptions: list[RedemptionRow] = []
        self.refunds: list[RefundRow] = []

    def add(self, part: Iterable[Redemption]) -> None:
        cid, day = self.b.id, self.day
        tz, local = self.b.schedule.tz, self.b.schedule.local_date
        # The same selection as settlement(): captured redemptions of this campaign.
        for r in part:
            if r.campaign_id != cid or r.captured_ms is None:
                continue
            if local(r.captured_ms).isoformat() == day:
                self.redemptions.append(RedemptionRow(
                    id=r.id, person_id=r.person_id, platform=r.platform,
                    order_id=r.order_id, payable_fen=r.payable_fen,
                    discount_fen=r.discount_fen, captured_at=_at(r.captured_ms, tz),
                ))  # fmt: skip
            for f in r.refunds:
                if local(f.ts_ms).isoformat() == day:
                    self.refunds.append(RefundRow(
                        redemption_id=r.id, refund_id=f.refund_id,
                        platform=r.platform, kind=str(f.kind),
                        card_refund_fen=f.card_refund_fen, clawback_fen=f.clawback_fen,
                        created_at=_at(f.ts_ms, tz),
                    ))  # fmt: skip

    def payload(
        self,
        closes: list[DayClose],
        bodies: list[bytes],
        holds: list[str],
        voucher_campaigns: dict[str, str],
    ) -> Payload:
        """The unsigned bundle (DayNotClosed when the day has no close yet): ``bodies``
        are the stored entries of the chain's range (``range_bodies``), ``holds`` what
        ``quoted_holds`` gives for them, ``voucher_campaigns`` what ``quoted_vouchers``
        gives."""
        chain = chain_range(closes, self.b.id, self.day)
        tz = self.b.schedule.tz
        other = range_rows([decode(x) for x in bodies], self.b.id, tz, voucher_campaigns)
        assert not other.problems, other.problems  # every voucher's campaign is given
        self.redemptions.sort(key=lambda x: (x.captured_at, x.id))
        self.refunds.sort(key=lambda x: (x.created_at, x.redemption_id, x.refund_id))
        return {
            "format": FORMAT,
            "campaign_id": self.b.id,
            "date": self.day,
            "settlement": book_settlement(self.b, self.day),
            "redemptions": [msgspec.structs.asdict(x) for x in self.redemptions],
            "refunds": [msgspec.structs.asdict(x) for x in self.refunds],
            "chain": chain,
            "time_zone": self.b.schedule.tz.key,
            "entries": [x.hex() for x in bodies],
            "holds": holds,
            "vouchers": other.rows["vouchers"],
            "lotteries": other.rows["lotteries"],
            "items": other.rows["items"],
            "risk": other.rows["risk"],
            "voucher_campaigns": [
                {"voucher_id": v, "campaign_id": c} for v, c in sorted(voucher_campaigns.items())
            ],
        }


def _at(ts_ms: int, tz: ZoneInfo) -> str:
    text = iso(ts_ms, tz)
    assert text is not None  # iso() gives None only for no time
    return text


def quoted_holds(bodies: list[bytes], redemptions: dict[str, Redemption]) -> list[str]:
    """The holds (hex of their ``HoldPlaced``) of the redemptions captured or refunded in
    the range but placed before it: the rows' figures come from them."""
    return encode_holds(held_before(bodies), redemptions)


def quoted_vouchers(bodies: list[bytes], vouchers: Vouchers) -> dict[str, str]:
    """The campaign of each voucher held, used or expired in the range but claimed
    before it (the rows of its entries are its campaign's)."""
    return campaigns_of(wanted_vouchers(bodies), vouchers)


def wanted_vouchers(bodies: list[bytes]) -> list[str]:
    return vouchers_before([decode(x) for x in bodies])


def campaigns_of(wanted: list[str], vouchers: Vouchers) -> dict[str, str]:
    return {vid: vouchers.by_id[vid].campaign_id for vid in wanted}


def held_before(bodies: list[bytes]) -> list[str]:
    """The redemptions captured or refunded in the range whose hold is not in it."""
    placed: set[str] = set()
    wanted: list[str] = []
    for body in bodies:
        e = decode(body)
        if isinstance(e, HoldPlaced):
            placed.add(e.redemption_id)
        elif isinstance(e, HoldCaptured | RefundRecorded) and e.redemption_id not in placed:
            placed.add(e.redemption_id)
            wanted.append(e.redemption_id)
    return wanted


def encode_holds(wanted: list[str], redemptions: dict[str, Redemption]) -> list[str]:
    out = []
    for rid in wanted:
        r = redemptions[rid]
        out.append(encode(HoldPlaced(
            r.created_ms, r.campaign_id, r.id, r.day, r.person_id, r.platform, r.order_id,
            r.payable_fen, r.discount_fen, r.capped, r.expires_at_ms, list(r.lines), r.client_id,
            r.idempotency_key, shown(r.fingerprint),
        )).hex())  # fmt: skip
    return out


def day_payload(
    ledger: Ledger, closes: list[DayClose], campaign_id: str, day: str, bodies: list[bytes]
) -> Payload:
    """The unsigned bundle of ``day`` from a ledger that holds every redemption."""
    chain_range(closes, campaign_id, day)  # first: a day not closed is refused at once
    rows = DayRows(ledger.book(campaign_id), day)
    rows.add(ledger.redemptions.values())
    holds = quoted_holds(bodies, ledger.redemptions)
    out = rows.payload(closes, bodies, holds, quoted_vouchers(bodies, ledger.vouchers))
    # Operators' changes of the day (who, when, why): verify checks them against the
    # change entries of the range, as it checks the rows against the captures.
    out["changes"] = day_changes(ledger, campaign_id, day)
    return out


def day_changes(ledger: Ledger, campaign_id: str, day: str) -> list[dict[str, object]]:
    """Who changed what that day, and why. Only what the change itself fixed (not what
    became of an amendment later), so a bundle made again later has the same bytes."""
    from lijian.core.change_views import change_view
    from lijian.core.status import AmendmentKind, BlockKind, ChangeKind

    b = ledger.book(campaign_id)
    tz, ch = b.schedule.tz, ledger.changes
    out: list[dict[str, object]] = []
    for c in ch.log:
        if c.campaign_id != campaign_id or b.schedule.local_date(c.at_ms).isoformat() != day:
            continue
        row = change_view(c, tz)
        a = ch.amendments.get(c.ref)
        if a is not None:
            what: dict[str, object] = {"kind": a.kind, "proposed_by": a.proposed_by}
            if a.kind == AmendmentKind.BUDGET:
                what["delta_fen"] = a.delta_fen
                what["days"] = "remaining" if a.days is None else list(a.days)
            elif a.kind == AmendmentKind.END:
                what["last_date"] = a.last_date
            else:  # a new campaign: its settings file, as proposed
                what["settings_toml"] = a.settings_toml
            if c.kind == ChangeKind.AMENDMENT_APPLIED and a.kind != AmendmentKind.CAMPAIGN:
                what["split"] = [{"date": d, "fen": f} for d, f in a.split]
            row["amendment"] = what
        bl = ch.blocks.get(c.ref)
        if bl is not None:
            who = {"person_id": bl.person_id} if bl.kind == BlockKind.PERSON else {
                "platform": bl.platform, "sku": bl.sku}  # fmt: skip
            row["block"] = {"kind": bl.kind, **who}
        out.append(row)
    return out


def sign(payload: Mapping[str, object], key: Ed25519PrivateKey) -> dict[str, object]:
    """The bundle: ``payload`` (without a signature it may have) and its signature."""
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


def bundle_bytes(bundle: Mapping[str, object]) -> bytes:
    return canonical(bundle) + b"\n"


def file_name(campaign_id: str, day: str) -> str:
    return f"{campaign_id}-{day}.evidence.json"


def write_bundle(bundle: Mapping[str, object], out_dir: Path) -> Path:
    """Write atomically (a reader never sees half a bundle); returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name(str(bundle["campaign_id"]), str(bundle["date"]))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(bundle_bytes(bundle))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


KEY_ENV = "LIJIAN_EVIDENCE_KEY"  # the server's private key file, for bundles over the API


def server_key() -> Ed25519PrivateKey:
    """The key named by $LIJIAN_EVIDENCE_KEY, for bundles over the API (NotFound when
    none is configured or it cannot be read)."""
    from lijian.core.errors import NotFound
    from lijian.evidence.keys import EvidenceKeyError, load_private

    path = os.environ.get(KEY_ENV)
    if not path:
        raise NotFound(f"no evidence key: start the server with {KEY_ENV}=<evidence.key>")
    try:
        return load_private(Path(path))
    except EvidenceKeyError as exc:
        raise NotFound(str(exc)) from None
