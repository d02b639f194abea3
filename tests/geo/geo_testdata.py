"""Landmarks and prcoords conversions shared by the geo tests (real data, no mocks)."""

from __future__ import annotations

import prcoords
import shapely

from lijian.geo._data import read_boundary, read_index

# GCJ-02 (lng, lat) of landmarks, as a Chinese map SDK would report them.
TIANFU_SQUARE_GCJ02 = (104.0657, 30.6574)  # 天府广场, 成都
JIEFANGBEI_GCJ02 = (106.577, 29.557)  # 解放碑, 重庆
DEYANG_GCJ02 = (104.398, 31.127)  # 德阳市区
WEST_LAKE_GCJ02 = (120.14, 30.24)  # 西湖, 杭州

ALL_CRS = ("gcj02", "wgs84", "bd09")


def from_gcj02(lng: float, lat: float, crs: str) -> tuple[float, float]:
    """The GCJ-02 point expressed in ``crs``, computed with prcoords ((lat, lon) order)."""
    if crs == "gcj02":
        return lng, lat
    if crs == "wgs84":
        # The precise (iterated) inverse, so the fence's forward conversion lands back on
        # the GCJ-02 point to ~1e-8 degrees.
        lat_out, lng_out = prcoords.gcj_wgs_bored((lat, lng))
    elif crs == "bd09":
        lat_out, lng_out = prcoords.gcj_bd((lat, lng))
    else:
        raise AssertionError(crs)
    return float(lng_out), float(lat_out)


def city_boundary_gcj02(adcode: str) -> shapely.Geometry:
    """The city's boundary straight from the data, independent of the fence object."""
    return read_boundary(read_index().cities[adcode].geometry_path)
