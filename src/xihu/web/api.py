"""JSON routes for login, logout and the staff member's messages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from xihu.core import outbox, security
from xihu.core.errors import Forbidden, Unauthenticated
from xihu.core.security import Actor
from xihu.web.deps import SESSION_COOKIE, csrf_token, get_actor, get_session, verify_csrf_api

router = APIRouter(prefix="/api", tags=["auth"])


class LoginIn(BaseModel):
    """Credentials."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=128)


def start_session(
    request: Request, response: Response, session: Session, username: str, password: str
) -> Actor:
    """Log in, replacing any earlier session cookie (no session fixation)."""
    security.logout(session=session, token=request.cookies.get(SESSION_COOKIE))
    settings = request.app.state.settings
    try:
        token, user = security.login(
            session=session, username=username, password=password, hours=settings.session_hours
        )
    except (Unauthenticated, Forbidden):
        session.commit()  # keep the failure count that locks the account after repeated wrong passwords
        raise
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies or request.url.scheme == "https",  # https behind a proxy too
        max_age=settings.session_hours * 3600,
    )
    return user.to_actor()


@router.post("/auth/login")
def login(
    data: LoginIn, request: Request, response: Response, session: Session = Depends(get_session)
) -> dict[str, Any]:
    """Log in; the session cookie is set and the CSRF token returned for later writes."""
    actor = start_session(request, response, session, data.username, data.password)
    return {
        "username": actor.username,
        "role": actor.role,
        "unit_id": actor.unit_id,
        "csrf_token": csrf_token(request),
    }


@router.post("/auth/logout", dependencies=[Depends(verify_csrf_api)])
def logout(request: Request, response: Response, session: Session = Depends(get_session)) -> dict[str, bool]:
    """End the session."""
    security.logout(session=session, token=request.cookies.get(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE)
    return {"ok": True}


@router.get("/me")
def me(actor: Actor = Depends(get_actor)) -> dict[str, Any]:
    """Who is logged in."""
    if not actor.is_staff:
        raise Unauthenticated("请先登录", english="login required")
    return {
        "username": actor.username,
        "display_name": actor.display_name,
        "role": actor.role,
        "unit_id": actor.unit_id,
    }


@router.get("/messages")
def messages(
    actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> list[dict[str, Any]]:
    """The staff member's in-app messages."""
    if not actor.is_staff or actor.user_id is None:
        raise Unauthenticated("请先登录", english="login required")
    return [
        {
            "id": m.id,
            "subject": m.subject,
            "body": m.body,
            "link": m.link,
            "read": m.read,
            "created_at": m.created_at.isoformat(),
        }
        for m in outbox.inbox_for(session=session, user_id=actor.user_id)
    ]
