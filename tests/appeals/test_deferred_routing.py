"""XIHU_DEFER_TO_WORKERS: intake only stores and acknowledges; a worker routes each appeal exactly once."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

import factories
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel, DeadlineKind, State
from xihu.appeals.jobs import MAX_ROUTING_ATTEMPTS, route_deferred
from xihu.appeals.models import Appeal, AppealEvent, AppealUnit, Deadline, RoutingTask
from xihu.appeals.schemas import AppealCreate, DispatchIn
from xihu.core import audit
from xihu.core.audit import AuditEntry
from xihu.core.db import is_postgres
from xihu.core.security import Actor
from xihu.dispatch import model_cache, training
from xihu.dispatch import service as dispatch_service

ADMIN = Actor.system("测试管理员")
LAMP = "小区路灯坏了好几天，晚上很黑，物业一直不修"


@pytest.fixture
def sure_model(session, settings):  # type: ignore[no-untyped-def]
    """The demo model, made sure of everything so that routing dispatches automatically."""
    model_cache.CHECK_INTERVAL_SECONDS = 0
    model_cache.reset_cache()
    training.train_version(
        session=session, actor=ADMIN, rows=training.demo_rows(), data_dir=settings.data_dir, activate=True
    )
    session.flush()
    active = model_cache.active_model(session=session)
    assert active is not None
    active[0].threshold = 0.0
    yield
    model_cache.reset_cache()


def _submit(session, **extra):  # type: ignore[no-untyped-def]
    appeal_in = AppealCreate(description=LAMP, street_id=factories.unit(session, "330106004"), **extra)
    return appeal_service.submit(
        session=session, actor=Actor.citizen(), appeal_in=appeal_in, channel=Channel.web
    )


def _tasks(session) -> int:  # type: ignore[no-untyped-def]
    return int(session.scalar(select(func.count()).select_from(RoutingTask)) or 0)


def test_intake_acknowledges_without_routing_and_the_worker_routes_once(
    session, session_factory, deferred, sure_model
) -> None:
    result = _submit(session)
    session.commit()
    assert result.state == State.submitted.value
    assert _tasks(session) == 1
    assert dispatch_service.latest_decision(session=session, appeal_id=result.id) is None

    assert route_deferred(session_factory, "w1") == 1
    session.expire_all()
    appeal = session.get(Appeal, result.id)
    assert appeal is not None and appeal.state == State.dispatched.value
    assert appeal.lead_unit_id is not None
    assert dispatch_service.latest_decision(session=session, appeal_id=result.id) is not None
    assert _tasks(session) == 0
    assert route_deferred(session_factory, "w2") == 0


def test_inline_routing_stays_the_default(session, sure_model) -> None:
    result = _submit(session)
    assert result.state == State.dispatched.value
    assert _tasks(session) == 0


def test_an_appeal_a_dispatcher_took_first_is_left_alone(
    session, session_factory, deferred, sure_model
) -> None:
    result = _submit(session)
    cg = factories.unit(session, "D-CG")
    appeal_service.dispatch(session=session, actor=ADMIN, appeal_id=result.id, data=DispatchIn(unit_id=cg))
    session.commit()

    assert route_deferred(session_factory, "w1") == 0
    session.expire_all()
    appeal = session.get(Appeal, result.id)
    assert appeal is not None and appeal.lead_unit_id == cg
    assert _tasks(session) == 0


def test_a_failing_router_is_retried_then_left_to_the_dispatchers(
    session, session_factory, deferred, sure_model, monkeypatch
) -> None:
    failing = _submit(session)
    session.commit()

    def broken(**_kw):  # type: ignore[no-untyped-def]
        raise RuntimeError("model file unreadable")

    monkeypatch.setattr(dispatch_service, "route", broken)
    for attempt in range(1, MAX_ROUTING_ATTEMPTS):
        assert route_deferred(session_factory, "w1") == 0
        session.expire_all()
        task = session.get(RoutingTask, failing.id)
        assert task is not None and task.attempts == attempt
        assert task.last_error == "RuntimeError: model file unreadable"
    assert route_deferred(session_factory, "w1") == 0
    session.expire_all()
    assert _tasks(session) == 0
    appeal = session.get(Appeal, failing.id)
    assert appeal is not None and appeal.state == State.submitted.value  # still in the manual queue
    gave_up = session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.action == "appeal.routing_failed", AuditEntry.entity_id == str(failing.id))
    )
    assert gave_up == 1


def test_one_failing_appeal_does_not_hold_up_the_others(
    session, session_factory, deferred, sure_model, monkeypatch
) -> None:
    bad = _submit(session, title="坏的")
    good = _submit(session, title="好的")
    session.commit()
    real_route = dispatch_service.route

    def flaky(*, session, appeal):  # type: ignore[no-untyped-def]
        if appeal.appeal_id == bad.id:
            raise RuntimeError("boom")
        return real_route(session=session, appeal=appeal)

    monkeypatch.setattr(dispatch_service, "route", flaky)
    assert route_deferred(session_factory, "w1") == 1
    session.expire_all()
    assert session.get(Appeal, good.id).state == State.dispatched.value  # type: ignore[union-attr]
    assert session.get(Appeal, bad.id).state == State.submitted.value  # type: ignore[union-attr]
    assert _tasks(session) == 1


def _route_counting_statements(session_factory) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    statements: list[str] = []

    def count(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        statements.append(statement)

    engine = session_factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        routed = route_deferred(session_factory, "w1", batch=100)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return routed, len(statements)


def test_a_batch_is_routed_with_its_writes_together(
    session, session_factory, deferred, sure_model, monkeypatch
) -> None:
    """Routing 30 appeals takes about as many statements as routing 10 (it took 18 per appeal before)."""
    monkeypatch.setattr(model_cache, "CHECK_INTERVAL_SECONDS", 3600)  # as in production: no check per appeal
    small = [_submit(session).id for _ in range(10)]
    session.commit()
    routed, count_small = _route_counting_statements(session_factory)
    assert routed == 10
    large = [_submit(session).id for _ in range(30)]
    session.commit()
    routed, count_large = _route_counting_statements(session_factory)
    assert routed == 30
    # SQLite cannot give back the ids of a many-row INSERT in order, so there the ORM inserts row by row
    # (about 7 statements an appeal, no SELECTs among them); PostgreSQL gets one INSERT per table.
    extra = 5 if is_postgres(session) else 7 * 20
    assert count_large <= count_small + extra, (count_small, count_large)
    session.expire_all()
    for appeal_id in small + large:
        appeal = session.get(Appeal, appeal_id)
        assert appeal is not None and appeal.state == State.dispatched.value
        units = session.scalars(select(AppealUnit).where(AppealUnit.appeal_id == appeal_id)).all()
        assert [(u.unit_id, u.role) for u in units] == [(appeal.lead_unit_id, "lead")]
        clocks = session.scalars(select(Deadline).where(Deadline.appeal_id == appeal_id)).all()
        assert sorted(c.kind for c in clocks) == sorted(k.value for k in DeadlineKind)
        assert all(c.open and c.due_at > c.started_at for c in clocks)
        events = session.scalars(select(AppealEvent.action).where(AppealEvent.appeal_id == appeal_id)).all()
        assert sorted(events) == ["dispatch", "submit"]
        of_appeal = (AuditEntry.entity == "appeal", AuditEntry.entity_id == str(appeal_id))
        audited = session.scalars(select(AuditEntry.action).where(*of_appeal)).all()
        assert sorted(audited) == ["appeal.dispatch", "appeal.submit"]
        decision = dispatch_service.latest_decision(session=session, appeal_id=appeal_id)
        assert decision is not None and decision.auto
    assert _tasks(session) == 0
    # the rows written in bulk join the audit chain like any others
    audit.seal(session=session)
    assert audit.verify(session=session).ok
