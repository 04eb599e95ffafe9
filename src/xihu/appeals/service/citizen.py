"""The citizen's side, by tracking code: the public tracking view, rating and reopening."""

from __future__ import annotations

from sqlalchemy.orm import Session

from xihu.appeals.enums import Action, Channel, Rating, State
from xihu.appeals.schemas import DispatchIn, PublicAppeal, RateIn
from xihu.appeals.service._common import photo_ids, steps, transition
from xihu.appeals.service.access import by_code
from xihu.appeals.service.dispatching import do_dispatch
from xihu.appeals.service.handling import do_close
from xihu.appeals.transitions import next_state
from xihu.core.errors import Conflict
from xihu.core.privacy import mask_name, mask_phone, mask_text
from xihu.core.security import Actor
from xihu.places import service as places_service


def rate(*, session: Session, tracking_code: str, data: RateIn) -> PublicAppeal:
    """评价 by the citizen; a satisfied or basically satisfied rating closes the appeal."""
    appeal = by_code(session, tracking_code, lock=True)
    citizen = Actor.citizen()
    transition(
        session,
        appeal,
        Action.rate,
        citizen,
        f"群众评价：{data.rating.label}" + (f"。{data.comment}" if data.comment else ""),
    )
    appeal.rating = data.rating.value
    appeal.rating_comment = data.comment or None
    if data.rating != Rating.unsatisfied:
        do_close(session, appeal, Actor.system(), "群众评价后自动归档")
    session.flush()
    return track(session=session, tracking_code=appeal.tracking_code)


def reopen(*, session: Session, tracking_code: str, reason: str) -> PublicAppeal:
    """重办 after an unsatisfied rating, once; the appeal goes back to the same unit."""
    appeal = by_code(session, tracking_code, lock=True)
    if appeal.rating != Rating.unsatisfied.value:
        raise Conflict(
            "只有评价为「不满意」的诉求可以申请重办", english="only unsatisfied appeals may be reopened"
        )
    if appeal.reopen_count >= 1:
        raise Conflict("每件诉求只能申请一次重办", english="an appeal may be reopened once")
    if appeal.lead_unit_id is None:
        raise Conflict("诉求没有承办单位，无法重办", english="no unit to reopen to")
    next_state(State(appeal.state), Action.reopen)
    appeal.reopen_count += 1
    appeal.flagged = True
    do_dispatch(
        session,
        appeal,
        Actor.citizen(),
        DispatchIn(unit_id=appeal.lead_unit_id, message=f"群众申请重办：{reason}"),
        action=Action.reopen,
        reason=reason,
    )
    session.flush()
    return track(session=session, tracking_code=appeal.tracking_code)


def track(*, session: Session, tracking_code: str) -> PublicAppeal:
    """The public tracking view: every public step, personal data masked."""
    appeal = by_code(session, tracking_code)
    names = places_service.unit_names(
        session=session, unit_ids={u for u in (appeal.street_id, appeal.community_id) if u}
    )
    place_name = (
        places_service.get_place(session=session, place_id=appeal.place_id).name if appeal.place_id else None
    )
    state = State(appeal.state)
    return PublicAppeal(
        tracking_code=appeal.tracking_code,
        title=mask_text(appeal.title),
        description=mask_text(appeal.description),
        state=state.value,
        state_label=state.label,
        state_colour=state.colour,
        channel_label=Channel(appeal.channel).label,
        street_name=names.get(appeal.street_id) if appeal.street_id else None,
        community_name=names.get(appeal.community_id) if appeal.community_id else None,
        place_name=place_name,
        citizen_name=mask_name(appeal.citizen_name),
        citizen_phone=mask_phone(appeal.citizen_phone),
        created_at=appeal.created_at,
        reply=mask_text(appeal.reply) if appeal.reply else appeal.reply,
        rating=appeal.rating,
        rating_label=Rating(appeal.rating).label if appeal.rating else None,
        rating_comment=mask_text(appeal.rating_comment) if appeal.rating_comment else appeal.rating_comment,
        can_rate=state == State.completed,
        can_reopen=state == State.rated
        and appeal.rating == Rating.unsatisfied.value
        and appeal.reopen_count < 1,
        timeline=steps(session, appeal.id, public_only=True),
        photos=photo_ids(session, appeal.id),
    )
