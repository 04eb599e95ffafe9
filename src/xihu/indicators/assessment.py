"""考核: a weighted score per street and per department for a period, from indicator progress and the appeals'
三率 (签收及时率, 办结率, 满意率).

Each part is scored 0–100: indicator progress as the average of the points of each indicator's status
(`STATUS_POINTS`; indicators without data are left out), and each rate as a percentage. The total is the
weighted mean of the parts that have data: a part without data is left out and the other weights are
rescaled, so that a unit is neither rewarded nor punished for a figure nobody measured (the page says so).

Streets are assessed on the appeals located in them (属地, the analysis domain's area figures); departments on
the appeals they led (the analysis domain's unit rates). Both are read through `xihu.analysis.service`."""

from __future__ import annotations

import calendar
import io
import re
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.analysis import service as analysis_service
from xihu.core import audit, clock
from xihu.core.errors import Invalid
from xihu.core.security import Actor, authorize, can
from xihu.indicators.enums import STATUS_POINTS, AssessedKind, ProgressStatus
from xihu.indicators.models import AssessmentScheme, Indicator, Observation
from xihu.indicators.schemas import SchemeRead, SchemeUpdate, ScoreRow
from xihu.indicators.service import progress
from xihu.places import service as places_service
from xihu.places.enums import UnitKind

DEFAULT_WEIGHTS = {"w_indicators": 40.0, "w_response": 20.0, "w_resolution": 20.0, "w_satisfaction": 20.0}
WEIGHT_LABELS = {
    "w_indicators": "指标进展",
    "w_response": "签收及时率",
    "w_resolution": "办结率",
    "w_satisfaction": "满意率",
}
_PERIOD = re.compile(r"^(\d{4})(?:-(0[1-9]|1[0-2]))?$")
EXPORT_COLUMNS = (
    "排名",
    "单位",
    "指标进展得分",
    "计分指标数",
    "签收及时率",
    "办结率",
    "满意率",
    "诉求件数",
    "总分",
)


def period_bounds(period: str) -> tuple[date, date]:
    """The first and last day of a period "2025" or "2025-06"."""
    match = _PERIOD.match(period.strip())
    if not match:
        raise Invalid("考核期格式应为 2025 或 2025-06", english="period must be YYYY or YYYY-MM")
    year = int(match.group(1))
    if match.group(2):
        month = int(match.group(2))
        return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
    return date(year, 1, 1), date(year, 12, 31)


def get_scheme(*, session: Session, actor: Actor, kind: AssessedKind) -> SchemeRead:
    """The weights of one kind of unit (the defaults until an admin changes them)."""
    authorize(actor, "assessment.view")
    row = session.scalar(select(AssessmentScheme).where(AssessmentScheme.unit_kind == kind.value))
    if row is None:
        return SchemeRead(unit_kind=kind.value, **DEFAULT_WEIGHTS)
    return SchemeRead.model_validate(row)


def set_scheme(*, session: Session, actor: Actor, kind: AssessedKind, weights: SchemeUpdate) -> SchemeRead:
    """Change the weights of one kind of unit: each at least 0, together exactly 100."""
    authorize(actor, "assessment.manage")
    values = weights.model_dump()
    total = sum(values.values())
    if abs(total - 100) > 1e-6:
        raise Invalid(
            f"各项权重之和须为 100（现为 {total:g}）", english=f"weights must sum to 100, not {total:g}"
        )
    row = session.scalar(select(AssessmentScheme).where(AssessmentScheme.unit_kind == kind.value))
    before = SchemeRead.model_validate(row).model_dump() if row else dict(DEFAULT_WEIGHTS)
    if row is None:
        row = AssessmentScheme(unit_kind=kind.value)
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = clock.now()
    row.updated_by_label = actor.label[:64]
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="assessment.weights",
        entity="assessment_scheme",
        entity_id=kind.value,
        detail={"before": {k: before[k] for k in values}, "after": values},
    )
    return SchemeRead.model_validate(row)


