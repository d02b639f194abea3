"""The sequencer bench's synthetic gateways speak the link as the sequencer reads it:
a templated ``redeem`` message decodes with the sequencer's own decoders into the call,
ticket and arguments the bench meant (bench/sequencer_bench.py)."""

from __future__ import annotations

import msgspec
from bench.sequencer_bench import ID_WIDTH, redeem_message, redeem_template

from lijian.cluster import wire
from lijian.core.order import Order
from lijian.port import Ticket


def test_a_templated_redeem_decodes_as_the_sequencer_reads_it() -> None:
    parts = redeem_template("seq-soldout")
    ident = b"d1" + b"7".rjust(ID_WIDTH - 2, b"0")
    body = wire.frame([redeem_message(parts, 70_000, ident)], wire.REQUEST_FRAME_BYTES_MAX)
    (call,) = wire.decode_calls(body[4:])
    assert (call.call_id, call.method) == (70_000, "redeem")
    ticket = wire.decode_ticket(call.ticket)
    assert isinstance(ticket, Ticket)
    assert (ticket.key_id, ticket.nonce) == ("unionpay", "n-" + ident.decode())
    decode = msgspec.msgpack.Decoder(tuple[Order, str, str, str]).decode
    order, client_id, key, fingerprint = decode(call.args)
    assert order.campaign_id == "seq-soldout"
    assert order.order_id == "B-" + ident.decode()
    assert order.person.id == "p-" + ident.decode()
    assert (client_id, key) == ("unionpay", "idem-" + ident.decode())
    assert fingerprint == "0" * 64


def test_every_command_differs_only_in_its_id() -> None:
    parts = redeem_template("seq-grants")
    a = redeem_message(parts, 1, b"1".rjust(ID_WIDTH, b"0"))
    b = redeem_message(parts, 2, b"2".rjust(ID_WIDTH, b"0"))
    assert len(a) == len(b)
    assert sum(x != y for x, y in zip(a, b, strict=True)) == 1 + 4  # call id, four ids
