"""HTML routes of the dispatch domain (models, responsibility table, reports)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from xihu.core.config import Settings
from xihu.core.errors import DomainError
from xihu.core.security import Actor
from xihu.dispatch import registry, retraining_runs, training
from xihu.dispatch.api import queue_retrain
from xihu.web.deps import get_actor, get_session, verify_csrf_form
from xihu.web.pages import error_text, staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)

MODELS_PAGE = "/staff/dispatch/models"
PERMISSION = "dispatch.manage"


def _models_page(
    request: Request, session: Session, actor: Actor, *, error: str | None = None, status: int = 200
) -> Response:
    versions = registry.list_versions(
        session=session, actor=actor, data_dir=request.app.state.settings.data_dir
    )
    active = next((v for v in versions if v.active), None)
    # per category: the active version beside the newest one when that is another (a retrain to judge)
    shown = [active] if active else []
    if versions and versions[0] is not active:
        shown.append(versions[0])
    return render(
        request,
        "dispatch/models.html",
        status,
        actor=actor,
        versions=versions,
        active=active,
        by_label=[v for v in shown if v.metrics.get("by_label")],
        rollback_to=registry.rollback_target(session=session, actor=actor),
        new_feedback=training.feedback_not_in_active(session=session, actor=actor),
        error=error,
        done=request.query_params.get("done", ""),
        job=retraining_runs.latest_training_job(session=session, actor=actor),
        auto_retrain=_auto_retrain(request.app.state.settings),
    )


def _auto_retrain(settings: Settings) -> dict[str, object]:
    """When the worker retrains on its own, in words for the page."""
    hours = settings.retrain_interval_hours
    every = f"{hours / 24:g} 天" if hours >= 24 and hours % 24 == 0 else f"{hours:g} 小时"
    return {"min_feedback": settings.retrain_min_feedback, "every": every}


@router.get(MODELS_PAGE)
def models(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """模型版本: the category model versions with their metrics; activate one or roll back (admins)."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    return _models_page(request, session, actor)


def _change(request: Request, session: Session, actor: Actor, what: str, call: object) -> Response:
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    assert callable(call)
    try:
        done = call()
    except DomainError as exc:
        session.rollback()
        message, status = error_text(exc)
        return _models_page(request, session, actor, error=f"{what}未成功：{message}", status=status)
    return RedirectResponse(f"{MODELS_PAGE}?done={done.version}", status_code=303)


@router.post(f"{MODELS_PAGE}/rollback", dependencies=[Depends(verify_csrf_form)])
def rollback(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """Re-activate the previously active version and come back to the list."""
    data_dir = request.app.state.settings.data_dir
    return _change(
        request,
        session,
        actor,
        "回滚",
        lambda: registry.rollback(session=session, actor=actor, data_dir=data_dir),
    )


@router.post(MODELS_PAGE + "/{version_id}/activate", dependencies=[Depends(verify_csrf_form)])
def activate(
    version_id: int,
    request: Request,
    confirm: str = Form(""),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Make a version the active model and come back to the list (a worse one only when confirmed)."""
    data_dir = request.app.state.settings.data_dir
    return _change(
        request,
        session,
        actor,
        "启用",
        lambda: registry.activate(
            session=session, actor=actor, version_id=version_id, data_dir=data_dir, confirm=bool(confirm)
        ),
    )


@router.post(f"{MODELS_PAGE}/retrain", dependencies=[Depends(verify_csrf_form)])
def retrain(
    request: Request,
    background: BackgroundTasks,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Queue retraining by a worker (active version's rows plus the feedback); the page follows it."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    try:
        queue_retrain(request, background, session, actor)
    except DomainError as exc:
        session.rollback()
        message, status = error_text(exc)
        return _models_page(request, session, actor, error=f"重新训练未成功：{message}", status=status)
    return RedirectResponse(MODELS_PAGE, status_code=303)
