"""GCJ-02 <-> WGS84, point in polygon, bounding boxes: pure functions, checked on points in Hangzhou."""

from __future__ import annotations

import pytest

from xihu.core import geo

# WGS84 points in and around Xihu district: West Lake, Zijingang, Xixi wetland, Zhuantang, Sandun.
HANGZHOU = [
    (120.1445, 30.2460),
    (120.0835, 30.3050),
    (120.0620, 30.2700),
    (120.0950, 30.1700),
    (120.0900, 30.3450),
]


@pytest.mark.parametrize(("lon", "lat"), HANGZHOU)
def test_round_trip_is_under_one_metre(lon: float, lat: float) -> None:
    gcj = geo.wgs84_to_gcj02(lon, lat)
    back = geo.gcj02_to_wgs84(*gcj)
    assert geo.haversine_m(lon, lat, *back) < 1.0
    # and the other way round, starting from a GCJ-02 coordinate as Amap gives it
    wgs = geo.gcj02_to_wgs84(lon, lat)
    assert geo.haversine_m(lon, lat, *geo.wgs84_to_gcj02(*wgs)) < 1.0


@pytest.mark.parametrize(("lon", "lat"), HANGZHOU)
def test_gcj02_offset_in_hangzhou_is_300_to_600_metres(lon: float, lat: float) -> None:
    wgs = geo.gcj02_to_wgs84(lon, lat)
    offset = geo.haversine_m(lon, lat, *wgs)
    assert 300 <= offset <= 600
    # GCJ-02 is shifted east and south of WGS84 here, so the WGS84 point lies west and north
    assert wgs[0] < lon and wgs[1] > lat


def test_outside_china_is_unchanged() -> None:
    assert geo.wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)
    assert geo.gcj02_to_wgs84(-74.0, 40.7) == (-74.0, 40.7)


def _square(lon0: float, lat0: float, lon1: float, lat1: float) -> list[list[float]]:
    return [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]


def test_point_in_polygon_respects_holes() -> None:
    donut = {"type": "Polygon", "coordinates": [_square(0, 0, 10, 10), _square(4, 4, 6, 6)]}
    assert geo.point_in_polygon(1, 1, donut)
    assert geo.point_in_polygon(5, 3, donut)
    assert not geo.point_in_polygon(5, 5, donut)  # in the hole
    assert not geo.point_in_polygon(11, 5, donut)
    assert not geo.point_in_polygon(-0.1, 5, donut)


def test_point_in_multipolygon_and_concave_ring() -> None:
    # an L-shaped ring (concave) and a separate square; the ring is not closed explicitly
    ell = [[0, 0], [4, 0], [4, 1], [1, 1], [1, 4], [0, 4]]
    multi = {"type": "MultiPolygon", "coordinates": [[ell], [_square(10, 10, 12, 12)]]}
    assert geo.point_in_polygon(0.5, 3, multi)
    assert geo.point_in_polygon(3, 0.5, multi)
    assert not geo.point_in_polygon(3, 3, multi)  # the notch of the L
    assert geo.point_in_polygon(11, 11, multi)
    assert not geo.point_in_polygon(8, 8, multi)


def test_bbox_and_bad_geometry() -> None:
    multi = {"type": "MultiPolygon", "coordinates": [[_square(1, 2, 3, 4)], [_square(-1, 5, 0, 6)]]}
    assert geo.bbox(multi) == (-1, 2, 3, 6)
    with pytest.raises(ValueError):
        geo.bbox({"type": "Point", "coordinates": [1, 2]})
    with pytest.raises(ValueError):
        geo.point_in_polygon(0, 0, {"type": "LineString", "coordinates": [[0, 0], [1, 1]]})


def test_transform_geometry_moves_every_vertex() -> None:
    poly = {"type": "Polygon", "coordinates": [_square(120.10, 30.25, 120.11, 30.26)]}
    moved = geo.transform_geometry(poly, geo.gcj02_to_wgs84)
    assert moved["type"] == "Polygon"
    for (lon, lat), (mlon, mlat) in zip(poly["coordinates"][0], moved["coordinates"][0], strict=True):
        assert 300 <= geo.haversine_m(lon, lat, mlon, mlat) <= 600
