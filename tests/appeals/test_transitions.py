"""The appeal lifecycle against its one transition table, plus the behaviour of each lifecycle action."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import factories
from conftest import login
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Action, DeadlineKind, State
from xihu.appeals.models import Appeal, AppealEvent, Deadline, ExtensionRequest, Supervision
from xihu.appeals.schemas import (
    CompleteIn,
    DecideExtensionIn,
    DispatchIn,
    ExtensionIn,
    MergeIn,
    RateIn,
    TransferIn,
)
from xihu.appeals.transitions import ALLOWED
from xihu.core.audit import AuditEntry
from xihu.core.errors import Conflict, Forbidden, Invalid
from xihu.core.security import Actor, Role

SYSTEM = Actor.system("测试")


# ---------------------------------------------------------------- building an appeal in each state


def _rated(session: Session) -> int:
    r = factories.completed(session)
    appeal_service.rate(session=session, tracking_code=r.tracking_code, data=RateIn(rating="unsatisfied"))
    return r.id


def _closed(session: Session) -> int:
    r = factories.completed(session)
    appeal_service.rate(session=session, tracking_code=r.tracking_code, data=RateIn(rating="satisfied"))
    return r.id


def _merged(session: Session) -> int:
    target = factories.submitted(session, description="同一盏路灯坏了，请尽快修理")
    r = factories.submitted(session)
    appeal_service.merge(
        session=session, actor=SYSTEM, appeal_id=r.id, data=MergeIn(into_tracking_code=target.tracking_code)
    )
    return r.id


BUILDERS: dict[State, Callable[[Session], int]] = {
    State.submitted: lambda s: factories.submitted(s).id,
    State.dispatched: lambda s: factories.dispatched(s).id,
    State.signed: lambda s: factories.signed(s).id,
    State.handling: lambda s: factories.handling(s).id,
    State.completed: lambda s: factories.completed(s).id,
    State.rated: _rated,
    State.closed: _closed,
    State.merged: _merged,
}

# `submit` creates an appeal; it is never applied to an existing one, so it is not part of the matrix.
ACTIONS = [a for a in Action if a is not Action.submit]


def _prepare(session: Session, appeal: Appeal, action: Action) -> dict[str, Any]:
    """Make the action's own preconditions true so that only the state decides; returns extra args."""
    if action is Action.decide_extension:
        session.add(
            ExtensionRequest(appeal_id=appeal.id, unit_id=appeal.lead_unit_id, hours=12, reason="材料待补")
        )
    if action is Action.reopen:
        appeal.rating = "unsatisfied"
        if appeal.lead_unit_id is None:
            appeal.lead_unit_id = factories.unit(session, "D-ZJ")
    if action is Action.merge:
        other = factories.submitted(session, description="另一件内容相同的诉求，路灯不亮")
        return {"into": other.tracking_code}
    session.flush()
    return {}


def _call(session: Session, appeal: Appeal, action: Action, extra: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"session": session, "actor": SYSTEM, "appeal_id": appeal.id}
    cg = factories.unit(session, "D-CG")
    match action:
        case Action.dispatch:
            appeal_service.dispatch(**kw, data=DispatchIn(unit_id=cg, category="城市管理"))
        case Action.sign:
            appeal_service.sign(**kw)
        case Action.start:
            appeal_service.start(**kw)
        case Action.return_:
            appeal_service.return_to_dispatcher(**kw, reason="不属于本单位职责")
        case Action.transfer:
            appeal_service.transfer(**kw, data=TransferIn(unit_id=cg, reason="属城管职责"))
        case Action.assist:
            appeal_service.assist(**kw, message="已配合现场勘查")
        case Action.request_extension:
            appeal_service.request_extension(**kw, data=ExtensionIn(hours=24, reason="需要采购配件"))
        case Action.decide_extension:
            appeal_service.decide_extension(**kw, data=DecideExtensionIn(approve=True))
        case Action.supervise:
            appeal_service.supervise(**kw, reason="群众多次反映")
        case Action.complete:
            appeal_service.complete(**kw, data=CompleteIn(reply="已处理完毕，感谢反映"))
        case Action.rate:
            appeal_service.rate(
                session=session, tracking_code=appeal.tracking_code, data=RateIn(rating="unsatisfied")
            )
        case Action.reopen:
            appeal_service.reopen(session=session, tracking_code=appeal.tracking_code, reason="问题没有解决")
        case Action.close:
            appeal_service.close(**kw, reason="归档")
        case Action.merge:
            appeal_service.merge(**kw, data=MergeIn(into_tracking_code=extra["into"]))
        case _:  # pragma: no cover - a new action needs a line here
            raise AssertionError(f"no call for {action}")


