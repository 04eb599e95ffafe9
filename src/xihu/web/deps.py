"""Request-scoped dependencies: the unit of work, the acting user, CSRF."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from xihu.core import security
from xihu.core.errors import Forbidden
from xihu.core.security import Actor

SESSION_COOKIE = "xihu_session"
CSRF_COOKIE = "xihu_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def _unit_of_work(request: Request) -> Iterator[Session]:
    session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_session(session: Session = Depends(_unit_of_work, scope="function")) -> Session:
    """One session per request, committed once when the handler has succeeded, before the answer is sent.

    The function scope matters: with FastAPI's default ("request") scope the commit would run after the
    response had gone out, so a failed commit could follow a 201 and an acknowledged appeal be lost.
    """
    return session


def get_actor(request: Request, session: Session = Depends(get_session)) -> Actor:
    """The logged-in staff member, or an anonymous citizen."""
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    actor = security.actor_for_token(session=session, token=request.cookies.get(SESSION_COOKIE))
    request.state.actor = actor
    return actor


def csrf_token(request: Request) -> str:
    """The browser's CSRF token (set as a cookie by the middleware)."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if token is None:
        token = secrets.token_urlsafe(24)
        request.state.new_csrf = token
    return token


def _check(request: Request, supplied: str | None) -> None:
    expected = request.cookies.get(CSRF_COOKIE)
    if not expected or not supplied or not secrets.compare_digest(expected, supplied):
        raise Forbidden("页面已过期或请求来源不明，请刷新页面后重试", english="CSRF token missing or wrong")


async def verify_csrf_form(request: Request) -> None:
    """Reject a form post whose hidden token does not match the browser's cookie."""
    form = await request.form()
    value = form.get(CSRF_FIELD)
    _check(request, value if isinstance(value, str) else None)


def verify_csrf_api(request: Request) -> None:
    """Reject a cookie-authenticated API write without the CSRF header (reads need none)."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.cookies.get(SESSION_COOKIE):
        _check(request, request.headers.get(CSRF_HEADER))
