"""A campaign's inputs as the engine reads them: the settings file, the fingerprint a
ledger records of it, and the city's geography."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from lijian.core.rules import GeoPort
from lijian.core.settings import Settings, parse_settings


def load_settings_file(path: str | Path) -> Settings:
    """Read and validate a campaign TOML file (raises SettingsError with every problem)."""
    from lijian.core.settings import Problem, SettingsError

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([Problem(str(path), f"not valid TOML: {exc}")]) from exc
    except OSError as exc:
        raise SettingsError([Problem(str(path), f"cannot read: {exc.strerror}")]) from exc
    return parse_settings(doc)


def settings_fingerprint(s: Settings) -> str:
    return json.dumps(s.raw, sort_keys=True, default=str, ensure_ascii=False)


class NoGeo:
    """Used only when a campaign requires neither device nor address checks."""

    def device_in_city(self, lng: float, lat: float, crs: str) -> bool:
        raise AssertionError("geography is not loaded")

    def address_in_city(self, adcode: str) -> bool:
        raise AssertionError("geography is not loaded")


def default_geo(adcode: str) -> GeoPort:
    from lijian.geo import load_city

    return load_city(adcode)
