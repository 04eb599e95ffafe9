"""Background work of dispatch: retraining runs, claimed by a worker and resumed after a crash, and queued on
the platform's own account when enough corrections have come in."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from xihu.core.config import get_settings
from xihu.core.jobs import periodic
from xihu.core.longjobs import LongJobKind
from xihu.dispatch import retraining_runs
from xihu.dispatch.models import TrainingJob


def _train(factory: sessionmaker[Session], job_id: int) -> None:
    retraining_runs.run_training_job(factory, job_id, get_settings().data_dir)


TRAINING = LongJobKind(
    "dispatch.training",
    TrainingJob,
    _train,
    retraining_runs.give_up_training_job,
    max_attempts=retraining_runs.JOB_MAX_ATTEMPTS,
)


@periodic("dispatch.training")
def training_jobs(factory: sessionmaker[Session], worker_id: str) -> int:
    """Start the oldest queued retraining run (or one whose process died) in a thread of this worker."""
    return TRAINING.tick(factory, worker_id)


AUTO_CHECK_SECONDS = 600.0  # how often a worker asks whether a retraining run is due (a few counts)
_next_auto_check = 0.0


@periodic("dispatch.auto_retrain")
def auto_retrain(factory: sessionmaker[Session], worker_id: str) -> int:
    """Queue a retraining run when one is due (see `retraining_runs.start_due_retrain`); 1 when queued."""
    global _next_auto_check
    if time.monotonic() < _next_auto_check:
        return 0
    _next_auto_check = time.monotonic() + AUTO_CHECK_SECONDS
    settings = get_settings()
    with factory() as session:
        job = retraining_runs.start_due_retrain(
            session=session,
            data_dir=settings.data_dir,
            min_feedback=settings.retrain_min_feedback,
            interval=timedelta(hours=settings.retrain_interval_hours),
        )
        session.commit()
    return 1 if job is not None else 0
