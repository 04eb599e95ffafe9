"""首派准确率 / 回退率 report: a page, its JSON and an Excel file, by unit and week."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import DispatchQualityRow
from xihu.core.security import Actor
from xihu.dispatch.quality_tables import by_unit, by_week, quality_xlsx
from xihu.web.deps import get_actor, get_session
from xihu.web.downloads import xlsx_download
from xihu.web.pages import staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)
api = APIRouter(tags=["dispatch"])


@api.get("/api/dispatch/quality", response_model=list[DispatchQualityRow])
def quality(
    weeks: int = Query(default=8, ge=1, le=52),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> list[DispatchQualityRow]:
    """First-dispatch accuracy and return rate by unit and ISO week (Asia/Shanghai)."""
    return appeal_service.dispatch_quality(session=session, actor=actor, weeks=weeks)


@router.get("/staff/dispatch/report")
def report(
    request: Request,
    weeks: int = Query(default=8, ge=1, le=52),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The report page: totals per week, then every unit across the weeks, those that return most first."""
    redirect = staff_or_redirect(request, actor, "dispatch.report")
    if redirect is not None:
        return redirect
    rows = appeal_service.dispatch_quality(session=session, actor=actor, weeks=weeks)
    totals = by_week(rows)
    return render(
        request,
        "dispatch/report.html",
        actor=actor,
        weeks=weeks,
        totals=totals,
        week_names=[week for week, _ in reversed(totals)],  # left to right, oldest to newest
        units=by_unit(rows),
    )


@router.get("/staff/dispatch/report.xlsx")
def report_xlsx(
    request: Request,
    weeks: int = Query(default=8, ge=1, le=52),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The report as an Excel file: the weeks on one sheet, the units with their weeks on another."""
    redirect = staff_or_redirect(request, actor, "dispatch.report")
    if redirect is not None:
        return redirect
    rows = appeal_service.dispatch_quality(session=session, actor=actor, weeks=weeks)
    return xlsx_download(quality_xlsx(rows), f"派单质量_近{weeks}周.xlsx")
