"""Helpers the use cases share: timeline steps, state transitions, units, extensions, notices."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.appeals.enums import Action, State
from xihu.appeals.models import Appeal, AppealEvent, AppealUnit, ExtensionRequest, Photo
from xihu.appeals.schemas import TimelineStep
from xihu.appeals.transitions import next_state
from xihu.core import audit, clock, events, outbox
from xihu.core.errors import Invalid, NotFound
from xihu.core.privacy import mask_text
from xihu.core.security import Actor, Role, list_users_with_role
from xihu.places import service as places_service
from xihu.places.enums import UnitKind
from xihu.places.schemas import UnitRead


def event_row(
    appeal_id: int,
    action: Action,
    before: State | None,
    after: State,
    actor: Actor,
    message: str,
    *,
    unit_id: int | None = None,
    public: bool = True,
) -> dict[str, Any]:
    """The values of one timeline step (an `AppealEvent` row), stamped now."""
    return {
        "appeal_id": appeal_id,
        "at": clock.now(),
        "action": action.value,
        "from_state": before.value if before else None,
        "to_state": after.value,
        "actor_label": actor.label[:64],
        "actor_kind": actor.kind,
        "unit_id": unit_id if unit_id is not None else actor.unit_id,
        "message": message,
        "public": public,
    }


def _event(
    session: Session,
    appeal: Appeal,
    action: Action,
    before: State | None,
    after: State,
    actor: Actor,
    message: str,
    *,
    unit_id: int | None = None,
    public: bool = True,
) -> None:
    row = event_row(appeal.id, action, before, after, actor, message, unit_id=unit_id, public=public)
    session.add(AppealEvent(**row))


def transition(
    session: Session,
    appeal: Appeal,
    action: Action,
    actor: Actor,
    message: str,
    *,
    reason: str | None = None,
    public: bool = True,
    unit_id: int | None = None,
) -> State:
    """Move the appeal by an action: its new state, a timeline step, an audit entry and an event."""
    before = State(appeal.state)
    after = next_state(before, action)
    appeal.state = after.value
    appeal.updated_at = clock.now()
    _event(session, appeal, action, before, after, actor, message, public=public, unit_id=unit_id)
    audit.record(
        session=session,
        actor=actor,
        action=f"appeal.{action.value}",
        entity="appeal",
        entity_id=appeal.id,
        from_state=before.value,
        to_state=after.value,
        reason=reason,
    )
    events.publish(f"appeal.{action.value}", session=session, appeal_id=appeal.id, actor=actor)
    return after


def units(session: Session, appeal_id: int) -> list[AppealUnit]:
    """The appeal's lead and co-handling unit rows, in the order they were added."""
    return list(
        session.scalars(select(AppealUnit).where(AppealUnit.appeal_id == appeal_id).order_by(AppealUnit.id))
    )


def cancel_extensions(session: Session, appeal_id: int) -> None:
    """A pending extension belongs to the unit that asked; it lapses when the appeal moves on."""
    req = pending_extension(session, appeal_id)
    if req is not None:
        req.status = "lapsed"
        req.decided_at = clock.now()


def pending_extension(session: Session, appeal_id: int) -> ExtensionRequest | None:
    """The appeal's extension request still awaiting a decision, if any."""
    return session.scalar(
        select(ExtensionRequest).where(
            ExtensionRequest.appeal_id == appeal_id, ExtensionRequest.status == "pending"
        )
    )


def notify_unit(session: Session, unit_id: int, subject: str, body: str, appeal: Appeal) -> None:
    """An in-app notice about the appeal to each handler and grid worker of the unit."""
    for user in list_users_with_role(session=session, role=(Role.handler, Role.grid), unit_id=unit_id):
        outbox.enqueue(
            session=session,
            channel="inapp",
            user_id=user.id,
            subject=subject,
            body=body,
            link=f"/staff/appeals/{appeal.id}",
        )


def check_unit(session: Session, unit_id: int) -> UnitRead:
    """The unit an appeal may be sent to; Invalid if it does not exist or is the district itself."""
    try:
        unit = places_service.get_unit(session=session, unit_id=unit_id)
    except NotFound:
        raise Invalid("承办单位不存在", english="unknown unit") from None
    if unit.kind == UnitKind.district.value:
        raise Invalid(
            "不能派给区本级，请选择具体部门或镇街村社", english="choose a department, street or community"
        )
    return unit


def steps(session: Session, appeal_id: int, *, public_only: bool, mask: bool = False) -> list[TimelineStep]:
    """The appeal's timeline; public_only keeps public steps, hides staff names and masks messages."""
    stmt = select(AppealEvent).where(AppealEvent.appeal_id == appeal_id).order_by(AppealEvent.id)
    if public_only:
        stmt = stmt.where(AppealEvent.public.is_(True))
    rows = list(session.scalars(stmt))
    names = places_service.unit_names(session=session, unit_ids={r.unit_id for r in rows if r.unit_id})
    return [
        TimelineStep(
            at=r.at,
            action=r.action,
            action_label=Action(r.action).label,
            state_label=State(r.to_state).label,
            unit_name=names.get(r.unit_id) if r.unit_id else None,
            actor="工作人员" if public_only and r.actor_kind == "staff" else r.actor_label,
            message=mask_text(r.message) if public_only or mask else r.message,
        )
        for r in rows
    ]


def photo_ids(session: Session, appeal_id: int) -> list[int]:
    """The ids of the appeal's photos, in the order they were stored."""
    return list(session.scalars(select(Photo.id).where(Photo.appeal_id == appeal_id).order_by(Photo.id)))
