"""Possible duplicates: same place / community / within 300 m, similar text, last 7 days; the citizen's hint
shows no tracking code or id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import factories
from conftest import login
from xihu.appeals import duplicates
from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import MergeIn
from xihu.core import clock, geo
from xihu.core.security import Actor
from xihu.places import service as places_service
from xihu.places.schemas import PlaceCreate

LAMP = "小区门口的路灯坏了好几天，晚上很黑"
LAMP_AGAIN = "小区门口路灯不亮好几天了，晚上很黑很危险"
RUBBISH = "小区垃圾桶满了没人清理，臭味很大"
XIXI, SHIHUIQIAO = "330106004", "330106004053"
LON, LAT = 120.1370, 30.2770


def _offset(metres_north: float) -> tuple[float, float]:
    return LON, LAT + metres_north / 111_320.0


@pytest.fixture
def place_code(session: Session) -> str:
    place = places_service.create_place(
        session=session,
        actor=Actor.system(),
        place_in=PlaceCreate(
            name="石灰桥小区东门", place_type="residential", street_id=factories.unit(session, XIXI)
        ),
    )
    return place.code


def test_bigram_similarity_separates_same_and_different_problems() -> None:
    assert duplicates.text_similarity(LAMP, LAMP_AGAIN) >= duplicates.SIMILAR_THRESHOLD
    assert duplicates.text_similarity(LAMP, RUBBISH) < duplicates.SIMILAR_THRESHOLD
    assert duplicates.text_similarity("", LAMP) == 0.0
    assert duplicates.SIMILAR_THRESHOLD >= 0.3


def test_same_place_similar_text(session: Session, place_code: str) -> None:
    first = factories.submitted(session, description=LAMP, place_code=place_code)
    place = places_service.get_place_by_code(session=session, code=place_code)
    found = duplicates.similar(session=session, text=LAMP_AGAIN, place_id=place.id)
    assert [s.tracking_code for s in found] == [first.tracking_code]
    assert found[0].reason == "同一西湖码地点" and found[0].score >= 0.3
    assert duplicates.similar(session=session, text=RUBBISH, place_id=place.id) == []
    assert duplicates.similar(session=session, text=LAMP_AGAIN, place_id=place.id, exclude_id=first.id) == []


def test_same_community(session: Session) -> None:
    community = factories.unit(session, SHIHUIQIAO)
    first = factories.submitted(session, description=LAMP, community_id=community)
    found = duplicates.similar(session=session, text=LAMP_AGAIN, community_id=community)
    assert [(s.id, s.reason) for s in found] == [(first.id, "同一社区/村")]


def test_nearby_coordinates_within_300_metres(session: Session) -> None:
    lon, lat = _offset(0)
    first = factories.submitted(session, description=LAMP, lat=lat, lon=lon, street_id=None)
    near_lon, near_lat = _offset(150)
    assert 140 < geo.haversine_m(lon, lat, near_lon, near_lat) < 160
    found = duplicates.similar(session=session, text=LAMP_AGAIN, lat=near_lat, lon=near_lon)
    assert [s.id for s in found] == [first.id] and found[0].reason == "相距约 150 米"
    far_lon, far_lat = _offset(500)
    assert duplicates.similar(session=session, text=LAMP_AGAIN, lat=far_lat, lon=far_lon) == []


def test_only_the_last_seven_days_and_not_merged(session: Session, place_code: str) -> None:
    place = places_service.get_place_by_code(session=session, code=place_code)
    old = factories.submitted(session, description=LAMP, place_code=place_code)
    clock.advance(timedelta(days=6))
    assert [s.id for s in duplicates.similar(session=session, text=LAMP_AGAIN, place_id=place.id)] == [old.id]
    clock.advance(timedelta(days=2))
    assert duplicates.similar(session=session, text=LAMP_AGAIN, place_id=place.id) == []
    # a recent appeal that was merged into another is not suggested; the one it went into is
    a = factories.submitted(session, description=LAMP, place_code=place_code)
    b = factories.submitted(session, description=LAMP_AGAIN, place_code=place_code)
    appeal_service.merge(
        session=session,
        actor=factories.SYSTEM,
        appeal_id=b.id,
        data=MergeIn(into_tracking_code=a.tracking_code),
    )
    assert [s.id for s in duplicates.similar(session=session, text=LAMP, place_id=place.id)] == [a.id]


def test_no_place_no_suggestions_and_street_needs_closer_text(session: Session) -> None:
    noise, noise_again = "工地半夜施工噪音很大，吵得睡不着", "附近工地晚上施工太吵了，噪音很大"
    factories.submitted(session, description=noise)  # 西溪街道, no community, no coordinates
    assert duplicates.similar(session=session, text=noise) == []
    street = factories.unit(session, XIXI)
    same = duplicates.similar(session=session, text=noise, street_id=street)
    assert len(same) == 1 and same[0].reason == "同一街道/镇"
    # 0.3 <= score < 0.5 is enough at a place, not across a whole street
    score = duplicates.text_similarity(noise_again, noise)
    assert duplicates.SIMILAR_THRESHOLD <= score < duplicates.STREET_THRESHOLD
    assert duplicates.similar(session=session, text=noise_again, street_id=street) == []
    community = factories.unit(session, SHIHUIQIAO)
    factories.submitted(session, description=noise, community_id=community)
    assert len(duplicates.similar(session=session, text=noise_again, community_id=community)) == 1


def test_public_endpoint_exposes_no_tracking_code_or_id(
    client: TestClient, session: Session, place_code: str
) -> None:
    first = factories.submitted(session, description=LAMP + "，电话13812345678", place_code=place_code)
    session.commit()
    resp = client.get("/api/appeals/similar", params={"text": LAMP_AGAIN, "place_code": place_code})
    assert resp.status_code == 200, resp.text
    items = resp.json()
    assert len(items) == 1
    assert set(items[0]) == {"title", "state_label", "created_on", "score"}
    assert first.tracking_code not in resp.text
    assert "13812345678" not in resp.text
    assert items[0]["state_label"]
    # unknown place code or no place at all: nothing, quietly
    assert client.get("/api/appeals/similar", params={"text": LAMP_AGAIN, "place_code": "NOPE"}).json() == []
    assert client.get("/api/appeals/similar", params={"text": LAMP_AGAIN}).json() == []
    lon, lat = _offset(0)
    factories.submitted(session, description=LAMP, lat=lat, lon=lon, street_id=None)
    session.commit()
    near = client.get("/api/appeals/similar", params={"text": LAMP_AGAIN, "lat": lat, "lon": lon + 0.001})
    assert len(near.json()) == 1


def test_staff_endpoint_and_detail_page_offer_merge(
    client: TestClient, session: Session, place_code: str, make_user: Callable[..., Any]
) -> None:
    first = factories.submitted(session, description=LAMP, place_code=place_code)
    second = factories.submitted(session, description=LAMP_AGAIN, place_code=place_code)
    session.commit()
    assert client.get(f"/api/appeals/{second.id}/similar").status_code == 401
    login(client, make_user("dispatcher").username)
    items = client.get(f"/api/appeals/{second.id}/similar").json()
    assert [(i["id"], i["tracking_code"]) for i in items] == [(first.id, first.tracking_code)]
    page = client.get(f"/staff/appeals/{second.id}")
    assert "疑似重复" in page.text and f'value="{first.tracking_code}"' in page.text
    resp = client.post(
        f"/staff/appeals/{second.id}/merge",
        data={"csrf_token": client.cookies.get("xihu_csrf"), "into_tracking_code": first.tracking_code},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    assert appeal_service.read(session=session, actor=factories.SYSTEM, appeal_id=second.id).duplicate_of == (
        first.tracking_code
    )


def test_handler_sees_only_duplicates_in_scope(
    session: Session, place_code: str, actor_of: Callable[..., Actor]
) -> None:
    mine = factories.dispatched(session, "D-ZJ", description=LAMP, place_code=place_code)
    factories.dispatched(session, "D-CG", description=LAMP, place_code=place_code)
    other = factories.dispatched(session, "D-ZJ", description=LAMP_AGAIN, place_code=place_code)
    handler = actor_of("handler", "D-ZJ")
    found = duplicates.similar_to_appeal(session=session, actor=handler, appeal_id=other.id)
    assert [s.id for s in found] == [mine.id]


def test_report_page_has_the_hint_box_without_inline_script(client: TestClient) -> None:
    page = client.get("/report")
    assert 'id="similar-hint"' in page.text and 'data-similar-url="/api/appeals/similar"' in page.text
    assert "<script>" not in page.text
