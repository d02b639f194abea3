"""[release] and [identity]: defaults keep first come, first served; bad values are
listed with their field path; raw ID and card numbers never decode into an order."""

from __future__ import annotations

import msgspec
import pytest

from lijian.core.order import Order
from lijian.core.settings import SettingsError
from lijian.http.problems import from_decode_error
from tests.support import order, settings


def test_defaults_are_first_come_first_served_and_no_linking():
    s = settings()
    assert s.release.admission_window_s == 0
    assert s.identity.link_by == ()


def test_the_documented_sections_load():
    s = settings(
        release={"admission_window_s": 10},
        identity={"link_by": ["device_id", "card_hash", "phone_hash"]},
    )
    assert s.release.admission_window_s == 10
    assert s.identity.link_by == ("device_id", "card_hash", "phone_hash")
    assert settings(identity={"link_by": []}).identity.link_by == ()


@pytest.mark.parametrize(
    ("section", "values", "problem"),
    [
        ("release", {"admission_window_s": 61}, "release.admission_window_s: must be 0..60"),
        ("release", {"admission_window_s": -1}, "release.admission_window_s: must be 0..60"),
        ("release", {"window": 5}, "release.window: unknown key"),
        ("release", {"max_waiting": 0}, "release.max_waiting: must be 1..100000"),
        ("identity", {"link_by": ["email"]}, "identity.link_by: unknown identifier(s) ['email']"),
        ("identity", {"link_by": ["card_hash", "card_hash"]}, "identity.link_by: has duplicates"),
    ],
)
def test_bad_values_are_named(section, values, problem):
    with pytest.raises(SettingsError) as err:
        settings(**{section: values})
    assert any(str(p).startswith(problem) for p in err.value.problems), err.value.problems


RAW = [
    "510104199001011234",  # an 18-digit resident ID number
    "51010419900101123X",  # … whose check digit is X
    "6222021234567890",  # a 16-digit card number
    "6222021234567890123",  # a 19-digit card number
    "13800138000",  # a mobile phone number
    "8613800138000",  # … with the country code
    "+8613800138000",
]


@pytest.mark.parametrize("field", ["device_id", "card_hash", "phone_hash"])
@pytest.mark.parametrize("raw", RAW)
def test_raw_id_and_card_numbers_do_not_decode(field, raw):
    doc = msgspec.to_builtins(order())
    doc["person"][field] = raw
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.person\.{field}`"):
        msgspec.json.decode(msgspec.json.encode(doc), type=Order)


@pytest.mark.parametrize("field", ["device_id", "card_hash", "phone_hash"])
@pytest.mark.parametrize("raw", ["4222222222222", "378282246310005"])  # 13, 15 digits, Luhn
def test_a_short_card_number_with_a_valid_check_digit_does_not_decode(field, raw):
    doc = msgspec.to_builtins(order())
    doc["person"][field] = raw
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(msgspec.json.encode(doc), type=Order)
    p = from_decode_error(info.value)
    assert (p.status, p.errors[0]["field"]) == (422, f"person.{field}")
    assert "bank card number" in p.errors[0]["message"]


# Not raw numbers: hashes, a number too short for a phone, a number that is not a mobile
# one (12…), 13-15 digits whose Luhn check fails, 20 digits.
@pytest.mark.parametrize(
    "value",
    ["c9f0a1", "1380013800", "12800138000", "4222222222223", "622202123456780", "1" * 20],
)
def test_hashes_and_other_strings_decode(value):
    doc = msgspec.to_builtins(order())
    doc["person"]["card_hash"] = value
    assert msgspec.json.decode(msgspec.json.encode(doc), type=Order).person.card_hash == value
