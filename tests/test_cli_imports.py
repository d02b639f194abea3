"""``import lijian.cli`` stays light: heavy libraries load only with the commands needing them.

Every ``lijian`` run imports the whole command line to build its ``--help`` and to find the
command, so a library imported at the top of it is paid for by every command, also by
``lijian campaign check`` on a laptop with no PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Each used by some commands only: psycopg (PostgreSQL stores, leases), httpx (``lijian
# call``), uvicorn and starlette (``lijian serve``), cryptography (evidence keys).
HEAVY = ("psycopg", "httpx", "uvicorn", "starlette", "cryptography", "lijian.http", "lijian.store")


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(out.stdout))


def test_import_cli_loads_no_heavy_library() -> None:
    assert _loaded_after("import lijian.cli") == []


def test_the_check_sees_a_heavy_import() -> None:
    """The same probe after importing the lease module sees psycopg (so [] above is absence)."""
    assert "psycopg" in _loaded_after("import lijian.cluster.lease")


def test_lease_default_is_one_value() -> None:
    import lijian.cluster
    import lijian.cluster.lease

    assert lijian.cluster.lease.LEASE_TTL_S is lijian.cluster.LEASE_TTL_S
    assert lijian.cluster.LEASE_TTL_S == 5.0
