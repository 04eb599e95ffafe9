"""Background work of the analysis domain: queued rollup updates and the periodic detector run."""

from __future__ import annotations

import logging
import time as _time

from sqlalchemy.orm import Session, sessionmaker

from xihu.analysis import rollup, service
from xihu.core.db import unit_of_work
from xihu.core.jobs import periodic
from xihu.core.security import Actor

log = logging.getLogger("xihu.analysis")
DETECTOR = Actor.system("预警研判")
INTERVAL_SECONDS = 15 * 60
_last_run: dict[str, float] = {}


@periodic("analysis.detectors")
def run_detectors(factory: sessionmaker[Session], worker_id: str) -> int:
    """Run the detectors every 15 minutes per process (raising is deduplicated, so overlaps are harmless)."""
    now = _time.monotonic()
    if now - _last_run.get("detectors", -INTERVAL_SECONDS) < INTERVAL_SECONDS:
        return 0
    _last_run["detectors"] = now
    with unit_of_work(factory) as session:
        result = service.run_detectors(session=session, actor=DETECTOR)
    if result["raised"]:
        log.info("analysis detectors raised %s warnings (%s)", result["raised"], result["by_kind"])
    return int(result["raised"])


@periodic("analysis.rollups")
def apply_rollup_queue(
    factory: sessionmaker[Session], worker_id: str, batch: int = 1000, max_batches: int = 10
) -> int:
    """Apply appeals queued by requests (XIHU_DEFER_TO_WORKERS) to the rollups, a batch per transaction."""
    done = 0
    for _ in range(max_batches):  # bounded: the worker's other jobs get their turn under sustained load
        with unit_of_work(factory) as session:
            n = rollup.apply_queued(session, batch=batch)
        done += n
        if n < batch:
            break
    return done
