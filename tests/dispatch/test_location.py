"""Location: boundaries imported from GeoJSON (GCJ-02 converted), point in polygon, and the order
QR place -> coordinates -> gazetteer -> the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import login
from xihu.core import geo
from xihu.core.errors import Forbidden, Invalid
from xihu.core.security import Actor
from xihu.dispatch import location
from xihu.dispatch.models import Boundary
from xihu.places import service as places_service
from xihu.places.schemas import PlaceCreate

XIXI, CUIYUAN, SHIHUIQIAO = "330106004", "330106005", "330106004053"
# WGS84 squares (not real boundaries: none are public for Xihu's streets); 石灰桥社区 inside 西溪街道.
XIXI_BOX = (120.130, 30.270, 120.150, 30.290)
SHIHUIQIAO_BOX = (120.135, 30.275, 120.140, 30.280)
CUIYUAN_BOX = (120.100, 30.280, 120.120, 30.300)


@pytest.fixture
def app(app):  # type: ignore[no-untyped-def]
    """The app with the boundary import route (included here until the app factory includes it)."""
    from xihu.dispatch import api_rules

    if "/api/dispatch/boundaries" not in {getattr(r, "path", "") for r in app.routes}:
        app.include_router(api_rules.router)
    return app


def _ring(box: tuple[float, float, float, float], to_gcj: bool) -> list[list[float]]:
    lon0, lat0, lon1, lat1 = box
    ring = [(lon0, lat0), (lon1, lat0), (lon1, lat1), (lon0, lat1), (lon0, lat0)]
    return [list(geo.wgs84_to_gcj02(x, y)) if to_gcj else [x, y] for x, y in ring]


def _collection(
    *features: tuple[str, tuple[float, float, float, float]], gcj: bool = False
) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": name},
                "geometry": {"type": "Polygon", "coordinates": [_ring(box, gcj)]},
            }
            for name, box in features
        ],
    }


def _id(session: Session, code: str) -> int:
    return places_service.get_unit_by_code(session=session, code=code).id


@pytest.fixture
def admin(actor_of: Callable[..., Actor]) -> Actor:
    return actor_of("admin")


@pytest.fixture
def boundaries(session: Session, admin: Actor) -> dict[str, Any]:
    """西溪街道, 石灰桥社区 and 翠苑街道 imported from GCJ-02 (as Amap would give them), plus a name that is
    no street."""
    return location.import_boundaries(
        session=session,
        actor=admin,
        geojson=_collection(
            ("西溪街道", XIXI_BOX),
            ("石灰桥社区", SHIHUIQIAO_BOX),
            ("翠苑", CUIYUAN_BOX),
            ("火星街道", XIXI_BOX),
            gcj=True,
        ),
        crs="gcj02",
        source="测试方块",
    )


def test_import_converts_gcj02_and_reports_unmatched(session: Session, boundaries: dict[str, Any]) -> None:
    assert boundaries["imported"] == 3 and boundaries["replaced"] == 0
    assert boundaries["unmatched"] == ["火星街道"]
    assert set(boundaries["matched"]) == {"西溪街道", "石灰桥社区", "翠苑街道"}
    row = session.scalar(select(Boundary).where(Boundary.unit_id == _id(session, XIXI)))
    assert row is not None and row.source == "测试方块"
    # stored in WGS84: the corners are back where they were before the GCJ-02 shift (well under 1 m)
    for got, want in zip(row.geometry["coordinates"][0], _ring(XIXI_BOX, False), strict=True):
        assert geo.haversine_m(got[0], got[1], want[0], want[1]) < 1.0
    assert row.min_lon == pytest.approx(XIXI_BOX[0], abs=1e-6) and row.max_lat == pytest.approx(
        XIXI_BOX[3], abs=1e-6
    )


def test_locate_point_prefers_the_community(session: Session, boundaries: dict[str, Any]) -> None:
    xixi, shq, cuiyuan = _id(session, XIXI), _id(session, SHIHUIQIAO), _id(session, CUIYUAN)
    assert location.locate_point(session=session, lon=120.137, lat=30.277) == (xixi, shq)
    assert location.locate_point(session=session, lon=120.145, lat=30.285) == (xixi, None)
    assert location.locate_point(session=session, lon=120.110, lat=30.290) == (cuiyuan, None)
    assert location.locate_point(session=session, lon=120.000, lat=30.100) is None
    # the same spot as a GCJ-02 coordinate is found when said so, and missed when taken as WGS84
    glon, glat = geo.wgs84_to_gcj02(120.1375, 30.2775)
    assert location.locate_point(session=session, lon=glon, lat=glat, crs="gcj02") == (xixi, shq)
    assert location.locate_point(session=session, lon=glon, lat=glat) != (xixi, shq)


def test_reimport_replaces_a_boundary(session: Session, admin: Actor, boundaries: dict[str, Any]) -> None:
    moved = (120.200, 30.200, 120.210, 30.210)
    result = location.import_boundaries(
        session=session, actor=admin, geojson=_collection(("石灰桥社区", moved))
    )
    assert result["replaced"] == 1 and result["crs"] == "wgs84"
    assert session.scalars(select(Boundary).where(Boundary.unit_id == _id(session, SHIHUIQIAO))).all()
    assert location.locate_point(session=session, lon=120.205, lat=30.205) == (
        _id(session, XIXI),
        _id(session, SHIHUIQIAO),
    )
    assert location.locate_point(session=session, lon=120.137, lat=30.277) == (_id(session, XIXI), None)


def test_import_refuses_bad_input_and_non_admins(
    session: Session, admin: Actor, actor_of: Callable[..., Actor]
) -> None:
    with pytest.raises(Invalid):
        location.import_boundaries(session=session, actor=admin, geojson=_collection(), crs="bd09")
    with pytest.raises(Invalid):
        location.import_boundaries(session=session, actor=admin, geojson={"type": "Polygon"})
    point = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "西溪街道"},
                "geometry": {"type": "Point", "coordinates": [1, 2]},
            }
        ],
    }
    assert location.import_boundaries(session=session, actor=admin, geojson=point)["invalid"] == ["西溪街道"]
    with pytest.raises(Forbidden):
        location.import_boundaries(session=session, actor=actor_of("dispatcher"), geojson=_collection())


def test_locate_order(session: Session, boundaries: dict[str, Any]) -> None:
    xixi, shq, cuiyuan = _id(session, XIXI), _id(session, SHIHUIQIAO), _id(session, CUIYUAN)
    # the QR place wins over coordinates in another street
    street, community, reason = location.locate(
        session=session,
        place_street_id=cuiyuan,
        place_community_id=None,
        lon=120.137,
        lat=30.277,
        text="西溪街道",
    )
    assert (street, community) == (cuiyuan, None) and "西湖码" in reason
    # coordinates win over a name in the text
    street, community, reason = location.locate(
        session=session,
        place_street_id=None,
        place_community_id=None,
        lon=120.137,
        lat=30.277,
        text="翠苑街道门口",
    )
    assert (street, community) == (xixi, shq) and "石灰桥社区" in reason
    # coordinates outside every boundary: the gazetteer
    street, community, reason = location.locate(
        session=session,
        place_street_id=None,
        place_community_id=None,
        lon=120.0,
        lat=30.1,
        text="翠苑街道门口",
    )
    assert (street, community) == (cuiyuan, None) and "翠苑街道" in reason
    # nothing: the dispatcher decides
    assert location.locate(
        session=session,
        place_street_id=None,
        place_community_id=None,
        lon=None,
        lat=None,
        text="门口路灯坏了",
    ) == (None, None, "位置不明，由派单员确定")


def test_locate_with_a_real_place(session: Session, admin: Actor, boundaries: dict[str, Any]) -> None:
    place = places_service.create_place(
        session=session,
        actor=admin,
        place_in=PlaceCreate(name="测试公园", place_type="park", street_id=_id(session, CUIYUAN)),
    )
    street, _, _ = location.locate(
        session=session,
        place_street_id=place.street_id,
        place_community_id=place.community_id,
        lon=120.137,
        lat=30.277,
        text="",
    )
    assert street == _id(session, CUIYUAN)


def test_http_boundary_import(client: TestClient, session: Session, make_user: Callable[..., Any]) -> None:
    body = _collection(("西溪街道", XIXI_BOX), gcj=True)
    login(client, make_user("dispatcher").username)
    assert client.post("/api/dispatch/boundaries", params={"crs": "gcj02"}, json=body).status_code == 403
    login(client, make_user("admin").username)
    resp = client.post("/api/dispatch/boundaries", params={"crs": "gcj02"}, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["imported"] == 1
    assert location.locate_point(session=session, lon=120.145, lat=30.285) == (_id(session, XIXI), None)
    assert client.post("/api/dispatch/boundaries", params={"crs": "bd09"}, json=body).status_code == 422
