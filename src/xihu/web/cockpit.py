"""The three-level cockpit (三级驾驶舱): district → street → community pages composed from the indicators and
analysis domains' read services.

Who sees which area is decided by `indicators_service.check_area` (a street's staff their street and its
communities, a community's staff their community, district staff and departments everything). The appeal
figures are read through `xihu.analysis.service`; they are aggregates without personal data, so an actor who
may open an area's cockpit but lacks `analysis.view` (a street's grid staff) reads them as the system, after
the area check has passed.

There are no street boundary polygons in the data: on the map each street is a bubble at an approximate
centre written here by hand and labelled 示意 (illustrative), drawn over the real district outline."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from xihu.analysis import service as analysis_service
from xihu.analysis.schemas import AppealFigures, WarningRead
from xihu.core import clock
from xihu.core.config import get_settings
from xihu.core.errors import NotFound
from xihu.core.security import Actor, can
from xihu.indicators import service as indicators_service
from xihu.indicators.schemas import IndicatorCard
from xihu.places import service as places_service
from xihu.places.enums import UnitKind
from xihu.places.schemas import UnitRead
from xihu.web.deps import get_actor, get_session
from xihu.web.pages import staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)
ASSETS = Path(__file__).resolve().parent / "templates" / "cockpit"
PERIODS = (7, 30, 90, 365)
KEY_CARDS = 12

# Approximate centres (GCJ-02 lon, lat) of the streets, placed by hand from public maps, for drawing only:
# the data holds no street boundaries, so the map does not pretend to shade their areas.
STREET_CENTRES: dict[str, tuple[float, float]] = {
    "330106002": (120.146, 30.262),  # 北山街道
    "330106004": (120.137, 30.279),  # 西溪街道
    "330106005": (120.126, 30.291),  # 翠苑街道
    "330106007": (120.112, 30.282),  # 古荡街道
    "330106008": (120.128, 30.232),  # 西湖街道
    "330106009": (120.052, 30.252),  # 留下街道
    "330106010": (120.090, 30.168),  # 转塘街道
    "330106011": (120.068, 30.285),  # 蒋村街道
    "330106012": (120.108, 30.252),  # 灵隐街道
    "330106013": (120.101, 30.296),  # 文新街道
    "330106109": (120.088, 30.322),  # 三墩镇
    "330106110": (120.118, 30.145),  # 双浦镇
}


def _today() -> date:
    local = clock.local(clock.now())
    assert local is not None
    return local.date()


def _reader(actor: Actor) -> Actor:
    """The actor to read aggregates with: the viewer when allowed, else the system (area already checked)."""
    return actor if can(actor, "analysis.view") else Actor.system("驾驶舱")


def _crumbs(session: Session, unit: UnitRead | None) -> list[tuple[str, str | None]]:
    crumbs: list[tuple[str, str | None]] = [("西湖区", "/cockpit")]
    if unit is None:
        return crumbs
    if unit.kind in (UnitKind.community.value, UnitKind.village.value) and unit.parent_id is not None:
        street = places_service.get_unit(session=session, unit_id=unit.parent_id)
        crumbs.append((street.name, f"/cockpit/street/{street.id}"))
    crumbs.append((unit.name, None))
    return crumbs


def _map_points(
    session: Session, figures: AppealFigures | None, unit: UnitRead | None
) -> list[dict[str, Any]]:
    """The street bubbles: volume and rates per street; the current street (or the community's) is marked."""
    streets = places_service.list_units(session=session, kinds=[UnitKind.street])
    by_street = {a.unit_id: a for a in figures.by_area} if figures is not None and unit is None else {}
    current = None
    if unit is not None:
        current = unit.id if unit.kind == UnitKind.street.value else unit.parent_id
    points = []
    for s in streets:
        centre = STREET_CENTRES.get(s.code)
        if centre is None:
            continue
        area = by_street.get(s.id)
        points.append(
            {
                "name": s.name,
                "value": [centre[0], centre[1], area.received if area else 0],
                "received": area.received if area else None,
                "satisfaction": area.satisfaction_rate if area else None,
                "response": area.response_rate if area else None,
                "url": f"/cockpit/street/{s.id}",
                "current": s.id == current,
            }
        )
    return points


def _card_json(cards: list[IndicatorCard]) -> dict[str, Any]:
    return {
        c.code: {
            "periods": [p.period for p in c.series],
            "values": [p.value for p in c.series],
            "target": c.target_value,
            "colour": c.status_colour,
        }
        for c in cards
    }


_computed: dict[tuple[int | None, int, date], tuple[float, dict[str, Any]]] = {}
_computed_lock = threading.Lock()


def forget_computed() -> None:
    """Drop the cached cockpit computations (tests, and after reference data changes)."""
    with _computed_lock:
        _computed.clear()


def _page(request: Request, session: Session, actor: Actor, unit: UnitRead | None, days: int) -> Response:
    area_id = unit.id if unit else None
    # every viewer is checked, whether or not the figures are computed for them
    indicators_service.check_area(session=session, actor=actor, area_unit_id=area_id)
    end = _today()
    key = (area_id, days, end)
    ttl = get_settings().cockpit_cache_seconds
    now = time.monotonic()
    with _computed_lock:
        hit = _computed.get(key)
    if hit is not None and now - hit[0] < ttl:
        context = hit[1]
    else:
        context = _compute(session, actor, unit, days, end)
        if ttl > 0:
            with _computed_lock:
                if len(_computed) > 1000:  # areas × periods × days: bounded all the same
                    _computed.clear()
                _computed[key] = (now, context)
    return render(request, "cockpit/area.html", actor=actor, **context)


def _compute(session: Session, actor: Actor, unit: UnitRead | None, days: int, end: date) -> dict[str, Any]:
    """What an area's cockpit shows; the same for every viewer allowed to see the area."""
    area_id = unit.id if unit else None
    cards = indicators_service.indicator_cards(session=session, actor=actor, unit_id=area_id)
    start = end - timedelta(days=days - 1)
    reader = _reader(actor)
    figures = analysis_service.appeal_figures(
        session=session, actor=reader, area_unit_id=area_id, start=start, end=end
    )
    warnings: list[WarningRead] = analysis_service.list_open_warnings(
        session=session, actor=reader, area_unit_id=area_id, limit=8
    )
    level = "district" if unit is None else ("street" if unit.kind == UnitKind.street.value else "community")
    child_url = "/cockpit/street/{}" if level == "district" else "/cockpit/community/{}"
    chart = {
        "level": level,
        "days": [d.day.isoformat() for d in figures.by_day],
        "received": [d.received for d in figures.by_day],
        "completed": [d.completed for d in figures.by_day],
        "categories": [{"name": c.category, "value": c.count} for c in figures.top_categories[:8]],
        "children": [
            {"name": a.name, "value": a.received, "url": child_url.format(a.unit_id)} for a in figures.by_area
        ],
        "map": _map_points(session, figures, unit),
        "cards": _card_json(cards),
    }
    at_risk = [c for c in cards if c.status in ("limited", "deterioration")]
    return dict(
        unit=unit,
        level=level,
        title=unit.name if unit else "西湖区",
        crumbs=_crumbs(session, unit),
        cards=cards[:KEY_CARDS],
        card_total=len(cards),
        counts=indicators_service.status_counts(cards),
        at_risk=at_risk,
        figures=figures,
        warnings=warnings,
        children=figures.by_area,
        child_url=child_url,
        days=days,
        periods=PERIODS,
        start=start,
        end=end,
        chart_json=json.dumps(chart, ensure_ascii=False).replace("</", "<\\/"),
    )


def _days(value: int) -> int:
    return value if value in PERIODS else 30


@router.get("/cockpit")
def district(
    request: Request,
    days: int = 30,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The district's cockpit; a street's or a community's staff are sent to their own area's."""
    redirect = staff_or_redirect(request, actor, "cockpit.view")
    if redirect is not None:
        return redirect
    home = indicators_service.cockpit_home(session=session, actor=actor)
    if home is not None:
        unit = places_service.get_unit(session=session, unit_id=home)
        kind = "street" if unit.kind == UnitKind.street.value else "community"
        return RedirectResponse(f"/cockpit/{kind}/{home}", status_code=303)
    return _page(request, session, actor, None, _days(days))


def _unit_of(session: Session, unit_id: int, kinds: tuple[str, ...]) -> UnitRead:
    try:
        unit = places_service.get_unit(session=session, unit_id=unit_id)
    except NotFound:
        unit = None
    if unit is None or unit.kind not in kinds:
        raise NotFound("没有这个区域", english="no such area")
    return unit


@router.get("/cockpit/street/{unit_id}")
def street(
    request: Request,
    unit_id: int,
    days: int = 30,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """A street's cockpit: its indicators, appeals, communities and warnings."""
    redirect = staff_or_redirect(request, actor, "cockpit.view")
    if redirect is not None:
        return redirect
    unit = _unit_of(session, unit_id, (UnitKind.street.value,))
    return _page(request, session, actor, unit, _days(days))


@router.get("/cockpit/community/{unit_id}")
def community(
    request: Request,
    unit_id: int,
    days: int = 30,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """A community's cockpit."""
    redirect = staff_or_redirect(request, actor, "cockpit.view")
    if redirect is not None:
        return redirect
    unit = _unit_of(session, unit_id, (UnitKind.community.value, UnitKind.village.value))
    return _page(request, session, actor, unit, _days(days))


@router.get("/cockpit/assets/{name}")
def asset(name: str) -> Response:
    """The cockpit's script and stylesheet, kept with its templates and served same-origin for the CSP."""
    media = {"cockpit.js": "text/javascript", "cockpit.css": "text/css"}.get(name)
    if media is None:
        raise NotFound("文件不存在", english="no such asset")
    return FileResponse(ASSETS / name, media_type=media, headers={"Cache-Control": "public, max-age=3600"})
