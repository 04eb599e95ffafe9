"""首派准确率 / 回退率 report: a page and its JSON, by unit and week."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class Tally:
    """Counts behind 首派准确率 and 回退率 for one unit, one week or both."""

    first: int = 0
    correct: int = 0
    auto: int = 0
    dispatched: int = 0
    returned: int = 0

    def add(self, row: DispatchQualityRow) -> None:
        """Count one unit-week row in."""
        self.first += row.first_dispatched
        self.correct += row.first_correct
        self.auto += row.first_auto
        self.dispatched += row.dispatched
        self.returned += row.returned

    @property
    def accuracy(self) -> float | None:
        """首派准确率, None when nothing was first dispatched."""
        return self.correct / self.first if self.first else None

    @property
    def return_rate(self) -> float | None:
        """回退率, None when nothing was dispatched."""
        return self.returned / self.dispatched if self.dispatched else None


@dataclass
class UnitLine:
    """One unit across the report's weeks."""

    unit_name: str
    total: Tally = field(default_factory=Tally)
    by_week: dict[str, Tally] = field(default_factory=dict)


def by_week(rows: list[DispatchQualityRow]) -> list[tuple[str, Tally]]:
    """District totals per ISO week, newest first."""
    weeks: dict[str, Tally] = {}
    for r in rows:
        weeks.setdefault(r.week, Tally()).add(r)
    return sorted(weeks.items(), reverse=True)


def by_unit(rows: list[DispatchQualityRow]) -> list[UnitLine]:
    """One line per unit with its weeks; the units that returned most (then the least accurate) first.

    Leaders look for the units that bounce appeals: those come first, not an alphabetical list.
    """
    units: dict[int, UnitLine] = {}
    for r in rows:
        line = units.setdefault(r.unit_id, UnitLine(r.unit_name))
        line.total.add(r)
        line.by_week.setdefault(r.week, Tally()).add(r)

    def worst_first(line: UnitLine) -> tuple[int, float, str]:
        accuracy = line.total.accuracy
        return (-line.total.returned, 1.0 if accuracy is None else accuracy, line.unit_name)

    return sorted(units.values(), key=worst_first)


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