def _snapshot(session: Session, appeal_id: int) -> tuple[str, int, int]:
    session.expire_all()
    state = session.scalar(select(Appeal.state).where(Appeal.id == appeal_id))
    events_n = session.scalar(select(func.count()).where(AppealEvent.appeal_id == appeal_id))
    audit_n = session.scalar(
        select(func.count()).where(AuditEntry.entity == "appeal", AuditEntry.entity_id == str(appeal_id))
    )
    assert state is not None
    return state, events_n or 0, audit_n or 0


def test_matrix_covers_every_state_in_the_table() -> None:
    assert {s for (s, _a) in ALLOWED} <= set(BUILDERS)
    assert {a for (_s, a) in ALLOWED} <= set(ACTIONS)


@pytest.mark.parametrize(("state", "action"), list(itertools.product(BUILDERS, ACTIONS)), ids=str)
def test_transition_table(session: Session, state: State, action: Action) -> None:
    appeal_id = BUILDERS[state](session)
    appeal = session.get(Appeal, appeal_id)
    assert appeal is not None and appeal.state == state.value
    extra = _prepare(session, appeal, action)
    before = _snapshot(session, appeal_id)
    last_audit = session.scalar(select(func.max(AuditEntry.id))) or 0
    if (state, action) in ALLOWED:
        _call(session, appeal, action, extra)
        session.flush()
        after = _snapshot(session, appeal_id)
        assert after[0] == ALLOWED[(state, action)].value
        assert after[1] > before[1], "a transition adds a timeline step"
        rows = list(
            session.scalars(
                select(AuditEntry).where(
                    AuditEntry.id > last_audit,
                    AuditEntry.entity_id == str(appeal_id),
                    AuditEntry.action == f"appeal.{action.value}",
                )
            )
        )
        assert [(r.from_state, r.to_state) for r in rows] == [(state.value, ALLOWED[(state, action)].value)]
    else:
        with pytest.raises(Conflict) as info:
            _call(session, appeal, action, extra)
        assert info.value.status_code == 409
        assert info.value.detail == {"state": state.value, "action": action.value}
        assert "不能执行" in info.value.message
        session.flush()
        assert _snapshot(session, appeal_id) == before


# ---------------------------------------------------------------- through HTTP


def test_refused_actions_answer_409_in_chinese(client, session, make_user, unit_id) -> None:
    handling = factories.handling(session)
    completed = factories.completed(session)
    session.commit()
    login(client, make_user(Role.dispatcher).username)
    r = client.post(f"/api/appeals/{handling.id}/dispatch", json={"unit_id": unit_id("D-CG")})
    assert r.status_code == 409, r.text
    assert "不能执行" in r.json()["error"]["message"] and "派单" in r.json()["error"]["message"]
    r = client.post(f"/api/appeals/{handling.id}/merge", json={"into_tracking_code": completed.tracking_code})
    assert r.status_code == 409, r.text
    login(client, make_user(Role.handler, "D-ZJ").username)
    r = client.post(f"/api/appeals/{completed.id}/start", json={})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"
    assert "已办结待评价" in r.json()["error"]["message"]
    r = client.post(f"/api/appeals/track/{handling.tracking_code}/rate", json={"rating": "satisfied"})
    assert r.status_code == 409 and "评价" in r.json()["error"]["message"]
    session.expire_all()
    assert session.get(Appeal, handling.id).state == "handling"
    assert session.get(Appeal, completed.id).state == "completed"


# ---------------------------------------------------------------- specific behaviours


