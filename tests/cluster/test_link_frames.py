"""A writer's frames stay within what the reader takes, whatever the mix of messages."""

from __future__ import annotations

from lijian.cluster import wire


def _msg(n_bytes: int, method: str = "redeem") -> bytes:
    return wire.encode((1, method, None, ["x" * n_bytes]))


def test_frames_never_exceed_the_request_limit() -> None:
    # Small commands up to just under the target, then the largest part a method takes.
    small = [_msg(1_000)] * (wire.FRAME_TARGET_BYTES // 1_015)
    largest = _msg(wire.ARGS_BYTES_MAX_BY_METHOD["catalog_rows"] - 16, "catalog_rows")
    for items in ([*small, largest], [largest] * 3, small * 5, [_msg(10)] * 40_000):
        out = wire.frames(items, wire.REQUEST_FRAME_BYTES_MAX)
        assert all(len(f) - 4 <= wire.REQUEST_FRAME_BYTES_MAX for f in out)
        # Every message is in exactly one frame, in order.
        joined = b"".join(f[4:] for f in out)
        assert joined.count(b"redeem") + joined.count(b"catalog_rows") == len(items)
        assert all(len(wire.decode_calls(f[4:])) <= wire.MESSAGES_PER_FRAME_MAX for f in out)


def _frames_by_item(items: list[bytes], max_bytes: int) -> list[bytes]:
    """The frames as the writer cut them before its one-frame shortcut: item by item."""
    out: list[bytes] = []
    start, size = 0, 0
    for i, item in enumerate(items):
        size += len(item)
        if size >= wire.FRAME_TARGET_BYTES or i + 1 - start == wire.MESSAGES_PER_FRAME_MAX:
            out.append(wire.frame(items[start : i + 1], max_bytes))
            start, size = i + 1, 0
    if start < len(items):
        out.append(wire.frame(items[start:], max_bytes))
    return out


def test_the_one_frame_shortcut_cuts_exactly_as_item_by_item() -> None:
    target, most = wire.FRAME_TARGET_BYTES, wire.MESSAGES_PER_FRAME_MAX
    one = len(_msg(1_000))
    cases = [
        [],
        [_msg(10)],
        [_msg(10)] * (most - 1),
        [_msg(10)] * most,  # closes at the count: one frame either way
        [_msg(10)] * (most + 1),
        [_msg(1_000)] * (target // one - 1),
        [_msg(1_000)] * (target // one),
        [_msg(1_000)] * (target // one + 1),
        [_msg(target - 20)],
        [_msg(target)],
    ]
    for items in cases:
        got = wire.frames(items, wire.ANSWER_FRAME_BYTES_MAX)
        assert got == _frames_by_item(items, wire.ANSWER_FRAME_BYTES_MAX), len(items)
