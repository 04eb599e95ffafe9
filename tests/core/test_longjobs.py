"""Long jobs run in a worker thread with a heartbeat; two workers never claim the same job (PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from xihu.core import clock, longjobs
from xihu.core.db import make_session_factory
from xihu.dispatch.models import TrainingJob


@pytest.fixture
def factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions that really commit, as a worker's do (threads need their own connections); cleaned after."""
    made = make_session_factory(engine)
    yield made
    with made() as s:
        s.execute(delete(TrainingJob).where(TrainingJob.note == "longjobs-test"))
        s.commit()


def _queue(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        job = TrainingJob(status="queued", note="longjobs-test", created_at=clock.now(), error="")
        s.add(job)
        s.commit()
        return job.id


def _kind(work, give_up=lambda s, job: None) -> longjobs.LongJobKind:  # type: ignore[no-untyped-def]
    return longjobs.LongJobKind("test", TrainingJob, work, give_up, max_attempts=2)


def test_a_claimed_job_runs_in_its_own_thread_and_keeps_its_heartbeat(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(longjobs, "RUN_IN_THREAD", True)
    monkeypatch.setattr(longjobs, "HEARTBEAT_SECONDS", 0.05)
    release, started = threading.Event(), threading.Event()

    def work(f: sessionmaker[Session], job_id: int) -> None:
        started.set()
        assert release.wait(10)
        with f() as s:
            s.get(TrainingJob, job_id).status = "finished"  # type: ignore[union-attr]
            s.commit()

    kind = _kind(work)
    first, second = _queue(factory), _queue(factory)
    began = time.monotonic()
    assert kind.tick(factory, "worker-a") == 1
    assert time.monotonic() - began < 5 and started.wait(5)  # the round did not wait for the work
    assert kind.tick(factory, "worker-a") == 0  # one at a time in a process: the second waits
    with factory() as s:
        claimed_at = s.get(TrainingJob, first).heartbeat_at  # type: ignore[union-attr]
    time.sleep(0.3)
    with factory() as s:
        job = s.get(TrainingJob, first)
        assert job is not None and job.status == "running" and job.claimed_by == "worker-a"
        assert claimed_at is not None and job.heartbeat_at is not None and job.heartbeat_at > claimed_at
        assert s.get(TrainingJob, second).status == "queued"  # type: ignore[union-attr]
    release.set()
    deadline = time.monotonic() + 10
    while kind.tick(factory, "worker-a") == 0:  # free again once the first has ended
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with factory() as s:
        assert s.get(TrainingJob, first).status == "finished"  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while True:
        with factory() as s:
            if s.get(TrainingJob, second).status == "finished":  # type: ignore[union-attr]
                break
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_failing_job_body_does_not_stop_the_worker(factory: sessionmaker[Session]) -> None:
    def work(f: sessionmaker[Session], job_id: int) -> None:
        raise RuntimeError("磁盘错误")

    kind = _kind(work)
    _queue(factory)
    assert kind.tick(factory, "worker-a") == 1  # logged, not raised
    assert kind.tick(factory, "worker-a") == 0  # and the process may claim again


def test_two_workers_never_claim_the_same_job(factory: sessionmaker[Session], engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one sweeper in the web process; FOR UPDATE SKIP LOCKED is PostgreSQL's")
    kind = _kind(lambda f, j: None)
    only = _queue(factory)
    with factory() as a, factory() as b:
        assert kind.claim(a, "worker-a") == only  # not yet committed: the row is locked
        assert kind.claim(b, "worker-b") is None  # skipped, not waited for, not taken twice
        a.commit()
        b.rollback()
    with factory() as s:
        job = s.get(TrainingJob, only)
        assert job is not None and (job.claimed_by, job.attempts) == ("worker-a", 1)


def test_the_web_processs_loop_runs_a_round_at_once_when_woken(monkeypatch: pytest.MonkeyPatch) -> None:
    from xihu.core import jobs

    rounds: list[float] = []
    monkeypatch.setattr(jobs, "_periodic", {"count": lambda f, w: rounds.append(time.monotonic()) or 0})
    loop = jobs.BackgroundLoop(None, "web-test", interval=60)  # type: ignore[arg-type]
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while not rounds:  # the first round runs at start
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(rounds) == 1  # then it waits its interval
        woken = time.monotonic()
        loop.wake()
        while len(rounds) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert rounds[1] - woken < 2  # not 60 s later
    finally:
        loop.stop()
    assert not loop._thread.is_alive()  # a stop is not held up by the 60 s wait either


def test_a_queued_job_wakes_an_idle_worker_on_postgresql(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    from xihu.core import jobs

    listener = jobs.WakeListener(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name != "postgresql":
        began = time.monotonic()
        assert listener.wait(0.1) is False and time.monotonic() - began >= 0.1  # SQLite: a plain pause
        pytest.skip("SQLite's web process wakes its own loop (see test_the_web_processs_loop_runs...)")
    try:
        assert listener.wait(0.2) is False  # listening now; nothing queued: the whole pause
        woke: list[float] = []
        waiter = threading.Thread(target=lambda: woke.append(listener.wait(30) and time.monotonic()))
        waiter.start()
        time.sleep(0.3)
        with factory() as s:
            jobs.notify_workers(s)
            s.rollback()  # a queuing transaction that failed wakes nobody
        time.sleep(0.5)
        assert woke == []
        with factory() as s:
            jobs.notify_workers(s)
            committed = time.monotonic()
            s.commit()
        waiter.join(10)
        assert woke and woke[0] - committed < 5  # not the 30 s pause
    finally:
        listener.close()
