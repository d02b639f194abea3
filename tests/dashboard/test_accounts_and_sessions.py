"""Dashboard logins: who may log in, password hashes, signed sessions, CSRF (throttling:
test_login_throttle.py)."""

from __future__ import annotations

import pytest

from lijian.dashboard import accounts
from lijian.dashboard.accounts import (
    Account,
    AccountsError,
    accounts_from_clients,
    check_password,
    hash_password,
    parse_users,
)
from lijian.dashboard.session import (
    LOGIN_FORM_TTL_S,
    SESSION_TTL_S,
    SessionSigner,
)
from lijian.http.clients import parse_clients

FAST = 100_000  # the minimum iterations: keeps the tests quick


@pytest.fixture(autouse=True)
def _fast_dummy_hash(monkeypatch):
    # The timing-equaliser hash costs 600k iterations per check; the tests need not pay.
    monkeypatch.setattr(accounts, "_DUMMY", (FAST, bytes(16), bytes(32)))


class Clock:
    def __init__(self, now_s: float = 1_700_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_operator_and_auditor_clients_log_in_with_key_id_and_secret_others_cannot():
    clients = parse_clients(
        {
            "clients": [
                {"key_id": "ops", "secret": "operator-secret", "role": "operator"},
                {"key_id": "aud", "secret": "auditor-secret", "role": "auditor"},
                {"key_id": "unionpay", "secret": "channel-secret", "role": "channel"},
                {"key_id": "jd", "secret": "platform-secret", "role": "platform", "platform": "jd"},
            ]
        }
    )
    accounts = accounts_from_clients(clients.values())
    assert sorted(accounts) == ["aud", "ops"]
    assert accounts["ops"].role == "operator" and accounts["aud"].role == "auditor"
    assert check_password(accounts["ops"], "operator-secret")
    assert not check_password(accounts["ops"], "operator-secreT")
    assert "operator-secret" not in repr(accounts["ops"])


def test_users_section_accepts_hashes_and_plain_passwords():
    h = hash_password("correct horse battery", iterations=FAST)
    users = parse_users(
        {
            "users": [
                {"username": "chen.li", "role": "operator", "password_hash": h},
                {"username": "wang.fang", "role": "auditor", "password": "rehearsal-only"},
            ]
        }
    )
    assert check_password(users["chen.li"], "correct horse battery")
    assert not check_password(users["chen.li"], "correct horse batterY")
    assert check_password(users["wang.fang"], "rehearsal-only")
    assert not check_password(users["wang.fang"], "rehearsal-onlY")
    assert h not in repr(users["chen.li"])


def test_an_unknown_user_never_logs_in():
    assert not check_password(None, "")
    assert not check_password(None, "anything at all")
    assert not check_password(Account("x", "operator", "user", password_hash="garbage"), "x")


def test_users_section_lists_every_problem():
    with pytest.raises(AccountsError) as exc:
        parse_users(
            {
                "users": [
                    {"username": "a", "role": "admin", "password": "long-enough"},
                    {"username": "b", "role": "operator"},
                    {"username": "c", "role": "auditor", "password_hash": "md5$abc"},
                    {"username": "d", "role": "auditor", "password": "short"},
                    {"username": "ops", "role": "auditor", "password": "long-enough"},
                    {"username": "e", "role": "auditor", "password": "long-enough", "x": 1},
                ]
            },
            taken={"ops"},
        )
    text = "; ".join(exc.value.problems)
    for needle in (
        "users[0].role",
        "users[1]: give exactly one",
        "users[2].password_hash",
        "users[3].password",
        "users[4].username: 'ops' is already taken",
        "users[5]: unknown keys ['x']",
    ):
        assert needle in text, (needle, text)


def test_a_session_cookie_round_trips_and_resists_tampering():
    clock = Clock()
    signer = SessionSigner(clock_s=clock)
    cookie, s = signer.issue("ops", "operator")
    assert signer.read(cookie) == s
    version, payload, sig = cookie.split(".")
    other_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    assert signer.read(f"{version}.{other_payload}.{sig}") is None
    assert signer.read(f"{version}.{payload}.{sig[:-1]}x") is None
    assert signer.read(cookie + ".x") is None
    assert signer.read("") is None and signer.read(None) is None
    assert SessionSigner(clock_s=clock).read(cookie) is None  # another key (a restart)


def test_a_session_ends_at_expiry_and_at_logout():
    clock = Clock()
    signer = SessionSigner(clock_s=clock)
    cookie, _ = signer.issue("ops", "operator")
    clock.now_s += SESSION_TTL_S - 1
    assert signer.read(cookie) is not None
    clock.now_s += 1
    assert signer.read(cookie) is None
    cookie2, s2 = signer.issue("aud", "auditor")
    signer.revoke(s2)
    assert signer.read(cookie2) is None


def test_csrf_tokens_are_bound_to_their_session_and_login_form():
    clock = Clock()
    signer = SessionSigner(clock_s=clock)
    _, s1 = signer.issue("ops", "operator")
    _, s2 = signer.issue("ops", "operator")
    assert signer.check_session_csrf(s1, signer.csrf_for_session(s1))
    assert not signer.check_session_csrf(s1, signer.csrf_for_session(s2))
    assert not signer.check_session_csrf(s1, None)
    cookie, token = signer.login_form()
    cookie_b, token_b = signer.login_form()
    assert signer.check_login_form(cookie, token)
    assert not signer.check_login_form(cookie, token_b)  # a token from another page
    assert not signer.check_login_form(None, token)
    clock.now_s += LOGIN_FORM_TTL_S
    assert not signer.check_login_form(cookie_b, token_b)
