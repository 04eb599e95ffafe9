"""派单: sending an appeal to its units (dispatch, transfer, return), with its clocks and notices."""

from __future__ import annotations

from sqlalchemy.orm import Session

from xihu.appeals import sla
from xihu.appeals.enums import Action, DeadlineKind, State, UnitRole
from xihu.appeals.models import Appeal, AppealUnit
from xihu.appeals.schemas import AppealRead, DispatchIn, TransferIn
from xihu.appeals.service._common import cancel_extensions, check_unit, notify_unit, transition, units
from xihu.appeals.service.access import load, require_lead
from xihu.appeals.service.dispatch_queue import RETURN_PREFIX
from xihu.appeals.service.reads import read
from xihu.appeals.transitions import next_state
from xihu.core import clock, events
from xihu.core.errors import Invalid
from xihu.core.security import Actor, authorize


def _text_of(appeal: Appeal) -> str:
    return f"{appeal.title} {appeal.description}"


def _set_units(session: Session, appeal: Appeal, lead_id: int, co_ids: list[int], *, first: bool) -> None:
    if not first:
        for row in units(session, appeal.id):
            session.delete(row)
        session.flush()
    session.add(AppealUnit(appeal_id=appeal.id, unit_id=lead_id, role=UnitRole.lead.value))
    for uid in dict.fromkeys(co_ids):
        if uid != lead_id:
            session.add(AppealUnit(appeal_id=appeal.id, unit_id=uid, role=UnitRole.co.value))
    appeal.lead_unit_id = lead_id


def do_dispatch(
    session: Session,
    appeal: Appeal,
    actor: Actor,
    data: DispatchIn,
    *,
    action: Action = Action.dispatch,
    reason: str | None = None,
) -> None:
    """Send the appeal to its lead unit and co-handlers: units, clocks, notices and the step."""
    unit = check_unit(session, data.unit_id)
    name = unit.name
    co_names = [check_unit(session, uid).name for uid in data.co_unit_ids if uid != data.unit_id]
    if data.category:
        appeal.category = data.category
    # Clocks, extension requests and unit rows exist only once an appeal has been dispatched: the first
    # dispatch (the router's, many per second) has nothing to cancel and asks nothing.
    first = appeal.dispatched_at is None
    if not first:
        sla.cancel_all(session=session, appeal_id=appeal.id)
        cancel_extensions(session, appeal.id)
    _set_units(session, appeal, data.unit_id, data.co_unit_ids, first=first)
    appeal.dispatched_at = clock.now()
    appeal.signed_at = None
    co_text = f"，协办单位：{'、'.join(co_names)}" if co_names else ""
    message = data.message or reason or ""
    transition(
        session,
        appeal,
        action,
        actor,
        f"已{action.label}至 {name}{co_text}。{message}".strip("。"),
        reason=reason,
        unit_id=data.unit_id,
    )
    policy = sla.policy_for(
        session=session, category=appeal.category, priority=appeal.priority, unit_id=data.unit_id
    )
    sla.open_clocks(session=session, appeal_id=appeal.id, unit_id=data.unit_id, policy=policy)
    notify_unit(session, data.unit_id, f"新派单 {appeal.tracking_code}", appeal.title, appeal)
    for uid in data.co_unit_ids:
        if uid != data.unit_id:
            notify_unit(session, uid, f"协办 {appeal.tracking_code}", appeal.title, appeal)
    if unit.auto_sign:
        do_sign(session, appeal, Actor.system(f"{name}（自动签收）"))


def do_sign(session: Session, appeal: Appeal, actor: Actor, message: str = "") -> None:
    """The lead unit signs for the appeal; the sign clock is met."""
    transition(session, appeal, Action.sign, actor, message or "承办单位已签收", unit_id=appeal.lead_unit_id)
    appeal.signed_at = clock.now()
    sla.meet(session=session, appeal_id=appeal.id, kinds=(DeadlineKind.sign,))


def dispatch(*, session: Session, actor: Actor, appeal_id: int, data: DispatchIn) -> AppealRead:
    """派单: send an appeal to its lead unit (and co-handlers); the SLA clocks start."""
    authorize(actor, "appeal.dispatch")
    appeal = load(session, actor, appeal_id)
    next_state(State(appeal.state), Action.dispatch)
    do_dispatch(session, appeal, actor, data)
    events.publish(
        "appeal.routed_manually",
        session=session,
        appeal_id=appeal.id,
        unit_id=data.unit_id,
        category=appeal.category,
        text=_text_of(appeal),
        automatic=actor.kind == "system",
    )
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def return_to_dispatcher(*, session: Session, actor: Actor, appeal_id: int, reason: str) -> AppealRead:
    """退回: the unit says it is not theirs; back to the dispatch queue with the reason."""
    authorize(actor, "appeal.return")
    appeal = load(session, actor, appeal_id)
    require_lead(actor, appeal)
    if not reason.strip():
        raise Invalid("请填写退回原因", english="a reason is required to return an appeal")
    unit_id = appeal.lead_unit_id
    transition(
        session, appeal, Action.return_, actor, f"{RETURN_PREFIX}{reason}", reason=reason, unit_id=unit_id
    )
    sla.cancel_all(session=session, appeal_id=appeal.id)
    cancel_extensions(session, appeal.id)
    appeal.return_count += 1
    appeal.lead_unit_id = None
    for row in units(session, appeal.id):
        session.delete(row)
    events.publish(
        "appeal.returned_with_reason",
        session=session,
        appeal_id=appeal.id,
        unit_id=unit_id,
        reason=reason,
        text=_text_of(appeal),
    )
    session.flush()
    return read(session=session, actor=Actor.system(), appeal_id=appeal.id)


def transfer(*, session: Session, actor: Actor, appeal_id: int, data: TransferIn) -> AppealRead:
    """转办 to another unit; counts as handled for the 30-minute clock of the unit that passes it on."""
    authorize(actor, "appeal.transfer")
    appeal = load(session, actor, appeal_id)
    require_lead(actor, appeal)
    if data.unit_id == appeal.lead_unit_id:
        raise Invalid("不能转办给本单位", english="cannot transfer to the same unit")
    next_state(State(appeal.state), Action.transfer)
    sla.meet(session=session, appeal_id=appeal.id, kinds=(DeadlineKind.sign, DeadlineKind.handle))
    from_unit = appeal.lead_unit_id
    do_dispatch(
        session,
        appeal,
        actor,
        DispatchIn(unit_id=data.unit_id, message=f"转办原因：{data.reason}"),
        action=Action.transfer,
        reason=data.reason,
    )
    events.publish(
        "appeal.transferred",
        session=session,
        appeal_id=appeal.id,
        from_unit_id=from_unit,
        unit_id=data.unit_id,
        reason=data.reason,
        text=_text_of(appeal),
    )
    session.flush()
    return read(session=session, actor=Actor.system(), appeal_id=appeal.id)
