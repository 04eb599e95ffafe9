"""JSON and image routes of the places domain."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from xihu.core.security import Actor
from xihu.places import service as places_service
from xihu.places.enums import UnitKind
from xihu.places.schemas import PlaceCreate, PlaceDetail, PlaceRead, UnitRead
from xihu.web.deps import get_actor, get_session, verify_csrf_api

router = APIRouter(tags=["places"])


@router.get("/api/units", response_model=list[UnitRead])
def units(
    kind: list[UnitKind] | None = Query(default=None),
    parent_id: int | None = None,
    session: Session = Depends(get_session),
) -> list[UnitRead]:
    """Units of the district: streets, communities, departments, grids."""
    return places_service.list_units(session=session, kinds=kind, parent_id=parent_id)


@router.get("/api/places/{code}", response_model=PlaceDetail)
def place(code: str, session: Session = Depends(get_session)) -> PlaceDetail:
    """The place a 西湖码 stands for."""
    return places_service.get_place_by_code(session=session, code=code)


@router.post(
    "/api/places", response_model=PlaceRead, status_code=201, dependencies=[Depends(verify_csrf_api)]
)
def create_place(
    data: PlaceCreate, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> PlaceRead:
    """Register a place and issue its 西湖码 (admins)."""
    return places_service.create_place(session=session, actor=actor, place_in=data)


def _url(request: Request, code: str) -> str:
    return places_service.report_url(request.app.state.settings.public_base_url, code)


@router.get("/places/{code}/qr.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def qr_png(code: str, request: Request, session: Session = Depends(get_session)) -> Response:
    """The place's QR code as PNG."""
    place = places_service.get_place_by_code(session=session, code=code)
    return Response(places_service.qr_png(url=_url(request, place.code)), media_type="image/png")


@router.get(
    "/places/{code}/qr.svg", response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}}
)
def qr_svg(code: str, request: Request, session: Session = Depends(get_session)) -> Response:
    """The place's QR code as SVG."""
    place = places_service.get_place_by_code(session=session, code=code)
    return Response(places_service.qr_svg(url=_url(request, place.code)), media_type="image/svg+xml")


class AutoSignIn(BaseModel):
    """Whether a unit signs automatically what is dispatched to it."""

    enabled: bool


@router.put(
    "/api/units/{unit_id}/auto-sign", response_model=UnitRead, dependencies=[Depends(verify_csrf_api)]
)
def set_auto_sign(
    unit_id: int, data: AutoSignIn, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> UnitRead:
    """Turn the 24-hour auto-sign mode of a unit on or off (admins)."""
    return places_service.set_auto_sign(session=session, actor=actor, unit_id=unit_id, enabled=data.enabled)
