"""What every test process shares: one ledger key file (lijian.ledger_key).

A PostgreSQL ledger needs its key file named; the tests and the servers they start
(which inherit the environment) name this one, made once per test session. Tests of the
key itself set or clear the variable for the processes they start."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from lijian.ledger_key import ENV_KEY_FILE

if not os.environ.get(ENV_KEY_FILE):
    _dir = tempfile.mkdtemp(prefix="lijian-test-key-")
    os.environ[ENV_KEY_FILE] = os.path.join(_dir, "ledger.key")
    atexit.register(shutil.rmtree, _dir, True)
