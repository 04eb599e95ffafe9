"""Staff reads: one appeal with its timeline and clocks, its photos, and the searchable inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, Subquery, case, func, or_, select, union
from sqlalchemy.orm import Session

from xihu.appeals import sla
from xihu.appeals.enums import OPEN_STATES, Channel, DeadlineKind, Priority, State, UnitRole
from xihu.appeals.models import Appeal, AppealUnit, Deadline, Photo
from xihu.appeals.schemas import AppealPage, AppealRead, DeadlineRead
from xihu.appeals.service._common import pending_extension, photo_ids, steps, units
from xihu.appeals.service.access import by_code, load, read_scope
from xihu.appeals.transitions import allowed_actions
from xihu.core import audit, clock
from xihu.core.errors import NotFound
from xihu.core.privacy import mask_name, mask_phone, mask_text
from xihu.core.security import Actor, authorize, can
from xihu.places import service as places_service
from xihu.places.enums import UnitKind


def _to_read(
    session: Session,
    actor: Actor,
    appeal: Appeal,
    *,
    full: bool,
    names: dict[int, str],
    due: dict[int, _Due],
) -> AppealRead:
    state = State(appeal.state)
    unmasked = full and can(actor, "appeal.read_personal") and actor.kind != "system"
    text_ok = can(actor, "appeal.read_personal")  # free text in lists too; masked only for unprivileged roles
    co = (
        [names.get(u.unit_id, "") for u in units(session, appeal.id) if u.role == UnitRole.co.value]
        if full
        else []
    )
    nxt = due.get(appeal.id)
    dup = (
        session.scalar(select(Appeal.tracking_code).where(Appeal.id == appeal.duplicate_of_id))
        if appeal.duplicate_of_id
        else None
    )
    place_name = (
        places_service.get_place(session=session, place_id=appeal.place_id).name
        if full and appeal.place_id
        else None
    )
    return AppealRead(
        id=appeal.id,
        tracking_code=appeal.tracking_code,
        channel=appeal.channel,
        channel_label=Channel(appeal.channel).label,
        # Citizens write their numbers into the text too: staff without appeal.read_personal see them masked.
        title=appeal.title if text_ok else mask_text(appeal.title),
        description=appeal.description if text_ok else mask_text(appeal.description),
        category=appeal.category,
        category_hint=appeal.category_hint,
        priority=appeal.priority,
        priority_label=Priority(appeal.priority).label,
        state=state.value,
        state_label=state.label,
        state_colour=state.colour,
        street_id=appeal.street_id,
        street_name=names.get(appeal.street_id or 0),
        community_id=appeal.community_id,
        community_name=names.get(appeal.community_id or 0),
        place_name=place_name,
        address=appeal.address,
        lat=appeal.lat,
        lon=appeal.lon,
        citizen_name=appeal.citizen_name if unmasked else mask_name(appeal.citizen_name),
        citizen_phone=appeal.citizen_phone if unmasked else mask_phone(appeal.citizen_phone),
        personal_unmasked=unmasked,
        lead_unit_id=appeal.lead_unit_id,
        lead_unit_name=names.get(appeal.lead_unit_id or 0),
        co_units=co,
        reply=appeal.reply if text_ok or not appeal.reply else mask_text(appeal.reply),
        rating=appeal.rating,
        rating_comment=(
            appeal.rating_comment
            if text_ok or not appeal.rating_comment
            else mask_text(appeal.rating_comment)
        ),
        flagged=appeal.flagged,
        reopen_count=appeal.reopen_count,
        return_count=appeal.return_count,
        duplicate_of=dup,
        created_at=appeal.created_at,
        dispatched_at=appeal.dispatched_at,
        completed_at=appeal.completed_at,
        next_due_at=nxt.due_at if nxt else None,
        next_due_kind=nxt.kind if nxt else None,
        deadlines=[
            DeadlineRead(
                kind=d.kind,
                kind_label=DeadlineKind(d.kind).label,
                due_at=d.due_at,
                open=d.open,
                met_at=d.met_at,
                breached_at=d.breached_at,
            )
            for d in sla.clocks_of(session=session, appeal_id=appeal.id)
        ]
        if full
        else [],
        timeline=steps(session, appeal.id, public_only=False, mask=not text_ok) if full else [],
        allowed_actions=[a.value for a in allowed_actions(state)] if full else [],
        photos=photo_ids(session, appeal.id) if full else [],
        pending_extension_hours=(
            ext.hours if full and (ext := pending_extension(session, appeal.id)) else None
        ),
    )


class _Due(NamedTuple):
    """An appeal's next open clock: when it falls due and which clock it is."""

    due_at: datetime
    kind: str


