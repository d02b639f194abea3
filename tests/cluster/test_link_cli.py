"""`lijian certs new`, and the link's flags: no sequencer without credentials, one line
and exit 2 for credentials that are missing or readable by others."""

from __future__ import annotations

import ssl
import stat
import subprocess
from pathlib import Path

from cryptography import x509

from lijian.cluster.tls import SEQUENCER_NAME, client_context, server_context
from tests.cluster.link_support import inputs
from tests.http.harness import LIJIAN, free_port


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LIJIAN), *args], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def _names(path: Path) -> tuple[str, list[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(cn), san.get_values_for_type(x509.DNSName)


def test_certs_new_makes_a_ca_a_sequencer_and_gateways(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    r = run("certs", "new", "--out", str(out), "--gateways", "2")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ca", "gateway-1", "gateway-2", "sequencer"]
    for key in [*out.glob("*/key.pem"), out / "ca" / "ca-key.pem"]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert _names(out / "sequencer" / "cert.pem") == (SEQUENCER_NAME, [SEQUENCER_NAME])
    assert _names(out / "gateway-2" / "cert.pem") == ("gateway-2", ["gateway-2"])
    # Later: one more gateway, from the same CA; nothing is ever overwritten.
    r = run("certs", "new", "--out", str(out), "gw-shanghai-3")
    assert r.returncode == 0, r.stderr
    before = (out / "sequencer" / "key.pem").read_bytes()
    ca = (out / "ca" / "ca.pem").read_bytes()
    assert (out / "gw-shanghai-3" / "ca.pem").read_bytes() == ca
    r = run("certs", "new", "--out", str(out), "gw-shanghai-3")
    assert r.returncode == 2 and "never overwritten" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (out / "sequencer" / "key.pem").read_bytes() == before
    for bad in ("Upper", "sequencer", SEQUENCER_NAME, "a_b"):
        r = run("certs", "new", "--out", str(out), bad)
        assert r.returncode == 2, bad
        assert "Traceback" not in r.stderr
    # The contexts load, each with its role.
    assert server_context(out / "sequencer").verify_mode == ssl.CERT_REQUIRED
    assert client_context(out / "gw-shanghai-3").check_hostname


def test_no_sequencer_without_credentials(tmp_path: Path) -> None:
    camp, clients = inputs(tmp_path)
    base = ["sequencer", "--campaign", str(camp), "--clients", str(clients), "--db",
            str(tmp_path / "l.db"), "--port", str(free_port())]  # fmt: skip
    for listen in (f"127.0.0.1:{free_port()}", f"unix:{tmp_path / 's.sock'}"):
        r = run(*base, "--listen", listen)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "--tls-dir is required" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "l.db").exists() and not (tmp_path / "s.sock").exists()
    out = tmp_path / "certs"
    assert run("certs", "new", "--out", str(out)).returncode == 0
    # A gateway's directory is not the sequencer's; a key others can read is refused.
    r = run(*base, "--listen", f"127.0.0.1:{free_port()}", "--tls-dir", str(out / "gateway-1"))
    assert r.returncode == 2 and "not the sequencer's certificate" in r.stderr
    (out / "sequencer" / "key.pem").chmod(0o644)
    r = run(*base, "--listen", f"127.0.0.1:{free_port()}", "--tls-dir", str(out / "sequencer"))
    assert r.returncode == 2 and "readable by others" in r.stderr
    r = run("gateway", "--sequencer", "127.0.0.1:1", "--clients", str(clients),
            "--tls-dir", str(tmp_path / "nowhere"))  # fmt: skip
    assert r.returncode == 2 and "no ca.pem" in r.stderr and "Traceback" not in r.stderr
