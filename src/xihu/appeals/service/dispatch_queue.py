"""What the dispatch queue shows beside an appeal: the router's candidates and earlier returns."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.appeals.enums import Action
from xihu.appeals.models import AppealEvent
from xihu.appeals.service.access import load
from xihu.core.security import Actor, authorize
from xihu.dispatch import service as dispatch_service
from xihu.dispatch.schemas import Suggestion
from xihu.places import service as places_service


def routing_decision(*, session: Session, actor: Actor, appeal_id: int) -> Suggestion | None:
    """The router's last recorded decision for an appeal: candidates, whether it dispatched alone, model."""
    authorize(actor, "appeal.read")
    load(session, actor, appeal_id, lock=False)
    return dispatch_service.latest_decision(session=session, appeal_id=appeal_id)


def suggestions_for(*, session: Session, actor: Actor, appeal_id: int) -> list[dict[str, Any]]:
    """The router's recorded candidates for an appeal (for the dispatch queue)."""
    decision = routing_decision(session=session, actor=actor, appeal_id=appeal_id)
    return [c.model_dump() for c in decision.candidates] if decision else []


RETURN_PREFIX = "退回派单员："  # how `return_to_dispatcher` words its timeline step


class ReturnNote(NamedTuple):
    """A unit that returned an appeal to the dispatcher, and its reason."""

    unit_id: int | None
    unit_name: str
    reason: str


def returns_of(*, session: Session, actor: Actor, appeal_ids: list[int]) -> dict[int, list[ReturnNote]]:
    """Who returned each appeal and why, oldest first: the dispatcher should not send it back blindly."""
    authorize(actor, "appeal.read")
    if not appeal_ids:
        return {}
    rows = session.execute(
        select(AppealEvent.appeal_id, AppealEvent.unit_id, AppealEvent.message)
        .where(AppealEvent.appeal_id.in_(appeal_ids), AppealEvent.action == Action.return_.value)
        .order_by(AppealEvent.appeal_id, AppealEvent.id)
    ).all()
    names = places_service.unit_names(session=session, unit_ids={u for _, u, _ in rows if u})
    out: dict[int, list[ReturnNote]] = {}
    for appeal_id, unit_id, message in rows:
        note = ReturnNote(unit_id, names.get(unit_id or 0, "承办单位"), message.removeprefix(RETURN_PREFIX))
        out.setdefault(appeal_id, []).append(note)
    return out
