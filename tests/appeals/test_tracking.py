"""The public tracking page data: masking, public and internal steps, no staff names."""

from __future__ import annotations

from sqlalchemy.orm import Session

import factories
from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import CompleteIn, ExtensionIn, RateIn
from xihu.core.security import Actor, Role

PHONE = "13812345678"
ID_NUMBER = "330106199001011234"


def _track(client, code: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    resp = client.get(f"/api/appeals/track/{code}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_name_and_phone_are_masked(client, session: Session) -> None:
    r = factories.submitted(session)
    session.commit()
    data = _track(client, r.tracking_code)
    assert data["citizen_name"] == "张**"
    assert data["citizen_phone"] == "138****5678"
    assert "张三丰" not in str(data) and PHONE not in str(data)


def test_lower_case_code_finds_the_appeal(client, session: Session) -> None:
    r = factories.submitted(session)
    session.commit()
    assert _track(client, r.tracking_code.lower())["tracking_code"] == r.tracking_code


def test_numbers_written_in_the_text_are_masked(client, session: Session) -> None:
    text = f"楼下噪音扰民严重，请联系我{PHONE}，身份证{ID_NUMBER}，谢谢"
    r = factories.submitted(session, description=text, title=f"噪音扰民 {PHONE}")
    session.commit()
    data = _track(client, r.tracking_code)
    assert "138****5678" in data["description"]
    assert "330106********1234" in data["description"]
    assert data["title"] == "噪音扰民 138****5678"
    dumped = str(data)
    assert PHONE not in dumped and ID_NUMBER not in dumped
    assert "19900101" not in dumped, "the birth date inside the ID number is hidden"


def test_numbers_cut_by_the_default_title_do_not_leak(client, session: Session) -> None:
    """The default title is the first 30 characters; a number cut there must not survive in part."""
    for prefix in (
        "小区门口的路灯坏了好几天，晚上很黑，请尽快修理联系",
        "单元楼道里堆满杂物存在消防隐患，物业不管，身份证号",
    ):
        number = PHONE if prefix.endswith("联系") else ID_NUMBER
        assert len(prefix) < 30 < len(prefix) + len(number)
        r = factories.submitted(session, description=prefix + number + "。")
        session.commit()
        data = _track(client, r.tracking_code)
        visible = number[: 30 - len(prefix)]
        assert visible not in data["title"], data["title"]


def test_internal_steps_are_hidden_and_public_steps_shown(client, session: Session, actor_of) -> None:
    r = factories.signed(session)
    handler = actor_of(Role.handler, "D-ZJ")
    supervisor = actor_of(Role.supervisor)
    appeal_service.supervise(session=session, actor=supervisor, appeal_id=r.id, reason="内部督办意见XYZ")
    appeal_service.request_extension(
        session=session, actor=handler, appeal_id=r.id, data=ExtensionIn(hours=24, reason="内部延期理由ABC")
    )
    appeal_service.start(session=session, actor=handler, appeal_id=r.id)
    appeal_service.complete(
        session=session, actor=handler, appeal_id=r.id, data=CompleteIn(reply="路灯已修复，感谢您的反映")
    )
    session.commit()
    data = _track(client, r.tracking_code)
    actions = [s["action"] for s in data["timeline"]]
    assert actions == ["submit", "dispatch", "sign", "start", "complete"]
    dumped = str(data)
    assert "XYZ" not in dumped and "ABC" not in dumped
    staff_view = appeal_service.read(session=session, actor=supervisor, appeal_id=r.id)
    assert {"supervise", "request_extension"} <= {s.action for s in staff_view.timeline}


def test_staff_names_are_not_exposed(client, session: Session, make_user) -> None:
    r = factories.submitted(session)
    handler = make_user(Role.handler, "D-ZJ")
    handler.display_name = "王小明"
    dispatcher = make_user(Role.dispatcher)
    dispatcher.display_name = "赵派单"
    session.commit()
    from xihu.appeals.schemas import DispatchIn

    appeal_service.dispatch(
        session=session,
        actor=dispatcher.to_actor(),
        appeal_id=r.id,
        data=DispatchIn(unit_id=factories.unit(session, "D-ZJ")),
    )
    appeal_service.sign(session=session, actor=handler.to_actor(), appeal_id=r.id)
    session.commit()
    data = _track(client, r.tracking_code)
    staff_steps = [s for s in data["timeline"] if s["action"] in ("dispatch", "sign")]
    assert [s["actor"] for s in staff_steps] == ["工作人员", "工作人员"]
    assert [s["unit_name"] for s in staff_steps] == ["区住建局", "区住建局"]
    assert "王小明" not in str(data) and "赵派单" not in str(data)
    submit_step = data["timeline"][0]
    assert submit_step["action"] == "submit" and submit_step["actor"] == "群众"
    staff_view = appeal_service.read(session=session, actor=Actor.system(), appeal_id=r.id)
    assert [s.actor for s in staff_view.timeline][1:] == ["赵派单", "王小明"]


def test_reply_and_rating_are_masked_too(client, session: Session) -> None:
    r = factories.handling(session)
    appeal_service.complete(
        session=session,
        actor=factories.SYSTEM,
        appeal_id=r.id,
        data=CompleteIn(reply=f"已联系诉求人（电话{PHONE}）并上门维修"),
    )
    appeal_service.rate(
        session=session,
        tracking_code=r.tracking_code,
        data=RateIn(rating="unsatisfied", comment=f"没人联系我，我的电话是{PHONE}"),
    )
    session.commit()
    data = _track(client, r.tracking_code)
    assert PHONE not in str(data)
    assert "138****5678" in data["reply"]
    assert data["can_rate"] is False and data["can_reopen"] is True


def test_unknown_code_is_404_in_chinese(client) -> None:
    resp = client.get("/api/appeals/track/XH000000ZZZZZZ")
    assert resp.status_code == 404
    assert resp.json()["error"]["message"] == "受理编号不存在，请核对"
    assert resp.json()["error"]["code"] == "not_found"