def _state(session: Session, appeal_id: int) -> Appeal:
    session.expire_all()
    appeal = session.get(Appeal, appeal_id)
    assert appeal is not None
    return appeal


def _open_clocks(session: Session, appeal_id: int) -> list[Deadline]:
    return list(
        session.scalars(select(Deadline).where(Deadline.appeal_id == appeal_id, Deadline.open.is_(True)))
    )


def test_return_needs_a_reason_and_goes_back_to_the_queue(client, session, make_user) -> None:
    r = factories.signed(session)
    session.commit()
    login(client, make_user(Role.handler, "D-ZJ").username)
    for bad in ({}, {"reason": ""}, {"reason": "   "}):
        resp = client.post(f"/api/appeals/{r.id}/return", json=bad)
        assert resp.status_code == 422, (bad, resp.text)
        assert "原因" in resp.json()["error"]["message"]
    assert _state(session, r.id).state == "signed"
    resp = client.post(f"/api/appeals/{r.id}/return", json={"reason": "不属于住建职责，应由城管处理"})
    assert resp.status_code == 200, resp.text
    appeal = _state(session, r.id)
    assert appeal.state == "submitted"
    assert appeal.return_count == 1
    assert appeal.lead_unit_id is None
    assert _open_clocks(session, r.id) == []
    audit_row = session.scalars(
        select(AuditEntry).where(AuditEntry.entity_id == str(r.id), AuditEntry.action == "appeal.return")
    ).one()
    assert audit_row.reason == "不属于住建职责，应由城管处理"
    # the returning unit no longer sees it
    assert client.get(f"/api/appeals/{r.id}").status_code == 404


def test_return_service_refuses_a_blank_reason(session) -> None:
    r = factories.dispatched(session)
    with pytest.raises(Invalid):
        appeal_service.return_to_dispatcher(session=session, actor=SYSTEM, appeal_id=r.id, reason="  ")
    assert _state(session, r.id).state == "dispatched"


def test_transfer_moves_to_the_new_unit_with_new_clocks(session, unit_id) -> None:
    r = factories.handling(session)
    old = {d.id for d in _open_clocks(session, r.id)}
    assert old, "the completion clock runs while handling"
    out = appeal_service.transfer(
        session=session,
        actor=SYSTEM,
        appeal_id=r.id,
        data=TransferIn(unit_id=unit_id("D-CG"), reason="属于城管职责"),
    )
    assert out.state == "dispatched"
    appeal = _state(session, r.id)
    assert appeal.lead_unit_id == unit_id("D-CG")
    clocks = _open_clocks(session, r.id)
    assert {d.kind for d in clocks} == {k.value for k in DeadlineKind}
    assert {d.unit_id for d in clocks} == {unit_id("D-CG")}
    assert not old & {d.id for d in clocks}
    with pytest.raises(Invalid):
        appeal_service.transfer(
            session=session,
            actor=SYSTEM,
            appeal_id=r.id,
            data=TransferIn(unit_id=unit_id("D-CG"), reason="同单位"),
        )


def test_co_handling_units_see_and_assist_but_do_not_complete(session, actor_of, unit_id) -> None:
    r = factories.submitted(session)
    appeal_service.dispatch(
        session=session,
        actor=SYSTEM,
        appeal_id=r.id,
        data=DispatchIn(unit_id=unit_id("D-ZJ"), co_unit_ids=[unit_id("D-CG")]),
    )
    lead = actor_of(Role.handler, "D-ZJ")
    co = actor_of(Role.handler, "D-CG")
    stranger = actor_of(Role.handler, "D-JT")
    appeal_service.sign(session=session, actor=lead, appeal_id=r.id)
    appeal_service.start(session=session, actor=lead, appeal_id=r.id)
    seen = appeal_service.read(session=session, actor=co, appeal_id=r.id)
    assert seen.co_units == ["区城管局"]
    assert r.id in {a.id for a in appeal_service.search(session=session, actor=co).items}
    out = appeal_service.assist(session=session, actor=co, appeal_id=r.id, message="城管已配合清理占道")
    assert out.state == "handling"
    assert out.timeline[-1].action == "assist"
    for fn, kw in (
        (appeal_service.complete, {"data": CompleteIn(reply="协办单位擅自办结")}),
        (appeal_service.sign, {}),
        (appeal_service.request_extension, {"data": ExtensionIn(hours=8, reason="协办申请")}),
    ):
        with pytest.raises(Forbidden):
            fn(session=session, actor=co, appeal_id=r.id, **kw)
    assert _state(session, r.id).state == "handling"
    from xihu.core.errors import NotFound

    with pytest.raises(NotFound):
        appeal_service.assist(session=session, actor=stranger, appeal_id=r.id, message="不相干单位")
    done = appeal_service.complete(
        session=session, actor=lead, appeal_id=r.id, data=CompleteIn(reply="主办单位已修复路灯")
    )
    assert done.state == "completed"