def _indicator_scores(
    session: Session, units: list[tuple[int, str]], kind: AssessedKind, last_year: int
) -> dict[int, tuple[float | None, int]]:
    """(average status points, number of indicators counted) per unit, with the figures up to last_year."""
    indicators = list(session.scalars(select(Indicator).order_by(Indicator.id)))
    approved = Observation.status == "approved"
    if kind == AssessedKind.street:
        ids = [u for u, _ in units]
        stmt = select(Observation).where(approved, Observation.unit_id.in_(ids)) if ids else None
    else:
        stmt = select(Observation).where(approved, Observation.unit_id.is_(None))
    series: dict[tuple[int | None, int], list[Observation]] = {}
    for obs in session.scalars(stmt) if stmt is not None else []:
        head = obs.period[:4]
        if head.isascii() and head.isdigit() and int(head) <= last_year:
            series.setdefault((obs.unit_id, obs.indicator_id), []).append(obs)
    out: dict[int, tuple[float | None, int]] = {}
    for unit_id, name in units:
        points: list[float] = []
        for ind in indicators:
            if kind == AssessedKind.street:
                if "street" not in ind.levels:
                    continue
                found = series.get((unit_id, ind.id), [])
                status, _ = progress(ind, found, own_baseline=True)
            else:
                if ind.owner != name:
                    continue
                status, _ = progress(ind, series.get((None, ind.id), []))
            if status != ProgressStatus.no_data:
                points.append(STATUS_POINTS[status])
        out[unit_id] = (sum(points) / len(points) if points else None, len(points))
    return out


def _pct(value: float | None) -> float | None:
    return round(100 * value, 2) if value is not None else None


def score(*, session: Session, actor: Actor, kind: AssessedKind, period: str) -> list[ScoreRow]:
    """The ranking of the streets or departments for a period, best first (units without any data last)."""
    authorize(actor, "assessment.view")
    start, end = period_bounds(period)
    scheme = get_scheme(session=session, actor=actor, kind=kind)
    unit_kind = UnitKind.street if kind == AssessedKind.street else UnitKind.department
    units = [(u.id, u.name) for u in places_service.list_units(session=session, kinds=[unit_kind])]
    # the figures are aggregates without personal data; the 考核 permission was checked above
    reader = actor if can(actor, "analysis.view") else Actor.system("考核")
    rates: dict[int, tuple[float | None, float | None, float | None, int]] = {}
    if kind == AssessedKind.street:
        figures = analysis_service.appeal_figures(
            session=session, actor=reader, area_unit_id=None, start=start, end=end
        )
        for area in figures.by_area:
            rates[area.unit_id] = (
                area.response_rate,
                area.resolution_rate,
                area.satisfaction_rate,
                area.received,
            )
    else:
        for r in analysis_service.unit_rates(
            session=session, actor=reader, unit_ids=[u for u, _ in units], start=start, end=end
        ):
            rates[r.unit_id] = (r.response_rate, r.resolution_rate, r.satisfaction_rate, r.received)
    progress_scores = _indicator_scores(session, units, kind, end.year)
    rows: list[ScoreRow] = []
    for unit_id, name in units:
        response, resolution, satisfaction, received = rates.get(unit_id, (None, None, None, 0))
        ind_score, counted = progress_scores[unit_id]
        parts = [
            (scheme.w_indicators, ind_score),
            (scheme.w_response, _pct(response)),
            (scheme.w_resolution, _pct(resolution)),
            (scheme.w_satisfaction, _pct(satisfaction)),
        ]
        weight = sum(w for w, s in parts if s is not None)
        total = sum(w * s for w, s in parts if s is not None) / weight if weight > 0 else None
        rows.append(
            ScoreRow(
                rank=0,
                unit_id=unit_id,
                unit_name=name,
                indicator_score=round(ind_score, 2) if ind_score is not None else None,
                indicators_counted=counted,
                response_rate=_pct(response),
                resolution_rate=_pct(resolution),
                satisfaction_rate=_pct(satisfaction),
                appeals=received,
                total=round(total, 2) if total is not None else None,
            )
        )
    rows.sort(key=lambda r: (r.total is None, -(r.total or 0), r.unit_name))
    for i, row in enumerate(rows, start=1):
        row.rank = i
    return rows


def export_xlsx(*, session: Session, actor: Actor, kind: AssessedKind, period: str) -> bytes:
    """The ranking as an Excel file, with the weights used on a second sheet."""
    rows = score(session=session, actor=actor, kind=kind, period=period)
    scheme = get_scheme(session=session, actor=actor, kind=kind)
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = f"{kind.label}考核 {period}"
    sheet.append(list(EXPORT_COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for r in rows:
        sheet.append(
            [
                r.rank,
                r.unit_name,
                r.indicator_score,
                r.indicators_counted,
                r.response_rate,
                r.resolution_rate,
                r.satisfaction_rate,
                r.appeals,
                r.total,
            ]
        )
    sheet.column_dimensions["B"].width = 22
    weights = book.create_sheet("权重")
    weights.append(["项目", "权重（分）"])
    for key, label in WEIGHT_LABELS.items():
        weights.append([label, getattr(scheme, key)])
    weights.append(["说明", "无数据的项目不计分，其余项目按权重折算为百分制"])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()
