"""Long jobs (bulk imports, model retraining) run by a worker and resumed when the process running one dies.

A web request only queues such a job. A worker (`xihu worker`, or the web process's own background loop on
SQLite) claims it from the database (FOR UPDATE SKIP LOCKED on PostgreSQL) and runs it in a thread of its
own, so the SLA sweeper and outbox delivery of that worker go on meanwhile. While it runs, the thread
refreshes the job's heartbeat; a running job whose heartbeat has stopped belonged to a process that was
restarted or crashed, and the next worker round claims it again, up to the job kind's attempt limit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from xihu.core import clock
from xihu.core.jobs import lock_skip_locked

log = logging.getLogger("xihu.longjobs")

HEARTBEAT_SECONDS = 10.0
# A running job whose heartbeat is older than this is taken to have lost its process. Six missed beats: a
# worker busy with a long transaction or a database restart does not lose its job to another worker.
STALE_AFTER = timedelta(seconds=60)
# A job queued this long has not been claimed: no worker is running (on PostgreSQL the web process runs none)
UNCLAIMED_AFTER = timedelta(minutes=2)
# Claimed jobs run in a thread of their own; tests set this to False so that a round runs them to the end.
RUN_IN_THREAD = True


def heartbeat_stale(heartbeat_at: datetime | None, now: datetime | None = None) -> bool:
    """True when a running job's process has stopped refreshing its heartbeat (`heartbeat_at`)."""
    return heartbeat_at is None or (now or clock.now()) - heartbeat_at > STALE_AFTER


def waiting_hint(status: str, created_at: datetime, heartbeat_at: datetime | None) -> str | None:
    """Why an unfinished job is not moving, for the page that follows it: "unclaimed" (queued past
    UNCLAIMED_AFTER: is a worker running?), "lost" (its process died; a worker will resume it) or None."""
    if status == "queued" and clock.now() - created_at > UNCLAIMED_AFTER:
        return "unclaimed"
    if status == "running" and heartbeat_stale(heartbeat_at):
        return "lost"
    return None


class LongJobKind:
    """One kind of long job: its table, the work, and what to record when it has failed too often.

    The table has the columns status (queued | running | finished | failed), claimed_by, heartbeat_at and
    attempts (see `import_jobs` and `dispatch_training_jobs`).

    `work(factory, job_id)` runs a claimed job to its end and records the outcome; it must cope with a job
    that an earlier attempt left half done. `give_up(session, job)` marks a job that has used up its attempts.
    """

    def __init__(
        self,
        name: str,
        model: type[Any],
        work: Callable[[sessionmaker[Session], int], None],
        give_up: Callable[[Session, Any], None],
        max_attempts: int,
    ) -> None:
        self.name = name
        self.model = model
        self.work = work
        self.give_up = give_up
        self.max_attempts = max_attempts
        self._running = threading.Lock()  # one job of a kind at a time per process: they are heavy

    def claim(self, session: Session, worker_id: str) -> int | None:
        """Claim the oldest queued job, or a running one whose process died; None when there is none.

        A job that has used up its attempts is marked failed (via `give_up`) instead of being claimed.
        """
        m = self.model
        now = clock.now()
        while True:
            stmt = (
                select(m)
                .where(
                    or_(
                        m.status == "queued",
                        and_(
                            m.status == "running",
                            or_(m.heartbeat_at.is_(None), m.heartbeat_at < now - STALE_AFTER),
                        ),
                    )
                )
                .order_by(m.id)
                .limit(1)
            )
            job = session.scalar(lock_skip_locked(stmt, session))
            if job is None:
                return None
            if job.attempts >= self.max_attempts:
                log.warning("%s job %s failed %d times; giving up", self.name, job.id, job.attempts)
                self.give_up(session, job)
                session.flush()
                continue
            if job.status == "running":
                log.warning("%s job %s lost its process (%s); resuming it", self.name, job.id, job.claimed_by)
            job.status = "running"
            job.claimed_by = worker_id[:64]
            job.heartbeat_at = now
            job.attempts += 1
            session.flush()
            return int(job.id)

    def tick(self, factory: sessionmaker[Session], worker_id: str) -> int:
        """A worker round: claim one job and start it; 1 if one was started, else 0."""
        if not self._running.acquire(blocking=False):
            return 0  # this process is still running one
        try:
            with factory() as session:
                job_id = self.claim(session, worker_id)
                session.commit()
        except BaseException:
            self._running.release()
            raise
        if job_id is None:
            self._running.release()
            return 0
        if RUN_IN_THREAD:
            threading.Thread(
                target=self._run,
                args=(factory, job_id, worker_id),
                name=f"xihu-{self.name}-{job_id}",
                daemon=True,
            ).start()
        else:
            self._run(factory, job_id, worker_id)
        return 1

    def _run(self, factory: sessionmaker[Session], job_id: int, worker_id: str) -> None:
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat,
            args=(factory, job_id, worker_id, stop),
            name=f"xihu-{self.name}-beat",
            daemon=True,
        )
        beat.start()
        try:
            self.work(factory, job_id)
        except Exception:  # noqa: BLE001 - the work records its own failures; this keeps the worker alive
            log.exception("%s job %s failed", self.name, job_id)
        finally:
            stop.set()
            beat.join(timeout=5)
            self._running.release()

    def _beat(
        self, factory: sessionmaker[Session], job_id: int, worker_id: str, stop: threading.Event
    ) -> None:
        m = self.model
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with factory() as session:
                    session.execute(
                        update(m)
                        .where(m.id == job_id, m.status == "running", m.claimed_by == worker_id[:64])
                        .values(heartbeat_at=clock.now())
                    )
                    session.commit()
            except Exception:  # noqa: BLE001 - a missed beat is retried; STALE_AFTER allows several
                log.warning("%s job %s: heartbeat not recorded", self.name, job_id, exc_info=True)
