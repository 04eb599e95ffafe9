"""JSON routes of the responsibility table (权责清单) and of boundary import; they translate and call the
services."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from sqlalchemy.orm import Session

from xihu.core.security import Actor
from xihu.dispatch import location, responsibility
from xihu.dispatch.schemas import BoundaryImportResult, RuleCreate, RuleHistoryRead, RuleRead, RuleUpdate
from xihu.web.deps import get_actor, get_session, verify_csrf_api

router = APIRouter(prefix="/api/dispatch", tags=["dispatch (responsibility table)"])
WRITE = [Depends(verify_csrf_api)]


@router.get("/rules", response_model=list[RuleRead])
def list_rules(
    include_inactive: bool = False,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> list[RuleRead]:
    """The responsibility table: category (+ keywords, place type, hours, area) -> responsible unit."""
    return responsibility.list_rules(session=session, actor=actor, include_inactive=include_inactive)


@router.get("/rules/history", response_model=list[RuleHistoryRead])
def rules_history(
    rule_id: int | None = None,
    limit: int = Query(default=200, ge=1, le=1000),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> list[RuleHistoryRead]:
    """Every change of the table (or of one rule), newest first, with before and after."""
    return responsibility.history(session=session, actor=actor, rule_id=rule_id, limit=limit)


@router.post("/rules", response_model=RuleRead, status_code=201, dependencies=WRITE)
def create_rule(
    data: RuleCreate, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> RuleRead:
    """Add a rule (admins)."""
    return responsibility.create_rule(session=session, actor=actor, rule_in=data)


@router.put("/rules/{rule_id}", response_model=RuleRead, dependencies=WRITE)
def update_rule(
    rule_id: int,
    data: RuleUpdate,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> RuleRead:
    """Change a rule: only the fields sent change (admins)."""
    return responsibility.update_rule(session=session, actor=actor, rule_id=rule_id, rule_in=data)


@router.delete("/rules/{rule_id}", response_model=RuleRead, dependencies=WRITE)
def deactivate_rule(
    rule_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> RuleRead:
    """Deactivate a rule (rows are kept for the history; admins)."""
    return responsibility.deactivate_rule(session=session, actor=actor, rule_id=rule_id)


@router.post("/boundaries", response_model=BoundaryImportResult, dependencies=WRITE)
def import_boundaries(
    geojson: dict[str, Any] = Body(..., description="GeoJSON FeatureCollection of street/community polygons"),
    crs: str = Query(default="wgs84", max_length=16, description="wgs84 or gcj02 (Amap/DataV)"),
    name_property: str = Query(default="name", max_length=40),
    source: str = Query(default="", max_length=200),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Import street/community boundaries matched by name; GCJ-02 input is converted to WGS84 (admins)."""
    return location.import_boundaries(
        session=session, actor=actor, geojson=geojson, crs=crs, name_property=name_property, source=source
    )
