"""Where an appeal is: its 西湖码 place, else its coordinates in a boundary, else names in its text.

Boundaries of streets and communities are imported from GeoJSON the district supplies (no public street or
community polygons exist for Xihu; see the geodata README) and are stored in WGS84. GCJ-02 input (Amap,
DataV) is converted vertex by vertex on import, and GCJ-02 points before the test.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core import audit, clock, geo
from xihu.core.errors import Invalid
from xihu.core.security import Actor, authorize
from xihu.dispatch.models import Boundary
from xihu.dispatch.schemas import BoundaryImportResult
from xihu.places import service as places_service
from xihu.places.enums import UnitKind

CRS_ALIASES = {
    "wgs84": "wgs84",
    "wgs-84": "wgs84",
    "epsg:4326": "wgs84",
    "cgcs2000": "wgs84",  # interchangeable with WGS84 at this scale
    "gcj02": "gcj02",
    "gcj-02": "gcj02",
    "amap": "gcj02",
}
AREA_KINDS = {UnitKind.street.value, UnitKind.community.value, UnitKind.village.value}
COMMUNITY_KINDS = {UnitKind.community.value, UnitKind.village.value}


def normalize_crs(crs: str) -> str:
    """The canonical name, wgs84 or gcj02; anything else is refused."""
    found = CRS_ALIASES.get(crs.strip().lower())
    if found is None:
        raise Invalid(f"不支持的坐标系「{crs}」，请用 wgs84 或 gcj02", english="crs must be wgs84 or gcj02")
    return found


def _features(geojson: dict[str, Any]) -> list[dict[str, Any]]:
    kind = geojson.get("type")
    if kind == "FeatureCollection":
        feats = geojson.get("features")
        if not isinstance(feats, list):
            raise Invalid("GeoJSON 的 features 必须是数组", english="features must be a list")
        return [f for f in feats if isinstance(f, dict)]
    if kind == "Feature":
        return [geojson]
    raise Invalid("请上传 GeoJSON FeatureCollection 或 Feature", english="expected a FeatureCollection")


def import_boundaries(
    *,
    session: Session,
    actor: Actor,
    geojson: dict[str, Any],
    crs: str = "wgs84",
    name_property: str = "name",
    source: str = "",
) -> dict[str, Any]:
    """Store street/community boundaries matched by name; a unit's earlier boundary is replaced.

    Features of the same unit in one file are joined into one MultiPolygon. Returns what was imported,
    the names that matched no street or community, and the features whose geometry is not a polygon.
    """
    authorize(actor, "dispatch.manage")
    crs = normalize_crs(crs)
    unmatched: list[str] = []
    invalid: list[str] = []
    by_unit: dict[int, tuple[str, list[Any]]] = {}
    for i, feature in enumerate(_features(geojson)):
        props = feature.get("properties") or {}
        name = str(props.get(name_property) or "").strip()
        label = name or f"第 {i + 1} 个要素"
        unit = places_service.get_unit_by_name(session=session, name=name) if name else None
        if unit is None or unit.kind not in AREA_KINDS:
            unmatched.append(label)
            continue
        geometry = feature.get("geometry") or {}
        try:
            if crs == "gcj02":
                geometry = geo.transform_geometry(geometry, geo.gcj02_to_wgs84)
            geo.bbox(geometry)
            coords = geometry["coordinates"]
            polygons = coords if geometry["type"] == "MultiPolygon" else [coords]
        except (ValueError, KeyError, TypeError, IndexError):
            invalid.append(label)
            continue
        by_unit.setdefault(unit.id, (unit.name, []))[1].extend(polygons)
    replaced = 0
    now = clock.now()
    for unit_id, (_, polygons) in by_unit.items():
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        min_lon, min_lat, max_lon, max_lat = geo.bbox(geometry)
        row = session.scalar(select(Boundary).where(Boundary.unit_id == unit_id))
        if row is None:
            row = Boundary(unit_id=unit_id)
            session.add(row)
        else:
            replaced += 1
        row.geometry = geometry
        row.min_lon, row.min_lat, row.max_lon, row.max_lat = min_lon, min_lat, max_lon, max_lat
        row.source = source[:200]
        row.imported_at = now
    session.flush()
    result = BoundaryImportResult(
        crs=crs,
        imported=len(by_unit),
        replaced=replaced,
        matched=[name for name, _ in by_unit.values()],
        unmatched=unmatched,
        invalid=invalid,
    )
    audit.record(
        session=session,
        actor=actor,
        action="dispatch.boundaries_import",
        entity="boundary",
        entity_id="-",
        detail={
            "crs": crs,
            "source": source[:200],
            "imported": result.imported,
            "replaced": replaced,
            "unmatched": unmatched[:50],
            "invalid": invalid[:50],
        },
    )
    return result.model_dump()


def locate_point(
    *, session: Session, lon: float, lat: float, crs: str = "wgs84"
) -> tuple[int, int | None] | None:
    """(street_id, community_id) of the boundary containing the point; community boundaries first."""
    if normalize_crs(crs) == "gcj02":
        lon, lat = geo.gcj02_to_wgs84(lon, lat)
    rows = list(
        session.scalars(
            select(Boundary).where(
                Boundary.min_lon <= lon,
                Boundary.max_lon >= lon,
                Boundary.min_lat <= lat,
                Boundary.max_lat >= lat,
            )
        )
    )
    if not rows:
        return None
    units = {r.unit_id: places_service.get_unit(session=session, unit_id=r.unit_id) for r in rows}
    # Communities first (the finer answer), then streets; smaller boxes first among equals.
    rows.sort(
        key=lambda r: (
            units[r.unit_id].kind not in COMMUNITY_KINDS,
            (r.max_lon - r.min_lon) * (r.max_lat - r.min_lat),
        )
    )
    for row in rows:
        unit = units[row.unit_id]
        if not geo.point_in_polygon(lon, lat, row.geometry):
            continue
        if unit.kind in COMMUNITY_KINDS and unit.parent_id is not None:
            return unit.parent_id, unit.id
        if unit.kind == UnitKind.street.value:
            return unit.id, None
    return None


def locate(
    *,
    session: Session,
    place_street_id: int | None,
    place_community_id: int | None,
    lon: float | None,
    lat: float | None,
    text: str,
    crs: str = "wgs84",
) -> tuple[int | None, int | None, str]:
    """(street_id, community_id, Chinese reason): the QR place, else the boundary the coordinates fall in,
    else a street/community/village/landmark name in the address or text, else unknown (the dispatcher
    decides)."""
    if place_street_id is not None:
        return place_street_id, place_community_id, "群众扫描的西湖码地点"
    if lon is not None and lat is not None:
        found = locate_point(session=session, lon=lon, lat=lat, crs=crs)
        if found is not None:
            street_id, community_id = found
            unit_id = community_id or street_id
            name = places_service.unit_names(session=session, unit_ids={unit_id}).get(unit_id, "")
            return street_id, community_id, f"坐标位于「{name}」边界内"
    if text:
        hit = places_service.locate_text(session=session, text=text)
        if hit is not None:
            street_id, community_id, name = hit
            return street_id, community_id, f"地址/描述中提到「{name}」"
    return None, None, "位置不明，由派单员确定"
