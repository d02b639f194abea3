"""PostgreSQL connection failures in one line that names every host tried.

With a multi-host URL (``host1:5432,host2:5432/db?target_session_attrs=read-write``)
psycopg raises one error whose first line is about the *last* host only; the others
follow in a list. An operator watching a failover needs all of them ("5441 refused,
5442 read-only"), in one line, without the password (lijian.redact).
"""

from __future__ import annotations

import re

from lijian.redact import mask_secrets

MESSAGE_CHARS_MAX = 1_000  # one log line, whatever the number of hosts
_ATTEMPT_RE = re.compile(
    r"^- host: '(?P<host>[^']*)', port: '(?P<port>[^']*)'(?:, hostaddr: '[^']*')?: (?P<why>.*)$",
    re.M,
)
_SERVER_FAILED_RE = re.compile(r'^(?:connection failed: )?connection to server at "[^"]*",'
                               r" port \d+ failed: ")  # fmt: skip
_ONE_SERVER_RE = re.compile(r'^(?:connection failed: )?connection to server at "(?P<host>[^"]*)",'
                            r" port (?P<port>\d+) failed: (?P<why>.*)$")  # fmt: skip


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: every host tried with its own reason, or the first line."""
    text = str(exc).strip()
    attempts = [
        f"{m['host']}:{m['port']} {_SERVER_FAILED_RE.sub('', m['why']).strip()}"
        for m in _ATTEMPT_RE.finditer(text)
    ]
    if attempts:
        line = "; ".join(attempts)
    else:
        line = (text.splitlines() or [type(exc).__name__])[0]
        if (m := _ONE_SERVER_RE.match(line)) is not None:
            line = f"{m['host']}:{m['port']} {m['why']}"
    return mask_secrets(line)[:MESSAGE_CHARS_MAX]
