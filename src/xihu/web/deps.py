"""Request-scoped dependencies: the unit of work, the acting user, CSRF."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from xihu.core import security
from xihu.core.errors import Forbidden
from xihu.core.security import Actor

SESSION_COOKIE = "xihu_session"
CSRF_COOKIE = "xihu_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
T = TypeVar("T")


def _commit_and_close(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _roll_back_and_close(session: Session) -> None:
    try:
        session.rollback()
    finally:
        session.close()


async def _unit_of_work(request: Request) -> AsyncIterator[Session]:
    # An async generator, so that opening the session (no I/O until first use) costs no trip to the thread
    # pool and the commit and the close share one. Each trip costs a thread hand-off and GIL contention,
    # which on a busy machine weighed more than the validation (hence also `run_write` for the intake).
    session = request.app.state.session_factory()
    try:
        yield session
    except BaseException:
        await run_in_threadpool(_roll_back_and_close, session)
        raise
    if session.in_transaction() or session.new or session.dirty or session.deleted:
        await run_in_threadpool(_commit_and_close, session)
    else:
        session.close()  # committed by the handler already: nothing left to send


def _run_commit_close(session: Session, use_case: Callable[..., T], kwargs: dict[str, Any]) -> T:
    try:
        result = use_case(session=session, **kwargs)
    except BaseException:
        _roll_back_and_close(session)
        raise
    _commit_and_close(session)
    return result


async def run_write(request: Request, use_case: Callable[..., T], /, *, light: bool, **kwargs: Any) -> T:
    """Run a synchronous use case in a unit of work of its own and commit it before the answer.

    A `light` use case (a few statements and little Python, like a deferred intake) runs on PostgreSQL on the
    event loop's own thread, in a greenlet over the asynchronous driver (SQLAlchemy's `run_sync`): it waits
    for the database without blocking the loop and costs no hand-off to the thread pool, whose wake-ups and
    GIL contention were about a fifth of a web process's CPU under intake load. Anything else (heavier work
    that would hold up the loop, SQLite, tests on one shared connection) goes to the thread pool once.
    """
    async_sessions = getattr(request.app.state, "async_session_factory", None)
    if not light or async_sessions is None:
        session = request.app.state.session_factory()
        return await run_in_threadpool(_run_commit_close, session, use_case, kwargs)
    async with async_sessions() as session:
        return await session.run_sync(lambda sync: _run_commit(sync, use_case, kwargs))


def _run_commit(session: Session, use_case: Callable[..., T], kwargs: dict[str, Any]) -> T:
    result = use_case(session=session, **kwargs)
    session.commit()
    return result


async def get_session(session: Session = Depends(_unit_of_work, scope="function")) -> Session:
    """One session per request, committed once when the handler has succeeded, before the answer is sent.

    The function scope matters: with FastAPI's default ("request") scope the commit would run after the
    response had gone out, so a failed commit could follow a 201 and an acknowledged appeal be lost.
    """
    return session


def _actor_for_token(factory: Callable[[], Session], token: str) -> Actor:
    with factory() as session:
        return security.actor_for_token(session=session, token=token)


async def get_actor(request: Request) -> Actor:
    """The logged-in staff member, or an anonymous citizen."""
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        # a session of its own, so that a route needs no unit of work just to know who is asking
        actor = await run_in_threadpool(_actor_for_token, request.app.state.session_factory, token)
    else:
        actor = Actor.citizen()  # citizens have no session to look up: no trip to the thread pool
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


async def verify_csrf_api(request: Request) -> None:
    """Reject a cookie-authenticated API write without the CSRF header (reads need none)."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.cookies.get(SESSION_COOKIE):
        _check(request, request.headers.get(CSRF_HEADER))
