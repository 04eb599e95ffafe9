"""Every permission boundary of the appeals API, through HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import factories
from conftest import PASSWORD, login
from xihu.appeals.models import Appeal, AppealEvent, ExtensionRequest
from xihu.core import clock
from xihu.core.audit import AuditEntry
from xihu.core.security import PERMISSIONS, UNIT_SCOPED, Role

STREET = "330106004"  # 西溪街道: where factory appeals are located
OTHER_STREET = "330106005"  # 翠苑街道


@dataclass(frozen=True)
class Op:
    """One staff action: its route, the permission it needs, the state it is valid in, a valid body."""

    name: str
    path: str
    permission: str
    factory: str
    body: Callable[[Session, int], dict[str, Any]]
    to_state: str


def _unit(session: Session, code: str) -> int:
    return factories.unit(session, code)


OPS = [
    Op(
        "dispatch",
        "dispatch",
        "appeal.dispatch",
        "submitted",
        lambda s, a: {"unit_id": _unit(s, "D-CG")},
        "dispatched",
    ),
    Op("sign", "sign", "appeal.sign", "dispatched", lambda s, a: {}, "signed"),
    Op("start", "start", "appeal.start", "signed", lambda s, a: {}, "handling"),
    Op(
        "return",
        "return",
        "appeal.return",
        "signed",
        lambda s, a: {"reason": "不属于本单位职责"},
        "submitted",
    ),
    Op(
        "transfer",
        "transfer",
        "appeal.transfer",
        "handling",
        lambda s, a: {"unit_id": _unit(s, "D-CG"), "reason": "属于城管职责"},
        "dispatched",
    ),
    Op("assist", "assist", "appeal.assist", "handling", lambda s, a: {"message": "已现场查看"}, "handling"),
    Op(
        "request_extension",
        "extension",
        "appeal.request_extension",
        "handling",
        lambda s, a: {"hours": 24, "reason": "等待配件"},
        "handling",
    ),
    Op(
        "decide_extension",
        "extension/decide",
        "appeal.decide_extension",
        "handling",
        lambda s, a: {"approve": True},
        "handling",
    ),
    Op(
        "supervise",
        "supervise",
        "appeal.supervise",
        "handling",
        lambda s, a: {"reason": "群众多次反映"},
        "handling",
    ),
    Op(
        "complete",
        "complete",
        "appeal.complete",
        "handling",
        lambda s, a: {"reply": "已修复，感谢反映"},
        "completed",
    ),
    Op("close", "close", "appeal.close", "completed", lambda s, a: {"message": "归档"}, "closed"),
    Op(
        "merge",
        "merge",
        "appeal.merge",
        "submitted",
        lambda s, a: {
            "into_tracking_code": factories.submitted(s, description="同一件事的另一条诉求").tracking_code
        },
        "merged",
    ),
]
OPS_BY_NAME = {op.name: op for op in OPS}

# The unit each role sits in for the matrix: unit-scoped roles sit in the lead unit of the appeal.
ROLE_UNIT = {
    Role.intake: "330106",
    Role.dispatcher: "330106",
    Role.handler: "D-ZJ",
    Role.grid: STREET,
    Role.supervisor: "330106",
    Role.admin: "330106",
    Role.leader: "330106",  # 区/街道领导 (the cockpit's role): no appeal actions
}


def _appeal_for(session: Session, op: Op, lead_code: str = "D-ZJ") -> tuple[int, dict[str, Any]]:
    """An appeal in the state where `op` is valid, led by `lead_code`, and a valid body for it."""
    make = getattr(factories, op.factory)
    result = make(session) if op.factory == "submitted" else make(session, lead_code)
    if op.name == "decide_extension":
        session.add(
            ExtensionRequest(appeal_id=result.id, unit_id=_unit(session, lead_code), hours=12, reason="待补")
        )
    body = op.body(session, result.id)
    session.commit()
    return result.id, body


def _fingerprint(session: Session, appeal_id: int) -> tuple[Any, ...]:
    session.expire_all()
    a = session.get(Appeal, appeal_id)
    assert a is not None
    events = session.scalar(select(func.count()).where(AppealEvent.appeal_id == appeal_id))
    return a.state, a.lead_unit_id, a.flagged, a.return_count, a.duplicate_of_id, events


def _post(client: TestClient, appeal_id: int, op: Op, body: dict[str, Any]):  # type: ignore[no-untyped-def]
    return client.post(f"/api/appeals/{appeal_id}/{op.path}", json=body)


# ---------------------------------------------------------------- anonymous


def test_anonymous_gets_401_on_staff_routes(client, session) -> None:
    r = factories.handling(session)
    session.commit()
    for resp in (client.get("/api/appeals"), client.get(f"/api/appeals/{r.id}")):
        assert resp.status_code == 401
        assert resp.json()["error"]["message"] == "请先登录"
    before = _fingerprint(session, r.id)
    for op in OPS:
        appeal_id, body = _appeal_for(session, op)
        resp = _post(client, appeal_id, op, body)
        assert resp.status_code == 401, (op.name, resp.text)
        assert resp.json()["error"]["code"] == "unauthenticated"
    assert _fingerprint(session, r.id) == before


# ---------------------------------------------------------------- role matrix


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_role_can_do_exactly_what_permissions_allow(client, session, make_user, role: Role, op: Op) -> None:
    unit_code = ROLE_UNIT[role]
    lead = unit_code if role in UNIT_SCOPED else "D-ZJ"
    appeal_id, body = _appeal_for(session, op, lead)
    login(client, make_user(role, unit_code).username)
    before = _fingerprint(session, appeal_id)
    resp = _post(client, appeal_id, op, body)
    if op.permission in PERMISSIONS[role]:
        assert resp.status_code == 200, (role, op.name, resp.text)
        assert resp.json()["state"] == op.to_state
    else:
        assert resp.status_code == 403, (role, op.name, resp.text)
        assert resp.json()["error"]["message"] == "您的角色无权执行此操作"
        assert _fingerprint(session, appeal_id) == before


def test_examples_named_in_the_rules(client, session, make_user, unit_id) -> None:
    """Spot checks written out by hand, in case the table above and PERMISSIONS drift together."""
    sub = factories.submitted(session).id
    handling = factories.handling(session).id
    dispatched = factories.dispatched(session).id
    session.commit()
    login(client, make_user(Role.handler, "D-ZJ").username)
    assert client.post(f"/api/appeals/{sub}/dispatch", json={"unit_id": unit_id("D-CG")}).status_code == 403
    login(client, make_user(Role.supervisor).username)
    assert client.post(f"/api/appeals/{handling}/complete", json={"reply": "督办员办结"}).status_code == 403
    login(client, make_user(Role.intake).username)
    assert client.post(f"/api/appeals/{dispatched}/sign", json={}).status_code == 403
    session.expire_all()
    assert [session.get(Appeal, i).state for i in (sub, handling, dispatched)] == [
        "submitted",
        "handling",
        "dispatched",
    ]


# ---------------------------------------------------------------- unit scoping


@pytest.mark.parametrize("role", [Role.handler, Role.grid], ids=str)
def test_other_units_appeal_is_not_found_and_unchanged(client, session, make_user, role: Role) -> None:
    # D-CG is another department; 330106005 is another street: neither is involved in the appeals below.
    other_unit = "D-CG" if role is Role.handler else OTHER_STREET
    login(client, make_user(role, other_unit).username)
    handling = factories.handling(session).id
    session.commit()
    resp = client.get(f"/api/appeals/{handling}")
    assert resp.status_code == 404
    missing = client.get("/api/appeals/99999999")
    assert resp.json()["error"] == missing.json()["error"], "no difference between hidden and missing"
    for op in OPS:
        appeal_id, body = _appeal_for(session, op)
        before = _fingerprint(session, appeal_id)
        resp = _post(client, appeal_id, op, body)
        expected = 404 if op.permission in PERMISSIONS[role] else 403
        assert resp.status_code == expected, (op.name, resp.text)
        assert _post(client, 99999999, op, body).status_code == expected
        assert _fingerprint(session, appeal_id) == before, op.name


def test_grid_worker_sees_its_street_only(client, session, make_user) -> None:
    here = factories.dispatched(session).id  # located in 西溪街道, led by 区住建局
    there = factories.dispatched(session, street_id=_unit(session, OTHER_STREET)).id
    session.commit()
    login(client, make_user(Role.grid, STREET).username)
    assert client.get(f"/api/appeals/{here}").status_code == 200
    assert client.get(f"/api/appeals/{there}").status_code == 404
    listed = client.get("/api/appeals").json()
    assert {a["id"] for a in listed["items"]} == {here}
    # seeing is not leading: the grid worker may not sign for 区住建局
    assert client.post(f"/api/appeals/{here}/sign", json={}).status_code == 403
    assert _fingerprint(session, here)[0] == "dispatched"


def test_handler_list_shows_only_its_units_appeals(client, session, make_user, unit_id) -> None:
    mine = [factories.dispatched(session).id, factories.handling(session).id]
    factories.dispatched(session, "D-CG")
    factories.submitted(session)
    co = factories.submitted(session)
    from xihu.appeals import service as appeal_service
    from xihu.appeals.schemas import DispatchIn

    appeal_service.dispatch(
        session=session,
        actor=factories.SYSTEM,
        appeal_id=co.id,
        data=DispatchIn(unit_id=unit_id("D-CG"), co_unit_ids=[unit_id("D-ZJ")]),
    )
    session.commit()
    login(client, make_user(Role.handler, "D-ZJ").username)
    page = client.get("/api/appeals").json()
    assert sorted(a["id"] for a in page["items"]) == sorted([*mine, co.id])
    assert page["total"] == 3
    assert client.get("/api/appeals", params={"street_id": unit_id(STREET)}).json()["total"] == 3
    login(client, make_user(Role.dispatcher).username)
    assert client.get("/api/appeals").json()["total"] == 5


# ---------------------------------------------------------------- personal data


def _view_personal_rows(session: Session, appeal_id: int) -> int:
    session.expire_all()
    return (
        session.scalar(
            select(func.count()).where(
                AuditEntry.action == "appeal.view_personal", AuditEntry.entity_id == str(appeal_id)
            )
        )
        or 0
    )


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_personal_data_masked_unless_permitted_and_views_audited(client, session, make_user, role) -> None:
    r = factories.dispatched(session, ROLE_UNIT[role] if role in UNIT_SCOPED else "D-ZJ")
    session.commit()
    user = make_user(role, ROLE_UNIT[role])
    login(client, user.username)
    before = _view_personal_rows(session, r.id)
    data = client.get(f"/api/appeals/{r.id}").json()
    if "appeal.read_personal" in PERMISSIONS[role]:
        assert (data["citizen_name"], data["citizen_phone"]) == ("张三丰", "13812345678")
        assert data["personal_unmasked"] is True
        assert _view_personal_rows(session, r.id) == before + 1
        row = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "appeal.view_personal", AuditEntry.entity_id == str(r.id))
            .order_by(AuditEntry.id.desc())
        ).first()
        assert row is not None and row.actor_id == user.id
    else:
        assert (data["citizen_name"], data["citizen_phone"]) == ("张**", "138****5678")
        assert data["personal_unmasked"] is False
        assert _view_personal_rows(session, r.id) == before
    # list views are never unmasked (and so never need auditing)
    items = client.get("/api/appeals").json()["items"]
    assert [(i["citizen_name"], i["citizen_phone"]) for i in items if i["id"] == r.id] == [
        ("张**", "138****5678")
    ]
    # supervisors and leaders (the cockpit's role) read appeals masked; every other role may unmask
    assert role in (Role.supervisor, Role.leader) or "appeal.read_personal" in PERMISSIONS[role]


# ---------------------------------------------------------------- CSRF


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_cookie_writes_without_csrf_header_are_refused(client, session, make_user, op: Op) -> None:
    login(client, make_user(Role.admin).username)
    appeal_id, body = _appeal_for(session, op)
    before = _fingerprint(session, appeal_id)
    good = client.headers.pop("X-CSRF-Token")
    resp = _post(client, appeal_id, op, body)
    assert resp.status_code == 403, resp.text
    assert "刷新页面" in resp.json()["error"]["message"]
    client.headers["X-CSRF-Token"] = good + "x"
    assert _post(client, appeal_id, op, body).status_code == 403
    assert _fingerprint(session, appeal_id) == before


def test_csrf_header_lets_the_same_write_through(client, session, make_user, unit_id) -> None:
    login(client, make_user(Role.dispatcher).username)
    r = factories.submitted(session)
    session.commit()
    resp = client.post(f"/api/appeals/{r.id}/dispatch", json={"unit_id": unit_id("D-CG")})
    assert resp.status_code == 200 and resp.json()["state"] == "dispatched"


# ---------------------------------------------------------------- login


def _try(client: TestClient, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post("/api/auth/login", json={"username": username, "password": password})


def test_five_wrong_passwords_lock_the_account(client, make_user) -> None:
    user = make_user(Role.handler, "D-ZJ")
    for _ in range(5):
        resp = _try(client, user.username, "wrong-password")
        assert resp.status_code == 401
        assert resp.json()["error"]["message"] == "用户名或密码错误"
    locked = _try(client, user.username, PASSWORD)
    assert locked.status_code == 403, locked.text
    assert "失败次数过多" in locked.json()["error"]["message"]
    assert "xihu_session" not in locked.cookies
    assert client.get("/api/me").status_code == 401
    clock.advance(timedelta(minutes=16))
    assert _try(client, user.username, PASSWORD).status_code == 200


def test_four_wrong_passwords_do_not_lock(client, make_user) -> None:
    user = make_user(Role.handler, "D-ZJ")
    for _ in range(4):
        assert _try(client, user.username, "wrong-password").status_code == 401
    assert _try(client, user.username, PASSWORD).status_code == 200


def test_login_replaces_the_previous_session(client, make_user, app) -> None:
    first = make_user(Role.dispatcher)
    second = make_user(Role.handler, "D-ZJ")
    login(client, first.username)
    old = client.cookies.get("xihu_session")
    assert old and client.get("/api/me").json()["username"] == first.username
    login(client, second.username)
    new = client.cookies.get("xihu_session")
    assert new and new != old
    assert client.get("/api/me").json()["username"] == second.username
    with TestClient(app) as attacker:
        attacker.cookies.set("xihu_session", old)
        assert attacker.get("/api/me").status_code == 401
        attacker.cookies.set("xihu_session", new)
        assert attacker.get("/api/me").status_code == 200
