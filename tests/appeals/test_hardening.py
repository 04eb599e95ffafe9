"""Behaviours added after review: lapsing extensions, internal steps, reserved import ids, CSRF on intake."""

from __future__ import annotations

from sqlalchemy import func, select

import factories
from conftest import login
from xihu.appeals import service as appeal_service
from xihu.appeals.models import Appeal, ExtensionRequest
from xihu.appeals.schemas import DecideExtensionIn, ExtensionIn, TransferIn
from xihu.appeals.service import auto_title
from xihu.core.security import Actor, Role

SYSTEM = Actor.system("测试")


def test_pending_extension_lapses_when_the_appeal_is_transferred(session) -> None:
    appeal = factories.handling(session)
    appeal_service.request_extension(
        session=session,
        actor=SYSTEM,
        appeal_id=appeal.id,
        data=ExtensionIn(hours=24, reason="需要协调产权单位"),
    )
    staff_view = appeal_service.read(session=session, actor=SYSTEM, appeal_id=appeal.id)
    assert staff_view.pending_extension_hours == 24
    appeal_service.transfer(
        session=session,
        actor=SYSTEM,
        appeal_id=appeal.id,
        data=TransferIn(unit_id=factories.unit(session, "D-CG"), reason="属城管执法事项"),
    )
    statuses = session.scalars(select(ExtensionRequest.status).where(ExtensionRequest.appeal_id == appeal.id))
    assert list(statuses) == ["lapsed"]
    staff_view = appeal_service.read(session=session, actor=SYSTEM, appeal_id=appeal.id)
    assert staff_view.pending_extension_hours is None


def test_extension_decisions_and_co_handling_notes_stay_internal(session) -> None:
    appeal = factories.handling(session)
    appeal_service.assist(session=session, actor=SYSTEM, appeal_id=appeal.id, message="协办单位已到场配合")
    appeal_service.request_extension(
        session=session, actor=SYSTEM, appeal_id=appeal.id, data=ExtensionIn(hours=24, reason="需要协调")
    )
    appeal_service.decide_extension(
        session=session, actor=SYSTEM, appeal_id=appeal.id, data=DecideExtensionIn(approve=True)
    )
    public = appeal_service.track(session=session, tracking_code=appeal.tracking_code)
    actions = [s.action for s in public.timeline]
    assert not {"assist", "decide_extension", "request_extension"} & set(actions)
    staff_view = appeal_service.read(session=session, actor=SYSTEM, appeal_id=appeal.id)
    assert {"assist", "decide_extension"} <= {s.action for s in staff_view.timeline}


def test_staff_names_never_reach_the_public_page(session, make_user) -> None:
    appeal = factories.dispatched(session)
    handler = make_user(Role.handler, "D-ZJ")
    handler.display_name = "自动化科 张伟"  # a name that once fooled the label-based rule
    appeal_service.sign(session=session, actor=handler.to_actor(), appeal_id=appeal.id)
    public = appeal_service.track(session=session, tracking_code=appeal.tracking_code)
    assert public.timeline[-1].action == "sign"
    assert public.timeline[-1].actor == "工作人员"


def test_anonymous_clients_cannot_use_12345_work_order_ids(client, session) -> None:
    before = session.scalar(select(func.count()).select_from(Appeal))
    resp = client.post("/api/appeals", json={"description": "路灯不亮好几天了", "external_id": "12345-0001"})
    assert resp.status_code == 403
    assert "导入" in resp.json()["error"]["message"]
    assert session.scalar(select(func.count()).select_from(Appeal)) == before


def test_logged_in_staff_need_the_csrf_header_to_submit(client, session, make_user) -> None:
    login(client, make_user(Role.intake).username)
    token = client.headers.pop("X-CSRF-Token")
    before = session.scalar(select(func.count()).select_from(Appeal))
    assert client.post("/api/appeals", json={"description": "热线来电反映路灯不亮"}).status_code == 403
    assert session.scalar(select(func.count()).select_from(Appeal)) == before
    body = {"description": "热线来电反映路灯不亮"}
    resp = client.post("/api/appeals", json=body, headers={"X-CSRF-Token": token})
    assert resp.status_code == 201


def test_blank_reasons_are_refused(client, session, make_user) -> None:
    appeal = factories.dispatched(session)
    login(client, make_user(Role.handler, "D-ZJ").username)
    resp = client.post(f"/api/appeals/{appeal.id}/return", json={"reason": "     "})
    assert resp.status_code == 422
    assert session.get(Appeal, appeal.id).state == "dispatched"


def test_auto_title_cuts_at_punctuation_and_never_inside_a_number() -> None:
    first = "小区3号楼旁的路灯已经连续三个晚上不亮了"
    assert auto_title(first + "，晚上出门很黑。") == first
    assert auto_title("路灯坏了，晚上很黑，请尽快修") == "路灯坏了，晚上很黑"
    long_number = "请联系我我的电话是一二三四五六七八九十一二三" + "13812345678"
    assert not auto_title(long_number).endswith(("1", "13", "138"))


def test_nul_characters_are_a_clear_422_and_nothing_is_written(client, session) -> None:
    before = session.scalar(select(func.count()).select_from(Appeal))
    resp = client.post("/api/appeals", json={"description": "路灯不亮好几天了", "address": "文三路\x00"})
    assert resp.status_code == 422 and "空字符" in resp.json()["error"]["message"]
    assert session.scalar(select(func.count()).select_from(Appeal)) == before


def test_numbers_beyond_the_database_range_are_422_not_503(client, session, make_user) -> None:
    before = session.scalar(select(func.count()).select_from(Appeal))
    resp = client.post("/api/appeals", json={"description": "路灯不亮好几天了", "street_id": 99999999999})
    assert resp.status_code == 422
    login(client, make_user(Role.dispatcher).username)
    resp = client.post("/api/appeals/99999999999/dispatch", json={"unit_id": 99999999999})
    # PostgreSQL refuses the number itself (422); SQLite's 64-bit integers simply find no such appeal (404).
    assert resp.status_code in (404, 422) and resp.json()["error"]["message"]
    assert session.scalar(select(func.count()).select_from(Appeal)) == before
