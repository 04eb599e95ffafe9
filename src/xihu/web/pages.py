"""HTML pages of the web domain: home, login/logout, staff messages; helpers shared by the domains' pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from xihu.core import outbox
from xihu.core.errors import DomainError, Forbidden
from xihu.core.security import Actor
from xihu.web.api import start_session
from xihu.web.deps import SESSION_COOKIE, get_actor, get_session, verify_csrf_form
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------- helpers used by every domain's pages


async def get_form(request: Request) -> FormData:
    """The parsed form (urlencoded or multipart); Starlette caches it, so CSRF checking reads it once."""
    return await request.form()


def staff_or_redirect(request: Request, actor: Actor, permission: str | None = None) -> Response | None:
    """A redirect to /login for an anonymous visitor, a 403 for a wrong role, None when the page may show."""
    if not actor.is_staff:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    if permission is not None and permission not in actor.permissions:
        raise Forbidden("您的角色无权访问此页面", english=f"role may not {permission}")
    return None


def safe_next(value: object, default: str = "/staff") -> str:
    """Only local paths are followed after a login or an action (no open redirect)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def form_str(form: FormData, name: str, default: str = "") -> str:
    """A text field of a form ('' when absent or a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else default


def error_text(exc: Exception) -> tuple[str, int]:
    """(Chinese message, HTTP status) of a domain or validation error raised while handling a form."""
    if isinstance(exc, DomainError):
        return exc.message, exc.status_code
    if isinstance(exc, ValidationError):
        from fastapi.exceptions import RequestValidationError

        from xihu.web.app import _validation_message

        message, _ = _validation_message(RequestValidationError(exc.errors()))
        return message, 422
    raise exc


# ---------------------------------------------------------------- pages


@router.get("/")
def home(request: Request, actor: Actor = Depends(get_actor)) -> Response:
    """What 西湖码 is, and the three ways in."""
    return render(request, "home.html", actor=actor)


@router.get("/login")
def login_form(request: Request, next: str = "/staff", actor: Actor = Depends(get_actor)) -> Response:
    """The staff login form."""
    return render(request, "login.html", actor=actor, next=safe_next(next), username="", error=None)


@router.post("/login", dependencies=[Depends(verify_csrf_form)])
def login(
    request: Request, form: FormData = Depends(get_form), session: Session = Depends(get_session)
) -> Response:
    """Check the credentials; on success the session cookie is set and the user goes to the staff pages."""
    username, password = form_str(form, "username"), form_str(form, "password")
    target = safe_next(form_str(form, "next"))
    if not username or not password:
        return render(
            request, "login.html", 422, next=target, username=username, error="请输入用户名和密码", actor=None
        )
    response = RedirectResponse(target, status_code=303)
    try:
        start_session(request, response, session, username, password)
    except DomainError as exc:
        # failed-login counters were flushed by the service and are committed with the request
        return render(
            request,
            "login.html",
            exc.status_code,
            next=target,
            username=username,
            error=exc.message,
            actor=None,
        )
    return response


@router.post("/logout", dependencies=[Depends(verify_csrf_form)])
def logout(request: Request, session: Session = Depends(get_session)) -> Response:
    """End the session and go home."""
    from xihu.core import security

    security.logout(session=session, token=request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/staff/messages")
def messages(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """The staff member's in-app messages (新派单, 督办, 延期申请 ...)."""
    redirect = staff_or_redirect(request, actor)
    if redirect is not None:
        return redirect
    assert actor.user_id is not None
    items: list[Any] = outbox.inbox_for(session=session, user_id=actor.user_id)
    return render(request, "messages.html", actor=actor, items=items)
