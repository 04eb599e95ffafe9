"""A worker whose database is unreachable logs one line per job and goes on; a bug keeps its traceback."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from sqlalchemy.orm import Session, sessionmaker

from xihu.core import jobs
from xihu.core.db import make_engine, make_session_factory


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket is closed


@pytest.fixture
def only_jobs(monkeypatch: pytest.MonkeyPatch) -> dict[str, jobs.JobFn]:
    """A registry holding just the jobs of the test."""
    registry: dict[str, jobs.JobFn] = {}
    monkeypatch.setattr(jobs, "_periodic", registry)
    return registry


def _touch_database(factory: sessionmaker[Session], worker_id: str) -> int:
    with factory() as session:
        session.connection()
    return 1


def _broken(factory: sessionmaker[Session], worker_id: str) -> int:
    raise ValueError("a bug in a job")


def test_unreachable_database_is_one_warning_per_job_and_a_bug_keeps_its_traceback(
    only_jobs: dict[str, jobs.JobFn], caplog: pytest.LogCaptureFixture
) -> None:
    jobs.periodic("touch")(_touch_database)
    jobs.periodic("broken")(_broken)
    down = make_session_factory(
        make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/nothing?connect_timeout=2")
    )
    with caplog.at_level(logging.INFO, logger="xihu.jobs"):
        done = jobs.run_once(down, "w1")
    assert done == {"touch": -1, "broken": -1}  # the bad job did not stop the other
    touch = [r for r in caplog.records if "touch" in r.getMessage()]
    assert [r.levelno for r in touch] == [logging.WARNING]
    assert "database unavailable" in touch[0].getMessage() and touch[0].exc_info is None
    broken = [r for r in caplog.records if "broken" in r.getMessage()]
    assert broken and broken[0].levelno == logging.ERROR and broken[0].exc_info is not None


def test_a_backlog_drains_without_waiting_the_interval_between_full_rounds(
    only_jobs: dict[str, jobs.JobFn],
) -> None:
    backlog = {"left": 25}
    rounds: list[int] = []

    def drain(factory: sessionmaker[Session], worker_id: str) -> int:
        took = min(10, backlog["left"])  # a bounded batch, as the routing and rollup jobs take
        backlog["left"] -= took
        rounds.append(took)
        return took

    jobs.periodic("drain")(drain)
    loop = jobs.BackgroundLoop(make_session_factory(make_engine("sqlite://")), "w1", interval=60.0)
    loop.start()
    try:
        for _ in range(250):  # at most 5 s; an interval between rounds would take two minutes
            if len(rounds) >= 4:
                break
            threading.Event().wait(0.02)
    finally:
        loop.stop()
    assert rounds[:4] == [10, 10, 5, 0]  # then an idle round, after which it waits the full interval
    assert len(rounds) == 4
