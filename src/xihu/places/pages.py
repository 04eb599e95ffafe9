"""HTML pages of the places domain: the list of 西湖码 places and the printable A4 sheet."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from xihu.core.security import Actor
from xihu.places import service as places_service
from xihu.web.deps import get_actor, get_session
from xihu.web.pages import staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/staff/places")
def places(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """Every place that carries a 西湖码, with its code, its QR images and its printable sheet."""
    redirect = staff_or_redirect(request, actor)
    if redirect is not None:
        return redirect
    items = places_service.list_places(session=session, limit=1000)
    base = request.app.state.settings.public_base_url
    return render(
        request,
        "places/list.html",
        actor=actor,
        items=items,
        urls={p.code: places_service.report_url(base, p.code) for p in items},
    )


@router.get("/places/{code}/sheet")
def sheet(code: str, request: Request, session: Session = Depends(get_session)) -> Response:
    """A printable A4 sheet with the place's big QR code (public: it is posted on a wall anyway)."""
    place = places_service.get_place_by_code(session=session, code=code)
    url = places_service.report_url(request.app.state.settings.public_base_url, place.code)
    return render(request, "places/sheet.html", place=place, url=url)