def _next_due(session: Session, ids: list[int]) -> dict[int, _Due]:
    if not ids:
        return {}
    # two columns, not Deadline objects: a list page needs only these, and loading its clocks as ORM objects
    # was a tenth of the inbox's CPU
    rows = session.execute(
        select(Deadline.appeal_id, Deadline.due_at, Deadline.kind)
        .where(Deadline.appeal_id.in_(ids), sla.pending())
        .order_by(Deadline.due_at)
    )
    out: dict[int, _Due] = {}
    for appeal_id, due_at, kind in rows:
        if appeal_id not in out:
            out[appeal_id] = _Due(due_at, kind)
    return out


def names_for(session: Session, appeals: list[Appeal], *, co_units: bool = False) -> dict[int, str]:
    """Names of the appeals' streets, communities and lead units; with co_units, of their co-handlers too."""
    ids = {u for a in appeals for u in (a.street_id, a.community_id, a.lead_unit_id) if u}
    if co_units:  # only a full read shows co-handlers: a list page skips the query
        ids |= set(
            session.scalars(
                select(AppealUnit.unit_id).where(AppealUnit.appeal_id.in_([a.id for a in appeals]))
            )
        )
    return places_service.unit_names(session=session, unit_ids=ids)


def read(*, session: Session, actor: Actor, appeal_id: int) -> AppealRead:
    """One appeal with its timeline and clocks; a view of personal data is audited."""
    appeal = load(session, actor, appeal_id, lock=False)
    result = _to_read(
        session,
        actor,
        appeal,
        full=True,
        names=names_for(session, [appeal], co_units=True),
        due=_next_due(session, [appeal.id]),
    )
    if result.personal_unmasked and (appeal.citizen_name or appeal.citizen_phone):
        audit.record(
            session=session, actor=actor, action="appeal.view_personal", entity="appeal", entity_id=appeal.id
        )
    return result


def photo(
    *,
    session: Session,
    actor: Actor | None,
    photo_id: int,
    tracking_code: str | None = None,
    appeal_id: int | None = None,
) -> tuple[str, str]:
    """(stored file name, content type) of a photo the caller may see, under the appeal it belongs to."""
    if tracking_code is None:
        # staff access: refuse an anonymous or unprivileged caller before saying whether the photo exists
        assert actor is not None
        authorize(actor, "appeal.read")
    row = session.get(Photo, photo_id)
    if row is None or (appeal_id is not None and row.appeal_id != appeal_id):
        raise NotFound("图片不存在", english="photo not found")
    if tracking_code is not None:
        if by_code(session, tracking_code).id != row.appeal_id:
            raise NotFound("图片不存在", english="photo not found")
    else:
        assert actor is not None
        load(session, actor, row.appeal_id, lock=False)
    return row.stored_name, row.content_type


def search(
    *,
    session: Session,
    actor: Actor,
    states: list[State] | None = None,
    unit_id: int | None = None,
    street_id: int | None = None,
    q: str | None = None,
    overdue: bool = False,
    flagged: bool = False,
    page: int = 1,
    size: int = 20,
    count_up_to: int | None = None,
) -> AppealPage:
    """Appeals the actor may see, filtered and paged; a unit-scoped actor sees only its unit's.

    With count_up_to, the total is counted only that far (`more` tells that there are more): a page for
    people needs no exact count of tens of thousands, and counting them cost more than the page.
    """
    authorize(actor, "appeal.read")
    size = max(1, min(size, 100))
    page = max(1, page)
    stmt = select(Appeal)
    scope = read_scope(session=session, actor=actor)
    if states:
        stmt = stmt.where(Appeal.state.in_([s.value for s in states]))
    if unit_id is not None:
        stmt = stmt.where(Appeal.lead_unit_id == unit_id)
    if street_id is not None:
        stmt = stmt.where(Appeal.street_id == street_id)
    if q:
        like = f"%{q.strip()[:50]}%"
        stmt = stmt.where(
            or_(
                Appeal.title.like(like),
                Appeal.description.like(like),
                Appeal.tracking_code == q.strip().upper(),
            )
        )
    if flagged:
        stmt = stmt.where(Appeal.flagged.is_(True))
    if overdue:
        late = select(Deadline.appeal_id).where(sla.pending(), Deadline.due_at <= clock.now())
        stmt = stmt.where(Appeal.id.in_(late), Appeal.state.in_([s.value for s in OPEN_STATES]))
    if scope is None:
        newest_first = stmt.order_by(Appeal.created_at.desc(), Appeal.id.desc())
        # counted in the page's order, so that a capped count reads the same index as the page does
        counted = stmt if count_up_to is None else newest_first.limit(count_up_to + 1)
        total = session.scalar(select(func.count()).select_from(counted.subquery())) or 0
        rows = list(session.scalars(newest_first.offset((page - 1) * size).limit(size)))
    else:
        ways = _ways_into(session, scope)
        capped = None if count_up_to is None else count_up_to + 1
        counted_ids = _in_scope_newest(stmt, ways, capped, ordered=False)
        total = session.scalar(select(func.count()).select_from(counted_ids)) or 0
        ids = _in_scope_newest(stmt, ways, page * size)
        in_page = select(Appeal).join(ids, Appeal.id == ids.c.id)
        in_page = in_page.order_by(ids.c.created_at.desc(), ids.c.id.desc())
        rows = list(session.scalars(in_page.offset((page - 1) * size).limit(size)))
    more = count_up_to is not None and total > count_up_to
    names = names_for(session, rows)
    due = _next_due(session, [a.id for a in rows])
    return AppealPage(
        items=[_to_read(session, actor, a, full=False, names=names, due=due) for a in rows],
        total=min(total, count_up_to) if more and count_up_to is not None else total,
        more=more,
        page=page,
        size=size,
    )


