"""Use cases of the appeals domain: intake, the lifecycle, tracking, inboxes."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, Subquery, Table, delete, func, insert, or_, select, union
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from xihu.appeals import photos as photo_store
from xihu.appeals import sla
from xihu.appeals.enums import (
    OPEN_STATES,
    Action,
    Channel,
    DeadlineKind,
    Priority,
    Rating,
    State,
    UnitRole,
)
from xihu.appeals.intake_statement import insert_at_once
from xihu.appeals.models import (
    Appeal,
    AppealEvent,
    AppealUnit,
    Deadline,
    ExtensionRequest,
    IdempotencyKey,
    Photo,
    RoutingTask,
    SlaPolicy,
    Supervision,
)
from xihu.appeals.schemas import (
    AppealCreate,
    AppealPage,
    AppealRead,
    CompleteIn,
    DeadlineRead,
    DecideExtensionIn,
    DispatchIn,
    DispatchQualityRow,
    ExtensionIn,
    MergeIn,
    PublicAppeal,
    RateIn,
    RollupFacts,
    SlaPolicyIn,
    SlaPolicyRead,
    SubmitResult,
    TimelineStep,
    TransferIn,
)
from xihu.appeals.transitions import allowed_actions, next_state
from xihu.core import audit, clock, events, outbox
from xihu.core.config import get_settings
from xihu.core.errors import Conflict, Forbidden, Invalid, NotFound
from xihu.core.privacy import mask_name, mask_phone, mask_text
from xihu.core.security import Actor, Role, authorize, can, list_users_with_role
from xihu.dispatch import service as dispatch_service
from xihu.dispatch.schemas import RoutingInput
from xihu.places import service as places_service
from xihu.places.enums import UnitKind
from xihu.places.schemas import UnitRead

_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
DISPATCHER = Actor.system("智能派单系统")


# ---------------------------------------------------------------- intake


def _tracking_code() -> str:
    today = clock.local(clock.now())
    assert today is not None
    return "XH" + today.strftime("%y%m%d") + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))


_CLAUSE_END = re.compile(r"[，。！？；,.!?;\n]")


def auto_title(description: str, limit: int = 30) -> str:
    """A title from the first clauses of the description, cut at punctuation and never inside a number."""
    title = ""
    for part in _CLAUSE_END.split(description):
        part = part.strip()
        if not part:
            continue
        candidate = f"{title}，{part}" if title else part
        if len(candidate) > limit:
            break
        title = candidate
        if len(title) >= 8:
            break
    if not title:
        # A first clause longer than the limit: cut it, but drop a number cut in half, since masking cannot
        # recognise a partial phone or ID number and the masked full text would reveal the rest.
        title = description[:limit]
        if description[limit : limit + 1].isdigit():
            title = title.rstrip("0123456789")
    return title or "群众诉求"


def _fingerprint(appeal_in: AppealCreate, channel: Channel, photo_hashes: list[str]) -> str:
    body = json.dumps(
        [appeal_in.model_dump(mode="json"), channel.value, photo_hashes], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _result(appeal: Appeal, created: bool) -> SubmitResult:
    return _submitted(appeal.id, appeal.tracking_code, State(appeal.state), created)


def _submitted(appeal_id: int, tracking_code: str, state: State, created: bool) -> SubmitResult:
    return SubmitResult(
        id=appeal_id,
        tracking_code=tracking_code,
        state=state.value,
        state_label=state.label,
        created=created,
        tracking_url=f"/t/{tracking_code}",
    )


# Intake writes its rows with plain INSERTs rather than ORM objects: one acknowledgement is several rows in
# several tables, and tracking, ordering and flushing them as objects cost more CPU than the database did.
_APPEALS: Table = Appeal.__table__  # type: ignore[assignment]
_EVENTS: Table = AppealEvent.__table__  # type: ignore[assignment]
_KEYS: Table = IdempotencyKey.__table__  # type: ignore[assignment]
_ROUTING: Table = RoutingTask.__table__  # type: ignore[assignment]
# built once: constructing a statement costs about as much CPU as executing a cached one
_INSERT_APPEAL = {
    dialect: on_conflict(_APPEALS)
    .on_conflict_do_nothing(index_elements=[_APPEALS.c.tracking_code])
    .returning(_APPEALS.c.id)
    for dialect, on_conflict in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_INSERT_EVENT = insert(_EVENTS)
_INSERT_ROUTING = insert(_ROUTING)
_CLAIM_KEY = {
    dialect: on_conflict(_KEYS).on_conflict_do_nothing(index_elements=[_KEYS.c.key]).returning(_KEYS.c.key)
    for dialect, on_conflict in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def submit(
    *,
    session: Session,
    actor: Actor,
    appeal_in: AppealCreate,
    channel: Channel,
    idempotency_key: str | None = None,
    uploads: list[photo_store.Upload] | None = None,
    auto_route: bool = True,
) -> SubmitResult:
    """Accept an appeal from any channel; a retry with the same idempotency key returns the same appeal."""
    if channel in (Channel.hotline, Channel.import_12345):
        authorize(actor, "appeal.create")
    settings = get_settings()
    checked = photo_store.check(
        uploads or [], max_bytes=settings.max_upload_bytes, max_count=settings.max_photos
    )
    fingerprint = _fingerprint(appeal_in, channel, [c[3] for c in checked])
    if idempotency_key and not 8 <= len(idempotency_key) <= 80:
        raise Invalid("Idempotency-Key 长度应为 8 到 80 个字符", english="Idempotency-Key must be 8-80 chars")
    if appeal_in.external_id:
        if not can(actor, "appeal.import"):
            # A 12345 work-order number would otherwise let anyone fetch someone else's tracking code.
            raise Forbidden("工单编号仅限 12345 批量导入使用", english="external_id is reserved for imports")
        if idempotency_key:
            # a retry is answered by its key first, as everywhere (a changed body under the same key is 409)
            existing = _replay(session, idempotency_key, fingerprint)
            if existing is not None:
                return existing
        dup = session.scalar(select(Appeal).where(Appeal.external_id == appeal_in.external_id))
        if dup is not None:
            return _result(dup, created=False)
    place = None
    street_id, community_id = appeal_in.street_id, appeal_in.community_id
    if appeal_in.place_code:
        place = places_service.get_place_by_code(session=session, code=appeal_in.place_code)
        street_id, community_id = place.street_id, place.community_id
    street_id = _check_area(session, street_id, community_id)
    now = clock.now()
    code = _tracking_code()
    values = {
        "tracking_code": code,
        "channel": channel.value,
        "title": appeal_in.title or auto_title(appeal_in.description),
        "description": appeal_in.description,
        "category_hint": appeal_in.category_hint,
        "priority": appeal_in.priority.value,
        "state": State.submitted.value,
        "place_id": place.id if place else None,
        "street_id": street_id,
        "community_id": community_id,
        "address": appeal_in.address or (place.address if place else ""),
        "lat": appeal_in.lat if appeal_in.lat is not None else (place.lat if place else None),
        "lon": appeal_in.lon if appeal_in.lon is not None else (place.lon if place else None),
        "citizen_name": appeal_in.citizen_name,
        "citizen_phone": appeal_in.citizen_phone,
        "external_id": appeal_in.external_id,
        "created_by_id": actor.user_id,
        "created_at": now,
        "updated_at": now,
    }
    place_note = f"（地点：{place.name}）" if place else ""
    deferred = auto_route and settings.defer_to_workers
    plain = not checked and not appeal_in.external_id
    if deferred and plain and session.get_bind().dialect.name == "postgresql":
        return _submit_at_once(session, actor, channel, values, idempotency_key, fingerprint, place_note)
    if appeal_in.external_id:
        try:
            with session.begin_nested():
                appeal_id = _insert_appeal(session, values)
        except IntegrityError:
            # A concurrent import of the same work order won the race; answer with its appeal.
            dup = session.scalar(select(Appeal).where(Appeal.external_id == appeal_in.external_id))
            if dup is not None:
                return _result(dup, created=False)
            raise
    else:
        appeal_id = _insert_appeal(session, values)
    code = str(values["tracking_code"])
    if idempotency_key and not _claim_key(session, idempotency_key, fingerprint, appeal_id, now):
        # An earlier (or concurrent, now committed) submission holds the key: this is its retry. The row just
        # written is removed in the same transaction, so nobody ever sees it, and the answer is that appeal.
        session.execute(delete(_APPEALS).where(_APPEALS.c.id == appeal_id))
        existing = _replay(session, idempotency_key, fingerprint)
        assert existing is not None
        return existing
    for up, ctype, ext, digest in checked:
        name = photo_store.store(session, settings.uploads_dir, up.data, ext)
        session.add(
            Photo(appeal_id=appeal_id, stored_name=name, content_type=ctype, size=len(up.data), sha256=digest)
        )
    event = _event_row(
        appeal_id, Action.submit, None, State.submitted, actor, f"您的诉求已受理，受理编号 {code}{place_note}"
    )
    session.execute(_INSERT_EVENT, event)
    audit.append(
        session=session,
        actor=actor,
        action="appeal.submit",
        entity="appeal",
        entity_id=appeal_id,
        to_state=State.submitted.value,
        detail={"channel": channel.value},
    )
    if deferred:
        # the router announces it once it has taken the appeal (jobs.route_deferred)
        session.execute(_INSERT_ROUTING, {"appeal_id": appeal_id, "queued_at": now})
        session.flush()
        return _submitted(appeal_id, code, State.submitted, created=True)
    events.publish("appeal.submitted", session=session, appeal_id=appeal_id)
    if auto_route:
        appeal = session.get(Appeal, appeal_id)
        assert appeal is not None
        _route(session, appeal)
        session.flush()
        return _result(appeal, created=True)  # routing may have dispatched it already
    session.flush()
    return _submitted(appeal_id, code, State.submitted, created=True)


def _submit_at_once(
    session: Session,
    actor: Actor,
    channel: Channel,
    values: dict[str, Any],
    key: str | None,
    fingerprint: str,
    place_note: str,
) -> SubmitResult:
    """The deferred intake of a plain appeal on PostgreSQL: its rows in one statement (intake_statement)."""
    now = values["created_at"]
    for _ in range(5):
        code = str(values["tracking_code"])
        message = f"您的诉求已受理，受理编号 {code}{place_note}"
        appeal_id, claimed = insert_at_once(
            session,
            appeal=values,
            event=_event_row(0, Action.submit, None, State.submitted, actor, message),
            entry=audit.entry_values(
                actor,
                "appeal.submit",
                "appeal",
                entity_id=None,
                from_state=None,
                to_state=State.submitted.value,
                reason=None,
                detail={"channel": channel.value},
            ),
            queued_at=now,
            key={"key": key, "fingerprint": fingerprint, "created_at": now} if key else None,
        )
        if appeal_id is None:
            values["tracking_code"] = _tracking_code()  # taken today already: draw again
            continue
        if not claimed:
            # a retry: its appeal row alone was written, and goes again in this transaction (as in `submit`)
            session.execute(delete(_APPEALS).where(_APPEALS.c.id == appeal_id))
            existing = _replay(session, str(key), fingerprint)
            assert existing is not None
            return existing
        return _submitted(appeal_id, code, State.submitted, created=True)
    raise Conflict("受理编号生成冲突，请重试", english="could not draw a free tracking code; retry")


def _insert_appeal(session: Session, values: dict[str, Any]) -> int:
    """Insert the appeal; a tracking code that is taken already is drawn again (it sets values' code)."""
    stmt = _INSERT_APPEAL[session.get_bind().dialect.name]
    for _ in range(5):
        # 31**6 codes a day: at a few hundred intakes a second two of them share a code every few minutes
        appeal_id = session.execute(stmt, values).scalar()
        if appeal_id is not None:
            return int(appeal_id)
        values["tracking_code"] = _tracking_code()
    raise Conflict("受理编号生成冲突，请重试", english="could not draw a free tracking code; retry")


def _claim_key(session: Session, key: str, fingerprint: str, appeal_id: int, now: datetime) -> bool:
    """Store an idempotency key for the new appeal; False when another submission holds it already.

    ON CONFLICT DO NOTHING instead of a look-up first and a savepoint around the insert: the first
    submission costs one statement, and a concurrent one with the same key waits for it and then sees it.
    """
    stmt = _CLAIM_KEY[session.get_bind().dialect.name]
    params = {"key": key, "fingerprint": fingerprint, "appeal_id": appeal_id, "created_at": now}
    return session.execute(stmt, params).first() is not None


def _replay(session: Session, key: str, fingerprint: str) -> SubmitResult | None:
    row = session.get(IdempotencyKey, key)
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise Conflict(
            "同一个 Idempotency-Key 已用于内容不同的提交",
            english="Idempotency-Key was already used with a different request",
        )
    appeal = session.get(Appeal, row.appeal_id)
    assert appeal is not None
    return _result(appeal, created=False)


def _check_area(session: Session, street_id: int | None, community_id: int | None) -> int | None:
    """Refuse an unknown street or community, or one outside its street; returns the street."""
    if street_id is not None:
        street = places_service.unit_kind_and_parent(session=session, unit_id=street_id)
        if street is None or street[0] != UnitKind.street.value:
            raise Invalid("所选街道/镇不存在", english="unknown street")
    if community_id is not None:
        community = places_service.unit_kind_and_parent(session=session, unit_id=community_id)
        if community is None or community[0] not in (UnitKind.community.value, UnitKind.village.value):
            raise Invalid("所选社区/村不存在", english="unknown community")
        if street_id is None:
            return community[1]
        if community[1] != street_id:
            raise Invalid("所选社区/村不在该街道/镇内", english="community is not in that street")
    return street_id


def _route(session: Session, appeal: Appeal) -> None:
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
        _do_dispatch(
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
    _route(session, appeal)
    return True


# ---------------------------------------------------------------- lifecycle helpers


def _event_row(
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
    row = _event_row(appeal.id, action, before, after, actor, message, unit_id=unit_id, public=public)
    session.add(AppealEvent(**row))


def _transition(
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


def _text_of(appeal: Appeal) -> str:
    return f"{appeal.title} {appeal.description}"


def _units(session: Session, appeal_id: int) -> list[AppealUnit]:
    return list(
        session.scalars(select(AppealUnit).where(AppealUnit.appeal_id == appeal_id).order_by(AppealUnit.id))
    )


def read_scope(*, session: Session, actor: Actor) -> int | None:
    """The unit whose appeals bound what the actor may read, or None for the whole district.

    Handlers and grid staff read their unit's appeals; a leader of a street or community reads that area's
    (a district leader, or one without a unit, reads everything); other staff roles read everything.
    """
    if actor.unit_scoped:
        return actor.unit_id if actor.unit_id is not None else -1
    if actor.role == Role.leader and actor.unit_id is not None:
        unit = places_service.get_unit(session=session, unit_id=actor.unit_id)
        return None if unit.kind == UnitKind.district else unit.id
    return None


def _scope_ok(session: Session, actor: Actor, appeal: Appeal) -> bool:
    scope = read_scope(session=session, actor=actor)
    if scope is None:
        return True
    if scope == -1:
        return False
    if scope in (appeal.street_id, appeal.community_id, appeal.lead_unit_id):
        return True
    return any(u.unit_id == scope for u in _units(session, appeal.id))


def _load(session: Session, actor: Actor, appeal_id: int, *, lock: bool = True) -> Appeal:
    """An appeal the actor may see; another unit's appeal is reported as not found."""
    authorize(actor, "appeal.read")
    appeal = session.get(Appeal, appeal_id, with_for_update=lock or None)
    if appeal is None or not _scope_ok(session, actor, appeal):
        raise NotFound("诉求不存在或不在您的办理范围内", english="appeal not found")
    return appeal


def _require_lead(actor: Actor, appeal: Appeal) -> None:
    if actor.unit_scoped and actor.unit_id != appeal.lead_unit_id:
        raise Forbidden("只有主办单位可以执行此操作", english="only the lead unit may do this")


def _cancel_extensions(session: Session, appeal_id: int) -> None:
    """A pending extension belongs to the unit that asked; it lapses when the appeal moves on."""
    req = _pending_extension(session, appeal_id)
    if req is not None:
        req.status = "lapsed"
        req.decided_at = clock.now()


def _pending_extension(session: Session, appeal_id: int) -> ExtensionRequest | None:
    return session.scalar(
        select(ExtensionRequest).where(
            ExtensionRequest.appeal_id == appeal_id, ExtensionRequest.status == "pending"
        )
    )


def _notify_unit(session: Session, unit_id: int, subject: str, body: str, appeal: Appeal) -> None:
    for user in list_users_with_role(session=session, role=(Role.handler, Role.grid), unit_id=unit_id):
        outbox.enqueue(
            session=session,
            channel="inapp",
            user_id=user.id,
            subject=subject,
            body=body,
            link=f"/staff/appeals/{appeal.id}",
        )


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


def _set_units(session: Session, appeal: Appeal, lead_id: int, co_ids: list[int], *, first: bool) -> None:
    if not first:
        for row in _units(session, appeal.id):
            session.delete(row)
        session.flush()
    session.add(AppealUnit(appeal_id=appeal.id, unit_id=lead_id, role=UnitRole.lead.value))
    for uid in dict.fromkeys(co_ids):
        if uid != lead_id:
            session.add(AppealUnit(appeal_id=appeal.id, unit_id=uid, role=UnitRole.co.value))
    appeal.lead_unit_id = lead_id


def _check_unit(session: Session, unit_id: int) -> UnitRead:
    try:
        unit = places_service.get_unit(session=session, unit_id=unit_id)
    except NotFound:
        raise Invalid("承办单位不存在", english="unknown unit") from None
    if unit.kind == UnitKind.district.value:
        raise Invalid(
            "不能派给区本级，请选择具体部门或镇街村社", english="choose a department, street or community"
        )
    return unit


def _do_dispatch(
    session: Session,
    appeal: Appeal,
    actor: Actor,
    data: DispatchIn,
    *,
    action: Action = Action.dispatch,
    reason: str | None = None,
) -> None:
    unit = _check_unit(session, data.unit_id)
    name = unit.name
    co_names = [_check_unit(session, uid).name for uid in data.co_unit_ids if uid != data.unit_id]
    if data.category:
        appeal.category = data.category
    # Clocks, extension requests and unit rows exist only once an appeal has been dispatched: the first
    # dispatch (the router's, many per second) has nothing to cancel and asks nothing.
    first = appeal.dispatched_at is None
    if not first:
        sla.cancel_all(session=session, appeal_id=appeal.id)
        _cancel_extensions(session, appeal.id)
    _set_units(session, appeal, data.unit_id, data.co_unit_ids, first=first)
    appeal.dispatched_at = clock.now()
    appeal.signed_at = None
    co_text = f"，协办单位：{'、'.join(co_names)}" if co_names else ""
    message = data.message or reason or ""
    _transition(
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
    _notify_unit(session, data.unit_id, f"新派单 {appeal.tracking_code}", appeal.title, appeal)
    for uid in data.co_unit_ids:
        if uid != data.unit_id:
            _notify_unit(session, uid, f"协办 {appeal.tracking_code}", appeal.title, appeal)
    if unit.auto_sign:
        _sign(session, appeal, Actor.system(f"{name}（自动签收）"))


def _sign(session: Session, appeal: Appeal, actor: Actor, message: str = "") -> None:
    _transition(session, appeal, Action.sign, actor, message or "承办单位已签收", unit_id=appeal.lead_unit_id)
    appeal.signed_at = clock.now()
    sla.meet(session=session, appeal_id=appeal.id, kinds=(DeadlineKind.sign,))


# ---------------------------------------------------------------- staff actions


def dispatch(*, session: Session, actor: Actor, appeal_id: int, data: DispatchIn) -> AppealRead:
    """派单: send an appeal to its lead unit (and co-handlers); the SLA clocks start."""
    authorize(actor, "appeal.dispatch")
    appeal = _load(session, actor, appeal_id)
    next_state(State(appeal.state), Action.dispatch)
    _do_dispatch(session, appeal, actor, data)
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


def sign(*, session: Session, actor: Actor, appeal_id: int, message: str = "") -> AppealRead:
    """签收 by the lead unit."""
    authorize(actor, "appeal.sign")
    appeal = _load(session, actor, appeal_id)
    _require_lead(actor, appeal)
    next_state(State(appeal.state), Action.sign)
    _sign(session, appeal, actor, message)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def start(*, session: Session, actor: Actor, appeal_id: int, message: str = "") -> AppealRead:
    """开始处置: the 30-minute clock is met."""
    authorize(actor, "appeal.start")
    appeal = _load(session, actor, appeal_id)
    _require_lead(actor, appeal)
    _transition(session, appeal, Action.start, actor, message or "已开始处置", unit_id=appeal.lead_unit_id)
    sla.meet(session=session, appeal_id=appeal.id, kinds=(DeadlineKind.sign, DeadlineKind.handle))
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def return_to_dispatcher(*, session: Session, actor: Actor, appeal_id: int, reason: str) -> AppealRead:
    """退回: the unit says it is not theirs; back to the dispatch queue with the reason."""
    authorize(actor, "appeal.return")
    appeal = _load(session, actor, appeal_id)
    _require_lead(actor, appeal)
    if not reason.strip():
        raise Invalid("请填写退回原因", english="a reason is required to return an appeal")
    unit_id = appeal.lead_unit_id
    _transition(
        session, appeal, Action.return_, actor, f"{RETURN_PREFIX}{reason}", reason=reason, unit_id=unit_id
    )
    sla.cancel_all(session=session, appeal_id=appeal.id)
    _cancel_extensions(session, appeal.id)
    appeal.return_count += 1
    appeal.lead_unit_id = None
    for row in _units(session, appeal.id):
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
    appeal = _load(session, actor, appeal_id)
    _require_lead(actor, appeal)
    if data.unit_id == appeal.lead_unit_id:
        raise Invalid("不能转办给本单位", english="cannot transfer to the same unit")
    next_state(State(appeal.state), Action.transfer)
    sla.meet(session=session, appeal_id=appeal.id, kinds=(DeadlineKind.sign, DeadlineKind.handle))
    from_unit = appeal.lead_unit_id
    _do_dispatch(
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


def assist(*, session: Session, actor: Actor, appeal_id: int, message: str) -> AppealRead:
    """协办意见 from a co-handling unit (or the lead)."""
    authorize(actor, "appeal.assist")
    appeal = _load(session, actor, appeal_id)
    if actor.unit_scoped and actor.unit_id not in {u.unit_id for u in _units(session, appeal.id)}:
        raise Forbidden("只有主办或协办单位可以填写协办意见", english="only handling units may add notes")
    if not message.strip():
        raise Invalid("请填写协办意见", english="message required")
    _transition(session, appeal, Action.assist, actor, message, public=False)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def request_extension(*, session: Session, actor: Actor, appeal_id: int, data: ExtensionIn) -> AppealRead:
    """申请延期: a supervisor must approve before the completion clock moves."""
    authorize(actor, "appeal.request_extension")
    appeal = _load(session, actor, appeal_id)
    _require_lead(actor, appeal)
    if _pending_extension(session, appeal.id) is not None:
        raise Conflict("已有待审批的延期申请", english="an extension request is already pending")
    _transition(
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
    appeal = _load(session, actor, appeal_id)
    req = _pending_extension(session, appeal.id)
    if req is None:
        raise Conflict("没有待审批的延期申请", english="no pending extension request")
    verdict = "同意" if data.approve else "不同意"
    _transition(
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
    appeal = _load(session, actor, appeal_id)
    _transition(session, appeal, Action.supervise, actor, f"督办：{reason}", reason=reason, public=False)
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
        _notify_unit(session, appeal.lead_unit_id, f"督办 {appeal.tracking_code}", reason, appeal)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def complete(*, session: Session, actor: Actor, appeal_id: int, data: CompleteIn) -> AppealRead:
    """办结 with a reply to the citizen: the 24-hour clock is met."""
    authorize(actor, "appeal.complete")
    appeal = _load(session, actor, appeal_id)
    _require_lead(actor, appeal)
    _transition(
        session, appeal, Action.complete, actor, f"办结答复：{data.reply}", unit_id=appeal.lead_unit_id
    )
    appeal.reply = data.reply
    appeal.completed_at = clock.now()
    sla.meet(session=session, appeal_id=appeal.id, kinds=tuple(DeadlineKind))
    _cancel_extensions(session, appeal.id)
    _notify_citizen(session, appeal, f"您的诉求 {appeal.tracking_code} 已办结，请评价")
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def close(*, session: Session, actor: Actor, appeal_id: int, reason: str = "") -> AppealRead:
    """归档 a completed or rated appeal."""
    authorize(actor, "appeal.close")
    appeal = _load(session, actor, appeal_id)
    _close(session, appeal, actor, reason)
    session.flush()
    return read(session=session, actor=actor, appeal_id=appeal.id)


def _close(session: Session, appeal: Appeal, actor: Actor, reason: str) -> None:
    _transition(session, appeal, Action.close, actor, reason or "诉求已归档", reason=reason or None)
    appeal.closed_at = clock.now()
    sla.cancel_all(session=session, appeal_id=appeal.id)
    _cancel_extensions(session, appeal.id)


def merge(*, session: Session, actor: Actor, appeal_id: int, data: MergeIn) -> AppealRead:
    """合并 a duplicate into another appeal; the citizen is pointed to that one."""
    authorize(actor, "appeal.merge")
    appeal = _load(session, actor, appeal_id)
    target = session.scalar(
        select(Appeal).where(Appeal.tracking_code == data.into_tracking_code.strip().upper())
    )
    if target is None or target.id == appeal.id:
        raise Invalid("要合并到的诉求不存在", english="target appeal not found")
    if State(target.state) == State.merged:
        raise Conflict("不能合并到一个已被合并的诉求", english="target is itself merged")
    _transition(
        session,
        appeal,
        Action.merge,
        actor,
        f"与诉求 {target.tracking_code} 内容重复，已合并办理，请关注该编号的进度",
    )
    appeal.duplicate_of_id = target.id
    sla.cancel_all(session=session, appeal_id=appeal.id)
    _cancel_extensions(session, appeal.id)
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


# ---------------------------------------------------------------- citizen actions


def _by_code(session: Session, code: str, *, lock: bool = False) -> Appeal:
    appeal = session.scalar(
        select(Appeal).where(Appeal.tracking_code == code.strip().upper()).with_for_update()
        if lock
        else select(Appeal).where(Appeal.tracking_code == code.strip().upper())
    )
    if appeal is None:
        raise NotFound("受理编号不存在，请核对", english="unknown tracking code")
    return appeal


def rate(*, session: Session, tracking_code: str, data: RateIn) -> PublicAppeal:
    """评价 by the citizen; a satisfied or basically satisfied rating closes the appeal."""
    appeal = _by_code(session, tracking_code, lock=True)
    citizen = Actor.citizen()
    _transition(
        session,
        appeal,
        Action.rate,
        citizen,
        f"群众评价：{data.rating.label}" + (f"。{data.comment}" if data.comment else ""),
    )
    appeal.rating = data.rating.value
    appeal.rating_comment = data.comment or None
    if data.rating != Rating.unsatisfied:
        _close(session, appeal, Actor.system(), "群众评价后自动归档")
    session.flush()
    return track(session=session, tracking_code=appeal.tracking_code)


def reopen(*, session: Session, tracking_code: str, reason: str) -> PublicAppeal:
    """重办 after an unsatisfied rating, once; the appeal goes back to the same unit."""
    appeal = _by_code(session, tracking_code, lock=True)
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
    _do_dispatch(
        session,
        appeal,
        Actor.citizen(),
        DispatchIn(unit_id=appeal.lead_unit_id, message=f"群众申请重办：{reason}"),
        action=Action.reopen,
        reason=reason,
    )
    session.flush()
    return track(session=session, tracking_code=appeal.tracking_code)


# ---------------------------------------------------------------- reading


def _steps(session: Session, appeal_id: int, *, public_only: bool, mask: bool = False) -> list[TimelineStep]:
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


def _photo_ids(session: Session, appeal_id: int) -> list[int]:
    return list(session.scalars(select(Photo.id).where(Photo.appeal_id == appeal_id).order_by(Photo.id)))


def track(*, session: Session, tracking_code: str) -> PublicAppeal:
    """The public tracking view: every public step, personal data masked."""
    appeal = _by_code(session, tracking_code)
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
        timeline=_steps(session, appeal.id, public_only=True),
        photos=_photo_ids(session, appeal.id),
    )


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
        [names.get(u.unit_id, "") for u in _units(session, appeal.id) if u.role == UnitRole.co.value]
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
        timeline=_steps(session, appeal.id, public_only=False, mask=not text_ok) if full else [],
        allowed_actions=[a.value for a in allowed_actions(state)] if full else [],
        photos=_photo_ids(session, appeal.id) if full else [],
        pending_extension_hours=(
            ext.hours if full and (ext := _pending_extension(session, appeal.id)) else None
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


def _names_for(session: Session, appeals: list[Appeal], *, co_units: bool = False) -> dict[int, str]:
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
    appeal = _load(session, actor, appeal_id, lock=False)
    result = _to_read(
        session,
        actor,
        appeal,
        full=True,
        names=_names_for(session, [appeal], co_units=True),
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
        if _by_code(session, tracking_code).id != row.appeal_id:
            raise NotFound("图片不存在", english="photo not found")
    else:
        assert actor is not None
        _load(session, actor, row.appeal_id, lock=False)
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
    names = _names_for(session, rows)
    due = _next_due(session, [a.id for a in rows])
    return AppealPage(
        items=[_to_read(session, actor, a, full=False, names=names, due=due) for a in rows],
        total=min(total, count_up_to) if more and count_up_to is not None else total,
        more=more,
        page=page,
        size=size,
    )


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


def suggestions_for(*, session: Session, actor: Actor, appeal_id: int) -> list[dict[str, Any]]:
    """The router's recorded candidates for an appeal (for the dispatch queue)."""
    authorize(actor, "appeal.read")
    _load(session, actor, appeal_id, lock=False)
    decision = dispatch_service.latest_decision(session=session, appeal_id=appeal_id)
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


def counts_by_state(*, session: Session, since: datetime | None = None) -> dict[str, int]:
    """Appeals per state (for the dashboard)."""
    stmt = select(Appeal.state, func.count()).group_by(Appeal.state)
    if since is not None:
        stmt = stmt.where(Appeal.created_at >= since)
    return {s: n for s, n in session.execute(stmt)}


def dispatch_quality(*, session: Session, actor: Actor, weeks: int = 8) -> list[DispatchQualityRow]:
    """首派准确率 (first dispatches not later returned or transferred) and 回退率 by unit and week."""
    authorize(actor, "dispatch.report")
    since = clock.now() - timedelta(weeks=weeks)
    moves = (Action.dispatch.value, Action.transfer.value, Action.reopen.value, Action.return_.value)
    rows = session.execute(
        select(
            AppealEvent.appeal_id,
            AppealEvent.action,
            AppealEvent.unit_id,
            AppealEvent.at,
            AppealEvent.actor_kind,
        )
        .where(AppealEvent.at >= since, AppealEvent.action.in_(moves))
        .order_by(AppealEvent.appeal_id, AppealEvent.id)
    ).all()
    stats: dict[tuple[int, str], dict[str, int]] = {}

    def bucket(unit_id: int, at: datetime) -> dict[str, int]:
        local = clock.local(at)
        assert local is not None
        year, week, _ = local.isocalendar()
        key = (unit_id, f"{year}-W{week:02d}")
        return stats.setdefault(key, {"dispatched": 0, "first": 0, "correct": 0, "auto": 0, "returned": 0})

    by_appeal: dict[int, list[Any]] = {}
    for row in rows:
        by_appeal.setdefault(row.appeal_id, []).append(row)
    for events_of in by_appeal.values():
        first_seen = False
        for i, ev in enumerate(events_of):
            if ev.unit_id is None:
                continue
            if ev.action == Action.return_.value:
                bucket(ev.unit_id, ev.at)["returned"] += 1
                continue
            b = bucket(ev.unit_id, ev.at)
            b["dispatched"] += 1
            if ev.action == Action.dispatch.value and not first_seen:
                first_seen = True
                b["first"] += 1
                b["auto"] += ev.actor_kind == "system"
                later = {e.action for e in events_of[i + 1 :]}
                b["correct"] += not ({Action.return_.value, Action.transfer.value} & later)
    names = places_service.unit_names(session=session, unit_ids={u for u, _ in stats})
    return [
        DispatchQualityRow(
            unit_id=unit_id,
            unit_name=names.get(unit_id, ""),
            week=week,
            dispatched=v["dispatched"],
            first_dispatched=v["first"],
            first_correct=v["correct"],
            first_auto=v["auto"],
            returned=v["returned"],
            first_accuracy=round(v["correct"] / v["first"], 4) if v["first"] else None,
            return_rate=round(v["returned"] / v["dispatched"], 4) if v["dispatched"] else None,
        )
        for (unit_id, week), v in sorted(stats.items(), key=lambda kv: (kv[0][1], names.get(kv[0][0], "")))
    ]


def list_sla_policies(*, session: Session, actor: Actor) -> list[SlaPolicyRead]:
    """The configured SLA policies (the seeds' 1 min / 30 min / 24 h apply where none matches)."""
    authorize(actor, "sla.manage")
    return [
        SlaPolicyRead.model_validate(p) for p in session.scalars(select(SlaPolicy).order_by(SlaPolicy.id))
    ]


def save_sla_policy(*, session: Session, actor: Actor, data: SlaPolicyIn) -> SlaPolicyRead:
    """Create or replace the policy of a category/priority/unit; it applies to clocks started from now."""
    authorize(actor, "sla.manage")
    if data.unit_id is not None:
        _check_unit(session, data.unit_id)
    if not data.sign_minutes <= data.handle_minutes <= data.complete_minutes:
        raise Invalid("时限应满足：签收 ≤ 流转处置 ≤ 办结", english="sign <= handle <= complete minutes")
    priority = data.priority.value if data.priority else None
    row = session.scalar(
        select(SlaPolicy).where(
            SlaPolicy.category.is_(None) if data.category is None else SlaPolicy.category == data.category,
            SlaPolicy.priority.is_(None) if priority is None else SlaPolicy.priority == priority,
            SlaPolicy.unit_id.is_(None) if data.unit_id is None else SlaPolicy.unit_id == data.unit_id,
        )
    )
    before = SlaPolicyRead.model_validate(row).model_dump(mode="json") if row else None
    if row is None:
        row = SlaPolicy()
        session.add(row)
    row.category, row.priority, row.unit_id = data.category, priority, data.unit_id
    row.sign_minutes, row.handle_minutes = data.sign_minutes, data.handle_minutes
    row.complete_minutes, row.calendar = data.complete_minutes, data.calendar
    session.flush()
    after = SlaPolicyRead.model_validate(row)
    audit.record(
        session=session,
        actor=actor,
        action="sla.save",
        entity="sla_policy",
        entity_id=row.id,
        detail={"before": before, "after": after.model_dump(mode="json")},
    )
    return after


def delete_sla_policy(*, session: Session, actor: Actor, policy_id: int) -> None:
    """Remove a policy; the next most specific one (or the default) applies to new clocks."""
    authorize(actor, "sla.manage")
    row = session.get(SlaPolicy, policy_id)
    if row is None:
        raise NotFound("时限规则不存在", english="SLA policy not found")
    audit.record(
        session=session,
        actor=actor,
        action="sla.delete",
        entity="sla_policy",
        entity_id=row.id,
        detail={"before": SlaPolicyRead.model_validate(row).model_dump(mode="json")},
    )
    session.delete(row)
    session.flush()


# ---------------------------------------------------------------- public listing (Open311)


_TRACKING_CODE = re.compile(r"XH\d{6}[0-9A-Z]{6}")


def _hide_codes(text: str) -> str:
    """Tracking codes are bearer secrets (rate, reopen): lists open to everyone never show them."""
    return _TRACKING_CODE.sub("XH******", text)


def list_public(
    *,
    session: Session,
    tracking_codes: list[str] | None = None,
    ids: list[int] | None = None,
    categories: list[str | None] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    open_: bool | None = None,
    page: int = 1,
    size: int = 50,
) -> list[dict[str, Any]]:
    """Public, masked data of appeals (no personal data): the lead unit's name, the open completion
    deadline, location, state and times; newest first. A category of None means "not yet classified"."""
    stmt = select(Appeal)
    if tracking_codes is not None:
        stmt = stmt.where(Appeal.tracking_code.in_([c.strip().upper() for c in tracking_codes]))
    if ids is not None:
        stmt = stmt.where(Appeal.id.in_(ids))
    if categories is not None:
        category = func.coalesce(Appeal.category, Appeal.category_hint)
        cond = category.in_([c for c in categories if c is not None])
        stmt = stmt.where(or_(cond, category.is_(None)) if None in categories else cond)
    if since is not None:
        stmt = stmt.where(Appeal.created_at >= since)
    if until is not None:
        stmt = stmt.where(Appeal.created_at <= until)
    if open_ is not None:
        states = [s.value for s in OPEN_STATES]
        stmt = stmt.where(Appeal.state.in_(states) if open_ else Appeal.state.not_in(states))
    size, page = max(1, min(size, 100)), max(1, page)
    rows = list(
        session.scalars(
            stmt.order_by(Appeal.created_at.desc(), Appeal.id.desc()).offset((page - 1) * size).limit(size)
        )
    )
    names = _names_for(session, rows) if rows else {}
    ids = [a.id for a in rows]
    due = {
        d.appeal_id: d.due_at
        for d in session.scalars(
            select(Deadline).where(
                Deadline.appeal_id.in_(ids), sla.pending(), Deadline.kind == DeadlineKind.complete
            )
        )
    }
    last_step: dict[int, str] = {}
    for ev in session.scalars(
        select(AppealEvent)
        .where(AppealEvent.appeal_id.in_(ids), AppealEvent.public.is_(True))
        .order_by(AppealEvent.id)
    ):
        last_step[ev.appeal_id] = ev.message
    photo_ids: dict[int, int] = {}
    for pid, aid in session.execute(
        select(Photo.id, Photo.appeal_id).where(Photo.appeal_id.in_(ids)).order_by(Photo.id.desc())
    ):
        photo_ids[aid] = pid
    return [
        {
            "id": a.id,
            "tracking_code": a.tracking_code,
            "category": a.category or a.category_hint,
            "description": mask_text(a.description),
            "state": a.state,
            "open": State(a.state) in OPEN_STATES,
            "notes": _hide_codes(mask_text(a.reply or last_step.get(a.id, ""))) or None,
            "lead_unit_name": names.get(a.lead_unit_id) if a.lead_unit_id else None,
            "street_name": names.get(a.street_id) if a.street_id else None,
            "community_name": names.get(a.community_id) if a.community_id else None,
            "address": a.address,
            "lat": a.lat,
            "lon": a.lon,
            "complete_due_at": due.get(a.id),
            "first_photo_id": photo_ids.get(a.id),
            "created_at": a.created_at,
            "updated_at": a.updated_at,
        }
        for a in rows
    ]


def public_updates(
    *, session: Session, since: datetime, until: datetime, limit: int = 1000
) -> list[dict[str, Any]]:
    """Public timeline steps in a time range, oldest first, messages masked (Open311 updates)."""
    rows = session.execute(
        select(AppealEvent, Appeal.tracking_code)
        .join(Appeal, Appeal.id == AppealEvent.appeal_id)
        .where(AppealEvent.public.is_(True), AppealEvent.at >= since, AppealEvent.at <= until)
        .order_by(AppealEvent.at, AppealEvent.id)
        .limit(max(1, min(limit, 1000)))
    ).all()
    return [
        {
            "id": ev.id,
            "appeal_id": ev.appeal_id,
            "tracking_code": code,
            "state": ev.to_state,
            "open": State(ev.to_state) in OPEN_STATES,
            "at": ev.at,
            "message": _hide_codes(mask_text(ev.message)),
        }
        for ev, code in rows
    ]


# ---------------------------------------------------------------- reading for the analysis rollups


def _rollup_rows(session: Session, appeals: list[Appeal]) -> list[RollupFacts]:
    ids = [a.id for a in appeals]
    clocks: dict[int, list[Deadline]] = {i: [] for i in ids}
    if ids:
        stmt = (
            select(Deadline)
            .where(Deadline.appeal_id.in_(ids), Deadline.kind.in_(["sign", "complete"]))
            .order_by(Deadline.id)
        )
        for d in session.scalars(stmt):
            clocks[d.appeal_id].append(d)
    out: list[RollupFacts] = []
    for a in appeals:
        # A clock cancelled in time does not count; one cancelled after its breach still counts as missed.
        counted = [d for d in clocks[a.id] if d.cancelled_at is None or d.breached_at is not None]
        # 签收及时: the first sign clock counts (a later one after a transfer is another unit's).
        signs = [d for d in counted if d.kind == DeadlineKind.sign.value]
        # 按时办结: the latest completion clock counts (a reopened appeal is judged on its redo).
        completes = [d for d in counted if d.kind == DeadlineKind.complete.value]
        first_sign = signs[0] if signs else None
        last_complete = completes[-1] if completes else None
        out.append(
            RollupFacts(
                appeal_id=a.id,
                created_at=a.created_at,
                title=a.title,
                channel=a.channel,
                category=a.category,
                state=a.state,
                street_id=a.street_id,
                community_id=a.community_id,
                lead_unit_id=a.lead_unit_id,
                place_id=a.place_id,
                lat=a.lat,
                lon=a.lon,
                citizen_phone=a.citizen_phone,
                rating=a.rating,
                completed=a.completed_at is not None,
                sign_due=first_sign is not None,
                signed_on_time=_met_in_time(first_sign),
                complete_due=last_complete is not None,
                completed_on_time=_met_in_time(last_complete),
            )
        )
    return out


def _met_in_time(clock_: Deadline | None) -> bool:
    # once breached, late for good: an extension granted afterwards moves the due time, not the verdict
    return bool(clock_ and clock_.met_at and clock_.breached_at is None and clock_.met_at <= clock_.due_at)


def rollup_facts(*, session: Session, appeal_ids: list[int]) -> list[RollupFacts]:
    """The facts the analysis rollups count, for some appeals (an internal read without an actor)."""
    if not appeal_ids:
        return []
    appeals = list(session.scalars(select(Appeal).where(Appeal.id.in_(appeal_ids)).order_by(Appeal.id)))
    return _rollup_rows(session, appeals)


def rollup_facts_page(*, session: Session, after_id: int, limit: int) -> list[RollupFacts]:
    """The next `limit` appeals' rollup facts by id (for rebuilding the rollups in batches)."""
    appeals = list(
        session.scalars(select(Appeal).where(Appeal.id > after_id).order_by(Appeal.id).limit(limit))
    )
    return _rollup_rows(session, appeals)


def open_completion_due_by_unit(*, session: Session, due_before: datetime) -> dict[int, int]:
    """Open completion clocks due before a time, counted per unit (the SLA-risk detector's queue)."""
    stmt = (
        select(Deadline.unit_id, func.count())
        .where(
            Deadline.open.is_(True),
            Deadline.kind == DeadlineKind.complete.value,
            Deadline.due_at < due_before,
            Deadline.unit_id.is_not(None),
        )
        .group_by(Deadline.unit_id)
    )
    return {int(u): int(n) for u, n in session.execute(stmt) if u is not None}


def titles_received(
    *, session: Session, since: datetime, until: datetime, containing: list[str]
) -> list[tuple[int, str]]:
    """Ids and titles of appeals received in [since, until) whose title has one of the words (internal)."""
    if not containing:
        return []
    stmt = select(Appeal.id, Appeal.title).where(
        Appeal.created_at >= since,
        Appeal.created_at < until,
        or_(*(Appeal.title.contains(word, autoescape=True) for word in containing)),
    )
    return [(int(i), str(t)) for i, t in session.execute(stmt)]
