"""Learning from staff: returns, transfers and manual dispatches become labelled feedback for retraining."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core.events import subscribe
from xihu.dispatch.models import DispatchDecision, DispatchFeedback
from xihu.places import service as places_service


def _predicted(session: Session, appeal_id: int) -> DispatchDecision | None:
    return session.scalar(
        select(DispatchDecision)
        .where(DispatchDecision.appeal_id == appeal_id)
        .order_by(DispatchDecision.id.desc())
        .limit(1)
    )


def _unit_name(session: Session, unit_id: int | None) -> str:
    names = places_service.unit_names(session=session, unit_ids={unit_id} if unit_id else set())
    return names.get(unit_id or 0, "承办单位")


def _record(
    session: Session,
    *,
    appeal_id: int,
    kind: str,
    text: str,
    category: str | None,
    unit_id: int | None,
    reason: str = "",
) -> None:
    decision = _predicted(session, appeal_id)
    session.add(
        DispatchFeedback(
            appeal_id=appeal_id,
            kind=kind,
            text=text[:4000],
            category=category,
            unit_id=unit_id,
            predicted_category=decision.category if decision else None,
            predicted_unit_id=decision.unit_id if decision else None,
            model_version=decision.model_version if decision else None,
            reason=reason[:500],
        )
    )


@subscribe("appeal.routed_manually")
def on_manual_dispatch(
    *,
    session: Session,
    appeal_id: int,
    unit_id: int,
    category: str | None,
    text: str = "",
    automatic: bool = False,
    **_: Any,
) -> None:
    """A dispatcher's choice is a label: the category (when given) and the unit for this text."""
    if not automatic:
        _record(session, appeal_id=appeal_id, kind="manual", text=text, category=category, unit_id=unit_id)


@subscribe("appeal.returned_with_reason")
def on_return(
    *, session: Session, appeal_id: int, unit_id: int | None, reason: str, text: str = "", **_: Any
) -> None:
    """A return says the unit was wrong; the corrected unit arrives with the next manual dispatch."""
    _record(
        session,
        appeal_id=appeal_id,
        kind="return",
        text=text,
        category=None,
        unit_id=None,
        reason=f"{_unit_name(session, unit_id)}退回：{reason}",
    )


@subscribe("appeal.transferred")
def on_transfer(
    *, session: Session, appeal_id: int, unit_id: int, reason: str, text: str = "", **_: Any
) -> None:
    """A transfer names the unit that should have had it (the category is unchanged)."""
    _record(
        session,
        appeal_id=appeal_id,
        kind="transfer",
        text=text,
        category=None,
        unit_id=unit_id,
        reason=reason,
    )
