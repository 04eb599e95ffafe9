"""Geo helpers: GCJ-02 <-> WGS84, point in polygon, bounding boxes, distances. Pure functions.

Amap (高德) and Aliyun DataV coordinates are GCJ-02 (the "Mars" offset, ~300-600 m from WGS84 in Hangzhou);
GPS, OSM and Tianditu are WGS84. Boundaries are stored in WGS84, so GCJ-02 input is converted first.
Coordinates are (lon, lat) in degrees, in that order, as in GeoJSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# Krasovsky 1940 ellipsoid, as the public GCJ-02 formula uses it.
_A = 6378245.0
_EE = 0.00669342162296594323
_EARTH_RADIUS_M = 6371008.8

Coord = tuple[float, float]


def out_of_china(lon: float, lat: float) -> bool:
    """True outside the rough bounding box where GCJ-02 applies (coordinates there are not shifted)."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _delta_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _delta_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lon: float, lat: float) -> Coord:
    """WGS84 -> GCJ-02 by the standard public formula; points outside China are returned unchanged."""
    if out_of_china(lon, lat):
        return lon, lat
    dlat = _delta_lat(lon - 105.0, lat - 35.0)
    dlon = _delta_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(radlat) ** 2
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float, lat: float, *, tolerance: float = 1e-9, max_iter: int = 30) -> Coord:
    """GCJ-02 -> WGS84 by fixed-point iteration on the forward formula (error far below 1 m).

    1e-9 degree is about 0.1 mm; the iteration converges in a handful of steps because the offset varies
    slowly. Points outside China are returned unchanged.
    """
    if out_of_china(lon, lat):
        return lon, lat
    wlon, wlat = lon, lat
    for _ in range(max_iter):
        glon, glat = wgs84_to_gcj02(wlon, wlat)
        dlon, dlat = glon - lon, glat - lat
        wlon, wlat = wlon - dlon, wlat - dlat
        if abs(dlon) < tolerance and abs(dlat) < tolerance:
            break
    return wlon, wlat


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _polygons(geometry: dict[str, Any]) -> list[Sequence[Sequence[Sequence[float]]]]:
    """The polygons (each a list of rings) of a Polygon or MultiPolygon (a Feature is unwrapped)."""
    if geometry.get("type") == "Feature":
        geometry = geometry.get("geometry") or {}
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon" and isinstance(coords, list):
        return [coords]
    if kind == "MultiPolygon" and isinstance(coords, list):
        return list(coords)
    raise ValueError(f"expected a GeoJSON Polygon or MultiPolygon, got {kind!r}")


def _in_ring(lon: float, lat: float, ring: Sequence[Sequence[float]]) -> bool:
    """Ray casting (even-odd rule); the ring may or may not repeat its first vertex."""
    inside = False
    n = len(ring)
    if n < 3:
        return False
    j = n - 1
    for i in range(n):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > lat) != (yj > lat):
            x_cross = (xj - xi) * (lat - yi) / (yj - yi) + xi
            if lon < x_cross:
                inside = not inside
        j = i
    return inside


def point_in_polygon(lon: float, lat: float, geometry: dict[str, Any]) -> bool:
    """True when the point is in a GeoJSON Polygon/MultiPolygon: in an outer ring and not in its holes."""
    for rings in _polygons(geometry):
        if not rings:
            continue
        if _in_ring(lon, lat, rings[0]) and not any(_in_ring(lon, lat, hole) for hole in rings[1:]):
            return True
    return False


def _positions(geometry: dict[str, Any]) -> Iterator[Sequence[float]]:
    for rings in _polygons(geometry):
        for ring in rings:
            yield from ring


def bbox(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    """(min_lon, min_lat, max_lon, max_lat) of a Polygon or MultiPolygon."""
    lons: list[float] = []
    lats: list[float] = []
    for pos in _positions(geometry):
        lons.append(float(pos[0]))
        lats.append(float(pos[1]))
    if not lons:
        raise ValueError("empty geometry")
    return min(lons), min(lats), max(lons), max(lats)


def transform_geometry(geometry: dict[str, Any], fn: Callable[[float, float], Coord]) -> dict[str, Any]:
    """A copy of a Polygon or MultiPolygon with every vertex passed through fn(lon, lat)."""
    if geometry.get("type") == "Feature":
        geometry = geometry.get("geometry") or {}

    def ring(r: Sequence[Sequence[float]]) -> list[list[float]]:
        return [list(fn(float(p[0]), float(p[1]))) for p in r]

    polys = _polygons(geometry)
    if geometry["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in polys[0]]}
    return {"type": "MultiPolygon", "coordinates": [[ring(r) for r in rings] for rings in polys]}
