"""Properties of the fence over many points, and its cost per call."""

from __future__ import annotations

import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from lijian.geo import CityFence
from tests.geo.geo_testdata import city_boundary_gcj02, from_gcj02

CHENGDU_GCJ02 = city_boundary_gcj02("510100")
CHENGDU_BORDER = shapely.boundary(CHENGDU_GCJ02)
MIN_LNG, MIN_LAT, MAX_LNG, MAX_LAT = CHENGDU_GCJ02.bounds
# Conversions round-trip to ~1e-7 degrees; stay 100x clear of the border.
BORDER_CLEARANCE_DEG = 1e-5
BUDGET_US_PER_CALL = 20.0

BORDER_VERTICES = shapely.get_coordinates(CHENGDU_GCJ02)
# The crs shifts are 300-900 m, so the answers that a wrong or missing conversion would
# flip lie within ~0.01 degrees of the border: sample there as well as across the box.
points_near_border = st.builds(
    lambda i, d_lng, d_lat: (
        float(BORDER_VERTICES[i][0]) + d_lng,
        float(BORDER_VERTICES[i][1]) + d_lat,
    ),
    st.integers(0, len(BORDER_VERTICES) - 1),
    st.floats(-0.01, 0.01),
    st.floats(-0.01, 0.01),
)
points_around_chengdu = st.tuples(
    st.floats(MIN_LNG - 0.2, MAX_LNG + 0.2), st.floats(MIN_LAT - 0.2, MAX_LAT + 0.2)
)


@settings(max_examples=300, deadline=None)
@given(
    point=st.one_of(points_near_border, points_around_chengdu),
    crs=st.sampled_from(["wgs84", "bd09"]),
)
def test_every_crs_gives_the_gcj02_answer_for_the_same_place(
    chengdu: CityFence, point: tuple[float, float], crs: str
) -> None:
    lng, lat = point
    if shapely.distance(CHENGDU_BORDER, shapely.Point(lng, lat)) < BORDER_CLEARANCE_DEG:
        return
    expected = bool(shapely.contains_xy(CHENGDU_GCJ02, lng, lat))
    assert chengdu.device_in_city(lng, lat, "gcj02") is expected
    assert chengdu.device_in_city(*from_gcj02(lng, lat, crs), crs) is expected


@settings(max_examples=3_000, deadline=None)
@given(u=st.floats(0, 1), v=st.floats(0, 1))
def test_the_grid_shortcut_agrees_with_the_exact_polygon_test(u: float, v: float) -> None:
    """Every answer the lookup table gives equals shapely's exact point-in-polygon test."""
    import shapely

    from lijian.geo import load_city

    fence = load_city("510100")
    min_lng, min_lat, max_lng, max_lat = fence._boundary.bounds
    lng, lat = min_lng + u * (max_lng - min_lng), min_lat + v * (max_lat - min_lat)
    exact = bool(shapely.contains_xy(fence._boundary, lng, lat))
    assert fence.device_in_city(lng, lat, "gcj02") == exact
