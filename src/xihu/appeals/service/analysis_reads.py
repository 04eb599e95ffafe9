"""What the analysis rollups and detectors read about appeals (internal, without an actor)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from xihu.appeals.enums import DeadlineKind
from xihu.appeals.models import Appeal, Deadline
from xihu.appeals.schemas import RollupFacts


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