def _complete_due(session: Session, appeal_id: int):  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalars(
        select(Deadline.due_at).where(
            Deadline.appeal_id == appeal_id, Deadline.open.is_(True), Deadline.kind == "complete"
        )
    ).one()


@pytest.mark.parametrize("approve", [True, False])
def test_extension_approval_moves_the_completion_deadline(session, actor_of, approve) -> None:
    r = factories.handling(session)
    handler = actor_of(Role.handler, "D-ZJ")
    supervisor = actor_of(Role.supervisor)
    due = _complete_due(session, r.id)
    appeal_service.request_extension(
        session=session, actor=handler, appeal_id=r.id, data=ExtensionIn(hours=48, reason="需要协调管线单位")
    )
    assert _complete_due(session, r.id) == due, "a request alone does not move the clock"
    with pytest.raises(Conflict):
        appeal_service.request_extension(
            session=session, actor=handler, appeal_id=r.id, data=ExtensionIn(hours=8, reason="再申请一次")
        )
    assert session.scalar(select(func.count()).where(ExtensionRequest.appeal_id == r.id)) == 1
    out = appeal_service.decide_extension(
        session=session, actor=supervisor, appeal_id=r.id, data=DecideExtensionIn(approve=approve)
    )
    assert out.state == "handling"
    expected = due + timedelta(hours=48) if approve else due
    assert _complete_due(session, r.id) == expected
    req = session.scalars(select(ExtensionRequest).where(ExtensionRequest.appeal_id == r.id)).one()
    assert req.status == ("approved" if approve else "rejected")
    assert req.decided_by_id == supervisor.user_id
    with pytest.raises(Conflict):
        appeal_service.decide_extension(
            session=session, actor=supervisor, appeal_id=r.id, data=DecideExtensionIn(approve=True)
        )
    assert _complete_due(session, r.id) == expected


def test_second_pending_extension_over_http_is_409(client, session, make_user) -> None:
    r = factories.signed(session)
    session.commit()
    login(client, make_user(Role.handler, "D-ZJ").username)
    first = client.post(f"/api/appeals/{r.id}/extension", json={"hours": 24, "reason": "等待配件"})
    assert first.status_code == 200, first.text
    second = client.post(f"/api/appeals/{r.id}/extension", json={"hours": 12, "reason": "再等等"})
    assert second.status_code == 409
    assert "待审批" in second.json()["error"]["message"]


def test_supervise_flags_and_records_a_supervision(session, actor_of, unit_id) -> None:
    r = factories.signed(session)
    supervisor = actor_of(Role.supervisor)
    assert not _state(session, r.id).flagged
    out = appeal_service.supervise(session=session, actor=supervisor, appeal_id=r.id, reason="超时未处置")
    assert out.flagged and out.state == "signed"
    rows = list(session.scalars(select(Supervision).where(Supervision.appeal_id == r.id)))
    assert [(s.kind, s.reason, s.unit_id, s.created_by_id) for s in rows] == [
        ("manual", "超时未处置", unit_id("D-ZJ"), supervisor.user_id)
    ]


