"""HMAC over precomputed key pads (``http/auth.py: HmacPads``) is byte for byte
``hmac.new(key, msg, hashlib.sha256)``: keys shorter than, equal to and longer than
SHA-256's 64-byte block (a longer key is hashed first), every byte value, messages of
every length around the block's, and one prepared key used many times."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from lijian.http.auth import Authenticator, AuthError, HmacPads, Pending, signing_string
from lijian.http.clients import Client

KEY_LENGTHS = (0, 1, 8, 32, 63, 64, 65, 128, 1000)


def test_pads_give_the_standard_hmac_for_every_key_and_message_length() -> None:
    rng = random.Random(24)
    for key_len in KEY_LENGTHS:
        key = bytes(rng.randrange(256) for _ in range(key_len))
        pads = HmacPads(key)
        for msg_len in (*range(0, 130), 1000, 65_536):
            msg = bytes(rng.randrange(256) for _ in range(msg_len))
            assert pads.hexdigest(msg) == hmac.new(key, msg, hashlib.sha256).hexdigest(), (
                key_len,
                msg_len,
            )


def test_every_byte_value_in_a_key_and_a_reused_prepared_key() -> None:
    key = bytes(range(256))[:64]
    pads = HmacPads(key)
    for i in range(500):  # the prepared states are copied, never consumed
        msg = f"POST\n/v1/redemptions\n1733570000\nnonce-{i:012d}\n{'ab' * 32}".encode()
        assert pads.hexdigest(msg) == hmac.new(key, msg, hashlib.sha256).hexdigest()


def test_the_authenticator_accepts_the_standard_signature_and_refuses_others() -> None:
    client = Client("k", b"a-long-enough-secret", "channel")
    auth = Authenticator({"k": client}, clock_s=lambda: 1_733_570_000.0)
    msg = signing_string("POST", "/v1/redemptions", "1733570000", "n" * 16, "ab" * 32)
    good = hmac.new(client.secret, msg, hashlib.sha256).hexdigest()
    p = Pending(client, "1733570000", 1_733_570_000, "n" * 16, good.upper().encode())
    assert auth.verify(p, "POST", "/v1/redemptions", "ab" * 32) is client
    bad = Pending(client, "1733570000", 1_733_570_000, "m" * 16, good.encode())
    with pytest.raises(AuthError) as refused:  # the nonce is part of the signed string
        auth.verify(bad, "POST", "/v1/redemptions", "ab" * 32)
    assert refused.value.code == "bad_signature"
