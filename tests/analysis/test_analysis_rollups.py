"""The rollups follow the appeals through their lifecycle and always equal a recount from the raw appeals."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import factories
from xihu.analysis import rollup
from xihu.analysis import service as analysis_service
from xihu.analysis.models import (
    MEASURES,
    AppealFact,
    TermRollup,
)
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Rating
from xihu.appeals.models import Appeal
from xihu.appeals.schemas import MergeIn, RateIn, TransferIn
from xihu.core.security import Actor

SYSTEM = Actor.system("测试")


def _snapshot(session: Session) -> dict[str, set[tuple[object, ...]]]:
    out: dict[str, set[tuple[object, ...]]] = {}
    for table, _ in rollup.ROLLUPS:  # day and month rollups
        rows = session.execute(select(table)).mappings()
        out[table.name] = {tuple(sorted(r.items())) for r in rows if any(r[m] for m in MEASURES)}
    out["terms"] = {
        (d, t, n)
        for d, t, n in session.execute(select(TermRollup.day, TermRollup.term, TermRollup.count))
        if n
    }
    return out


def _lifecycle(session: Session) -> dict[str, int]:
    other_street = factories.unit(session, "330106005")
    ids: dict[str, int] = {}
    ids["submitted"] = factories.submitted(session).id
    ids["completed"] = factories.completed(session, street_id=other_street).id
    rated = factories.completed(session, description="垃圾清运不及时，小区门口垃圾堆积")
    appeal_service.rate(
        session=session, tracking_code=rated.tracking_code, data=RateIn(rating=Rating.satisfied)
    )
    ids["rated"] = rated.id
    unhappy = factories.completed(session, description="楼下饭店油烟很大，影响居民生活")
    appeal_service.rate(
        session=session, tracking_code=unhappy.tracking_code, data=RateIn(rating=Rating.unsatisfied)
    )
    appeal_service.reopen(session=session, tracking_code=unhappy.tracking_code, reason="问题没有解决")
    ids["reopened"] = unhappy.id
    moved = factories.signed(session, description="人行道上的井盖松动，踩上去晃动")
    appeal_service.transfer(
        session=session,
        actor=SYSTEM,
        appeal_id=moved.id,
        data=TransferIn(unit_id=factories.unit(session, "D-ZJ") + 1, reason="属于其他部门职责"),
    )
    ids["transferred"] = moved.id
    dup = factories.submitted(session, description="小区门口的路灯坏了好几天，晚上很黑很黑")
    appeal_service.merge(
        session=session,
        actor=SYSTEM,
        appeal_id=dup.id,
        data=MergeIn(into_tracking_code=factories.submitted(session).tracking_code),
    )
    ids["merged"] = dup.id
    return ids


def test_rollups_equal_a_recount_after_lifecycle_events(session: Session) -> None:
    ids = _lifecycle(session)
    rollup.apply_pending(session)
    live = _snapshot(session)
    assert live["analysis_rollup_street"], "the events were counted"
    assert live["analysis_rollup_street_month"], "the month rows were counted alike"
    counted = rollup.rebuild(session)
    assert counted == session.scalar(select(func.count()).select_from(Appeal))
    assert _snapshot(session) == live
    facts = {f.appeal_id: f for f in session.scalars(select(AppealFact))}
    assert facts[ids["merged"]].received == 0
    assert facts[ids["reopened"]].open == 1 and facts[ids["reopened"]].unsatisfied == 1
    assert facts[ids["rated"]].satisfied == 1 and facts[ids["rated"]].open == 0
    assert facts[ids["transferred"]].unit_id == factories.unit(session, "D-ZJ") + 1


def test_figures_match_the_raw_appeals(session: Session) -> None:
    _lifecycle(session)
    today = analysis_service.today()
    figures = analysis_service.appeal_figures(
        session=session, actor=SYSTEM, area_unit_id=None, start=today - timedelta(1), end=today
    )
    appeals = list(session.scalars(select(Appeal)))
    counted = [a for a in appeals if a.state != "merged"]
    assert figures.received == len(counted)
    assert figures.completed == sum(1 for a in counted if a.completed_at is not None)
    assert figures.rated == sum(1 for a in counted if a.rating)
    assert figures.satisfied == sum(1 for a in counted if a.rating == "satisfied")
    assert figures.resolution_rate == round(figures.completed / figures.received, 4)
    assert sum(d.received for d in figures.by_day) == figures.received
    assert sum(c.count for c in figures.top_categories) == figures.received
    street = factories.unit(session, "330106004")
    assert {a.unit_id for a in figures.by_area} >= {street}
    by_street = {a.unit_id: a.received for a in figures.by_area}
    assert by_street[street] == sum(1 for a in counted if a.street_id == street)
    street_figures = analysis_service.appeal_figures(
        session=session, actor=SYSTEM, area_unit_id=street, start=today, end=today
    )
    assert street_figures.received == by_street[street]


def test_commit_applies_the_pending_changes(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        appeal_id = factories.submitted(s).id
        assert s.get(AppealFact, appeal_id) is None
        s.commit()
        assert s.get(AppealFact, appeal_id) is not None


def test_title_terms_skip_stop_words() -> None:
    terms = rollup.terms_of("反映小区电动车充电桩损坏问题")
    assert "问题" not in terms and "反映" not in terms
    assert any("充电" in t for t in terms)


def test_the_periodic_job_runs_the_detectors_once_per_interval(session_factory) -> None:  # type: ignore[no-untyped-def]
    from xihu.analysis import jobs
    from xihu.core.jobs import registered

    assert registered()["analysis.detectors"] is jobs.run_detectors
    jobs._last_run.clear()
    with session_factory() as s:
        for i in range(5):
            factories.submitted(
                s, description=f"同一号码第{i + 1}次反映噪音扰民", citizen_phone="13611112222"
            )
        s.commit()
    assert jobs.run_detectors(session_factory, "test") == 1
    assert jobs.run_detectors(session_factory, "test") == 0  # within the interval: not run again


def test_bulk_group_by_equals_the_event_upkeep(session: Session) -> None:
    from xihu.analysis import synthetic

    plan = synthetic.Plan(start=analysis_service.today() - timedelta(20), days=20, per_day=25, seed=3)
    synthetic.load(session, list(synthetic.generate(plan, synthetic.geography(session))))
    by_upkeep = _snapshot(session)
    assert by_upkeep["analysis_rollup_area"]
    rollup.rollups_from_facts(session)
    assert _snapshot(session) == by_upkeep
