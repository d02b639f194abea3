"""Secrets out of what is printed: database passwords in any text (logs, errors, audit).

``--db`` may be a libpq URL with a password (``postgresql://app:pw@h/db`` or
``?password=pw``). Every place that shows the URL on purpose shows it through
``lijian.store.shown_db``; this module is the net under everything else (a driver's error
that quotes the connection string, a log line built from an exception): the structlog
processor in ``lijian.http.logs`` runs every logged text through ``mask_secrets``.
"""

from __future__ import annotations

import re

MASK = "***"
# user:password@ in a postgres(ql):// URL; the user part has no '/', '@' or ':'.
_URL_PASSWORD_RE = re.compile(r"(postgres(?:ql)?://[^/@:\s]*:)[^@\s]*@")
# password=... as a URL parameter or a conninfo keyword (quoted or not).
_PARAM_PASSWORD_RE = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s'\"]+)", re.I)


def mask_secrets(text: str) -> str:
    """``text`` with every database password replaced by ``***``."""
    if "://" not in text and "assword" not in text and "ASSWORD" not in text:
        return text  # the common case: nothing to scan
    text = _URL_PASSWORD_RE.sub(rf"\g<1>{MASK}@", text)
    return _PARAM_PASSWORD_RE.sub(rf"\g<1>{MASK}", text)
