"""The hot path's string checks without regular expressions (an Idempotency-Key, a
fingerprint, a ticket's nonce) accept exactly what their patterns accept."""

from __future__ import annotations

import pytest

from lijian.http import admission, arguments
from lijian.http.auth import NONCE_LEN_MAX, NONCE_LEN_MIN
from lijian.http.problems import Problem

PIECES = ["", " ", "a", "Z", "0", "f", "F", "g", "~", "!", "\x1f", "\x7f", "\x00", "\n", "\t",
          "é", "\u00a0", "中", "\ud800", "０", "٣", "-", "_"]  # fmt: skip


def strings() -> list[str]:
    out = [p * n for p in PIECES for n in (1, 15, 16, 63, 64, 65, 255, 256, 257)]
    out += ["0123456789abcdef" * 4, "0123456789ABCDEF" * 4, "0" * 63 + "g", "g" + "0" * 63]
    out += ["0" * 32 + x + "0" * 31 for x in PIECES]
    out += ["k" * 100 + x + "k" * 100 for x in PIECES]
    out += ["n" * 20 + x for x in PIECES] + [x + "n" * 20 for x in PIECES]
    return out


def accepts(check: object, value: str) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except Problem as p:
        assert p.status == 422
        return False
    return True


@pytest.mark.parametrize("value", strings())
def test_the_same_strings_as_their_patterns(value: str) -> None:
    key_re, fp_re = arguments._IDEMPOTENCY_KEY_RE, arguments._FINGERPRINT_RE
    assert accepts(arguments.check_idempotency_key, value) == (key_re.fullmatch(value) is not None)
    assert accepts(arguments.check_fingerprint, value) == (fp_re.fullmatch(value) is not None)
    nonce_re = admission._NONCE_RE
    assert admission._visible_nonce(value) == (nonce_re.fullmatch(value) is not None)


def test_the_strings_hold_each_side_of_every_bound() -> None:
    xs = strings()
    assert {len(x) for x in xs if admission._visible_nonce(x)} >= {NONCE_LEN_MIN, NONCE_LEN_MAX}
    assert any(len(x) == NONCE_LEN_MIN - 1 and x.isalnum() for x in xs)
    assert any(len(x) == NONCE_LEN_MAX + 1 and x.isalnum() for x in xs)
    assert sum(accepts(arguments.check_fingerprint, x) for x in xs) >= 3
    assert sum(not accepts(arguments.check_idempotency_key, x) for x in xs) > 50
