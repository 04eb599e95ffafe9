"""Background work of dispatch: retraining runs, claimed by a worker and resumed after a crash."""

from __future__ import annotations

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
