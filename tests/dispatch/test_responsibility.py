"""权责清单: defaults, specificity, re-mapping without retraining, history of every change, permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import login
from xihu.core.audit import AuditEntry
from xihu.core.errors import Conflict, Forbidden, Invalid
from xihu.core.security import Actor
from xihu.dispatch import responsibility
from xihu.dispatch.models import ResponsibilityHistory, ResponsibilityRule
from xihu.dispatch.schemas import RuleCreate, RuleUpdate
from xihu.places import service as places_service

XIXI = "330106004"  # 西溪街道
SHIHUIQIAO = "330106004053"  # 石灰桥社区, in 西溪街道


@pytest.fixture
def app(app):  # type: ignore[no-untyped-def]
    """The app with the responsibility-table routers (included here until the app factory includes them)."""
    from xihu.dispatch import api_rules, pages_rules

    paths = {getattr(r, "path", "") for r in app.routes}
    if "/api/dispatch/rules" not in paths:
        app.include_router(api_rules.router)
    if "/staff/dispatch/rules" not in paths:
        app.include_router(pages_rules.router)
    return app


@pytest.fixture
def admin(actor_of: Callable[..., Actor]) -> Actor:
    return actor_of("admin")


def _unit(session: Session, code: str) -> int:
    return places_service.get_unit_by_code(session=session, code=code).id


def _resolve(session: Session, **kw: Any) -> tuple[int | None, str]:
    kw.setdefault("text", "")
    found = responsibility.resolve(session=session, **kw)
    return found.unit_id, found.reason


def test_seed_defaults_is_idempotent_and_maps_each_category(session: Session) -> None:
    first = responsibility.seed_defaults(session=session)
    assert responsibility.seed_defaults(session=session) == 0
    rows = list(session.scalars(select(ResponsibilityRule)))
    assert first <= len(rows)
    unit, reason = _resolve(session, category="交通运输", text="公交班次太少")
    assert unit == _unit(session, "D-JT")
    assert "交通运输" in reason and "区交通运输局" in reason
    assert _resolve(session, category="劳动和社会保障")[0] == _unit(session, "D-RS")
    # every seeded rule has its creation in the history
    seeded = {h.rule_id for h in session.scalars(select(ResponsibilityHistory))}
    assert {r.id for r in rows} <= seeded


def test_grid_matters_go_to_the_community_else_the_street_else_nobody(session: Session) -> None:
    responsibility.seed_defaults(session=session)
    street, community = _unit(session, XIXI), _unit(session, SHIHUIQIAO)
    text = "楼道里乱堆杂物，垃圾没人清理"
    assert _resolve(session, category="城乡建设", text=text, street_id=street, community_id=community)[0] == (
        community
    )
    unit, reason = _resolve(session, category="城乡建设", text=text, street_id=street)
    assert unit == street and "属地街道" in reason
    unit, reason = _resolve(session, category="城乡建设", text=text)
    assert unit is None and "派单员" in reason
    # not a grid matter: the department
    assert _resolve(session, category="城乡建设", text="电梯坏了", street_id=street)[0] == _unit(
        session, "D-ZJ"
    )


def test_most_specific_rule_wins(session: Session, admin: Actor) -> None:
    ids = {code: _unit(session, code) for code in ("D-JT", "D-CG", "D-GA", "D-YJ", "D-SW", XIXI)}

    def add(target_code: str, **cond: Any) -> None:
        responsibility.create_rule(
            session=session,
            actor=admin,
            rule_in=RuleCreate(category="交通运输", unit_id=ids[target_code], **cond),
        )

    responsibility.seed_defaults(session=session)  # plain 交通运输 -> D-JT
    add("D-CG", hour_from=22, hour_to=6)  # night, across midnight
    add("D-GA", place_type="transit")
    add("D-YJ", keywords=["拥堵", "事故"])
    add("D-SW", street_id=ids[XIXI])

    def who(**kw: Any) -> int | None:
        return _resolve(session, category="交通运输", **kw)[0]

    assert who(text="公交太慢", local_hour=10) == ids["D-JT"]  # only the category
    assert who(text="公交太慢", local_hour=23) == ids["D-CG"]  # hours
    assert who(text="公交太慢", local_hour=3) == ids["D-CG"]
    assert who(text="公交太慢", local_hour=23, place_type="transit") == ids["D-GA"]  # place type > hours
    assert who(text="路口拥堵", local_hour=23, place_type="transit") == ids["D-YJ"]  # keywords > place type
    unit, reason = _resolve(
        session,
        category="交通运输",
        text="路口拥堵",
        local_hour=23,
        place_type="transit",
        street_id=ids[XIXI],
    )
    assert unit == ids["D-SW"]  # area > everything
    assert "西溪街道" in reason
    # a rule with hours does not apply when the time is unknown
    assert who(text="公交太慢") == ids["D-JT"]
    # an unknown category: nobody, with a reason
    assert _resolve(session, category="不存在的类别")[0] is None


def test_other_units_lists_every_unit_of_the_category_here_then_the_place_itself(
    session: Session, admin: Actor
) -> None:
    ids = {code: _unit(session, code) for code in ("D-JT", "D-CG", "D-GA", "D-SW", XIXI, SHIHUIQIAO)}
    elsewhere = _unit(session, "330106005")
    responsibility.seed_defaults(session=session)  # plain 交通运输 -> D-JT
    for unit, cond in (
        ("D-CG", {"hour_from": 22, "hour_to": 6}),
        ("D-GA", {"keywords": ["拥堵"]}),
        ("D-SW", {"street_id": elsewhere}),  # another street's rule does not apply here
    ):
        responsibility.create_rule(
            session=session, actor=admin, rule_in=RuleCreate(category="交通运输", unit_id=ids[unit], **cond)
        )

    def units(**kw: Any) -> list[int | None]:
        found = responsibility.other_units(session=session, category="交通运输", **kw)
        return [r.unit_id for r in found]

    here = {"street_id": ids[XIXI], "community_id": ids[SHIHUIQIAO]}
    # conditions on text and hour do not narrow the list; the area does; then the street and the community
    assert units(**here) == [ids["D-JT"], ids["D-CG"], ids["D-GA"], ids[XIXI], ids[SHIHUIQIAO]]
    assert units(**here, exclude=frozenset({ids["D-JT"], ids[XIXI]})) == [
        ids["D-CG"],
        ids["D-GA"],
        ids[SHIHUIQIAO],
    ]
    assert ids["D-SW"] in units(street_id=elsewhere)
    assert units() == [ids["D-JT"], ids["D-CG"], ids["D-GA"]]  # place unknown: the departments only
    found = responsibility.other_units(session=session, category="交通运输", street_id=ids[XIXI])
    assert found[-1].reason == "属地街道/镇 西溪街道" and found[-1].rule_id is None
    assert found[0].rule_id is not None and "区交通运输局" in found[0].reason
    assert responsibility.other_units(session=session, category="不存在的类别") == []


def test_remapping_a_category_changes_resolve_without_retraining(session: Session, admin: Actor) -> None:
    responsibility.seed_defaults(session=session)
    assert _resolve(session, category="商贸旅游")[0] == _unit(session, "D-SCJG")
    rule = next(
        r for r in responsibility.list_rules(session=session, actor=admin) if r.category == "商贸旅游"
    )
    responsibility.update_rule(
        session=session, actor=admin, rule_id=rule.id, rule_in=RuleUpdate(unit_id=_unit(session, "D-SW"))
    )
    unit, reason = _resolve(session, category="商贸旅游")
    assert unit == _unit(session, "D-SW") and "区商务局" in reason
    responsibility.deactivate_rule(session=session, actor=admin, rule_id=rule.id)
    assert _resolve(session, category="商贸旅游")[0] is None


def test_every_change_writes_history_and_audit(session: Session, admin: Actor) -> None:
    created = responsibility.create_rule(
        session=session,
        actor=admin,
        rule_in=RuleCreate(category="卫生计生", keywords="疫苗，接种", unit_id=_unit(session, "D-WJ")),
    )
    assert created.keywords == ["疫苗", "接种"]
    responsibility.update_rule(
        session=session, actor=admin, rule_id=created.id, rule_in=RuleUpdate(unit_id=_unit(session, "D-YB"))
    )
    responsibility.deactivate_rule(session=session, actor=admin, rule_id=created.id)
    responsibility.update_rule(
        session=session, actor=admin, rule_id=created.id, rule_in=RuleUpdate(active=True)
    )
    rows = responsibility.history(session=session, actor=admin, rule_id=created.id)
    assert [h.action for h in reversed(rows)] == ["create", "update", "delete", "update"]
    create, update, delete, reactivate = reversed(rows)
    assert create.before is None and create.after is not None
    assert create.after["unit_id"] == _unit(session, "D-WJ")
    assert update.before is not None and update.after is not None
    assert update.before["unit_id"] == _unit(session, "D-WJ") and update.after["unit_id"] == _unit(
        session, "D-YB"
    )
    assert delete.before is not None and delete.after is not None
    assert delete.before["active"] is True and delete.after["active"] is False
    assert reactivate.after is not None and reactivate.after["active"] is True
    assert all(h.actor_label == admin.label for h in rows)
    audits = session.scalars(
        select(AuditEntry.action).where(
            AuditEntry.entity == "responsibility_rule", AuditEntry.entity_id == str(created.id)
        )
    ).all()
    assert sorted(audits) == sorted(
        ["dispatch.rule_create", "dispatch.rule_update", "dispatch.rule_delete", "dispatch.rule_update"]
    )


def test_invalid_and_duplicate_rules_are_refused(session: Session, admin: Actor) -> None:
    responsibility.seed_defaults(session=session)
    with pytest.raises(Conflict):  # same conditions as the seeded plain rule
        responsibility.create_rule(
            session=session,
            actor=admin,
            rule_in=RuleCreate(category="教育文体", unit_id=_unit(session, "D-JY")),
        )
    with pytest.raises(Invalid):
        responsibility.create_rule(
            session=session,
            actor=admin,
            rule_in=RuleCreate(category="未知类别", unit_id=_unit(session, "D-JY")),
        )
    with pytest.raises(Invalid):  # a department is not an area
        responsibility.create_rule(
            session=session,
            actor=admin,
            rule_in=RuleCreate(category="教育文体", street_id=_unit(session, "D-JY"), target="street"),
        )
    with pytest.raises(ValueError):
        RuleCreate(category="教育文体", target="unit")  # a unit is required
    with pytest.raises(ValueError):
        RuleCreate(category="教育文体", unit_id=1, hour_from=8)  # both ends of the hours


def test_only_admins_change_the_table(session: Session, actor_of: Callable[..., Actor]) -> None:
    dispatcher = actor_of("dispatcher")
    with pytest.raises(Forbidden):
        responsibility.create_rule(
            session=session,
            actor=dispatcher,
            rule_in=RuleCreate(category="教育文体", keywords="招生", unit_id=_unit(session, "D-JY")),
        )
    with pytest.raises(Forbidden):
        responsibility.deactivate_rule(session=session, actor=dispatcher, rule_id=1)
    responsibility.list_rules(session=session, actor=dispatcher)  # dispatchers may read the table


def test_http_api_admin_writes_others_get_403(
    client: TestClient, session: Session, make_user: Callable[..., Any]
) -> None:
    body = {"category": "教育文体", "keywords": ["课外培训"], "unit_id": _unit(session, "D-JY")}
    login(client, make_user("dispatcher").username)
    assert client.post("/api/dispatch/rules", json=body).status_code == 403
    assert client.get("/api/dispatch/rules").status_code == 200
    login(client, make_user("admin").username)
    resp = client.post("/api/dispatch/rules", json=body)
    assert resp.status_code == 201, resp.text
    rule_id = resp.json()["id"]
    resp = client.put(f"/api/dispatch/rules/{rule_id}", json={"unit_id": _unit(session, "D-SCJG")})
    assert resp.status_code == 200 and resp.json()["unit_name"] == "区市场监管局"
    assert client.delete(f"/api/dispatch/rules/{rule_id}").status_code == 200
    hist = client.get("/api/dispatch/rules/history", params={"rule_id": rule_id}).json()
    assert [h["action"] for h in hist] == ["delete", "update", "create"]
    # a write without the CSRF header is refused
    del client.headers["X-CSRF-Token"]
    assert client.post("/api/dispatch/rules", json=body).status_code == 403


def test_admin_page_lists_creates_edits_and_deactivates(
    client: TestClient, session: Session, make_user: Callable[..., Any]
) -> None:
    resp = client.get("/staff/dispatch/rules", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    login(client, make_user("dispatcher").username)
    assert client.get("/staff/dispatch/rules").status_code == 403
    login(client, make_user("admin").username)
    page = client.get("/staff/dispatch/rules")
    assert page.status_code == 200 and "权责清单" in page.text
    csrf = client.cookies.get("xihu_csrf")
    form = {
        "csrf_token": csrf,
        "category": "环境保护",
        "keywords": "油烟，餐馆",
        "place_type": "",
        "hour_from": "",
        "hour_to": "",
        "street_id": "",
        "target": "unit",
        "unit_id": str(_unit(session, "D-SCJG")),
    }
    resp = client.post("/staff/dispatch/rules", data=form, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    rule_id = int(resp.headers["location"].rsplit("-", 1)[1])
    page = client.get("/staff/dispatch/rules", params={"edit": rule_id})
    assert "油烟、餐馆" in page.text and f"修改第 {rule_id} 条规则" in page.text
    form["unit_id"] = str(_unit(session, "D-STHJ"))
    assert (
        client.post(f"/staff/dispatch/rules/{rule_id}", data=form, follow_redirects=False).status_code == 303
    )
    assert _resolve(session, category="环境保护", text="楼下餐馆油烟大")[0] == _unit(session, "D-STHJ")
    resp = client.post(
        f"/staff/dispatch/rules/{rule_id}/deactivate", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert resp.status_code == 303
    page = client.get("/staff/dispatch/rules")
    assert "区市场监管局 → 区生态环境分局" in page.text  # the history says what changed
    # a bad form is shown again with the error, nothing saved
    bad = dict(form, unit_id="", target="unit")
    resp = client.post("/staff/dispatch/rules", data=bad)
    assert resp.status_code == 422 and "新增规则未成功" in resp.text
    # without the CSRF token
    assert client.post("/staff/dispatch/rules", data=dict(form, csrf_token="x")).status_code == 403
