"""Automatic routing of new appeals through the dispatch domain, at intake or deferred to workers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from xihu.appeals.enums import State
from xihu.appeals.models import Appeal
from xihu.appeals.schemas import DispatchIn
from xihu.appeals.service.dispatching import do_dispatch
from xihu.core.security import Actor
from xihu.dispatch import service as dispatch_service
from xihu.dispatch.schemas import RoutingInput
from xihu.places import service as places_service

DISPATCHER = Actor.system("智能派单系统")


def route(session: Session, appeal: Appeal) -> None:
    """Ask the router about the appeal, record its decision and dispatch when it may do so alone."""
    place_type = (
        places_service.get_place(session=session, place_id=appeal.place_id).place_type
        if appeal.place_id
        else None
    )
    suggestion = dispatch_service.route(
        session=session,
        appeal=RoutingInput(
            appeal_id=appeal.id,
            title=appeal.title,
            description=appeal.description,
            category_hint=appeal.category_hint,
            street_id=appeal.street_id,
            community_id=appeal.community_id,
            address=appeal.address,
            lat=appeal.lat,
            lon=appeal.lon,
            place_type=place_type,
        ),
    )
    dispatch_service.record_decision(session=session, appeal_id=appeal.id, suggestion=suggestion)
    if appeal.street_id is None and suggestion.street_id is not None:
        appeal.street_id, appeal.community_id = suggestion.street_id, suggestion.community_id
    best = suggestion.best
    if best is not None and suggestion.auto:
        do_dispatch(
            session,
            appeal,
            DISPATCHER,
            # the step reads the same to the citizen and to staff; the model's reasons (words, rule, place)
            # are recorded with the decision and shown to staff beside the appeal, not on the public timeline
            DispatchIn(unit_id=best.unit_id, category=best.category, message="由智能派单系统自动分派"),
        )


def score_ahead(*, session: Session, appeals: Sequence[Appeal]) -> None:
    """Score a batch's texts together before `route_queued` takes them one by one (in `batch_memo`)."""
    texts = [dispatch_service.routing_text(a.title, a.description) for a in appeals]
    dispatch_service.score_ahead(session=session, texts=texts)


def route_queued(*, session: Session, appeal_id: int) -> bool:
    """Route an appeal whose routing was deferred; False when a person already dispatched or merged it."""
    appeal = session.get(Appeal, appeal_id)
    if appeal is None or appeal.state != State.submitted.value:
        return False
    route(session, appeal)
    return True
