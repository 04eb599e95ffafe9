"""JSON routes of the dispatch domain (models, responsibility table, reports)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from sqlalchemy.orm import Session

from xihu.core.security import Actor
from xihu.dispatch import registry, retraining_runs
from xihu.dispatch import service as dispatch_service
from xihu.dispatch.schemas import ModelVersionRead, PreviewIn, RoutePreview, TrainingJobRead
from xihu.web.deps import get_actor, get_session, verify_csrf_api, wake_background_work

router = APIRouter(prefix="/api/dispatch", tags=["dispatch"])


@router.get("/models", response_model=list[ModelVersionRead])
def list_models(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> list[ModelVersionRead]:
    """Every category model version with its training metrics, newest first (admins)."""
    return registry.list_versions(session=session, actor=actor, data_dir=request.app.state.settings.data_dir)


@router.post("/models/rollback", response_model=ModelVersionRead, dependencies=[Depends(verify_csrf_api)])
def rollback_model(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> ModelVersionRead:
    """Re-activate the version that was active before the current one (409 when there is none)."""
    return registry.rollback(session=session, actor=actor, data_dir=request.app.state.settings.data_dir)


@router.post(
    "/models/retrain",
    response_model=TrainingJobRead,
    status_code=202,
    dependencies=[Depends(verify_csrf_api)],
)
def retrain_model(
    request: Request,
    background: BackgroundTasks,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> TrainingJobRead:
    """Queue retraining on the active version's rows plus all labelled feedback; 202 and the job to follow."""
    return queue_retrain(request, background, session, actor)


def queue_retrain(
    request: Request, background: BackgroundTasks, session: Session, actor: Actor
) -> TrainingJobRead:
    """Queue a retraining job for a worker (see `dispatch.jobs`); for this route and the models page."""
    job = retraining_runs.start_retrain(
        session=session, actor=actor, data_dir=request.app.state.settings.data_dir
    )
    wake_background_work(request, background)
    return job


@router.get("/training-jobs/{job_id}", response_model=TrainingJobRead)
def training_job(
    job_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> TrainingJobRead:
    """A retraining job's state: queued, running, finished (with the version it trained) or failed (why)."""
    return retraining_runs.training_job(session=session, actor=actor, job_id=job_id)


@router.post(
    "/models/{version_id}/activate", response_model=ModelVersionRead, dependencies=[Depends(verify_csrf_api)]
)
def activate_model(
    version_id: int,
    request: Request,
    confirm: bool = False,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> ModelVersionRead:
    """Make a model version the active one; running servers pick it up.

    422 when its file is missing; 409 when its figures are worse than the active version's (the message says
    which) unless `confirm=true`.
    """
    return registry.activate(
        session=session,
        actor=actor,
        version_id=version_id,
        data_dir=request.app.state.settings.data_dir,
        confirm=confirm,
    )


@router.post("/preview", response_model=RoutePreview, dependencies=[Depends(verify_csrf_api)])
def preview_route(
    body: PreviewIn, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> RoutePreview:
    """试派单: the categories, 权责清单 rules and units routing would choose; nothing is saved."""
    return dispatch_service.preview(session=session, actor=actor, appeal=body, local_hour=body.local_hour)
