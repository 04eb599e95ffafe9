"""办理 of a dispatched appeal: sign, start, assist, extensions, supervision, completion, close, merge."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.appeals import sla
from xihu.appeals.enums import Action, DeadlineKind, State
from xihu.appeals.models import Appeal, ExtensionRequest, Supervision
from xihu.appeals.schemas import AppealRead, CompleteIn, DecideExtensionIn, ExtensionIn, MergeIn
from xihu.appeals.service._common import (
    cancel_extensions,
    notify_unit,
    pending_extension,
    transition,
    units,
)
from xihu.appeals.service.access import load, require_lead
from xihu.appeals.service.dispatching import do_sign
from xihu.appeals.service.reads import read
from xihu.appeals.transitions import next_state
from xihu.core import clock, outbox
from xihu.core.errors import Conflict, Forbidden, Invalid, NotFound
from xihu.core.security import Actor, Role, authorize, list_users_with_role


def _notify_citizen(session: Session, appeal: Appeal, text: str) -> None:
    if appeal.citizen_phone:
        outbox.enqueue(
            session=session,
            channel="sms",
            address=appeal.citizen_phone,
            subject=f"【西湖码】{text}",
            body=f"{text} 查看进度：/t/{appeal.tracking_code}",
            link=f"/t/{appeal.tracking_code}",
        )


def sign(*, session: Session, actor: Actor, appeal_id: int, message: str = "") -> AppealRead:
    """签收 by the lead unit."""
    authorize(actor, "appeal.sign")
    appeal = load(session, actor, appeal_id)
    require_lead(actor, appeal)
    next_state(State(appeal.state), Action.sign)
    do_sign(session, appeal, actor, message)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def start(*, session: Session, actor: Actor, appeal_id: int, message: str = "") -> AppealRead:
    """开始处置: the 30-minute clock is met."""
    authorize(actor, "appeal.start")
    appeal = load(session, actor, appeal_id)
    require_lead(actor, appeal)
    transition(session, appeal, Action.start, actor, message or "已开始处置", unit_id=appeal.lead_unit_id)
    sla.meet(session=session, appeal_id=appeal.id, kinds=(DeadlineKind.sign, DeadlineKind.handle))
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def assist(*, session: Session, actor: Actor, appeal_id: int, message: str) -> AppealRead:
    """协办意见 from a co-handling unit (or the lead)."""
    authorize(actor, "appeal.assist")
    appeal = load(session, actor, appeal_id)
    if actor.unit_scoped and actor.unit_id not in {u.unit_id for u in units(session, appeal.id)}:
        raise Forbidden("只有主办或协办单位可以填写协办意见", english="only handling units may add notes")
    if not message.strip():
        raise Invalid("请填写协办意见", english="message required")
    transition(session, appeal, Action.assist, actor, message, public=False)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def request_extension(*, session: Session, actor: Actor, appeal_id: int, data: ExtensionIn) -> AppealRead:
    """申请延期: a supervisor must approve before the completion clock moves."""
    authorize(actor, "appeal.request_extension")
    appeal = load(session, actor, appeal_id)
    require_lead(actor, appeal)
    if pending_extension(session, appeal.id) is not None:
        raise Conflict("已有待审批的延期申请", english="an extension request is already pending")
    transition(
        session,
        appeal,
        Action.request_extension,
        actor,
        f"申请延期 {data.hours} 小时：{data.reason}",
        reason=data.reason,
        public=False,
    )
    session.add(
        ExtensionRequest(
            appeal_id=appeal.id,
            unit_id=appeal.lead_unit_id,
            hours=data.hours,
            reason=data.reason,
            requested_by_id=actor.user_id,
        )
    )
    for user in list_users_with_role(session=session, role=Role.supervisor):
        outbox.enqueue(
            session=session,
            channel="inapp",
            user_id=user.id,
            subject=f"延期申请 {appeal.tracking_code}",
            body=data.reason,
            link=f"/staff/appeals/{appeal.id}",
        )
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def decide_extension(
    *, session: Session, actor: Actor, appeal_id: int, data: DecideExtensionIn
) -> AppealRead:
    """延期审批: approve (the completion clock moves) or reject."""
    authorize(actor, "appeal.decide_extension")
    appeal = load(session, actor, appeal_id)
    req = pending_extension(session, appeal.id)
    if req is None:
        raise Conflict("没有待审批的延期申请", english="no pending extension request")
    verdict = "同意" if data.approve else "不同意"
    transition(
        session,
        appeal,
        Action.decide_extension,
        actor,
        f"{verdict}延期 {req.hours} 小时。{data.note}".strip(),
        reason=data.note or None,
        public=False,
    )
    req.status = "approved" if data.approve else "rejected"
    req.decided_by_id = actor.user_id
    req.decided_at = clock.now()
    if data.approve:
        policy = sla.policy_for(
            session=session, category=appeal.category, priority=appeal.priority, unit_id=appeal.lead_unit_id
        )
        sla.extend(session=session, appeal_id=appeal.id, hours=req.hours, calendar=policy.calendar)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def supervise(*, session: Session, actor: Actor, appeal_id: int, reason: str) -> AppealRead:
    """督办 by a supervisor: the appeal is flagged and the lead unit notified."""
    authorize(actor, "appeal.supervise")
    appeal = load(session, actor, appeal_id)
    transition(session, appeal, Action.supervise, actor, f"督办：{reason}", reason=reason, public=False)
    appeal.flagged = True
    session.add(
        Supervision(
            appeal_id=appeal.id,
            unit_id=appeal.lead_unit_id,
            kind="manual",
            reason=reason,
            created_by_id=actor.user_id,
        )
    )
    if appeal.lead_unit_id:
        notify_unit(session, appeal.lead_unit_id, f"督办 {appeal.tracking_code}", reason, appeal)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def complete(*, session: Session, actor: Actor, appeal_id: int, data: CompleteIn) -> AppealRead:
    """办结 with a reply to the citizen: the 24-hour clock is met."""
    authorize(actor, "appeal.complete")
    appeal = load(session, actor, appeal_id)
    require_lead(actor, appeal)
    transition(
        session, appeal, Action.complete, actor, f"办结答复：{data.reply}", unit_id=appeal.lead_unit_id
    )
    appeal.reply = data.reply
    appeal.completed_at = clock.now()
    sla.meet(session=session, appeal_id=appeal.id, kinds=tuple(DeadlineKind))
    cancel_extensions(session, appeal.id)
    _notify_citizen(session, appeal, f"您的诉求 {appeal.tracking_code} 已办结，请评价")
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def close(*, session: Session, actor: Actor, appeal_id: int, reason: str = "") -> AppealRead:
    """归档 a completed or rated appeal."""
    authorize(actor, "appeal.close")
    appeal = load(session, actor, appeal_id)
    do_close(session, appeal, actor, reason)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def do_close(session: Session, appeal: Appeal, actor: Actor, reason: str) -> None:
    """Archive the appeal: its clocks and any pending extension request end."""
    transition(session, appeal, Action.close, actor, reason or "诉求已归档", reason=reason or None)
    appeal.closed_at = clock.now()
    sla.cancel_all(session=session, appeal_id=appeal.id)
    cancel_extensions(session, appeal.id)


def merge(*, session: Session, actor: Actor, appeal_id: int, data: MergeIn) -> AppealRead:
    """合并 a duplicate into another appeal; the citizen is pointed to that one."""
    authorize(actor, "appeal.merge")
    appeal = load(session, actor, appeal_id)
    target = session.scalar(
        select(Appeal).where(Appeal.tracking_code == data.into_tracking_code.strip().upper())
    )
    if target is None or target.id == appeal.id:
        raise Invalid("要合并到的诉求不存在", english="target appeal not found")
    if State(target.state) == State.merged:
        raise Conflict("不能合并到一个已被合并的诉求", english="target is itself merged")
    transition(
        session,
        appeal,
        Action.merge,
        actor,
        f"与诉求 {target.tracking_code} 内容重复，已合并办理，请关注该编号的进度",
    )
    appeal.duplicate_of_id = target.id
    sla.cancel_all(session=session, appeal_id=appeal.id)
    cancel_extensions(session, appeal.id)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def batch(*, session: Session, actor: Actor, ids: list[int], action: str) -> list[dict[str, Any]]:
    """Sign or start several appeals; each succeeds or fails on its own, with the reason."""
    results: list[dict[str, Any]] = []
    fn = sign if action == "sign" else start
    for appeal_id in dict.fromkeys(ids):
        try:
            with session.begin_nested():
                fn(session=session, actor=actor, appeal_id=appeal_id)
            results.append({"id": appeal_id, "ok": True})
        except (Conflict, Forbidden, NotFound) as exc:
            results.append({"id": appeal_id, "ok": False, "error": exc.message})
    return results
