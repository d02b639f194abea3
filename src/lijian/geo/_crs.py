"""Convert a device location to GCJ-02, the coordinate system of the boundary data.

Model: a location is (lng_deg, lat_deg) in one of three systems. GCJ-02 (国测局, what
Amap/Tencent SDKs return) passes through; WGS-84 (raw GPS) goes through the forward GCJ-02
obfuscation; BD-09 (Baidu) goes through Baidu's inverse shift. Both conversions we need are
the *precise* directions of `prcoords` (WGS→GCJ is the defining formula, BD→GCJ is exact to
~1e-7°); we never need the approximate GCJ→WGS inverse.

`prcoords` takes and returns (lat, lon) tuples; this module's API is (lng, lat) like the
rest of lijian and GeoJSON, so every call swaps the order here and only here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import prcoords

CRS_GCJ02 = "gcj02"
CRS_WGS84 = "wgs84"
CRS_BD09 = "bd09"

ToGcj02 = Callable[[float, float], tuple[float, float]]


def _gcj02_to_gcj02(lng_deg: float, lat_deg: float) -> tuple[float, float]:
    return lng_deg, lat_deg


def _wgs84_to_gcj02(lng_deg: float, lat_deg: float) -> tuple[float, float]:
    # check_china=False: prcoords' "in China" test is a coarse box (lat 0.83..55.83,
    # lng 72.0..137.8) that contains every Chinese city with a wide margin, so it never
    # changes an answer near a fence; with the check on, far-away points would only cost a
    # warnings.warn() call per request.
    lat_gcj_deg, lng_gcj_deg = prcoords.wgs_gcj((lat_deg, lng_deg), False)
    return float(lng_gcj_deg), float(lat_gcj_deg)


def _bd09_to_gcj02(lng_deg: float, lat_deg: float) -> tuple[float, float]:
    lat_gcj_deg, lng_gcj_deg = prcoords.bd_gcj((lat_deg, lng_deg))
    return float(lng_gcj_deg), float(lat_gcj_deg)


TO_GCJ02: Mapping[str, ToGcj02] = MappingProxyType(
    {
        CRS_GCJ02: _gcj02_to_gcj02,
        CRS_WGS84: _wgs84_to_gcj02,
        CRS_BD09: _bd09_to_gcj02,
    }
)
SUPPORTED_CRS: frozenset[str] = frozenset(TO_GCJ02)


def to_gcj02(lng_deg: float, lat_deg: float, crs: str) -> tuple[float, float]:
    """Return (lng_deg, lat_deg) in GCJ-02. Raises ValueError for an unknown ``crs``."""
    convert = TO_GCJ02.get(crs)
    if convert is None:
        raise ValueError(f"unknown crs {crs!r}; expected one of {sorted(SUPPORTED_CRS)}")
    return convert(lng_deg, lat_deg)
