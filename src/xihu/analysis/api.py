"""JSON routes of the analysis domain: figures, assessment rates, warnings and detector runs."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from xihu.analysis import service
from xihu.analysis.schemas import AppealFigures, UnitRates, WarningRead
from xihu.core.security import Actor
from xihu.web.deps import get_actor, get_session, verify_csrf_api

router = APIRouter(tags=["analysis"])


def _period(start: date | None, end: date | None) -> tuple[date, date]:
    end = end or service.today()
    return (start or end - timedelta(29)), end


@router.get("/api/analysis/figures", response_model=AppealFigures)
def figures(
    start: date | None = None,
    end: date | None = None,
    area_unit_id: int | None = Query(default=None, ge=1, le=2_147_483_647),
    category: str | None = Query(default=None, max_length=32),
    channel: str | None = Query(default=None, max_length=16),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealFigures:
    """Appeal figures of the district, a street or a community (default: the last 30 days)."""
    s, e = _period(start, end)
    return service.appeal_figures(
        session=session,
        actor=actor,
        area_unit_id=area_unit_id,
        start=s,
        end=e,
        category=category or None,
        channel=channel or None,
    )


@router.get("/api/analysis/unit-rates", response_model=list[UnitRates])
def unit_rates(
    start: date | None = None,
    end: date | None = None,
    unit_id: list[int] | None = Query(default=None),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> list[UnitRates]:
    """签收及时率, 办结率, 满意率 per handling unit."""
    s, e = _period(start, end)
    return service.unit_rates(session=session, actor=actor, unit_ids=unit_id, start=s, end=e)


@router.get("/api/warnings", response_model=list[WarningRead])
def warnings(
    state: str | None = Query(default=None, pattern="^(active|open|acknowledged|closed)$"),
    kind: str | None = Query(
        default=None, pattern="^(spike|hotspot|topic|repeat_caller|sla_risk|dissatisfaction)$"
    ),
    area_unit_id: int | None = Query(default=None, ge=1, le=2_147_483_647),
    limit: int = Query(default=100, ge=1, le=500),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> list[WarningRead]:
    """Warnings, newest first."""
    return service.list_warnings(
        session=session, actor=actor, state=state, kind=kind, area_unit_id=area_unit_id, limit=limit
    )


@router.get("/api/warnings/{warning_id}", response_model=WarningRead)
def warning(
    warning_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> WarningRead:
    """One warning with its evidence and explanation."""
    return service.get_warning(session=session, actor=actor, warning_id=warning_id)


@router.post(
    "/api/warnings/{warning_id}/acknowledge",
    response_model=WarningRead,
    dependencies=[Depends(verify_csrf_api)],
)
def acknowledge(
    warning_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> WarningRead:
    """确认 a warning."""
    return service.acknowledge(session=session, actor=actor, warning_id=warning_id)


class CloseIn(BaseModel):
    """Closing a warning needs a note."""

    note: str = Field(min_length=2, max_length=500)


@router.post(
    "/api/warnings/{warning_id}/close", response_model=WarningRead, dependencies=[Depends(verify_csrf_api)]
)
def close(
    warning_id: int, data: CloseIn, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> WarningRead:
    """关闭 a warning with a note."""
    return service.close_warning(session=session, actor=actor, warning_id=warning_id, note=data.note)


@router.post("/api/analysis/detect", dependencies=[Depends(verify_csrf_api)])
def detect(actor: Actor = Depends(get_actor), session: Session = Depends(get_session)) -> dict[str, Any]:
    """Run every detector now (admins); returns what was found, raised and refreshed."""
    return service.run_detectors(session=session, actor=actor)
