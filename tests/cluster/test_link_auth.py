"""The sequencer link admits only gateways of the deployment's CA, and gateways talk only
to the deployment's sequencer: a real `lijian sequencer` on TCP loopback, clients that
speak the wire protocol by hand, a real `lijian gateway` in front of stand-ins."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lijian.cluster import wire
from lijian.cluster.tls import SEQUENCER_NAME, Authority, new_set
from tests.cluster.link_support import (
    Gateway,
    Sequencer,
    StandIn,
    call_frame,
    client_context,
    everything_until_closed,
    hello_refused,
    open_link,
    read_answers,
)
from tests.http.harness import Api, order

CID = "chengdu-2025-spring"


@pytest.fixture(scope="module")
def seq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sequencer]:
    s = Sequencer(tmp_path_factory.mktemp("link"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete, valid set of credentials from another CA (same names)."""
    out = tmp_path_factory.mktemp("other") / "tls"
    new_set(out, ["gateway-1"])
    return out


def _addr(seq: Sequencer) -> tuple[str, int]:
    return ("127.0.0.1", seq.port)


def test_a_gateway_of_the_ca_is_answered(seq: Sequencer) -> None:
    """The control for every refusal below: the same bytes, with credentials, answered."""
    ctx = client_context(seq.tls / "sequencer", seq.tls / "gateway-3")
    with open_link(_addr(seq), ctx) as s:
        assert isinstance(s, ssl.SSLSocket) and s.version() == "TLSv1.3"
        s.sendall(call_frame((1, "hello", []), (2, "public", [CID])))
        answers = {a.call_id: a for a in read_answers(s)}
        if len(answers) < 2:
            answers.update({a.call_id: a for a in read_answers(s)})
    assert answers[1].kind == wire.OK and len(answers[1].payload["settings"]) == 1
    assert answers[2].kind == wire.OK and answers[2].payload["campaign_id"] == CID


def test_plain_tcp_gets_no_answer(seq: Sequencer) -> None:
    got = hello_refused(_addr(seq), None)
    # At most a TLS alert record (content type 21), never a frame of answers.
    assert got == b"" or got[0] == 0x15, got[:64]
    assert len(got) < 64


def test_tls_without_a_client_certificate_gets_no_answer(seq: Sequencer) -> None:
    got = hello_refused(_addr(seq), client_context(seq.tls / "sequencer", None))
    assert got == b""


def test_a_gateway_certificate_from_another_ca_gets_no_answer(
    seq: Sequencer, other_ca: Path
) -> None:
    # It trusts the real sequencer (so the handshake reaches the client certificate)
    # but presents a gateway certificate that another CA signed.
    ctx = client_context(seq.tls / "sequencer", other_ca / "gateway-1")
    assert hello_refused(_addr(seq), ctx) == b""


def test_the_sequencers_own_certificate_is_not_a_gateways(seq: Sequencer) -> None:
    """Its certificate is for serving (serverAuth): presented by a client, refused."""
    ctx = client_context(seq.tls / "sequencer", seq.tls / "sequencer")
    assert hello_refused(_addr(seq), ctx) == b""


def test_frames_are_bounded_per_method_and_in_length(seq: Sequencer) -> None:
    ctx = client_context(seq.tls / "sequencer", seq.tls / "gateway-3")
    with open_link(_addr(seq), ctx) as s:
        big = "x" * (wire.ARGS_BYTES_MAX + 1)
        s.sendall(call_frame((1, "person", [CID, big])))
        (a,) = read_answers(s)
        assert (a.call_id, a.kind) == (1, wire.PROBLEM)
        assert a.payload[:2] == [413, "payload_too_large"]
        s.sendall(call_frame((2, "hello", [])))  # the link stays up
        (b,) = read_answers(s)
        assert (b.call_id, b.kind) == (2, wire.OK)
        # A length over the limit: dropped before the body is read (none is sent).
        s.sendall((wire.REQUEST_FRAME_BYTES_MAX + 1).to_bytes(4, "big"))
        assert everything_until_closed(s) == b""


