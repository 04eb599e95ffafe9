"""The three-level cockpit: who sees which area (in the service and over HTTP), and what a page shows."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import factories
from xihu.core.errors import Forbidden
from xihu.core.security import Actor
from xihu.indicators import service as indicators_service

STREET = "330106004"  # 西溪街道
COMMUNITY = "330106004053"  # 石灰桥社区 in 西溪街道
OTHER_STREET = "330106005"  # 翠苑街道
OTHER_COMMUNITY = "330106005001"  # 宋江苑社区 in 翠苑街道


def test_scope_district_staff_everything_street_its_communities_community_itself(
    session: Session, actor_of: Callable[..., Actor], unit_id: Callable[[str], int]
) -> None:
    street, community = unit_id(STREET), unit_id(COMMUNITY)
    other_street, other_community = unit_id(OTHER_STREET), unit_id(OTHER_COMMUNITY)
    leader = actor_of("leader", "330106")
    for area in (None, street, community, other_street, other_community):
        indicators_service.check_area(session=session, actor=leader, area_unit_id=area)
    department = actor_of("handler", "D-ZJ")
    indicators_service.check_area(session=session, actor=department, area_unit_id=None)

    street_staff = actor_of("grid", STREET)
    indicators_service.check_area(session=session, actor=street_staff, area_unit_id=street)
    indicators_service.check_area(session=session, actor=street_staff, area_unit_id=community)
    for area in (None, other_street, other_community):
        with pytest.raises(Forbidden):
            indicators_service.check_area(session=session, actor=street_staff, area_unit_id=area)

    community_staff = actor_of("grid", COMMUNITY)
    indicators_service.check_area(session=session, actor=community_staff, area_unit_id=community)
    for area in (None, street, other_community):
        with pytest.raises(Forbidden):
            indicators_service.check_area(session=session, actor=community_staff, area_unit_id=area)
    assert indicators_service.cockpit_home(session=session, actor=community_staff) == community
    with pytest.raises(Forbidden):  # the cards read enforces the same scope
        indicators_service.indicator_cards(session=session, actor=community_staff, unit_id=street)
    with pytest.raises(Forbidden):  # intake staff have no cockpit
        indicators_service.cockpit_scope(session=session, actor=actor_of("intake", "330106"))


def _chart_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="cockpit-data">(.*?)</script>', html, re.S)
    assert match, "the page carries its chart data"
    return json.loads(match.group(1))


def test_district_page_shows_appeals_indicators_map_and_links_down(
    session: Session, client: TestClient, login_as: Callable[..., object], unit_id: Callable[[str], int]
) -> None:
    indicators_service.load_catalog(session=session)
    factories.dispatched(session, category_hint="城乡建设")
    factories.completed(session)
    session.commit()
    login_as("leader", "330106")
    resp = client.get("/cockpit")
    assert resp.status_code == 200, resp.text
    html = resp.text
    assert "西湖区 · 共同富裕驾驶舱" in html
    assert 'id="chart-map"' in html and "/static/vendor/echarts/echarts.min.js" in html
    assert f'href="/cockpit/street/{unit_id(STREET)}"' in html
    data = _chart_data(html)
    assert data["level"] == "district"
    assert sum(data["received"]) >= 2
    assert len(data["map"]) == 12 and all(len(p["value"]) == 3 for p in data["map"])
    xixi = next(p for p in data["map"] if p["name"] == "西溪街道")
    assert xixi["received"] >= 2 and xixi["url"] == f"/cockpit/street/{unit_id(STREET)}"
    assert "示意" in html  # the bubbles are labelled as illustrative positions
    assert "gdp" in data["cards"]


def test_street_staff_are_sent_to_their_street_and_refused_elsewhere(
    session: Session, client: TestClient, login_as: Callable[..., object], unit_id: Callable[[str], int]
) -> None:
    indicators_service.load_catalog(session=session)
    session.commit()
    login_as("grid", STREET)
    resp = client.get("/cockpit", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == f"/cockpit/street/{unit_id(STREET)}"
    page = client.get(f"/cockpit/street/{unit_id(STREET)}")
    assert page.status_code == 200 and "西溪街道 · 共同富裕驾驶舱" in page.text
    assert f'href="/cockpit/community/{unit_id(COMMUNITY)}"' in page.text
    data = _chart_data(page.text)
    assert data["level"] == "street"
    # street-level indicators only: GDP exists at district level only
    assert "childcare_places" in data["cards"] and "gdp" not in data["cards"]
    assert client.get(f"/cockpit/community/{unit_id(COMMUNITY)}").status_code == 200
    assert client.get(f"/cockpit/street/{unit_id(OTHER_STREET)}").status_code == 403
    assert client.get(f"/cockpit/community/{unit_id(OTHER_COMMUNITY)}").status_code == 403
    # a street id on the community route is not an area of that kind
    assert client.get(f"/cockpit/community/{unit_id(STREET)}").status_code == 404


def test_community_staff_see_their_community_only(
    client: TestClient, login_as: Callable[..., object], unit_id: Callable[[str], int]
) -> None:
    login_as("grid", COMMUNITY)
    resp = client.get("/cockpit", follow_redirects=False)
    assert resp.headers["location"] == f"/cockpit/community/{unit_id(COMMUNITY)}"
    page = client.get(resp.headers["location"])
    assert page.status_code == 200 and "社区级" in page.text
    assert client.get(f"/cockpit/street/{unit_id(STREET)}").status_code == 403


def test_anonymous_visitors_are_sent_to_login_and_assets_are_served(client: TestClient) -> None:
    resp = client.get("/cockpit", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    js = client.get("/cockpit/assets/cockpit.js")
    assert js.status_code == 200 and "registerMap" in js.text
    css = client.get("/cockpit/assets/cockpit.css")
    assert css.status_code == 200 and "@media print" in css.text
    assert client.get("/cockpit/assets/secret.py").status_code == 404


def test_viewers_within_seconds_share_one_computation_and_each_is_still_checked(
    session: Session,
    client: TestClient,
    login_as: Callable[..., object],
    unit_id: Callable[[str], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """XIHU_COCKPIT_CACHE_SECONDS: a view within the time shows the figures computed for the one before."""
    from xihu.core.config import get_settings
    from xihu.web import cockpit

    indicators_service.load_catalog(session=session)
    factories.dispatched(session)
    session.commit()
    monkeypatch.setenv("XIHU_COCKPIT_CACHE_SECONDS", "60")
    get_settings.cache_clear()
    cockpit.forget_computed()
    try:
        login_as("grid", STREET)
        url = f"/cockpit/street/{unit_id(STREET)}"
        first = sum(_chart_data(client.get(url).text)["received"])
        factories.dispatched(session)
        session.commit()
        assert sum(_chart_data(client.get(url).text)["received"]) == first  # computed once, shown twice
        assert client.get(f"/cockpit/street/{unit_id(OTHER_STREET)}").status_code == 403
        login_as("grid", OTHER_STREET)  # the cached street is still refused to another street's staff
        assert client.get(url).status_code == 403
        cockpit.forget_computed()
        login_as("grid", STREET)
        assert sum(_chart_data(client.get(url).text)["received"]) == first + 1
    finally:
        monkeypatch.delenv("XIHU_COCKPIT_CACHE_SECONDS")
        get_settings.cache_clear()
        cockpit.forget_computed()
