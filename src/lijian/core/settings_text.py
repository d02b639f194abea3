"""A campaign settings file given as text: what a new campaign proposed over the API is.

The text is what the ledger keeps (in the proposal's entry), so replay, ``lijian audit``
and every gateway parse the same bytes into the same ``Settings``. Parsing is pure (no
I/O): reading a file is the adapters' job (:mod:`lijian.inputs`).
"""

from __future__ import annotations

import tomllib

from lijian.core.settings import Problem, Settings, SettingsError, parse_settings

# A campaign file is a few kilobytes; this bounds what one proposal puts in the ledger.
SETTINGS_TOML_MAX_BYTES = 64 * 1024


class CampaignSettingsDiffer(ValueError):
    """A ``--campaign`` file names a campaign the ledger created over the API, with
    other settings: the ledger's are the ones money was granted under."""


def settings_from_toml(text: str, where: str = "body") -> Settings:
    """Parse settings text; ``SettingsError`` with every problem, as ``campaign check``."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > SETTINGS_TOML_MAX_BYTES:
        raise SettingsError(
            [Problem(where, f"{size} bytes; a settings file is at most {SETTINGS_TOML_MAX_BYTES}")]
        )
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([Problem(where, f"not valid TOML: {exc}")]) from exc
    return parse_settings(doc)
