"""The status enums: one list of values each, and not one byte different on any wire."""

from __future__ import annotations

import json
from typing import get_args, get_type_hints

import msgspec
import pytest

from lijian.core.entries import HoldReleased, RefundRecorded, TrancheOpened, decode, encode
from lijian.core.rules import MESSAGES
from lijian.core.status import (
    CampaignState,
    DeclineCode,
    EntryKind,
    RedemptionStatus,
    RefundKind,
    ReleaseReason,
)
from lijian.http import schemas


def test_every_decline_code_has_one_message() -> None:
    assert sorted(MESSAGES) == sorted(get_args(DeclineCode))
    # 23, 10 of claimed vouchers, 3 more of trade-in items (person_category_limit is shared)
    assert len(get_args(DeclineCode)) == 36


def test_the_openapi_literals_list_the_same_values() -> None:
    # schemas.py keeps Literals (an enum would change /openapi.json): they must agree.
    assert set(get_args(schemas.RedemptionStatus)) == {s.value for s in RedemptionStatus}
    assert set(get_args(schemas.CampaignState)) == {s.value for s in CampaignState}
    kinds = get_args(get_type_hints(schemas.Refund)["kind"])
    assert set(kinds) == {k.value for k in RefundKind}


def test_json_carries_the_plain_string() -> None:
    body = {"status": RedemptionStatus.PARTIALLY_REFUNDED, "state": CampaignState.SOLD_OUT}
    expected = b'{"status":"partially_refunded","state":"sold_out"}'
    assert msgspec.json.encode(body) == expected
    assert json.dumps(body, separators=(",", ":")).encode() == expected
    assert msgspec.msgpack.encode(body) == msgspec.msgpack.encode(
        {"status": "partially_refunded", "state": "sold_out"}
    )


def test_entries_encode_exactly_as_with_string_tags() -> None:
    # The log written before the enums must replay, and new entries must read the same.
    e = HoldReleased(1_739_325_600_000, "rd_a0000000001", ReleaseReason.VOID, None)
    plain = msgspec.msgpack.encode(["release", 1_739_325_600_000, "rd_a0000000001", "void", None])
    assert encode(e) == plain
    back = decode(plain)
    assert isinstance(back, HoldReleased) and back.why is ReleaseReason.VOID
    opened = msgspec.msgpack.encode(["open", 5, "c1", "2025-02-12", 100_000])
    assert encode(TrancheOpened(5, "c1", "2025-02-12", 100_000)) == opened
    assert {k.value for k in EntryKind} == {
        "open", "close", "soldout", "hold", "capture", "release", "refund", "restore",
        "seed", "window", "identifiers", "commit", "reveal", "groupfull", "key",
        "paused", "resumed", "am_proposed", "am_applied", "am_rejected", "block_added",
        "block_lifted", "clock", "campaign_proposed", "risk_flagged", "voucher_claimed",
        "voucher_held", "voucher_used", "voucher_expired", "voucher_restored",
        "voucher_registered", "lottery_drawn", "items", "risk_noted", "flag_reviewed",
    }  # fmt: skip


def test_a_refund_kind_out_of_the_set_is_refused_on_decode() -> None:
    row = ["refund", 1, "rd_1", "rf_1", "most", 10, 9, 1, 0, None, None, False, [], "c", "k", "f"]
    with pytest.raises(msgspec.ValidationError, match=r"Invalid enum value 'most' - at `\$\[4\]`"):
        decode(msgspec.msgpack.encode(row))
    row[4] = "full"
    ok = decode(msgspec.msgpack.encode(row))
    assert isinstance(ok, RefundRecorded) and ok.kind is RefundKind.FULL
