"""The evidence key pair: Ed25519, PEM files (PKCS#8 private key, SubjectPublicKeyInfo).

The private key signs bundles and stays with the operator; the public key is handed to
the auditors, who verify bundles with nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_NAME = "evidence.key"
PUBLIC_NAME = "evidence.pub"
MAX_PEM_BYTES = 16_384  # a key file is a few hundred bytes; refuse to read anything big


class EvidenceKeyError(ValueError):
    """A key file that cannot be used (missing, unreadable, not an Ed25519 PEM key)."""


def new_key_pair(out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/evidence.key`` (mode 0600) and ``out_dir/evidence.pub``; never
    overwrite an existing key (a lost private key cannot be recovered, a replaced one
    breaks every verification against the published public key)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    for p in (priv_path, pub_path):
        if p.exists():
            raise EvidenceKeyError(
                f"{p} exists already; move it away first (keys are never overwritten)"
            )
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    pub_path.write_bytes(pub)
    return priv_path, pub_path


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise EvidenceKeyError(f"cannot read key {path}: {exc.strerror}") from None
    if len(data) > MAX_PEM_BYTES:
        raise EvidenceKeyError(f"{path} is not a key file (larger than {MAX_PEM_BYTES} bytes)")
    return data


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise EvidenceKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceKeyError(f"{path} is not an Ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_read(path))
    except (ValueError, TypeError) as exc:
        raise EvidenceKeyError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceKeyError(f"{path} is not an Ed25519 key")
    return key


def public_hex(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def signature_holds(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
