"""The worker's pacing: an idle round waits the interval, busy rounds start BUSY_ROUND_SECONDS apart, and a
backlog (a round longer than that) is followed at once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.orm import Session, sessionmaker

from xihu.core import jobs


def test_idle_round_waits_the_interval() -> None:
    """Nothing done: the interval, less the time the round itself took."""
    assert jobs.pause_after({"route": 0, "outbox": 0}, 10.0) == 10.0
    assert jobs.pause_after({"route": 0}, 10.0, elapsed=0.2) == pytest.approx(9.8)


def test_busy_rounds_are_spaced_to_gather_work() -> None:
    """A round that found work is followed by the next one BUSY_ROUND_SECONDS after it began."""
    gap = jobs.BUSY_ROUND_SECONDS
    assert 0 < gap < 1  # routing must follow intake within a fraction of a second
    assert jobs.pause_after({"route": 3, "outbox": 0}, 10.0) == pytest.approx(gap)
    assert jobs.pause_after({"route": 3}, 10.0, elapsed=gap / 4) == pytest.approx(gap * 3 / 4)
    # a failed job (-1) is not work found
    assert jobs.pause_after({"route": -1}, 10.0) == 10.0


def test_backlog_is_drained_without_pause() -> None:
    """A round that took longer than the gap (bounded batches, more left) is followed at once."""
    assert jobs.pause_after({"route": 500}, 10.0, elapsed=jobs.BUSY_ROUND_SECONDS * 3) == 0.0
    # a short interval (tests, --interval) is never stretched by the gap
    assert jobs.pause_after({"route": 1}, 0.01) == pytest.approx(0.01)


def test_background_loop_runs_busy_rounds_at_the_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process loop (SQLite) paces itself the same way: rounds with work about the gap apart."""
    starts: list[float] = []
    registry: dict[str, jobs.JobFn] = {}
    monkeypatch.setattr(jobs, "_periodic", registry)
    monkeypatch.setattr(jobs, "BUSY_ROUND_SECONDS", 0.05)

    def busy(factory: sessionmaker[Session], worker_id: str) -> int:
        starts.append(time.monotonic())
        return 1

    registry["busy"] = busy
    loop = jobs.BackgroundLoop(sessionmaker(), "pace", interval=60.0)
    loop.start()
    time.sleep(0.5)
    loop.stop()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) >= 3
    # never closer than the gap (the loop does not spin), and never the 60 s idle interval
    assert min(gaps) >= 0.045
    assert max(gaps) < 1.0