def test_connections_per_gateway_are_bounded(seq: Sequencer) -> None:
    """A gateway's fifth connection replaces its oldest (the bound is 4)."""
    from lijian.cluster.sequencer import CONNECTIONS_PER_GATEWAY_MAX

    ctx = client_context(seq.tls / "sequencer", seq.tls / "gateway-4")
    links = []
    for i in range(CONNECTIONS_PER_GATEWAY_MAX + 1):
        s = open_link(_addr(seq), ctx)
        s.sendall(call_frame((i + 1, "hello", [])))
        (a,) = read_answers(s)
        assert a.kind == wire.OK
        links.append(s)
    try:
        assert everything_until_closed(links[0]) == b""  # closed by the sequencer
        for s in links[1:]:
            s.sendall(call_frame((99, "health", [])))
            (a,) = read_answers(s)
            assert (a.call_id, a.kind) == (99, wire.OK)
    finally:
        for s in links:
            s.close()


def test_a_gateway_refuses_a_rogue_sequencer(tmp_path: Path, seq: Sequencer) -> None:
    """A stand-in with a valid certificate from another CA (naming the sequencer), and
    a plain one, both ready to grant everything: the real gateway sends them nothing,
    answers 503, never 201, and keeps running."""
    texts = [seq.camp.read_text(encoding="utf-8")]
    rogue_ca = Authority.new("rogue")
    issued = rogue_ca.issue(SEQUENCER_NAME, server=True)
    (tmp_path / "rogue.pem").write_bytes(issued.cert_pem)
    (tmp_path / "rogue.key").write_bytes(issued.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "rogue.pem", tmp_path / "rogue.key")
    rogue, plain = StandIn(ctx, texts), StandIn(None, texts)
    gw = Gateway(tmp_path, "gateway", [rogue.address, plain.address],
                 seq.tls / "gateway-1", seq.clients, wait=False)  # fmt: skip
    try:
        api = Api(gw.url)
        deadline = time.monotonic() + 60
        while True:  # it serves (503) once its start-up wait for a sequencer is over
            assert gw.proc.poll() is None, gw.text()
            try:
                ready = httpx.get(gw.url + "/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, gw.text()
                time.sleep(0.2)
        assert ready.status_code == 503
        r = api.redeem(order(n=f"O-{uuid.uuid4().hex[:12]}"))
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "sequencer_unavailable"
        assert api.get("/v1/campaigns").status_code == 503
        assert len(rogue.accepted_at) >= 1 and len(plain.accepted_at) >= 1
        assert rogue.calls == 0 and plain.calls == 0
        assert gw.proc.poll() is None
        assert "Traceback" not in gw.text()
        api.close()
    finally:
        gw.close()
        rogue.close()
        plain.close()


def test_connections_in_all_are_bounded(tmp_path: Path, seq: Sequencer) -> None:
    """Past 128 authenticated connections (4 per gateway here: 33 gateways of the CA),
    a new one is closed after its handshake, with no answer; the others still serve."""
    from lijian.cluster.sequencer import CONNECTIONS_MAX, CONNECTIONS_PER_GATEWAY_MAX

    ca = Authority.load(seq.tls / "ca")
    per = CONNECTIONS_PER_GATEWAY_MAX
    links = []
    try:
        for g in range(CONNECTIONS_MAX // per + 1):
            issued = ca.issue(f"bulk-{g}", server=False)
            d = tmp_path / f"bulk-{g}"
            d.mkdir()
            (d / "cert.pem").write_bytes(issued.cert_pem)
            (d / "key.pem").write_bytes(issued.key_pem)
            ctx = client_context(seq.tls / "sequencer", d)
            for _ in range(per):
                s = open_link(_addr(seq), ctx)
                s.sendall(call_frame((1, "health", [])))
                links.append(s)
        served = refused = 0
        for s in links:
            try:
                (a,) = read_answers(s)
                assert a.kind == wire.OK
                served += 1
            except (EOFError, ssl.SSLError, ConnectionError):
                refused += 1
        # Other tests' links on this sequencer are closed by now; none may remain.
        assert served == CONNECTIONS_MAX and refused == per, (served, refused)
    finally:
        for s in links:
            s.close()
