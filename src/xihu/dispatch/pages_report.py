"""首派准确率 / 回退率 report: a page and its JSON, by unit and week."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import DispatchQualityRow
from xihu.core.security import Actor
from xihu.web.deps import get_actor, get_session
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
    """The report page: totals per week and the units with the most returns."""
    redirect = staff_or_redirect(request, actor, "dispatch.report")
    if redirect is not None:
        return redirect
    rows = appeal_service.dispatch_quality(session=session, actor=actor, weeks=weeks)
    weeks_total: dict[str, dict[str, int]] = {}
    for r in rows:
        t = weeks_total.setdefault(
            r.week, {"first": 0, "correct": 0, "auto": 0, "dispatched": 0, "returned": 0}
        )
        t["first"] += r.first_dispatched
        t["correct"] += r.first_correct
        t["auto"] += r.first_auto
        t["dispatched"] += r.dispatched
        t["returned"] += r.returned
    return render(
        request,
        "dispatch/report.html",
        actor=actor,
        rows=rows,
        weeks=weeks,
        totals=sorted(weeks_total.items(), reverse=True),
    )