def awaiting_dispatch(
    *, session: Session, actor: Actor, page: int = 1, size: int = 50, street_id: int | None = None
) -> AppealPage:
    """The dispatcher's work queue: appeals waiting for a unit, urgent ones first, then the longest waiting;
    all of them, or one street's (0: those whose street is not known).

    The inbox lists the newest first; a queue must not: its oldest appeal is the one whose clock ran out
    first, and with more waiting than a page it would never come into view.
    """
    authorize(actor, "appeal.dispatch")
    size = max(1, min(size, 100))
    waiting = select(Appeal).where(Appeal.state == State.submitted.value)
    if street_id is not None:
        waiting = waiting.where(
            Appeal.street_id.is_(None) if street_id == 0 else Appeal.street_id == street_id
        )
    total = session.scalar(select(func.count()).select_from(waiting.subquery())) or 0
    pages = max(1, -(-total // size))
    page = max(1, min(page, pages))
    urgent_first = case((Appeal.priority == Priority.urgent.value, 0), else_=1)
    rows = list(
        session.scalars(
            waiting.order_by(urgent_first, Appeal.created_at, Appeal.id).offset((page - 1) * size).limit(size)
        )
    )
    names = names_for(session, rows)
    due = _next_due(session, [a.id for a in rows])
    return AppealPage(
        items=[_to_read(session, actor, a, full=False, names=names, due=due) for a in rows],
        total=total,
        page=page,
        size=size,
    )


def awaiting_by_street(*, session: Session, actor: Actor) -> dict[int, int]:
    """How many appeals wait for a dispatcher in each street (0: street not known)."""
    authorize(actor, "appeal.dispatch")
    rows = session.execute(
        select(Appeal.street_id, func.count())
        .where(Appeal.state == State.submitted.value)
        .group_by(Appeal.street_id)
    ).all()
    return {street or 0: n for street, n in rows}


def _ways_into(session: Session, scope: int) -> list[ColumnElement[bool]]:
    """How an appeal comes into a unit's scope: it leads or co-handles it, or the appeal lies in its area."""
    # only co-handling rows: a lead's own row is written and removed with lead_unit_id (_set_units, return_)
    co = select(AppealUnit.appeal_id).where(AppealUnit.unit_id == scope, AppealUnit.role == UnitRole.co.value)
    ways = [Appeal.lead_unit_id == scope, Appeal.id.in_(co)]
    if scope == -1:
        return ways
    # an appeal's street is a street and its community a community or village: other units skip those ways
    kind = places_service.get_unit(session=session, unit_id=scope).kind
    if kind == UnitKind.street:
        ways.append(Appeal.street_id == scope)
    elif kind in (UnitKind.community, UnitKind.village):
        ways.append(Appeal.community_id == scope)
    return ways


def _in_scope_newest(
    stmt: Select[Any], ways: list[ColumnElement[bool]], reach: int | None, *, ordered: bool = True
) -> Subquery:
    """(id, created_at) of what `stmt` finds in a unit's or an area's scope, the newest `reach` each way in.

    Asked as one OR of the ways (`_ways_into`), PostgreSQL walked all appeals newest first and tested each:
    when routing lagged, a department's inbox passed every unrouted appeal on each view (13,500 of them,
    30 ms). Each way alone is read in its own index's order and only as far as the page and the capped count
    need. A capped count needs no order (`ordered=False`): any `reach` rows of a way tell that there are more.
    """
    parts = []
    for way in ways:
        part = stmt.where(way).with_only_columns(Appeal.id, Appeal.created_at)
        if reach is not None:
            if ordered:
                part = part.order_by(Appeal.created_at.desc(), Appeal.id.desc())
            part = part.limit(reach)
        sub = part.subquery()
        parts.append(select(sub.c.id, sub.c.created_at))
    return union(*parts).subquery()