def test_rating_reopen_once(session, unit_id) -> None:
    ok = factories.completed(session)
    assert (
        appeal_service.rate(
            session=session, tracking_code=ok.tracking_code, data=RateIn(rating="satisfied")
        ).state
        == "closed"
    )
    assert _state(session, ok.id).closed_at is not None

    r = factories.completed(session)
    rated = appeal_service.rate(
        session=session, tracking_code=r.tracking_code, data=RateIn(rating="unsatisfied")
    )
    assert rated.state == "rated" and rated.can_reopen
    again = appeal_service.reopen(session=session, tracking_code=r.tracking_code, reason="路灯还是不亮")
    assert again.state == "dispatched" and not again.can_reopen
    appeal = _state(session, r.id)
    assert appeal.lead_unit_id == unit_id("D-ZJ")
    assert appeal.reopen_count == 1
    assert {d.kind for d in _open_clocks(session, r.id)} == {k.value for k in DeadlineKind}
    # handled again, rated unsatisfied again: no second reopen
    appeal_service.sign(session=session, actor=SYSTEM, appeal_id=r.id)
    appeal_service.start(session=session, actor=SYSTEM, appeal_id=r.id)
    appeal_service.complete(
        session=session, actor=SYSTEM, appeal_id=r.id, data=CompleteIn(reply="再次维修完毕")
    )
    second = appeal_service.rate(
        session=session, tracking_code=r.tracking_code, data=RateIn(rating="unsatisfied")
    )
    assert second.state == "rated" and not second.can_reopen
    with pytest.raises(Conflict) as info:
        appeal_service.reopen(session=session, tracking_code=r.tracking_code, reason="还是没修好")
    assert "一次" in info.value.message
    assert _state(session, r.id).state == "rated"


def test_second_reopen_over_http_is_409(client, session) -> None:
    r = factories.completed(session)
    session.commit()
    code = r.tracking_code
    assert client.post(f"/api/appeals/track/{code}/rate", json={"rating": "unsatisfied"}).status_code == 200
    first = client.post(f"/api/appeals/track/{code}/reopen", json={"reason": "没有解决"})
    assert first.status_code == 200 and first.json()["state"] == "dispatched"
    second = client.post(f"/api/appeals/track/{code}/reopen", json={"reason": "还是没有解决"})
    assert second.status_code == 409
    assert second.json()["error"]["message"]
    assert _state(session, r.id).reopen_count == 1


def test_merge_by_tracking_code(session) -> None:
    target = factories.dispatched(session, description="文三路路灯不亮已经一周")
    dup = factories.submitted(session)
    out = appeal_service.merge(
        session=session,
        actor=SYSTEM,
        appeal_id=dup.id,
        data=MergeIn(into_tracking_code=target.tracking_code.lower()),
    )
    assert out.state == "merged"
    assert out.duplicate_of == target.tracking_code
    assert _state(session, dup.id).duplicate_of_id == target.id
    other = factories.submitted(session)
    with pytest.raises(Conflict):
        appeal_service.merge(
            session=session,
            actor=SYSTEM,
            appeal_id=other.id,
            data=MergeIn(into_tracking_code=dup.tracking_code),
        )
    with pytest.raises(Invalid):
        appeal_service.merge(
            session=session,
            actor=SYSTEM,
            appeal_id=other.id,
            data=MergeIn(into_tracking_code=other.tracking_code),
        )
    assert _state(session, other.id).state == "submitted"


def test_every_state_change_is_audited_with_from_and_to(session) -> None:
    r = factories.completed(session)
    appeal_service.rate(session=session, tracking_code=r.tracking_code, data=RateIn(rating="basic"))
    events = list(
        session.scalars(select(AppealEvent).where(AppealEvent.appeal_id == r.id).order_by(AppealEvent.id))
    )
    audits = list(
        session.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.entity == "appeal",
                AuditEntry.entity_id == str(r.id),
                AuditEntry.to_state.is_not(None),
            )
            .order_by(AuditEntry.id)
        )
    )
    assert [(e.from_state, e.to_state) for e in events] == [(a.from_state, a.to_state) for a in audits]
    assert [a.to_state for a in audits] == [
        "submitted",
        "dispatched",
        "signed",
        "handling",
        "completed",
        "rated",
        "closed",
    ]
    assert [a.action for a in audits][-2:] == ["appeal.rate", "appeal.close"]
