"""Public, masked listings of appeals and their timeline steps (for Open311)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from xihu.appeals import sla
from xihu.appeals.enums import OPEN_STATES, DeadlineKind, State
from xihu.appeals.models import Appeal, AppealEvent, Deadline, Photo
from xihu.appeals.service.reads import names_for
from xihu.core.privacy import mask_text

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
    names = names_for(session, rows) if rows else {}
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
