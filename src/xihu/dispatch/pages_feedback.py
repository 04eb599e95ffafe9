"""纠错反馈核对: the corrections retraining learns from, as a page and JSON; exclude or restore (admins)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from xihu.core.errors import DomainError
from xihu.core.security import Actor
from xihu.dispatch import feedback_review
from xihu.dispatch.schemas import FeedbackExclude, FeedbackPage, FeedbackRead
from xihu.web.deps import get_actor, get_session, verify_csrf_api, verify_csrf_form
from xihu.web.pages import error_text, staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/dispatch/feedback", tags=["dispatch"])

PAGE = "/staff/dispatch/feedback"
PERMISSION = "dispatch.manage"
VIEW_LABELS = {"all": "全部", "conflicts": "与模型判断相左", "excluded": "已排除"}


@api.get("", response_model=FeedbackPage)
def list_feedback(
    request: Request,
    view: str = Query(default="all", max_length=16),
    page: int = Query(default=1, ge=1, le=100_000),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> FeedbackPage:
    """Labelled corrections, newest first (view: all | conflicts | excluded), with the model's reading."""
    return feedback_review.review(
        session=session, actor=actor, view=view, page=page, data_dir=request.app.state.settings.data_dir
    )


@api.post("/{feedback_id}/exclude", response_model=FeedbackRead, dependencies=[Depends(verify_csrf_api)])
def exclude_feedback(
    feedback_id: int,
    body: FeedbackExclude,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> FeedbackRead:
    """Keep a correction out of retraining (a reason is required); excluding twice changes nothing."""
    return feedback_review.exclude(session=session, actor=actor, feedback_id=feedback_id, reason=body.reason)


@api.post("/{feedback_id}/restore", response_model=FeedbackRead, dependencies=[Depends(verify_csrf_api)])
def restore_feedback(
    feedback_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> FeedbackRead:
    """Let an excluded correction be learnt again."""
    return feedback_review.restore(session=session, actor=actor, feedback_id=feedback_id)


def _page(
    request: Request,
    session: Session,
    actor: Actor,
    view: str,
    page: int,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    try:
        found = feedback_review.review(
            session=session, actor=actor, view=view, page=page, data_dir=request.app.state.settings.data_dir
        )
    except DomainError as exc:
        message, code = error_text(exc)
        found = feedback_review.review(
            session=session, actor=actor, data_dir=request.app.state.settings.data_dir
        )
        error, status = message, code
    return render(
        request,
        "dispatch/feedback.html",
        status,
        actor=actor,
        found=found,
        views=VIEW_LABELS,
        error=error,
        done=request.query_params.get("done", ""),
        scan_limit=feedback_review.CONFLICT_SCAN,
    )


@router.get(PAGE)
def feedback_page(
    request: Request,
    view: str = Query(default="all", max_length=16),
    page: int = Query(default=1, ge=1, le=100_000),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The review page: corrections with the model's reading, doubtful ones flagged, exclude or restore."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    return _page(request, session, actor, view, page)


@router.post(PAGE + "/{feedback_id}/exclude", dependencies=[Depends(verify_csrf_form)])
def exclude_form(
    feedback_id: int,
    request: Request,
    reason: str = Form(""),
    view: str = Form("all"),
    page: int = Form(1),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Exclude a correction and come back to the same view."""
    return _act(
        request,
        session,
        actor,
        view,
        page,
        "excluded",
        lambda: feedback_review.exclude(session=session, actor=actor, feedback_id=feedback_id, reason=reason),
    )


@router.post(PAGE + "/{feedback_id}/restore", dependencies=[Depends(verify_csrf_form)])
def restore_form(
    feedback_id: int,
    request: Request,
    view: str = Form("all"),
    page: int = Form(1),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Restore an excluded correction and come back to the same view."""
    return _act(
        request,
        session,
        actor,
        view,
        page,
        "restored",
        lambda: feedback_review.restore(session=session, actor=actor, feedback_id=feedback_id),
    )


def _act(
    request: Request,
    session: Session,
    actor: Actor,
    view: str,
    page: int,
    done: str,
    call: Callable[[], FeedbackRead],
) -> Response:
    """Run an exclusion or restoration from the page: back to the same view, or the page with the error."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    try:
        call()
    except DomainError as exc:
        session.rollback()
        message, status = error_text(exc)
        what = "排除" if done == "excluded" else "恢复"
        return _page(request, session, actor, view, page, error=f"{what}未成功：{message}", status=status)
    return RedirectResponse(f"{PAGE}?view={_safe(view)}&page={page}&done={done}", status_code=303)


def _safe(view: str) -> str:
    """A view name fit for the redirect's query string (an unknown one goes back to all)."""
    return view if view in VIEW_LABELS else "all"
