"""XIHU_DEFER_TO_WORKERS: requests queue the changed appeals; a worker applies them to the same rollups."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

import factories
from xihu.analysis import rollup
from xihu.analysis.jobs import apply_rollup_queue
from xihu.analysis.models import (
    MEASURES,
    AppealFact,
    DistrictRollup,
    RollupQueue,
    StreetMonthRollup,
    StreetRollup,
)
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel, Rating
from xihu.appeals.jobs import route_deferred
from xihu.appeals.models import Appeal
from xihu.appeals.schemas import AppealCreate, RateIn
from xihu.core.config import get_settings
from xihu.core.security import Actor


def _totals(session: Session) -> dict[str, int]:
    row = session.execute(
        select(*(func.coalesce(func.sum(getattr(DistrictRollup, m)), 0) for m in MEASURES))
    ).one()
    return dict(zip(MEASURES, (int(v) for v in row), strict=True))


def _queued(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(RollupQueue)) or 0)


def _street_rows(session: Session) -> set[tuple[object, ...]]:
    """Street rows by day and by month (the worker keeps both, like the inline upkeep)."""
    return {
        (table.name, *sorted(r.items()))
        for table in (StreetRollup.__table__, StreetMonthRollup.__table__)
        for r in session.execute(select(table)).mappings()
        if r["received"]
    }


def test_requests_only_queue_and_the_worker_applies(session, session_factory, deferred) -> None:
    before = _totals(session)
    done = factories.completed(session)
    appeal_service.rate(
        session=session, tracking_code=done.tracking_code, data=RateIn(rating=Rating.satisfied)
    )
    factories.submitted(session)
    session.commit()
    assert _totals(session) == before  # nothing counted in the request
    assert _queued(session) >= 2

    assert apply_rollup_queue(session_factory, "w1") >= 2
    session.expire_all()
    after = _totals(session)
    assert after["received"] == before["received"] + 2
    assert after["completed"] == before["completed"] + 1
    assert after["satisfied"] == before["satisfied"] + 1
    assert _queued(session) == 0
    assert apply_rollup_queue(session_factory, "w2") == 0
    assert _totals(session) == after  # applying again counts nothing twice


def test_deferred_rollups_equal_the_inline_ones(session, session_factory, monkeypatch) -> None:
    factories.completed(session, description="垃圾清运不及时，小区门口垃圾堆积")
    factories.signed(session, street_id=factories.unit(session, "330106005"))
    factories.submitted(session)
    session.commit()
    inline = _street_rows(session)
    assert inline

    # Forget every count, then replay all appeals through the queue in several small batches.
    session.execute(delete(AppealFact))
    for table, _ in rollup.ROLLUPS:
        session.execute(delete(table))
    monkeypatch.setenv("XIHU_DEFER_TO_WORKERS", "1")
    get_settings.cache_clear()
    try:
        # every appeal in the database: other tests on this PostgreSQL may have committed some of their own
        ids = list(session.scalars(select(Appeal.id)))
        assert len(ids) >= 3
        for appeal_id in ids:
            rollup.mark(session, appeal_id)
        session.commit()
        assert _queued(session) == len(ids)
        assert _street_rows(session) == set()
        apply_rollup_queue(session_factory, "w1", batch=2)
    finally:
        monkeypatch.delenv("XIHU_DEFER_TO_WORKERS")
        get_settings.cache_clear()
    session.expire_all()
    assert _queued(session) == 0
    assert _street_rows(session) == inline


def test_a_deferred_intake_is_counted_once_the_router_has_taken_it(
    session, session_factory, deferred
) -> None:
    """The request queues no rollup; the router announces the appeal, also one it leaves to dispatchers."""
    before = _totals(session)
    appeal_service.submit(
        session=session,
        actor=Actor.citizen(),
        appeal_in=AppealCreate(
            description="小区门口的路灯坏了", street_id=factories.unit(session, "330106004")
        ),
        channel=Channel.web,
    )
    session.commit()
    assert _queued(session) == 0
    assert route_deferred(session_factory, "w1") == 1
    assert _queued(session) == 1
    apply_rollup_queue(session_factory, "w1")
    session.expire_all()
    assert _totals(session)["received"] == before["received"] + 1
    assert route_deferred(session_factory, "w2") == 0
    assert _queued(session) == 0  # announced once
