"""SLA clocks: defaults, policies, the working-hours calendar, the sweeper and what stops a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

import factories
from xihu.appeals import service as appeal_service
from xihu.appeals import sla
from xihu.appeals.enums import Priority, State
from xihu.appeals.jobs import sweep_deadlines
from xihu.appeals.models import Appeal, AppealEvent, Deadline, SlaPolicy, Supervision
from xihu.appeals.schemas import CompleteIn, DecideExtensionIn, DispatchIn, ExtensionIn, MergeIn
from xihu.core import audit, clock
from xihu.core.audit import AuditEntry
from xihu.core.config import Settings
from xihu.core.outbox import OutboxMessage
from xihu.places import service as places_service

# Friday 2021-03-05 09:00 in Hangzhou (01:00 UTC): inside the morning window.
T0 = datetime(2021, 3, 5, 1, 0, tzinfo=UTC)


def _local(y: int, mo: int, d: int, h: int, mi: int) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=clock.LOCAL_TZ)


def _clocks(session, appeal_id: int) -> dict[str, Deadline]:
    session.expire_all()
    return {d.kind: d for d in sla.clocks_of(session=session, appeal_id=appeal_id)}


def _dispatch(session, appeal_id: int, unit_code: str, category: str | None) -> None:
    appeal_service.dispatch(
        session=session,
        actor=factories.SYSTEM,
        appeal_id=appeal_id,
        data=DispatchIn(unit_id=factories.unit(session, unit_code), category=category),
    )


def test_dispatch_opens_three_clocks_with_the_seed_defaults(session) -> None:
    clock.freeze(T0)
    result = factories.dispatched(session)
    clocks = _clocks(session, result.id)
    assert set(clocks) == {"sign", "handle", "complete"}
    assert clocks["sign"].due_at == T0 + timedelta(minutes=1)
    assert clocks["handle"].due_at == T0 + timedelta(minutes=30)
    assert clocks["complete"].due_at == T0 + timedelta(hours=24)
    zj = factories.unit(session, "D-ZJ")
    for d in clocks.values():
        assert d.open is True
        assert d.started_at == T0
        assert d.unit_id == zj
        assert d.met_at is None and d.breached_at is None and d.cancelled_at is None


def test_a_submitted_appeal_has_no_clock(session) -> None:
    result = factories.submitted(session)
    assert sla.clocks_of(session=session, appeal_id=result.id) == []


def test_policy_overrides_defaults_and_the_most_specific_wins(session) -> None:
    zj, cg = factories.unit(session, "D-ZJ"), factories.unit(session, "D-CG")
    session.add_all(
        [
            SlaPolicy(category="城乡建设", sign_minutes=5, handle_minutes=50, complete_minutes=500),
            SlaPolicy(priority="urgent", sign_minutes=2, handle_minutes=20, complete_minutes=200),
            SlaPolicy(unit_id=zj, sign_minutes=10, handle_minutes=100, complete_minutes=1000),
        ]
    )
    session.flush()
    clock.freeze(T0)

    def minutes_of(appeal_id: int) -> tuple[int, int, int]:
        c = _clocks(session, appeal_id)
        return tuple(  # type: ignore[return-value]
            int((c[k].due_at - T0).total_seconds() // 60) for k in ("sign", "handle", "complete")
        )

    # unit beats category and priority
    a = factories.submitted(session, priority=Priority.urgent)
    _dispatch(session, a.id, "D-ZJ", "城乡建设")
    assert minutes_of(a.id) == (10, 100, 1000)
    # category beats priority
    b = factories.submitted(session, priority=Priority.urgent)
    _dispatch(session, b.id, "D-CG", "城乡建设")
    assert minutes_of(b.id) == (5, 50, 500)
    # priority alone
    c = factories.submitted(session, priority=Priority.urgent)
    _dispatch(session, c.id, "D-CG", "市场监管")
    assert minutes_of(c.id) == (2, 20, 200)
    # nothing matches: the seeds' defaults
    d = factories.submitted(session)
    _dispatch(session, d.id, "D-CG", "市场监管")
    assert minutes_of(d.id) == (1, 30, 24 * 60)
    # a policy for both unit and category is more specific than either alone
    session.add(
        SlaPolicy(unit_id=cg, category="市场监管", sign_minutes=3, handle_minutes=33, complete_minutes=333)
    )
    session.flush()
    p = sla.policy_for(session=session, category="市场监管", priority="urgent", unit_id=cg)
    assert (p.sign, p.handle, p.complete) == (3, 33, 333)
    p = sla.policy_for(session=session, category="市场监管", priority="normal", unit_id=None)
    assert p == sla.DEFAULT_POLICY


def test_workhours_calendar_skips_evenings_lunch_and_weekends() -> None:
    def add(start: datetime, minutes: int) -> datetime:
        return sla.add_minutes(clock.as_utc(start), minutes, "workhours")

    # Friday 17:20 + 30 working minutes -> Monday 08:50
    assert add(_local(2026, 3, 6, 17, 20), 30) == _local(2026, 3, 9, 8, 50)
    # across lunch: 11:50 + 30 -> 13:50
    assert add(_local(2026, 3, 5, 11, 50), 30) == _local(2026, 3, 5, 13, 50)
    # before work starts: 07:00 + 1 -> 08:31
    assert add(_local(2026, 3, 5, 7, 0), 1) == _local(2026, 3, 5, 8, 31)
    # Saturday counts nothing
    assert add(_local(2026, 3, 7, 10, 0), 1) == _local(2026, 3, 9, 8, 31)
    # a whole working day is 7.5 hours: Monday 08:30 + 450 min ends on Monday 17:30
    assert add(_local(2026, 3, 9, 8, 30), 450) == _local(2026, 3, 9, 17, 30)
    assert add(_local(2026, 3, 9, 8, 30), 451) == _local(2026, 3, 10, 8, 31)
    # the default calendar counts every minute
    start = clock.as_utc(_local(2026, 3, 6, 17, 20))
    assert sla.add_minutes(start, 30, "always") == start + timedelta(minutes=30)


def test_dispatch_on_a_workhours_policy_friday_evening_is_due_monday(session) -> None:
    session.add(
        SlaPolicy(
            category="城乡建设",
            sign_minutes=30,
            handle_minutes=60,
            complete_minutes=450,
            calendar="workhours",
        )
    )
    session.flush()
    clock.freeze(_local(2026, 3, 6, 17, 20))
    result = factories.dispatched(session)
    c = _clocks(session, result.id)
    assert clock.local(c["sign"].due_at) == _local(2026, 3, 9, 8, 50)
    assert clock.local(c["handle"].due_at) == _local(2026, 3, 9, 9, 20)
    assert clock.local(c["complete"].due_at) == _local(2026, 3, 9, 17, 20)  # 10 + 210 + 230 min


def test_signing_meets_the_sign_clock_only(session) -> None:
    clock.freeze(T0)
    result = factories.dispatched(session)
    clock.advance(timedelta(seconds=20))
    appeal_service.sign(session=session, actor=factories.SYSTEM, appeal_id=result.id)
    c = _clocks(session, result.id)
    assert c["sign"].open is False
    assert c["sign"].met_at == T0 + timedelta(seconds=20)
    assert c["handle"].open is True and c["complete"].open is True
    appeal_service.start(session=session, actor=factories.SYSTEM, appeal_id=result.id)
    c = _clocks(session, result.id)
    assert c["handle"].open is False and c["handle"].met_at is not None
    assert c["complete"].open is True


def _count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_sweeper_escalates_a_breached_sign_clock_exactly_once(session, session_factory, make_user) -> None:
    supervisor = make_user("supervisor", None)
    handler = make_user("handler", "D-ZJ")
    grid = make_user("grid", "D-ZJ")
    other_handler = make_user("handler", "D-CG")
    clock.freeze(T0)
    result = factories.dispatched(session)
    session.commit()
    subject = f"超时督办 {result.tracking_code}"

    clock.advance(timedelta(seconds=59))
    assert sweep_deadlines(session_factory, "w1") == 0
    session.expire_all()
    assert _count(session, Supervision, Supervision.appeal_id == result.id) == 0
    assert _count(session, OutboxMessage, OutboxMessage.subject == subject) == 0
    assert session.get(Appeal, result.id).flagged is False
    assert all(d.open for d in _clocks(session, result.id).values())

    clock.advance(timedelta(seconds=2))  # 61 s after dispatch
    assert sweep_deadlines(session_factory, "w1") == 1
    session.expire_all()
    c = _clocks(session, result.id)
    assert c["sign"].open is False
    assert c["sign"].breached_at == T0 + timedelta(seconds=61)
    assert c["sign"].escalated_at == T0 + timedelta(seconds=61)
    assert c["sign"].met_at is None
    assert c["handle"].open is True and c["handle"].breached_at is None
    assert c["complete"].open is True

    sups = list(session.scalars(select(Supervision).where(Supervision.appeal_id == result.id)))
    assert len(sups) == 1
    assert sups[0].kind == "auto"
    assert sups[0].deadline_id == c["sign"].id
    assert sups[0].unit_id == factories.unit(session, "D-ZJ")
    assert "签收" in sups[0].reason

    appeal = session.get(Appeal, result.id)
    assert appeal.flagged is True
    assert appeal.state == State.dispatched.value  # escalation does not change the state

    steps = list(
        session.scalars(
            select(AppealEvent).where(AppealEvent.appeal_id == result.id, AppealEvent.action == "supervise")
        )
    )
    assert len(steps) == 1 and steps[0].public is False
    public = appeal_service.track(session=session, tracking_code=result.tracking_code)
    assert "supervise" not in [s.action for s in public.timeline]

    audits = list(
        session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "appeal.sla_breach", AuditEntry.entity_id == str(result.id)
            )
        )
    )
    assert len(audits) == 1
    assert audits[0].entity == "appeal"
    assert audits[0].detail == {"deadline_id": c["sign"].id, "kind": "sign"}

    msgs = list(session.scalars(select(OutboxMessage).where(OutboxMessage.subject == subject)))
    assert {m.channel for m in msgs} == {"inapp"}
    assert sorted(m.user_id for m in msgs) == sorted([supervisor.id, handler.id, grid.id])
    assert other_handler.id not in {m.user_id for m in msgs}
    assert all(m.status == "pending" for m in msgs)

    # a second sweep (and one much later for the same clock) escalates nothing twice
    assert sweep_deadlines(session_factory, "w1") == 0
    clock.advance(timedelta(seconds=60))
    assert sweep_deadlines(session_factory, "w1") == 0
    session.expire_all()
    assert _count(session, Supervision, Supervision.appeal_id == result.id) == 1
    assert _count(session, OutboxMessage, OutboxMessage.subject == subject) == 3
    assert _count(session, AuditEntry, AuditEntry.action == "appeal.sla_breach") == 1

    # the 30-minute clock breaches on its own, once
    clock.advance(timedelta(minutes=29))
    assert sweep_deadlines(session_factory, "w1") == 1
    assert sweep_deadlines(session_factory, "w1") == 0
    session.expire_all()
    assert _count(session, Supervision, Supervision.appeal_id == result.id) == 2
    assert _clocks(session, result.id)["handle"].breached_at is not None


def _overdue_item(session, actor, appeal_id: int, *, overdue: bool):
    page = appeal_service.search(session=session, actor=actor, overdue=overdue, size=100)
    return next((a for a in page.items if a.id == appeal_id), None)


def _sign_breached(session, session_factory):
    """An appeal dispatched at T0 whose 1-minute sign clock the sweeper has breached (now T0 + 61 s)."""
    clock.freeze(T0)
    result = factories.dispatched(session)
    session.commit()
    clock.advance(timedelta(seconds=61))
    assert sweep_deadlines(session_factory, "w1") == 1
    session.expire_all()
    return result


def test_a_breached_clock_stays_overdue_until_its_step_is_done(session, session_factory, actor_of) -> None:
    supervisor = actor_of("supervisor")
    handler = actor_of("handler", "D-ZJ")
    result = _sign_breached(session, session_factory)
    # the sweeper closed the clock to escalate it once, yet the signature is still owed: lists say so
    row = _overdue_item(session, supervisor, result.id, overdue=True)
    assert row is not None
    assert (row.next_due_at, row.next_due_kind) == (T0 + timedelta(seconds=60), "sign")

    clock.advance(timedelta(seconds=30))
    appeal_service.sign(session=session, actor=handler, appeal_id=result.id)
    c = _clocks(session, result.id)
    assert c["sign"].met_at == T0 + timedelta(seconds=91)  # met late: the breach stays on record
    assert c["sign"].breached_at == T0 + timedelta(seconds=61)
    assert _overdue_item(session, supervisor, result.id, overdue=True) is None
    row = _overdue_item(session, supervisor, result.id, overdue=False)
    assert (row.next_due_at, row.next_due_kind) == (T0 + timedelta(minutes=30), "handle")
    session.commit()

    clock.advance(timedelta(minutes=30))
    assert sweep_deadlines(session_factory, "w1") == 1
    session.expire_all()
    assert _overdue_item(session, supervisor, result.id, overdue=True).next_due_kind == "handle"
    appeal_service.return_to_dispatcher(
        session=session, actor=handler, appeal_id=result.id, reason="不属于本单位职责"
    )
    c = _clocks(session, result.id)
    assert c["handle"].cancelled_at == T0 + timedelta(minutes=30, seconds=91)
    assert c["handle"].met_at is None
    assert _overdue_item(session, supervisor, result.id, overdue=True) is None
    assert _overdue_item(session, supervisor, result.id, overdue=False).next_due_at is None
    # the rollups still hold the missed handling against the unit, and not the completion clock it never ran
    [facts] = appeal_service.rollup_facts(session=session, appeal_ids=[result.id])
    assert (facts.sign_due, facts.signed_on_time, facts.complete_due) == (True, False, False)


def test_a_clock_cancelled_after_its_breach_still_counts_as_missed(
    session, session_factory, actor_of
) -> None:
    handler = actor_of("handler", "D-ZJ")
    result = _sign_breached(session, session_factory)
    appeal_service.return_to_dispatcher(
        session=session, actor=handler, appeal_id=result.id, reason="非本单位职责"
    )
    assert _clocks(session, result.id)["sign"].cancelled_at is not None
    [facts] = appeal_service.rollup_facts(session=session, appeal_ids=[result.id])
    assert (facts.sign_due, facts.signed_on_time) == (True, False)


@pytest.mark.parametrize("defer", [False, True], ids=["chained-at-commit", "sealed-by-worker"])
def test_one_sweep_escalates_many_appeals_each_to_its_own_people(
    session, session_factory, make_user, request, defer: bool
) -> None:
    if defer:
        request.getfixturevalue("deferred")
    supervisor = make_user("supervisor", None)
    zj_handler = make_user("handler", "D-ZJ")
    cg_handler = make_user("handler", "D-CG")
    cg_grid = make_user("grid", "D-CG")
    clock.freeze(T0)
    # interleaved units, so that a batch's remembered lists of people are used again and again
    units = ["D-ZJ", "D-CG", "D-ZJ", "D-CG", "D-CG"]
    results = [factories.dispatched(session, unit_code=code) for code in units]
    session.commit()

    clock.advance(timedelta(seconds=61))
    assert sweep_deadlines(session_factory, "w1") == len(results)
    session.expire_all()
    # the unit's people (2 or 3 breaches each) get a message per appeal; the supervisor, with 5, one digest
    expected = {"D-ZJ": {zj_handler.id}, "D-CG": {cg_handler.id, cg_grid.id}}
    for code, result in zip(units, results, strict=True):
        msgs = session.scalars(
            select(OutboxMessage).where(OutboxMessage.subject == f"超时督办 {result.tracking_code}")
        ).all()
        assert sorted(m.user_id for m in msgs) == sorted(expected[code])
        assert session.get(Appeal, result.id).flagged is True
        assert _count(session, Supervision, Supervision.appeal_id == result.id) == 1
        assert (
            _count(
                session, AppealEvent, AppealEvent.appeal_id == result.id, AppealEvent.action == "supervise"
            )
            == 1
        )
    [digest] = session.scalars(select(OutboxMessage).where(OutboxMessage.user_id == supervisor.id)).all()
    assert digest.subject == "超时督办 5 件诉求"
    assert digest.link == "/staff?overdue=true"
    assert all(r.tracking_code in digest.body for r in results)
    assert digest.body.count("超时未签收") == 5
    breach_audits = session.scalars(select(AuditEntry).where(AuditEntry.action == "appeal.sla_breach")).all()
    assert sorted(int(a.entity_id) for a in breach_audits) == sorted(r.id for r in results)
    assert sweep_deadlines(session_factory, "w1") == 0
    # the escalations' audit rows join the hash chain: at commit, or when a worker seals them
    if defer:
        assert audit.verify(session=session).pending >= len(results)
        audit.seal_job(session_factory, "w1")
    session.expire_all()
    report = audit.verify(session=session)
    assert report.ok and report.pending == 0
    assert {a.seq is not None for a in breach_audits} == {True}


def test_a_digest_names_each_appeal_once_with_its_late_clocks(session, session_factory, make_user) -> None:
    supervisor = make_user("supervisor", None)
    clock.freeze(T0)
    results = [factories.dispatched(session) for _ in range(4)]
    session.commit()
    clock.advance(timedelta(minutes=31))  # the worker was down: sign and handling breach in one sweep
    assert sweep_deadlines(session_factory, "w1") == 8
    session.expire_all()
    [digest] = session.scalars(select(OutboxMessage).where(OutboxMessage.user_id == supervisor.id)).all()
    assert digest.subject == "超时督办 4 件诉求（8 项时限）"
    for r in results:
        assert digest.body.count(r.tracking_code) == 1
        assert f"{r.tracking_code} 超时未签收、流转处置" in digest.body


def test_escalation_comes_at_the_first_sweep_after_the_due_time(session, session_factory) -> None:
    interval = Settings().sweep_interval_seconds
    assert 0 < interval < 60  # the 1-minute clock needs a sweeper that runs more often than that
    clock.freeze(T0)
    result = factories.dispatched(session)
    session.commit()
    due = _clocks(session, result.id)["sign"].due_at
    sweeps = 0
    while True:
        clock.advance(timedelta(seconds=interval))
        sweeps += 1
        done = sweep_deadlines(session_factory, "w1")
        if clock.now() < due:
            assert done == 0
        else:
            assert done == 1
            break
        assert sweeps < 100
    breached = _clocks(session, result.id)["sign"].breached_at
    assert breached is not None
    assert timedelta(0) <= breached - due < timedelta(seconds=interval)


def test_auto_sign_unit_signs_on_dispatch(session, actor_of) -> None:
    admin = actor_of("admin")
    places_service.set_auto_sign(
        session=session, actor=admin, unit_id=factories.unit(session, "D-ZJ"), enabled=True
    )
    clock.freeze(T0)
    result = factories.dispatched(session)
    appeal = session.get(Appeal, result.id)
    assert appeal.state == State.signed.value
    assert appeal.signed_at == T0
    c = _clocks(session, result.id)
    assert c["sign"].open is False and c["sign"].met_at == T0
    assert c["handle"].open is True and c["complete"].open is True
    # a unit without auto-sign still waits
    other = factories.dispatched(session, unit_code="D-CG")
    assert session.get(Appeal, other.id).state == State.dispatched.value


def test_approved_extension_moves_the_completion_clock(session, actor_of) -> None:
    handler = actor_of("handler", "D-ZJ")
    supervisor = actor_of("supervisor", None)
    clock.freeze(T0)
    result = factories.signed(session)
    before = _clocks(session, result.id)
    appeal_service.request_extension(
        session=session,
        actor=handler,
        appeal_id=result.id,
        data=ExtensionIn(hours=48, reason="需要协调施工队"),
    )
    assert _clocks(session, result.id)["complete"].due_at == T0 + timedelta(hours=24)
    appeal_service.decide_extension(
        session=session, actor=supervisor, appeal_id=result.id, data=DecideExtensionIn(approve=True)
    )
    after = _clocks(session, result.id)
    assert after["complete"].due_at == T0 + timedelta(hours=24 + 48)
    assert after["handle"].due_at == before["handle"].due_at
    # a rejected request leaves the clock where it is
    appeal_service.request_extension(
        session=session, actor=handler, appeal_id=result.id, data=ExtensionIn(hours=10, reason="再延一次")
    )
    appeal_service.decide_extension(
        session=session, actor=supervisor, appeal_id=result.id, data=DecideExtensionIn(approve=False)
    )
    assert _clocks(session, result.id)["complete"].due_at == T0 + timedelta(hours=72)


def test_return_cancels_open_clocks(session, session_factory, actor_of) -> None:
    handler = actor_of("handler", "D-ZJ")
    clock.freeze(T0)
    result = factories.dispatched(session)
    clock.advance(timedelta(seconds=30))
    appeal_service.return_to_dispatcher(
        session=session, actor=handler, appeal_id=result.id, reason="不属于本单位职责"
    )
    c = _clocks(session, result.id)
    for d in c.values():
        assert d.open is False
        assert d.cancelled_at == T0 + timedelta(seconds=30)
        assert d.met_at is None
    session.commit()
    clock.advance(timedelta(days=2))
    assert sweep_deadlines(session_factory, "w1") == 0
    session.expire_all()
    assert _count(session, Supervision, Supervision.appeal_id == result.id) == 0


def test_merge_cancels_open_clocks_of_the_duplicate_only(session, session_factory, actor_of) -> None:
    dispatcher = actor_of("dispatcher")
    clock.freeze(T0)
    dup = factories.dispatched(session)
    target = factories.dispatched(session)
    appeal_service.merge(
        session=session,
        actor=dispatcher,
        appeal_id=dup.id,
        data=MergeIn(into_tracking_code=target.tracking_code),
    )
    assert all(d.open is False and d.cancelled_at == T0 for d in _clocks(session, dup.id).values())
    assert all(d.open for d in _clocks(session, target.id).values())
    session.commit()
    clock.advance(timedelta(minutes=2))
    assert sweep_deadlines(session_factory, "w1") == 1  # only the target's sign clock
    session.expire_all()
    assert _count(session, Supervision, Supervision.appeal_id == dup.id) == 0
    assert _count(session, Supervision, Supervision.appeal_id == target.id) == 1


def test_an_extension_after_the_breach_moves_the_due_time_not_the_verdict(
    session, session_factory, actor_of
) -> None:
    handler, supervisor = actor_of("handler", "D-ZJ"), actor_of("supervisor", None)
    clock.freeze(T0)
    result = factories.handling(session)
    session.commit()
    clock.advance(timedelta(hours=25))
    assert sweep_deadlines(session_factory, "w1") == 1  # the 24-hour clock
    session.expire_all()
    assert _overdue_item(session, supervisor, result.id, overdue=True) is not None
    appeal_service.request_extension(
        session=session,
        actor=handler,
        appeal_id=result.id,
        data=ExtensionIn(hours=48, reason="需要协调施工队"),
    )
    appeal_service.decide_extension(
        session=session, actor=supervisor, appeal_id=result.id, data=DecideExtensionIn(approve=True)
    )
    assert _overdue_item(session, supervisor, result.id, overdue=True) is None
    row = _overdue_item(session, supervisor, result.id, overdue=False)
    assert (row.next_due_at, row.next_due_kind) == (T0 + timedelta(hours=72), "complete")
    session.commit()
    clock.advance(timedelta(hours=1))
    assert sweep_deadlines(session_factory, "w1") == 0  # escalated once, not again
    appeal_service.complete(
        session=session, actor=handler, appeal_id=result.id, data=CompleteIn(reply="已协调施工队修复完毕")
    )
    [facts] = appeal_service.rollup_facts(session=session, appeal_ids=[result.id])
    assert (facts.complete_due, facts.completed_on_time) == (True, False)


def test_extension_on_the_workhours_calendar_counts_working_hours(session) -> None:
    from zoneinfo import ZoneInfo

    from xihu.core import clock as core_clock
    from xihu.core.security import Actor

    session.add(SlaPolicy(sign_minutes=1, handle_minutes=30, complete_minutes=60, calendar="workhours"))
    session.flush()
    # Friday 16:00 in Hangzhou: the 60-minute completion clock is due at 17:00 the same day.
    core_clock.freeze(datetime(2026, 11, 20, 16, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    appeal = factories.handling(session)
    system = Actor.system("测试")
    appeal_service.request_extension(
        session=session, actor=system, appeal_id=appeal.id, data=ExtensionIn(hours=2, reason="需要协调")
    )
    appeal_service.decide_extension(
        session=session, actor=system, appeal_id=appeal.id, data=DecideExtensionIn(approve=True)
    )
    due = session.scalar(
        select(Deadline.due_at).where(
            Deadline.appeal_id == appeal.id, Deadline.kind == "complete", Deadline.open.is_(True)
        )
    )
    # 17:00 Friday + 2 working hours: 30 minutes until 17:30, then 90 from Monday 08:30 = Monday 10:00
    # (plain hours would have said Friday 19:00).
    assert core_clock.local(due).strftime("%a %H:%M") == "Mon 10:00"


def _settle_statement() -> str:
    import importlib.util
    from pathlib import Path

    [path] = (Path(__file__).resolve().parents[2] / "migrations" / "versions").glob(
        "*_settle_breached_clocks.py"
    )
    spec = importlib.util.spec_from_file_location("settle_breached_clocks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SETTLE


def test_the_migration_settles_breached_clocks_the_old_code_left_unstamped(session, actor_of) -> None:
    dispatcher, handler = actor_of("dispatcher"), actor_of("handler", "D-ZJ")
    clock.freeze(T0)
    still_unsigned = factories.dispatched(session)
    signed_late = factories.dispatched(session)
    redispatched = factories.dispatched(session)
    unfinished = factories.handling(session)
    clock.advance(timedelta(minutes=1, seconds=1))
    ids = [still_unsigned.id, signed_late.id, redispatched.id, unfinished.id]

    def breach(appeal_id: int, kind: str) -> None:
        session.execute(
            sa.update(Deadline)
            .where(Deadline.appeal_id == appeal_id, Deadline.kind == kind, Deadline.open.is_(True))
            .values(open=False, breached_at=clock.now())
        )

    for appeal_id in ids[:3]:
        breach(appeal_id, "sign")
    breach(unfinished.id, "complete")
    appeal_service.sign(session=session, actor=handler, appeal_id=signed_late.id)
    appeal_service.return_to_dispatcher(
        session=session, actor=handler, appeal_id=redispatched.id, reason="非本单位"
    )
    appeal_service.dispatch(
        session=session,
        actor=dispatcher,
        appeal_id=redispatched.id,
        data=DispatchIn(unit_id=factories.unit(session, "D-CG"), category="城乡建设"),
    )
    # what the code before the change left: breached clocks never stamped met or cancelled
    session.execute(
        sa.update(Deadline)
        .where(Deadline.appeal_id.in_(ids), Deadline.breached_at.is_not(None))
        .values(met_at=None, cancelled_at=None)
    )
    session.execute(sa.text(_settle_statement()))
    session.expire_all()
    pending = {
        (d.appeal_id, d.kind)
        for d in session.scalars(select(Deadline).where(Deadline.appeal_id.in_(ids), sla.pending()))
    }
    assert (still_unsigned.id, "sign") in pending
    assert (unfinished.id, "complete") in pending
    assert (signed_late.id, "sign") not in pending
    redone = [d for d in sla.clocks_of(session=session, appeal_id=redispatched.id) if d.kind == "sign"]
    assert [(d.breached_at is not None, d.cancelled_at is not None, d.open) for d in redone] == [
        (True, True, False),
        (False, False, True),
    ]
    settled = session.get(Deadline, redone[0].id)
    assert settled.cancelled_at == settled.breached_at
