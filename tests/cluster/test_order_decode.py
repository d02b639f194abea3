"""The sequencer's order decoding (cluster/order_decode.py) answers exactly as msgspec's
strict decoding of ``core/order.py``'s types: the same ``Order`` for what it accepts, the
same error (type and message) for every refusal, its pattern refusals above all."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from lijian.cluster.order_decode import TWINS, order_decoder
from lijian.core.order import Order

STRICT = msgspec.msgpack.Decoder(tuple[Order, str, str, str]).decode
FAST = order_decoder(str, str, str)


def plain(**changes: Any) -> dict[str, Any]:
    o: dict[str, Any] = {
        "campaign_id": "chengdu-2025",
        "platform": "jd",
        "order_id": "B-0001",
        "payment_channel": "unionpay",
        "person": {"id": "p-0001", "real_name_verified": True},
        "device_location": {"lng": 104.0657, "lat": 30.6574, "crs": "gcj02"},
        "delivery_address": {"adcode": "510104"},
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_price_fen": 12_900,
                   "platform_discount_fen": 1_000}],
    }  # fmt: skip
    o.update(changes)
    return o


def person(**changes: Any) -> dict[str, Any]:
    return plain(person={"id": "p-0001", "real_name_verified": True, **changes})


def item(**changes: Any) -> dict[str, Any]:
    return plain(items=[{"sku": "SKU-1", "quantity": 1, "unit_price_fen": 100, **changes}])


def address(**changes: Any) -> dict[str, Any]:
    return plain(delivery_address={"adcode": "510104", **changes})


CONTROL = ["\x00", "\x1f", "\x7f", "\n", "a\tb", "end\n"]
RAW = [
    "13800138000", "+8613800138000", "8613800138000", "11010519491231002X",
    "11010519491231002x", "4111111111111111", "6222020200112233445", "4222222222222",
    "378282246310005", "37828224631000", "12345678901234567", "+", "X", "1", "",
]  # fmt: skip
OPAQUE = ["a" * 64, "hash-13800138000", "13800138000a", "X13800138000", "0" * 128, "0" * 129,
          "é", "标识", "a\x00", "a" * 129]  # fmt: skip
TEXTS = ["", "x" * 128, "x" * 129, "订单-1", "é", "\u00a0", "a b", "~", "\ud7ff", *CONTROL]


def cases() -> list[Any]:
    out: list[Any] = [plain(), plain(device_location=None, delivery_address=None)]
    for field in ("campaign_id", "platform", "order_id", "payment_channel", "voucher_id"):
        out += [plain(**{field: s}) for s in TEXTS]
    out += [person(id=s) for s in TEXTS]
    for field in ("device_id", "card_hash", "phone_hash"):
        out += [person(**{field: s}) for s in RAW + OPAQUE + CONTROL]
    out += [person(card_hash="a" * 64, phone_hash="b" * 64, device_id="d-1")]
    out += [person(card_hash="a" * 64, phone_hash="13800138000")]
    out += [item(sku=s) for s in TEXTS]
    out += [item(serial=s) for s in ["SN-1", "", "s" * 64, "s" * 65, " ", "序列", *CONTROL]]
    out += [item(serial="SN-1", quantity=2), item(quantity=0), item(unit_price_fen=-1),
            item(unit_price_fen=1.5), item(extra=1)]  # fmt: skip
    out += [plain(items=[{"sku": "A", "quantity": 1, "unit_price_fen": 1},
                         {"sku": "B\x00", "quantity": 1, "unit_price_fen": 1}])]  # fmt: skip
    adcodes = ["51010", "5101040", "51010a", "５１０１０４", "510104\n", "", "٥١٠١٠٤", 510104]
    out += [address(adcode=s) for s in adcodes]
    out += [address(text=s) for s in ["锦江区", "a" * 512, "a" * 513, *CONTROL]]
    out += [plain(device_location={"lng": 200.0, "lat": 30.0, "crs": "gcj02"}),
            plain(device_location={"lng": 104.0, "lat": 30.0, "crs": "wgs"}),
            plain(items=[]), plain(items=[item()["items"][0]] * 501),
            plain(person={"id": "p", "real_name_verified": "yes"}),
            plain(person={"id": "p", "real_name_verified": True, "name": "x"}),
            plain(other_government_subsidy=True), plain(unknown=1),
            {k: v for k, v in plain().items() if k != "order_id"}, "not an order", 7]  # fmt: skip
    return out


def outcome(decode: Any, raw: bytes) -> tuple[Any, ...]:
    try:
        got = decode(raw)
    except Exception as exc:
        return ("error", type(exc), str(exc))
    return ("ok", type(got[0]), got)


@pytest.mark.parametrize("order", cases())
def test_the_same_answer_as_the_strict_decoder(order: Any) -> None:
    for args in ([order, "unionpay", "k-1", "f" * 64], [order, "unionpay", "k-1"], [order]):
        raw = msgspec.msgpack.encode(args)
        assert outcome(FAST, raw) == outcome(STRICT, raw), order


def test_the_cases_hold_refusals_of_every_pattern_and_the_raw_number_check() -> None:
    errors = [outcome(STRICT, msgspec.msgpack.encode([o, "c", "k", "f"])) for o in cases()]
    messages = [str(e[2]) for e in errors if e[0] == "error"]
    refused = {m.split(" - at ")[-1].strip("`") for m in messages if "matching regex" in m}
    assert refused == {
        "$[0].campaign_id", "$[0].platform", "$[0].order_id", "$[0].payment_channel",
        "$[0].voucher_id", "$[0].person.id", "$[0].person.device_id", "$[0].person.card_hash",
        "$[0].person.phone_hash", "$[0].items[0].sku", "$[0].items[0].serial",
        "$[0].items[1].sku", "$[0].delivery_address.adcode", "$[0].delivery_address.text",
    }  # fmt: skip
    messages_all = " ".join(messages)
    assert "raw number in field `card_hash`: it looks like a bank card number" in messages_all
    assert sum(e[0] == "ok" for e in errors) > 40  # the accepted ones compared too


def _shape(t: Any) -> Any:
    """A type's constraints without its patterns (and its classes by their public name)."""
    if isinstance(t, mi.Metadata):  # (a description, examples: the schema's only)
        return _shape(t.type)
    if isinstance(t, mi.StructType):
        return ("struct", t.cls.__name__.lstrip("_"), t.forbid_unknown_fields, t.array_like,
                tuple((f.name, f.encode_name, f.required, repr(f.default), _shape(f.type))
                      for f in t.fields))  # fmt: skip
    if isinstance(t, mi.StrType):
        return ("str", t.min_length, t.max_length)
    if isinstance(t, mi.UnionType):
        return ("union", tuple(_shape(x) for x in t.types))
    if isinstance(t, mi.ListType):
        return ("list", t.min_length, t.max_length, _shape(t.item_type))
    return t


def test_the_twins_have_every_constraint_of_the_real_types_but_their_patterns() -> None:
    for real, twin in TWINS.items():
        assert _shape(mi.type_info(twin)) == _shape(mi.type_info(real)), real
        assert not hasattr(twin, "__post_init__")


def test_a_plain_order_is_built_from_its_twin_without_the_strict_decoder() -> None:
    from lijian.cluster.order_decode import _exact

    hashed = person(card_hash="a" * 64, phone_hash="b" * 64, device_id="d-1")
    for o in (plain(), hashed, item(serial="SN-1"), address(text="Jinjiang 1")):
        twin = msgspec.msgpack.decode(msgspec.msgpack.encode(o), type=TWINS[Order])
        built = _exact(twin)  # type: ignore[arg-type]
        assert type(built) is Order
        assert built == msgspec.msgpack.decode(msgspec.msgpack.encode(o), type=Order)
    for o in (person(card_hash="13800138000"), plain(order_id="订单"), address(adcode="51010x")):
        twin = msgspec.msgpack.decode(msgspec.msgpack.encode(o), type=TWINS[Order])
        assert _exact(twin) is None  # type: ignore[arg-type]  # (the strict decoder decides)
