"""Figures over many appeals: counts by state and the dispatch quality report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xihu.appeals.enums import Action
from xihu.appeals.models import Appeal, AppealEvent
from xihu.appeals.schemas import DispatchQualityRow
from xihu.core import clock
from xihu.core.security import Actor, authorize
from xihu.places import service as places_service


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
