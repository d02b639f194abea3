"""Login throttling (dashboard/session.py: LoginThrottle; docs/DASHBOARD.md, "Login").

The brakes' arithmetic on a manual clock, then over real HTTP from several loopback
addresses (a client socket bound to 127.0.0.2 reaches 127.0.0.1 on Linux), on one process
and on ``--workers 2``, where the login runs at the sequencer behind a gateway that
vouches for the browser's address.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lijian.cluster.proxy import FORWARDED_FOR, FORWARDED_MAC, client_address
from lijian.dashboard.session import (
    ADDRESS_FREE_FAILURES,
    GLOBAL_FAILURES_BURST,
    GLOBAL_FAILURES_PER_S,
    PAIR_FREE_FAILURES,
    THROTTLED_KEYS_MAX,
    LoginThrottle,
)
from tests.http.harness import CLIENTS, Server

pytestmark = pytest.mark.xdist_group("login-throttle")  # one worker: one server per topology

OPERATOR, ATTACKER = "127.0.0.1", "127.0.0.2"
ATTEMPTS_MAX = 120  # bounds every loop below
BACKOFF_TARGET_S = 4  # the attacker's wait once it has failed three back-offs deep


class Clock:
    def __init__(self, now_s: float = 1_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


# ------------------------------------------------------------------ arithmetic
def test_a_pair_backs_off_exponentially_and_others_are_not_touched() -> None:
    clock = Clock()
    t = LoginThrottle(clock_s=clock)
    for _ in range(PAIR_FREE_FAILURES):
        assert t.wait_s(ATTACKER, "ops") == 0.0
        t.failed(ATTACKER, "ops")
    waits = []
    for _ in range(5):
        assert t.wait_s(ATTACKER, "ops") == 0.0
        t.failed(ATTACKER, "ops")
        waits.append(t.wait_s(ATTACKER, "ops"))
        clock.now_s += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]
    t.failed(ATTACKER, "ops")
    assert t.wait_s(ATTACKER, "ops") == 32.0
    # Another address on the same account, the same address on another account: free.
    assert t.wait_s(OPERATOR, "ops") == 0.0
    assert t.wait_s(ATTACKER, "audit") == 0.0
    t.succeeded(OPERATOR, "ops")
    assert t.wait_s(ATTACKER, "ops") == 32.0  # a success elsewhere clears nothing here


def test_the_back_off_is_capped_cleared_by_success_and_forgotten_after_quiet() -> None:
    clock = Clock()
    t = LoginThrottle(clock_s=clock)
    for _ in range(PAIR_FREE_FAILURES + 20):
        t.failed(OPERATOR, "ops")
    assert t.wait_s(OPERATOR, "ops") == 300.0
    t.succeeded(OPERATOR, "ops")
    assert t.wait_s(OPERATOR, "ops") == 0.0
    for _ in range(PAIR_FREE_FAILURES + 1):
        t.failed(ATTACKER, "audit")
    assert t.wait_s(ATTACKER, "audit") == 1.0
    clock.now_s += 3_601.0
    t.failed(ATTACKER, "audit")  # a new count: the first of three free failures
    assert t.wait_s(ATTACKER, "audit") == 0.0


def test_rotating_accounts_from_one_address_meets_the_address_brake() -> None:
    clock = Clock()
    t = LoginThrottle(clock_s=clock)
    for i in range(ADDRESS_FREE_FAILURES):
        assert t.wait_s(ATTACKER, f"user-{i}") == 0.0
        t.failed(ATTACKER, f"user-{i}")
    assert t.wait_s(ATTACKER, "someone-else") == 0.0
    t.failed(ATTACKER, "someone-else")
    assert t.wait_s(ATTACKER, "yet-another") == 1.0
    assert t.wait_s(OPERATOR, "yet-another") == 0.0


def test_the_global_rate_spares_an_operator_who_logged_in_from_here_before() -> None:
    clock = Clock()
    t = LoginThrottle(clock_s=clock)
    t.succeeded(OPERATOR, "ops")
    for i in range(GLOBAL_FAILURES_BURST):
        t.failed(f"10.0.{i // 250}.{i % 250}", "ops")
    fresh = 1.0 / GLOBAL_FAILURES_PER_S
    assert t.wait_s("10.9.9.9", "audit") == fresh
    assert t.wait_s(OPERATOR, "ops") == 0.0  # trusted: passes the global brake
    clock.now_s += fresh
    assert t.wait_s("10.9.9.9", "audit") == 0.0


def test_the_tables_are_bounded() -> None:
    clock = Clock()
    t = LoginThrottle(clock_s=clock)
    for i in range(THROTTLED_KEYS_MAX + 10):
        t.failed(f"10.{i // 65_536}.{i // 256 % 256}.{i % 256}", "ops")
        t.succeeded(f"10.{i // 65_536}.{i // 256 % 256}.{i % 256}", "audit")
    assert len(t._pairs) == THROTTLED_KEYS_MAX
    assert len(t._addresses) == THROTTLED_KEYS_MAX
    assert len(t._trusted) == THROTTLED_KEYS_MAX


def test_only_a_vouched_address_is_believed(monkeypatch: pytest.MonkeyPatch) -> None:
    from lijian.cluster import proxy

    monkeypatch.setenv(proxy.PROXY_KEY_ENV, "the-gateways-key")
    good = proxy._mac(b"the-gateways-key", b"10.1.2.3")
    assert client_address([(FORWARDED_FOR, b"10.1.2.3"), (FORWARDED_MAC, good)], "gw") == "10.1.2.3"
    assert client_address([(FORWARDED_FOR, b"10.1.2.4"), (FORWARDED_MAC, good)], "gw") == "gw"
    assert client_address([(FORWARDED_FOR, b"10.1.2.3")], "gw") == "gw"
    monkeypatch.delenv(proxy.PROXY_KEY_ENV)
    assert client_address([(FORWARDED_FOR, b"10.1.2.3"), (FORWARDED_MAC, good)], "gw") == "gw"


# ------------------------------------------------------------ over real HTTP
@pytest.fixture(scope="module", params=["one", "sqlite-w2"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = Server(
        Path(tmp_path_factory.mktemp(f"login-{request.param}")),
        catalog=False,
        topology=request.param,
    )
    try:
        yield s
    finally:
        s.close()


def _client(server: Server, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.url, transport=transport, timeout=60.0)


def _login(c: httpx.Client, user: str, password: str, **headers: str) -> httpx.Response:
    page = c.get("/login")
    assert page.status_code == 200, page.text
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, page.text
    form = {"csrf": m.group(1), "username": user, "password": password}
    return c.post("/login", data=form, headers=headers)


def _secret(key_id: str) -> str:
    return str(CLIENTS[key_id]["secret"])


def test_an_attacker_on_one_address_does_not_lock_out_the_operator(served: Server) -> None:
    with _client(served, ATTACKER) as attacker, _client(served, OPERATOR) as operator:
        for _ in range(PAIR_FREE_FAILURES + 1):
            assert _login(attacker, "ops", "wrong-password").status_code == 401
        retry_after: list[int] = []
        failures = PAIR_FREE_FAILURES + 1
        for _ in range(ATTEMPTS_MAX):
            r = _login(attacker, "ops", "wrong-password")
            if r.status_code == 401:
                failures += 1
                continue
            assert r.status_code == 429, r.text
            assert "throttled" in r.text
            retry_after.append(int(r.headers["retry-after"]))
            if retry_after[-1] >= BACKOFF_TARGET_S:
                break
            time.sleep(retry_after[-1])
        # 1 s after the fourth failure, 2 s after the fifth, 4 s after the sixth (a wait
        # that ran out while the next request was on its way lets one more failure in).
        assert retry_after and retry_after[-1] >= BACKOFF_TARGET_S, retry_after
        assert failures >= PAIR_FREE_FAILURES + 3, failures
        assert all(1 <= s <= 300 for s in retry_after), retry_after
        # A header claiming another address, from the public socket, is not believed.
        forged = _login(attacker, "ops", "wrong-password", **{"X-Forwarded-For": OPERATOR,
                        "X-Lijian-Forwarded-Mac": "forged"})  # fmt: skip
        assert forged.status_code == 429
        # The right password does not get through the brake either (no oracle)...
        assert _login(attacker, "ops", _secret("ops")).status_code == 429
        # ...while the operator on another address logs in at once,
        r = _login(operator, "ops", _secret("ops"))
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        assert operator.get("/").status_code == 200
        # and the attacker's address may still log in to another account it knows.
        assert _login(attacker, "audit", _secret("audit")).status_code == 303
    # Those sessions are theirs alone: a browser without a cookie is not logged in (a
    # gateway's pass-through keeps no cookies between browsers).
    with _client(served, "127.0.0.4") as stranger:
        r = stranger.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"


@pytest.mark.slow  # waits out the real global rate; make test runs it
def test_many_addresses_meet_the_global_rate_but_not_a_known_operator(served: Server) -> None:
    with _client(served, OPERATOR) as operator:
        assert _login(operator, "audit", _secret("audit")).status_code == 303
    refused_at = None
    for i in range(ATTEMPTS_MAX):
        with _client(served, f"127.0.1.{i + 1}") as c:
            r = _login(c, f"nobody-{i}", "wrong-password")
        if r.status_code == 429:  # a fresh address and name: only the global brake
            refused_at = i
            assert 1 <= int(r.headers["retry-after"]) <= 1 / GLOBAL_FAILURES_PER_S
            break
        assert r.status_code == 401, r.text
    # Fresh addresses were let in until the bucket ran dry (the other test of this
    # server spent some of it; the exact figures are checked on a manual clock above).
    assert refused_at is not None and refused_at > 0, refused_at
    with _client(served, OPERATOR) as operator:
        r = _login(operator, "audit", _secret("audit"))
        assert r.status_code == 303, r.text


# ------------------------------------------------------- counted before the hash
def test_an_admitted_attempt_is_counted_before_its_outcome_and_a_success_gives_it_back() -> None:
    clock = Clock()
    t = LoginThrottle(clock_s=clock)
    # Attempts that arrive together (none has been hashed yet): the global bucket lets
    # exactly its burst through, whatever the addresses.
    admitted = [
        t.admit(f"10.1.{i // 250}.{i % 250}", "ops") for i in range(3 * GLOBAL_FAILURES_BURST)
    ]
    assert sum(a.wait_s == 0 for a in admitted) == GLOBAL_FAILURES_BURST
    assert all(a.wait_s == 1 / GLOBAL_FAILURES_PER_S for a in admitted[GLOBAL_FAILURES_BURST:])
    # One pair's attempts together: its free failures and one more (then it waits).
    clock.now_s += 3_600.0
    t = LoginThrottle(clock_s=clock)
    pair = [t.admit(ATTACKER, "ops") for _ in range(10)]
    assert sum(a.wait_s == 0 for a in pair) == PAIR_FREE_FAILURES + 1
    # A success gives its counted failure back to the address and global brakes.
    t = LoginThrottle(clock_s=clock)
    for i in range(GLOBAL_FAILURES_BURST - 1):
        assert t.admit(f"10.2.0.{i}", "ops").wait_s == 0
    ok = t.admit(OPERATOR, "ops")
    assert ok.wait_s == 0 and ok.wide
    assert t.admit("10.9.9.9", "audit").wait_s > 0  # the bucket is empty now
    t.succeeded(OPERATOR, "ops", ok)
    assert t._addresses.get(OPERATOR) is None
    assert t.admit("10.9.9.9", "audit").wait_s == 0  # the success's token came back


@pytest.mark.slow  # waits out the real global brake; make test runs it
@pytest.mark.parametrize("topology", ["one", "sqlite-w2"])
def test_concurrent_wrong_logins_are_evaluated_no_faster_than_the_global_brake(
    tmp_path: Path, topology: str
) -> None:
    """Many addresses at once, each with one wrong password (their pair and address
    brakes never bind): the failures the server evaluates are exactly bounded by the
    global bucket, its burst plus its rate over the time the attempts took."""
    attempts = 3 * GLOBAL_FAILURES_BURST
    server = Server(tmp_path, catalog=False, topology=topology)
    try:
        clients = [_client(server, f"127.0.21.{i + 1}") for i in range(attempts)]
        forms = []
        for c in clients:
            page = c.get("/login")
            m = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert page.status_code == 200 and m, page.text
            forms.append({"csrf": m.group(1), "username": "ops", "password": "wrong"})
        statuses: list[int] = []
        lock = threading.Lock()
        go = threading.Barrier(attempts)

        def attempt(c: httpx.Client, form: dict[str, str]) -> None:
            go.wait()
            status = c.post("/login", data=form).status_code
            with lock:
                statuses.append(status)

        pairs = zip(clients, forms, strict=True)
        threads = [threading.Thread(target=attempt, args=pair) for pair in pairs]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(ATTEMPTS_MAX)
        elapsed_s = time.monotonic() - t0
        for c in clients:
            c.close()
    finally:
        server.close()
    assert len(statuses) == attempts and set(statuses) <= {401, 429}, statuses
    evaluated = statuses.count(401)
    # The bucket was full (a fresh server); it refills during the attempts.
    assert (
        GLOBAL_FAILURES_BURST
        <= evaluated
        <= GLOBAL_FAILURES_BURST + math.ceil(elapsed_s * GLOBAL_FAILURES_PER_S)
    ), (evaluated, elapsed_s)
