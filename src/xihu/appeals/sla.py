"""SLA clocks: policies, working-hours calendars, and opening/meeting/cancelling deadlines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from xihu.appeals.enums import DeadlineKind
from xihu.appeals.models import Deadline, SlaPolicy
from xihu.core import clock
from xihu.core.db import memo

# The seeds: 1 minute to sign, 30 minutes to start handling or transfer, 24 hours to complete with feedback.
DEFAULT_MINUTES = {DeadlineKind.sign: 1, DeadlineKind.handle: 30, DeadlineKind.complete: 24 * 60}
WORK_WINDOWS = ((time(8, 30), time(12, 0)), (time(13, 30), time(17, 30)))


@dataclass(frozen=True)
class Policy:
    """Minutes for each clock and the calendar they run on."""

    sign: int
    handle: int
    complete: int
    calendar: str = "always"

    def minutes(self, kind: DeadlineKind) -> int:
        """Minutes allowed for one clock."""
        return {
            DeadlineKind.sign: self.sign,
            DeadlineKind.handle: self.handle,
            DeadlineKind.complete: self.complete,
        }[kind]


DEFAULT_POLICY = Policy(
    DEFAULT_MINUTES[DeadlineKind.sign],
    DEFAULT_MINUTES[DeadlineKind.handle],
    DEFAULT_MINUTES[DeadlineKind.complete],
)


def policy_for(*, session: Session, category: str | None, priority: str, unit_id: int | None) -> Policy:
    """The most specific configured policy (unit > category > priority), else the seeds' defaults."""
    best: tuple[int, SlaPolicy] | None = None
    for row in memo(session, "sla_policies", lambda: list(session.scalars(select(SlaPolicy)))):
        if row.unit_id is not None and row.unit_id != unit_id:
            continue
        if row.category is not None and row.category != category:
            continue
        if row.priority is not None and row.priority != priority:
            continue
        specificity = (
            4 * (row.unit_id is not None) + 2 * (row.category is not None) + (row.priority is not None)
        )
        if best is None or specificity > best[0]:
            best = (specificity, row)
    if best is None:
        return DEFAULT_POLICY
    row = best[1]
    return Policy(row.sign_minutes, row.handle_minutes, row.complete_minutes, row.calendar)


def add_minutes(start: datetime, minutes: int, calendar: str) -> datetime:
    """The due time `minutes` after `start`, counting only working hours on the workhours calendar."""
    if calendar != "workhours":
        return start + timedelta(minutes=minutes)
    remaining = timedelta(minutes=minutes)
    cursor = clock.local(start)
    assert cursor is not None
    for _ in range(3660):  # at most ten years of days: a bad policy must not loop forever
        if cursor.weekday() < 5:
            for begin, end in WORK_WINDOWS:
                w_start = cursor.replace(hour=begin.hour, minute=begin.minute, second=0, microsecond=0)
                w_end = cursor.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
                s = max(cursor, w_start)
                if s >= w_end:
                    continue
                if s + remaining <= w_end:
                    return clock.as_utc(s + remaining)
                remaining -= w_end - s
                cursor = w_end
        cursor = (cursor + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError("calendar has no working time")


def open_clocks(
    *,
    session: Session,
    appeal_id: int,
    unit_id: int | None,
    policy: Policy,
    kinds: tuple[DeadlineKind, ...] = tuple(DeadlineKind),
) -> list[Deadline]:
    """Start the clocks for a unit that has just received an appeal."""
    now = clock.now()
    rows = [
        Deadline(
            appeal_id=appeal_id,
            unit_id=unit_id,
            kind=kind.value,
            started_at=now,
            due_at=add_minutes(now, policy.minutes(kind), policy.calendar),
            open=True,
        )
        for kind in kinds
    ]
    session.add_all(rows)
    return rows


def pending() -> ColumnElement[bool]:
    """Clocks still waiting for their step: running, or breached and neither met nor cancelled since.

    The sweeper closes a clock when it breaches it (so it escalates once), but the step is still owed: lists
    show such a clock as overdue until the step is done or the clock is no longer needed.
    """
    return or_(
        Deadline.open.is_(True),
        and_(Deadline.breached_at.is_not(None), Deadline.met_at.is_(None), Deadline.cancelled_at.is_(None)),
    )


def meet(*, session: Session, appeal_id: int, kinds: tuple[DeadlineKind, ...]) -> None:
    """Stop clocks whose step is done (in time, or late after a breach), or that are no longer needed."""
    session.execute(
        update(Deadline)
        .where(Deadline.appeal_id == appeal_id, pending(), Deadline.kind.in_([k.value for k in kinds]))
        .values(open=False, met_at=clock.now())
    )


def cancel_all(*, session: Session, appeal_id: int) -> None:
    """Stop every pending clock (returned, transferred, merged, closed)."""
    session.execute(
        update(Deadline)
        .where(Deadline.appeal_id == appeal_id, pending())
        .values(open=False, cancelled_at=clock.now())
    )


def extend(*, session: Session, appeal_id: int, hours: int, calendar: str = "always") -> None:
    """Move the pending completion clock by approved hours, counted on the clock's own calendar.

    A clock already breached moves too, so lists count down to the new time; it keeps its breach (the
    rollups hold it as late) and is not escalated a second time.
    """
    for row in session.scalars(
        select(Deadline).where(
            Deadline.appeal_id == appeal_id, pending(), Deadline.kind == DeadlineKind.complete.value
        )
    ):
        row.due_at = add_minutes(row.due_at, hours * 60, calendar)


def clocks_of(*, session: Session, appeal_id: int) -> list[Deadline]:
    """Every clock of an appeal, oldest first."""
    return list(
        session.scalars(select(Deadline).where(Deadline.appeal_id == appeal_id).order_by(Deadline.id))
    )
