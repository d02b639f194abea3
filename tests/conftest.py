"""What every test process shares: one ledger key file (lijian.ledger_key).

A PostgreSQL ledger needs its key file named; the tests and the servers they start
(which inherit the environment) name this one, made once per test session. Tests of the
key itself set or clear the variable for the processes they start."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from lijian.ledger_key import ENV_KEY_FILE
from tests.events.receiver import Receiver
from tests.http.harness import free_port

if not os.environ.get(ENV_KEY_FILE):
    _dir = tempfile.mkdtemp(prefix="lijian-test-key-")
    os.environ[ENV_KEY_FILE] = os.path.join(_dir, "ledger.key")
    atexit.register(shutil.rmtree, _dir, True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that drives a real browser is marked ``browser``, from the fixture it
    asks for rather than a list of files: ``make test-fast`` leaves them out with
    ``-m "not browser"``, and a new browser test cannot slip into the quick loop."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real webhook receiver on a free port (``tests/events/receiver.py``), stopped after."""
    r = Receiver(free_port())
    try:
        yield r
    finally:
        r.stop()
