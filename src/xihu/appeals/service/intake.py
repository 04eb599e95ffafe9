"""Intake from every channel: idempotent submission, tracking codes, automatic titles, area checks."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from xihu.appeals import photos as photo_store
from xihu.appeals.enums import Action, Channel, State
from xihu.appeals.intake_statement import insert_at_once
from xihu.appeals.models import Appeal, AppealEvent, IdempotencyKey, Photo, RoutingTask
from xihu.appeals.schemas import AppealCreate, SubmitResult
from xihu.appeals.service._common import event_row
from xihu.appeals.service.routing import route
from xihu.core import audit, clock, events
from xihu.core.config import get_settings
from xihu.core.errors import Conflict, Forbidden, Invalid
from xihu.core.security import Actor, authorize, can
from xihu.places import service as places_service
from xihu.places.enums import UnitKind

_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


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
    event = event_row(
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
        route(session, appeal)
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
            event=event_row(0, Action.submit, None, State.submitted, actor, message),
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
