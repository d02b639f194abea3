"""docs/API.md JSON shapes of a live campaign's changes, amendments and blocks."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from lijian.core.changes import Amendment, Block, Change
from lijian.core.status import AmendmentKind, AmendmentStatus, BlockKind
from lijian.core.views import iso


def change_view(c: Change, tz: ZoneInfo) -> dict[str, object]:
    out: dict[str, object] = {
        "id": c.id,
        "kind": c.kind,
        "campaign_id": c.campaign_id,
        "at": iso(c.at_ms, tz),
        "by": c.by,
        "reason": c.reason,
    }
    if c.ref.startswith("am_"):
        out["amendment_id"] = c.ref
    elif c.ref.startswith("bl_"):
        out["block_id"] = c.ref
    return out


def amendment_view(a: Amendment, tz: ZoneInfo) -> dict[str, object]:
    out: dict[str, object] = {
        "id": a.id,
        "campaign_id": a.campaign_id,
        "status": a.status,
        "kind": a.kind,
        "proposed_by": a.proposed_by,
        "proposed_at": iso(a.proposed_ms, tz),
        "reason": a.reason,
    }
    if a.kind == AmendmentKind.BUDGET:
        out["delta_fen"] = a.delta_fen
        out["days"] = "remaining" if a.days is None else list(a.days)
    elif a.kind == AmendmentKind.END:
        out["last_date"] = a.last_date
    else:  # a new campaign: the second operator sees what they approve
        out["settings_toml"] = a.settings_toml
    if a.status == AmendmentStatus.APPLIED:
        out["approved_by"] = a.decided_by
        out["applied_at"] = iso(a.decided_ms, tz)
        out["approval_reason"] = a.decision_reason
        if a.kind != AmendmentKind.CAMPAIGN:
            key = "delta_fen" if a.kind == AmendmentKind.BUDGET else "withdrawn_fen"
            out["split"] = [{"date": d, key: f} for d, f in a.split]
    elif a.status == AmendmentStatus.REJECTED:
        out["rejected_by"] = a.decided_by
        out["rejected_at"] = iso(a.decided_ms, tz)
        out["rejection_reason"] = a.decision_reason
    return out


def block_view(bl: Block, tz: ZoneInfo) -> dict[str, object]:
    out: dict[str, object] = {"id": bl.id, "campaign_id": bl.campaign_id, "kind": bl.kind}
    if bl.kind == BlockKind.PERSON:
        out["person_id"] = bl.person_id
    else:
        out["platform"], out["sku"] = bl.platform, bl.sku
    out.update(
        {
            "active": bl.active,
            "by": bl.by,
            "at": iso(bl.at_ms, tz),
            "reason": bl.reason,
            "lifted_by": bl.lifted_by,
            "lifted_at": iso(bl.lifted_ms, tz),
            "lift_reason": bl.lift_reason,
        }
    )
    return out
