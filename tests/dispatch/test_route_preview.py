"""试派单: routing shown for a typed appeal, as intake would route it, with nothing recorded."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import factories
from conftest import login
from xihu.core.audit import AuditEntry
from xihu.core.errors import Forbidden
from xihu.core.security import Actor
from xihu.dispatch import responsibility
from xihu.dispatch import service as dispatch_service
from xihu.dispatch.models import DispatchDecision
from xihu.dispatch.schemas import RoutingInput, RuleCreate, RuleUpdate
from xihu.places import service as places_service
from xihu.places.enums import UnitKind

ADMIN = Actor.system("测试管理员")
LAMP = "小区路灯坏了好几天，晚上很黑，物业一直不修"


def _written(session: Session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(DispatchDecision)) or 0,
        session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
    )


def _night_rule(session: Session) -> int:
    """城乡建设 between 22:00 and 06:00 goes to 区城管局."""
    rule = responsibility.create_rule(
        session=session,
        actor=ADMIN,
        rule_in=RuleCreate(
            category="城乡建设",
            hour_from=22,
            hour_to=6,
            target="unit",
            unit_id=factories.unit(session, "D-CG"),
        ),
    )
    return rule.id


def test_preview_shows_what_route_would_do_and_records_nothing(session: Session, demo_model: Any) -> None:
    xixi = factories.unit(session, "330106004")
    appeal = RoutingInput(description=LAMP, street_id=xixi)
    routed = dispatch_service.route(session=session, appeal=appeal)
    before = _written(session)
    shown = dispatch_service.preview(session=session, actor=ADMIN, appeal=appeal)
    assert _written(session) == before
    assert shown.model_version == demo_model.version and shown.threshold == demo_model.threshold
    with_unit = [r for r in shown.rows if r.unit_id is not None]
    assert [(r.category, r.unit_id) for r in with_unit] == [
        (c.category, c.unit_id) for c in routed.candidates
    ]
    assert [r.probability for r in with_unit] == pytest.approx([c.confidence for c in routed.candidates])
    assert shown.auto == routed.auto
    assert shown.street_name == "西溪街道"
    assert shown.rows[0].rule.startswith("权责清单第 ")


def test_the_hour_asked_for_picks_the_rule_of_that_hour(session: Session, demo_model: Any) -> None:
    rule_id = _night_rule(session)
    appeal = RoutingInput(description=LAMP, street_id=factories.unit(session, "330106004"))
    night = dispatch_service.preview(session=session, actor=ADMIN, appeal=appeal, local_hour=23)
    day = dispatch_service.preview(session=session, actor=ADMIN, appeal=appeal, local_hour=10)
    assert night.local_hour == 23 and day.local_hour == 10
    assert night.rows[0].category == day.rows[0].category == "城乡建设"
    assert night.rows[0].unit_id == factories.unit(session, "D-CG")
    assert f"权责清单第 {rule_id} 条" in night.rows[0].rule and "时段 22–6 时" in night.rows[0].rule
    assert day.rows[0].unit_id != night.rows[0].unit_id


def test_a_category_without_a_rule_is_shown_and_not_dispatched_alone(
    session: Session, demo_model: Any
) -> None:
    appeal = RoutingInput(description=LAMP, street_id=factories.unit(session, "330106004"))
    top = dispatch_service.preview(session=session, actor=ADMIN, appeal=appeal).rows[0].category
    for rule in responsibility.list_rules(session=session, actor=ADMIN):
        if rule.category == top:
            responsibility.update_rule(
                session=session, actor=ADMIN, rule_id=rule.id, rule_in=RuleUpdate(active=False)
            )
    shown = dispatch_service.preview(session=session, actor=ADMIN, appeal=appeal)
    assert shown.rows[0].category == top and shown.rows[0].unit_id is None
    assert "没有适用" in shown.rows[0].rule
    assert shown.auto is False
    # routing itself leaves that category out and does not dispatch alone either
    routed = dispatch_service.route(session=session, appeal=appeal)
    assert top not in {c.category for c in routed.candidates} and routed.auto is False


def test_only_staff_who_read_the_table_may_preview(session: Session, actor_of: Any) -> None:
    with pytest.raises(Forbidden):
        dispatch_service.preview(
            session=session, actor=actor_of("handler"), appeal=RoutingInput(description=LAMP)
        )


def test_the_try_page_shows_the_unit_for_the_hour_and_place(
    client: Any, session: Session, demo_model: Any, make_user: Any
) -> None:
    _night_rule(session)
    login(client, make_user("admin").username)
    rules_page = client.get("/staff/dispatch/rules")
    assert 'href="/staff/dispatch/rules/try"' in rules_page.text
    empty = client.get("/staff/dispatch/rules/try")
    assert empty.status_code == 200 and 'data-testid="try-result"' not in empty.text
    street = places_service.get_unit(session=session, unit_id=factories.unit(session, "330106004"))
    community = places_service.list_units(session=session, kinds=[UnitKind.community], parent_id=street.id)[0]
    before = _written(session)
    page = client.get(
        "/staff/dispatch/rules/try",
        params={"description": LAMP, "area_id": str(community.id), "local_hour": "23"},
    )
    assert page.status_code == 200, page.text
    assert 'data-testid="try-result"' in page.text and "区城管局" in page.text and "按 23 时来件" in page.text
    assert f"{street.name} {community.name}" in page.text  # the community picked, under its own street
    assert _written(session) == before
    # the form keeps what was typed
    assert LAMP in page.text and f'value="{community.id}" selected' in page.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"description": LAMP, "local_hour": "30"}, "时刻超出允许范围"),
        ({"description": LAMP, "local_hour": "晚上"}, "时刻必须是数字"),
        ({"description": LAMP, "place_type": "火星"}, "地点类型"),
        ({"description": "长" * 5001}, "诉求内容不能超过 5000 个字"),
    ],
)
def test_the_try_page_refuses_bad_input_in_chinese(
    client: Any, make_user: Any, params: dict[str, str], message: str
) -> None:
    login(client, make_user("admin").username)
    page = client.get("/staff/dispatch/rules/try", params=params)
    assert page.status_code == 422 and message in page.text
    assert 'data-testid="try-result"' not in page.text


def test_preview_api_answers_json_and_refuses_bad_hours(
    client: Any, session: Session, demo_model: Any, make_user: Any
) -> None:
    login(client, make_user("dispatcher").username)
    headers = {"X-CSRF-Token": client.cookies.get("xihu_csrf")}
    body = {"description": LAMP, "street_id": factories.unit(session, "330106004"), "local_hour": 9}
    resp = client.post("/api/dispatch/preview", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["local_hour"] == 9 and data["rows"][0]["category"] == "城乡建设"
    assert data["model_version"] == demo_model.version
    bad = client.post("/api/dispatch/preview", json=dict(body, local_hour=24), headers=headers)
    assert bad.status_code == 422 and "时刻" in bad.json()["error"]["message"]
