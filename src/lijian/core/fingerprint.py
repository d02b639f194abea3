"""A request's fingerprint as the records keep it: 32 bytes where it is a hex SHA-256.

A redemption or a refund keeps the fingerprint of the request that made it only to
tell a repeat of that request (same fingerprint) from another request under the same
Idempotency-Key, and for the evidence bundle, which shows it as sent. The gateway's
fingerprints are 64 lower-case hex digits (lijian.http.arguments.FINGERPRINT_LEN): as
their 32 bytes they take 65 B where the str took 113 B.

The Python API accepts any string: such a value is kept as 0xFF and its UTF-8 (0xFF
twice where that would make 32 bytes). UTF-8 never holds 0xFF, and only a digest is
32 bytes long, so every value reads back exactly (``shown``).
"""

from __future__ import annotations

import re

DIGEST_BYTES = 32
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_OTHER = b"\xff"


def packed(fingerprint: str) -> bytes:
    """The fingerprint as a record keeps it."""
    if len(fingerprint) == 2 * DIGEST_BYTES and _HEX_SHA256.fullmatch(fingerprint):
        return bytes.fromhex(fingerprint)
    text = fingerprint.encode("utf-8", "surrogatepass")
    mark = _OTHER * 2 if len(text) + 1 == DIGEST_BYTES else _OTHER
    return mark + text


def shown(fingerprint: bytes) -> str:
    """The fingerprint as the request carried it (``packed`` undone, exactly)."""
    if len(fingerprint) == DIGEST_BYTES:
        return fingerprint.hex()
    return fingerprint.lstrip(_OTHER).decode("utf-8", "surrogatepass")
