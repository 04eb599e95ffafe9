"""HTML pages of the analysis domain: 研判分析 (filters, charts, map), 预警 (list, detail, handling), 简报."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from xihu.analysis import briefs, service
from xihu.analysis.enums import KIND_LABELS, WarningKind, WarningState
from xihu.analysis.geo import STREET_CENTRES_GCJ02
from xihu.appeals.enums import Channel
from xihu.core import geo
from xihu.core.errors import DomainError, Invalid
from xihu.core.security import Actor
from xihu.dispatch import service as dispatch_service
from xihu.places import service as places_service
from xihu.places.enums import UnitKind
from xihu.web.deps import get_actor, get_session, verify_csrf_form
from xihu.web.pages import error_text, form_str, get_form, staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent / "static"


def _date(value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid("日期格式应为 YYYY-MM-DD", english="dates are YYYY-MM-DD") from None


def _int(value: str | None) -> int | None:
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise Invalid("区域参数有误", english="bad area id")
    return int(value)


def _areas(session: Session) -> list[dict[str, Any]]:
    streets = places_service.list_units(session=session, kinds=[UnitKind.street])
    communities = places_service.list_units(session=session, kinds=[UnitKind.community, UnitKind.village])
    out = []
    for s in streets:
        out.append(
            {"id": s.id, "name": s.name, "communities": [c for c in communities if c.parent_id == s.id]}
        )
    return out


def _map_data(session: Session, figures: Any, warnings: list[Any]) -> dict[str, Any]:
    """Street circles at approximate centres (示意) and hotspot points, all in GCJ-02 for the outline map."""
    streets = places_service.list_units(session=session, kinds=[UnitKind.street])
    code_of = {s.id: s.code for s in streets}
    points = []
    for a in figures.by_area:
        centre = STREET_CENTRES_GCJ02.get(code_of.get(a.unit_id, ""))
        if centre is not None:
            points.append({"name": a.name, "value": [centre[0], centre[1], a.received], "id": a.unit_id})
    hot = []
    for w in warnings:
        centre = w.evidence.get("center") if w.kind == WarningKind.hotspot.value else None
        if centre:
            lon, lat = geo.wgs84_to_gcj02(centre[1], centre[0])
            hot.append({"name": w.title, "value": [lon, lat, w.evidence.get("observed", 0)], "id": w.id})
    return {"streets": points, "hotspots": hot}


@router.get("/staff/analysis/analysis.js")
def script() -> FileResponse:
    """The charts and the map of the analysis pages (served from this package, no CDN)."""
    return FileResponse(STATIC / "analysis.js", media_type="text/javascript")


@router.get("/staff/analysis")
def analysis_page(
    request: Request,
    start: str | None = None,
    end: str | None = None,
    area: str | None = None,
    category: str | None = Query(default=None, max_length=32),
    channel: str | None = Query(default=None, max_length=16),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """研判分析: figures for a period, area, category and channel, with charts and the district map."""
    redirect = staff_or_redirect(request, actor, "analysis.view")
    if redirect is not None:
        return redirect
    end_day = _date(end, service.today())
    start_day = _date(start, end_day - timedelta(29))
    area_id = _int(area)
    figures = service.appeal_figures(
        session=session,
        actor=actor,
        area_unit_id=area_id,
        start=start_day,
        end=end_day,
        category=category or None,
        channel=channel or None,
    )
    warnings = service.list_open_warnings(session=session, actor=actor, area_unit_id=area_id, limit=50)
    chart = {
        "days": [[d.day.isoformat(), d.received, d.completed] for d in figures.by_day],
        "categories": [[c.category, c.count] for c in figures.top_categories],
        "channels": [[c.label, c.count] for c in figures.by_channel],
        "areas": [
            [a.name, a.received, a.resolution_rate, a.satisfaction_rate, a.response_rate]
            for a in figures.by_area
        ],
        "map": _map_data(session, figures, warnings) if area_id is None else None,
    }
    return render(
        request,
        "analysis/analysis.html",
        actor=actor,
        figures=figures,
        start=start_day,
        end=end_day,
        area=area_id,
        category=category or "",
        channel=channel or "",
        areas=_areas(session),
        categories=dispatch_service.categories(),
        channels=list(Channel),
        warnings=warnings[:8],
        chart_json=json.dumps(chart, ensure_ascii=False),
        pct=briefs.pct,
    )


@router.get("/staff/warnings")
def warnings_page(
    request: Request,
    state: str = Query(default="active", pattern="^(active|open|acknowledged|closed|all)$"),
    kind: str = Query(default="", pattern="^(|spike|hotspot|topic|repeat_caller|sla_risk|dissatisfaction)$"),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """预警 list with state and kind filters."""
    redirect = staff_or_redirect(request, actor, "analysis.view")
    if redirect is not None:
        return redirect
    rows = service.list_warnings(
        session=session, actor=actor, state=None if state == "all" else state, kind=kind or None, limit=300
    )
    counts = service.counts_by_kind(session=session, actor=actor)
    return render(
        request,
        "analysis/warnings.html",
        actor=actor,
        rows=rows,
        state=state,
        kind=kind,
        kinds=[(k.value, KIND_LABELS[k], counts.get(k.value, 0)) for k in WarningKind],
        states=[("active", "未关闭")] + [(s.value, s.label) for s in WarningState] + [("all", "全部")],
    )


@router.get("/staff/warnings/{warning_id}")
def warning_page(
    warning_id: int,
    request: Request,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """One warning: what was observed, what was expected, how unlikely, the appeals involved."""
    redirect = staff_or_redirect(request, actor, "analysis.view")
    if redirect is not None:
        return redirect
    warning = service.get_warning(session=session, actor=actor, warning_id=warning_id)
    return _warning(request, actor, warning)


def _warning(request: Request, actor: Actor, warning: Any, error: str = "", status: int = 200) -> Response:
    return render(
        request,
        "analysis/warning.html",
        status_code=status,
        actor=actor,
        w=warning,
        error=error,
        can_handle="warning.handle" in actor.permissions,
        evidence_json=json.dumps(warning.evidence, ensure_ascii=False, indent=1),
    )


@router.post("/staff/warnings/{warning_id}/{action}", dependencies=[Depends(verify_csrf_form)])
def warning_action(
    warning_id: int,
    action: str,
    request: Request,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """确认 or 关闭 a warning from its page."""
    redirect = staff_or_redirect(request, actor, "warning.handle")
    if redirect is not None:
        return redirect
    try:
        with session.begin_nested():
            if action == "acknowledge":
                service.acknowledge(session=session, actor=actor, warning_id=warning_id)
            elif action == "close":
                service.close_warning(
                    session=session, actor=actor, warning_id=warning_id, note=form_str(form, "note")
                )
            else:
                raise Invalid("未知操作", english="unknown action")
    except DomainError as exc:
        message, status = error_text(exc)
        warning = service.get_warning(session=session, actor=actor, warning_id=warning_id)
        return _warning(request, actor, warning, error=message, status=status)
    return RedirectResponse(f"/staff/warnings/{warning_id}", status_code=303)


def _brief(request: Request, actor: Actor, session: Session, kind: str, day: str | None) -> briefs.Brief:
    if kind not in briefs.KINDS:
        raise Invalid("简报类型只能是日报或周报", english="kind must be daily or weekly")
    default = service.today() - timedelta(1) if kind == "daily" else service.today()
    return briefs.build(session=session, actor=actor, kind=kind, day=_date(day, default))


@router.get("/staff/briefs")
def briefs_page(
    request: Request,
    kind: str = Query(default="daily", pattern="^(daily|weekly)$"),
    day: str | None = None,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """日报 / 周报 as a page, with links to its Excel and PDF files."""
    redirect = staff_or_redirect(request, actor, "analysis.view")
    if redirect is not None:
        return redirect
    brief = _brief(request, actor, session, kind, day)
    return render(
        request,
        "analysis/briefs.html",
        actor=actor,
        b=brief,
        kpis=briefs.kpis(brief),
        charts=briefs.charts(brief),
        pct=briefs.pct,
        day=brief.end if kind == "daily" else brief.start,
    )


def _brief_file(
    request: Request,
    actor: Actor,
    session: Session,
    kind: str,
    day: str,
    to_bytes: Callable[[briefs.Brief], bytes],
    media_type: str,
    ext: str,
) -> Response:
    """A brief rendered as a downloadable file (staff with analysis.view only)."""
    redirect = staff_or_redirect(request, actor, "analysis.view")
    if redirect is not None:
        return redirect
    brief = _brief(request, actor, session, kind, day)
    return Response(
        to_bytes(brief),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="xihu-brief-{kind}-{brief.start}.{ext}"'},
    )


@router.get("/staff/briefs/{kind}/{day}.xlsx")
def brief_excel(
    kind: str,
    day: str,
    request: Request,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The brief as an Excel workbook."""
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return _brief_file(request, actor, session, kind, day, briefs.to_excel, xlsx, "xlsx")


@router.get("/staff/briefs/{kind}/{day}.pdf")
def brief_pdf(
    kind: str,
    day: str,
    request: Request,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The brief as a PDF with its Chinese text and charts."""
    return _brief_file(request, actor, session, kind, day, _brief_pdf, "application/pdf", "pdf")


def _brief_pdf(brief: briefs.Brief) -> bytes:
    return briefs.to_pdf(briefs.print_html(brief))
