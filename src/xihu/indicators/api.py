"""JSON routes of the indicators domain."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from xihu.core.security import Actor
from xihu.indicators import reporting
from xihu.indicators import service as indicators_service
from xihu.indicators.enums import ReportStatus
from xihu.indicators.schemas import IndicatorRead, ReportCreate, ReportDecision, ReportRead
from xihu.web.deps import get_actor, get_session, verify_csrf_api

router = APIRouter(tags=["indicators"])


@router.get("/api/indicators", response_model=list[IndicatorRead])
def indicators(session: Session = Depends(get_session)) -> list[IndicatorRead]:
    """共富指标: every indicator with its target, latest district value and progress status."""
    return indicators_service.list_indicators(session=session)


@router.get("/api/indicators/reports", response_model=list[ReportRead])
def reports(
    status: ReportStatus | None = None,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> list[ReportRead]:
    """填报记录: approvers see all, a unit's staff their unit's."""
    return reporting.list_reports(session=session, actor=actor, status=status)


@router.post(
    "/api/indicators/reports",
    response_model=ReportRead,
    status_code=201,
    dependencies=[Depends(verify_csrf_api)],
)
def submit(
    data: ReportCreate, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> ReportRead:
    """填报: submit a value for (indicator, period, unit); it counts once approved."""
    return reporting.submit_report(session=session, actor=actor, data=data, channel="api")


@router.post(
    "/api/indicators/reports/{report_id}/decision",
    response_model=ReportRead,
    dependencies=[Depends(verify_csrf_api)],
)
def decide(
    report_id: int,
    decision: ReportDecision,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> ReportRead:
    """审核: approve, or reject with a reason."""
    return reporting.decide_report(session=session, actor=actor, report_id=report_id, decision=decision)
