"""Retraining runs (重新训练任务) an admin queues from the models page or the API: queued here, claimed
and run by a worker (registered in `dispatch.jobs`, resumed after a crash), given up after repeated crashes,
and shown with their state.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from xihu.core import clock, outbox
from xihu.core.errors import Conflict, DomainError, NotFound
from xihu.core.jobs import notify_workers
from xihu.core.longjobs import waiting_hint
from xihu.core.security import Actor, Role, User, authorize, list_users_with_role
from xihu.dispatch import registry, training
from xihu.dispatch.models import ModelVersion, TrainingJob
from xihu.dispatch.schemas import TrainingJobRead

__all__ = [
    "AUTO_RETRAIN_BY",
    "FIT_IN_SUBPROCESS",
    "JOB_MAX_ATTEMPTS",
    "JOB_STATUS_LABELS",
    "give_up_training_job",
    "latest_training_job",
    "run_training_job",
    "start_due_retrain",
    "start_retrain",
    "training_job",
]

log = logging.getLogger(__name__)

JOB_STATUS_LABELS = {"queued": "排队中", "running": "训练中", "finished": "已完成", "failed": "未成功"}
JOB_MAX_ATTEMPTS = 2  # a run that kills its process twice (out of memory, say) would do so again
AUTO_RETRAIN_BY = "自动重新训练"  # who started a run the worker queued on its own (see `start_due_retrain`)
MODELS_PAGE = "/staff/dispatch/models"
# Retraining runs in a worker (or, on SQLite, in the web process) fit in a process of their own; tests turn
# this off to fit in the test process (one test fits apart)
FIT_IN_SUBPROCESS = True


def _job_read(job: TrainingJob) -> TrainingJobRead:
    hint = {
        "lost": "训练进程中断（服务重启或进程退出），后台进程将重新开始训练",
        "unclaimed": "仍在排队：请确认后台进程（xihu worker）在运行",
    }.get(waiting_hint(job.status, job.created_at, job.heartbeat_at) or "", "")
    return TrainingJobRead(
        id=job.id,
        status=job.status,
        status_label=JOB_STATUS_LABELS[job.status],
        note=job.note,
        created_by=job.created_by,
        created_at=job.created_at,
        finished_at=job.finished_at,
        version=job.version,
        error=job.error or hint,
    )


def start_retrain(*, session: Session, actor: Actor, data_dir: Path, note: str = "") -> TrainingJobRead:
    """Queue a retraining run (see `training.retrain`).

    Refused at once if it cannot succeed or one is under way.
    """
    authorize(actor, registry.PERMISSION)
    # the versions' rows are locked as for an activation, so two admins clicking at once start one run
    registry.active_version(session, lock=True)
    training.retrain_base(session, data_dir)
    # a job whose process died is still under way: a worker resumes it (see core.longjobs)
    if session.scalar(select(TrainingJob.id).where(TrainingJob.status.in_(("queued", "running"))).limit(1)):
        raise Conflict("已有训练任务在进行，请等它完成", english="a training run is already under way")
    job = TrainingJob(
        status="queued",
        note=note[:200],
        created_by_id=actor.user_id,
        created_by=actor.label[:64],
        created_at=clock.now(),
        error="",
    )
    session.add(job)
    session.flush()
    notify_workers(session)
    return _job_read(job)


def start_due_retrain(
    *, session: Session, data_dir: Path, min_feedback: int, interval: timedelta
) -> TrainingJobRead | None:
    """Queue a retraining run on the platform's own account when it is due, else None.

    Due: at least `min_feedback` usable corrections the active version has not learnt, and neither a
    retraining run nor the active version is younger than `interval`. A run that cannot start (no active
    version, no saved rows) is not due either; the models page tells admins why when they try.
    """
    if min_feedback <= 0:
        return None
    now = clock.now()
    last_run = session.scalar(select(func.max(TrainingJob.created_at)))
    trained = session.scalar(select(ModelVersion.created_at).where(ModelVersion.active.is_(True)).limit(1))
    if any(at is not None and now - at < interval for at in (last_run, trained)):
        return None
    actor = Actor.system(AUTO_RETRAIN_BY)
    new = training.feedback_not_in_active(session=session, actor=actor)
    if new < min_feedback:
        return None
    try:
        return start_retrain(session=session, actor=actor, data_dir=data_dir, note=f"自动：{new} 条新纠错")
    except Conflict as exc:
        log.info("automatic retraining not started: %s", exc.message)
        return None


def _tell_admins(session: Session, job: TrainingJob) -> None:
    """Admins learn in their messages how a run the platform started on its own ended."""
    if job.status == "finished":
        subject = f"派单模型已自动重新训练：版本 {job.version}"
        body = f"{job.note}。新版本尚未启用，请在「派单模型」页核对各类别指标后决定是否启用。"
    else:
        subject = "派单模型自动重新训练未成功"
        body = f"{job.note}。原因：{job.error}"
    for user in list_users_with_role(session=session, role=Role.admin):
        outbox.enqueue(
            session=session, channel="inapp", user_id=user.id, subject=subject, body=body, link=MODELS_PAGE
        )


def run_training_job(factory: sessionmaker[Session], job_id: int, data_dir: Path) -> None:
    """Run a retraining job a worker has claimed (see `dispatch.jobs`) to its end, recording the version it
    trained or why it failed. A job another attempt has already ended is left alone."""
    with factory() as session:
        job = session.get(TrainingJob, job_id)
        if job is None or job.status != "running":
            return
        user = session.get(User, job.created_by_id) if job.created_by_id is not None else None
        actor = user.to_actor() if user is not None else Actor.system(job.created_by or "系统")
        note = job.note
        # what an earlier, killed run left
        training.prune_unsaved_versions(session=session, data_dir=data_dir)
    try:
        version = training.retrain_in_steps(
            factory, actor=actor, data_dir=data_dir, note=note, isolated=FIT_IN_SUBPROCESS
        )
        outcome: dict[str, object] = {"status": "finished", "version": version.version}
    except DomainError as exc:
        outcome = {"status": "failed", "error": exc.message[:300]}
    except Exception as exc:  # noqa: BLE001 - the admin must learn that it failed, not see it run forever
        log.exception("training job %s failed", job_id)
        outcome = {"status": "failed", "error": f"训练出错：{str(exc)[:200]}"}
    with factory() as session:
        session.execute(
            update(TrainingJob).where(TrainingJob.id == job_id).values(finished_at=clock.now(), **outcome)
        )
        ended = session.get(TrainingJob, job_id)
        if ended is not None and ended.created_by_id is None and ended.created_by == AUTO_RETRAIN_BY:
            _tell_admins(session, ended)
        session.commit()


def give_up_training_job(session: Session, job: TrainingJob) -> None:
    """Mark a job failed whose runs ended with their process every time (see `JOB_MAX_ATTEMPTS`)."""
    job.status = "failed"
    job.finished_at = clock.now()
    job.error = f"训练进程 {job.attempts} 次中断（服务重启或内存不足），已停止重试；请检查后重新发起"


def training_job(*, session: Session, actor: Actor, job_id: int) -> TrainingJobRead:
    """One retraining job's state."""
    authorize(actor, registry.PERMISSION)
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise NotFound("训练任务不存在", english=f"training job {job_id} not found")
    return _job_read(job)


def latest_training_job(*, session: Session, actor: Actor) -> TrainingJobRead | None:
    """The newest retraining job, for the models page."""
    authorize(actor, registry.PERMISSION)
    job = session.scalar(select(TrainingJob).order_by(TrainingJob.id.desc()).limit(1))
    return _job_read(job) if job is not None else None
