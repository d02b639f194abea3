"""The sequencer link's credentials: a private CA, the sequencer's certificate, one per
gateway, and the TLS contexts both sides use (docs/SECURITY.md, "The sequencer link").

Every connection between a gateway and the sequencer is TLS 1.3 with certificates on
both sides, checked against the deployment's own CA and nothing else (the system's
trust store is never loaded): a peer with no certificate, or one from another CA, is
refused during the handshake, before a single frame is read. The roles are in the
certificates: the sequencer's says ``serverAuth`` and names ``SEQUENCER_NAME`` (the
name a gateway checks, whatever address it dialled: a Unix socket has no host name),
a gateway's says ``clientAuth`` and names the gateway. So a gateway's key cannot pose
as the sequencer, nor the sequencer's as a gateway.

A credentials directory (``--tls-dir``) holds three files: ``ca.pem`` (the CA
certificates to trust: several while a CA is rotated), ``cert.pem`` and ``key.pem``
(this process's own, the key readable by its owner only). ``lijian certs new`` makes
one directory per role; ``lijian serve --workers N`` makes its own in its private run
directory at every start, with a CA whose key is never written anywhere.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SEQUENCER_NAME = "lijian-sequencer"
CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "cert.pem", "key.pem"
CA_KEY_FILE = "ca-key.pem"
CA_VALID_DAYS = 5 * 365
LEAF_VALID_DAYS = 365
GATEWAYS_MAX = 1_000  # one `certs new`; more by running it again with names
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # a DNS label: the certificate's name
_CLOCK_SKEW = dt.timedelta(minutes=5)  # valid from a little before now: clocks differ


class TlsError(Exception):
    """Credentials missing, unreadable or wrong: one line, the command exits 2."""


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


class Authority:
    """A CA held in memory: issues the sequencer's and gateways' certificates."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def new(cls, common_name: str = "lijian sequencer link CA") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=CA_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, ca_dir: Path) -> Authority:
        try:
            cert = x509.load_pem_x509_certificate((ca_dir / CA_FILE).read_bytes())
            key = serialization.load_pem_private_key((ca_dir / CA_KEY_FILE).read_bytes(), None)
        except (OSError, ValueError) as exc:
            raise TlsError(f"cannot read the CA in {ca_dir}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TlsError(f"{ca_dir / CA_KEY_FILE}: not an EC private key")
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, server: bool) -> Issued:
        """A leaf for ``name``: the sequencer's (``server``) or a gateway's."""
        if not NAME_RE.fullmatch(name):
            raise TlsError(f"{name!r}: a name is 1-63 lowercase letters, digits and '-'")
        if server != (name == SEQUENCER_NAME):
            raise TlsError(f"{name!r} is reserved for the sequencer")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=LEAF_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem)

    def write_role(self, out_dir: Path, name: str, server: bool) -> None:
        """``out_dir`` (new, 0700) with ca.pem, cert.pem and key.pem (0600)."""
        issued = self.issue(name, server)
        try:
            out_dir.mkdir(mode=0o700, parents=False, exist_ok=False)
        except FileExistsError:
            raise TlsError(f"{out_dir} exists: credentials are never overwritten") from None
        _write(out_dir / CA_FILE, self.cert_pem, 0o644)
        _write(out_dir / CERT_FILE, issued.cert_pem, 0o644)
        _write(out_dir / KEY_FILE, issued.key_pem, 0o600)

    def write_ca(self, ca_dir: Path) -> None:
        try:
            ca_dir.mkdir(mode=0o700, parents=False, exist_ok=False)
        except FileExistsError:
            raise TlsError(f"{ca_dir} exists: credentials are never overwritten") from None
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(ca_dir / CA_FILE, self.cert_pem, 0o644)
        _write(ca_dir / CA_KEY_FILE, key_pem, 0o600)


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _write(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never follow or replace a file someone put there; the mode is set at
    # creation, so a key is never readable by others even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def new_set(out: Path, gateways: list[str]) -> list[Path]:
    """``lijian certs new``: ``out/ca`` (the CA's key: keep it offline), ``out/sequencer``
    and ``out/<gateway>`` for each name. An existing ``out/ca`` is reused, so running it
    again with new names adds gateways to the same CA. Returns the directories made."""
    made: list[Path] = []
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_dir = out / "ca"
    if (ca_dir / CA_KEY_FILE).exists():
        ca = Authority.load(ca_dir)
    else:
        ca = Authority.new()
        ca.write_ca(ca_dir)
        made.append(ca_dir)
    for name in gateways:  # checked before anything else is written
        if not NAME_RE.fullmatch(name) or name == SEQUENCER_NAME or name in ("ca", "sequencer"):
            raise TlsError(f"{name!r}: a gateway's name is 1-63 lowercase letters, digits, '-'"
                           " (not ca, sequencer)")  # fmt: skip
        if (out / name).exists():
            raise TlsError(f"{out / name} exists: credentials are never overwritten")
    if not (out / "sequencer").exists():
        ca.write_role(out / "sequencer", SEQUENCER_NAME, server=True)
        made.append(out / "sequencer")
    for name in gateways:
        ca.write_role(out / name, name, server=False)
        made.append(out / name)
    return made


def ephemeral_set(run_dir: Path, gateways: int) -> None:
    """``serve --workers N``'s own credentials, in its private run directory: the CA's
    key stays in this process's memory and is gone when it exits."""
    ca = Authority.new("lijian serve ephemeral CA")
    ca.write_role(run_dir / "sequencer", SEQUENCER_NAME, server=True)
    for i in range(gateways):
        ca.write_role(run_dir / f"gateway-{i}", f"gateway-{i}", server=False)


def _files(tls_dir: Path) -> tuple[Path, Path, Path]:
    ca, cert, key = tls_dir / CA_FILE, tls_dir / CERT_FILE, tls_dir / KEY_FILE
    for f in (ca, cert, key):
        if not f.is_file():
            raise TlsError(f"no {f.name} in {tls_dir} (make credentials with `lijian certs new`)")
    mode = key.stat().st_mode & 0o077
    if mode:
        raise TlsError(f"{key} is readable by others (mode {oct(mode)}): chmod 600 it")
    return ca, cert, key


def _context(tls_dir: Path, purpose: int) -> ssl.SSLContext:
    ca, cert, key = _files(tls_dir)
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=str(ca))  # this CA only, never the system's
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TlsError(f"{tls_dir}: cannot load the credentials: {exc}") from None
    return ctx


def server_context(tls_dir: Path) -> ssl.SSLContext:
    """The sequencer's: its certificate; a gateway's certificate from the CA required."""
    ctx = _context(tls_dir, ssl.PROTOCOL_TLS_SERVER)
    _check_role(tls_dir, SEQUENCER_NAME)
    return ctx


def client_context(tls_dir: Path) -> ssl.SSLContext:
    """A gateway's: its certificate; the sequencer's certificate from the CA, with the
    sequencer's name, required (``check_hostname`` against ``SEQUENCER_NAME``)."""
    ctx = _context(tls_dir, ssl.PROTOCOL_TLS_CLIENT)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


def _check_role(tls_dir: Path, name: str) -> None:
    try:
        cert = x509.load_pem_x509_certificate((tls_dir / CERT_FILE).read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except (OSError, ValueError, x509.ExtensionNotFound):
        dns = []
    if name not in dns:
        raise TlsError(f"{tls_dir / CERT_FILE} is not the sequencer's certificate ({name})")


def peer_name(peercert: object) -> str | None:
    """The common name of a verified peer (``SSLObject.getpeercert()``), its identity."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
