"""Request-scoped dependencies: the unit of work, the acting user, CSRF."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import BackgroundTasks, Depends, Request
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
    # pool and the commit and the close share one; each trip costs a thread hand-off and GIL contention,
    # which on a busy machine weighed more than the work. (Intake skips even this: run_in_own_unit_of_work.)
    session = request.app.state.session_factory()
    try:
        yield session
    except BaseException:
        await run_in_threadpool(_roll_back_and_close, session)
        raise
    if session.in_transaction() or session.new or session.dirty or session.deleted:
        await run_in_threadpool(_commit_and_close, session)
    else:
        session.close()  # nothing written: nothing to send


async def run_in_own_unit_of_work(request: Request, use_case: Callable[..., T], /, **kwargs: Any) -> T:
    """Check CSRF, find the actor and run a use case in its own committed unit of work, without `Depends`.

    For the hottest route (intake) only: FastAPI resolves a dependency chain (CSRF, actor, session and its
    exit stack) on every request, and under load that machinery cost the web process more CPU than the
    intake's own work. The use case gets `session` and `actor`; it and its commit run in one trip to the
    thread pool, before the answer, and a failure rolls back and propagates as with `get_session` (a failed
    commit becomes a 503).
    """
    await verify_csrf_api(request)
    session = request.app.state.session_factory()

    def run(actor: Actor) -> T:
        result = use_case(session=session, actor=actor, **kwargs)
        session.commit()
        return result

    try:
        result = await run_in_threadpool(run, await get_actor(request, session))
    except BaseException:
        await run_in_threadpool(_roll_back_and_close, session)
        raise
    session.close()
    return result


async def get_session(session: Session = Depends(_unit_of_work, scope="function")) -> Session:
    """One session per request, committed once when the handler has succeeded, before the answer is sent.

    The function scope matters: with FastAPI's default ("request") scope the commit would run after the
    response had gone out, so a failed commit could follow a 201 and an acknowledged appeal be lost.
    """
    return session


async def get_actor(request: Request, session: Session = Depends(get_session)) -> Actor:
    """The logged-in staff member, or an anonymous citizen."""
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        actor = await run_in_threadpool(security.actor_for_token, session=session, token=token)
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


def wake_background_work(request: Request, background: BackgroundTasks) -> None:
    """Once the response is out (and the request's work committed), start a round of this process's
    background loop, when it runs one (SQLite): a queued import or retraining then starts at once instead
    of at the next round. Separate `xihu worker` processes find it at their next round."""

    def wake() -> None:
        loop = getattr(request.app.state, "background_loop", None)
        if loop is not None:
            loop.wake()

    background.add_task(wake)
