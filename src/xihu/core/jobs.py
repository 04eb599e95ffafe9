"""Background work: periodic jobs run by `xihu worker` (or in-process on SQLite)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("xihu.jobs")

JobFn = Callable[[sessionmaker[Session], str], int]
_periodic: dict[str, JobFn] = {}


def periodic(name: str) -> Callable[[JobFn], JobFn]:
    """Register a job that receives a session factory and a worker id and returns the work it did."""

    def register(fn: JobFn) -> JobFn:
        _periodic[name] = fn
        return fn

    return register


def registered() -> dict[str, JobFn]:
    """All registered periodic jobs by name."""
    return dict(_periodic)


def lock_skip_locked(stmt: Select[Any], session: Session) -> Select[Any]:
    """Add FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite runs one sweeper and needs none."""
    if session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def lock_for_update(stmt: Select[Any], session: Session) -> Select[Any]:
    """Add FOR UPDATE on PostgreSQL (wait for other writers of these rows); SQLite writes one at a time."""
    if session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update()
    return stmt


def run_once(factory: sessionmaker[Session], worker_id: str) -> dict[str, int]:
    """Run every periodic job once; a failing job is logged and does not stop the others."""
    done: dict[str, int] = {}
    for name, fn in registered().items():
        try:
            done[name] = fn(factory, worker_id)
        except OperationalError as exc:
            # The database is down or restarting: one line per job, not a traceback a second until it is back.
            log.warning("job %s: database unavailable (%s); retrying", name, type(exc.orig).__name__)
            done[name] = -1
        except Exception:  # noqa: BLE001 - a worker must survive a bad batch and try again
            log.exception("job %s failed", name)
            done[name] = -1
    return done


# After a round that found work, the next one starts this long after it began. Every round has a fixed cost
# (each job's claim, reference lookups and commit: about 20 ms of worker CPU once it finds anything), so a
# steady trickle handled in rounds a blink apart paid it for every two or three appeals. `bench/load.py
# --seconds 60 --intake-rate 120 --read-rate 10` measured worker + PostgreSQL CPU per intake of 4.1 + 2.5 ms
# with a 20 ms pause, 3.5 + 2.1 ms with rounds 0.1 s apart, 2.35 + 1.75 ms at 0.25 s and 2.1 + 1.7 ms at
# 0.5 s. A backlog is not slowed (a round longer than this is followed at once), and routing still follows
# intake within a fraction of a second, where signing is due within a minute.
BUSY_ROUND_SECONDS = 0.25


def pause_after(done: dict[str, int], interval: float, elapsed: float = 0.0) -> float:
    """Seconds to wait before the next round, given how long this one took: after an idle round the interval;
    after a busy one what is left of BUSY_ROUND_SECONDS (nothing, when the round took longer)."""
    busy = any(n > 0 for n in done.values())
    return max(0.0, (min(interval, BUSY_ROUND_SECONDS) if busy else interval) - elapsed)


def run_round(
    factory: sessionmaker[Session], worker_id: str, interval: float
) -> tuple[dict[str, int], float]:
    """Run every periodic job once; what each did and how long to wait before the next round."""
    started = time.monotonic()
    done = run_once(factory, worker_id)
    return done, pause_after(done, interval, time.monotonic() - started)


class BackgroundLoop:
    """A daemon thread that runs the periodic jobs every few seconds."""

    def __init__(self, factory: sessionmaker[Session], worker_id: str, interval: float) -> None:
        self.factory = factory
        self.worker_id = worker_id
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"xihu-{worker_id}", daemon=True)

    def start(self) -> None:
        """Start the loop."""
        self._thread.start()

    def wake(self) -> None:
        """Run the next round now instead of after the interval (a request has just queued work)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to finish and wait briefly."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            _, wait = run_round(self.factory, self.worker_id, self.interval)
            self._wake.wait(wait)
            self._wake.clear()


# ---------------------------------------------------------------- waking idle workers (PostgreSQL)

WAKE_CHANNEL = "xihu_jobs"


def notify_workers(session: Session) -> None:
    """Wake idle `xihu worker` processes when this transaction commits (PostgreSQL NOTIFY; nothing on SQLite,
    whose web process wakes its own loop). For work a person waits for: an import, a retraining run."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))


class WakeListener:
    """The pause between a worker's rounds; on PostgreSQL a NOTIFY on WAKE_CHANNEL ends it early.

    A worker otherwise finds a queued import or retraining run only at its next idle round, up to
    XIHU_SWEEP_INTERVAL_SECONDS later. Notifications are delivered only when the queuing transaction
    commits, so a woken worker finds the job. Without a listening connection (SQLite, or PostgreSQL away)
    it simply sleeps.
    """

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self._dsn = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if url.get_backend_name() == "postgresql"
            else None
        )
        self._conn: Any = None

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when a notification ended the sleep early."""
        if seconds <= 0:
            return False
        if self._dsn is None:
            time.sleep(seconds)
            return False
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._dsn, autocommit=True)
                self._conn.execute(f"LISTEN {WAKE_CHANNEL}")
            for _ in self._conn.notifies(timeout=seconds, stop_after=1):
                return True
            return False
        except psycopg.Error as exc:
            log.warning("worker wake-up channel unavailable (%s); polling", type(exc).__name__)
            self.close()
            time.sleep(seconds)
            return False

    def close(self) -> None:
        """Drop the listening connection (the next wait opens a new one)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):  # it is being thrown away
                self._conn.close()
            self._conn = None
