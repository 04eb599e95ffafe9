"""Detectors on generated data: 90 quiet days raise nothing; each planted anomaly is found, with evidence."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import factories
from xihu.analysis import detectors, synthetic
from xihu.analysis import service as analysis_service
from xihu.analysis.models import AnalysisWarning
from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import DispatchIn
from xihu.core import clock
from xihu.core.outbox import OutboxMessage
from xihu.core.security import Actor, Role

SYSTEM = Actor.system("测试")
ON = date(2026, 11, 20)


@pytest.fixture
def quiet(session: Session) -> synthetic.Geography:
    """90 quiet days of about 80 appeals a day, ending on ON."""
    geo = synthetic.geography(session)
    plan = synthetic.Plan(start=ON - timedelta(89), days=90, per_day=80, seed=11, first_id=10_000_000)
    synthetic.load(session, list(synthetic.generate(plan, geo)))
    return geo


def _findings(session: Session) -> list[Any]:
    return detectors.detect_all(session=session, on=ON)


def test_ninety_quiet_days_raise_no_warning(session: Session, quiet: synthetic.Geography) -> None:
    result = analysis_service.run_detectors(session=session, actor=SYSTEM, on=ON)
    assert result["found"] == 0, result
    assert session.scalar(select(AnalysisWarning.id)) is None


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8])
def test_quiet_data_is_quiet_whatever_the_seed(session: Session, seed: int) -> None:
    plan = synthetic.Plan(start=ON - timedelta(89), days=90, per_day=80, seed=seed, first_id=10_000_000)
    synthetic.load(session, list(synthetic.generate(plan, synthetic.geography(session))))
    found = detectors.detect_all(session=session, on=ON)
    assert not found, [(f.kind, f.title) for f in found]


def test_topic_weeks_end_the_day_before_this_week(session: Session) -> None:
    from xihu.analysis import rollup

    rollup.add_terms(session, {(ON - timedelta(d), "井盖"): 3 for d in range(63)})
    assert detectors.weekly_terms(session, ON)["井盖"] == [21] * 9


def _plant(session: Session, rows: list[dict[str, Any]]) -> None:
    synthetic.load(session, rows)


def test_planted_spike_is_found_with_its_baseline(session: Session, quiet: synthetic.Geography) -> None:
    street, communities = quiet.streets[3]
    rows = [
        synthetic.fact(
            appeal_id=20_000_000 + i,
            day=ON - timedelta(i % 3),
            category="交通运输",
            street_id=street,
            community_id=communities[0],
            terms=["拥堵"],
        )
        for i in range(18)
    ]
    _plant(session, rows)
    spikes = [f for f in _findings(session) if f.kind == "spike"]
    assert [(f.evidence["street_id"], f.evidence["category"]) for f in spikes] == [(street, "交通运输")]
    ev = spikes[0].evidence
    assert ev["observed"] >= 18 and ev["expected"] < 6 and len(ev["baseline"]) == 8
    assert ev["p_value"] < 1e-4


def test_planted_hotspot_is_found_with_its_appeals(session: Session, quiet: synthetic.Geography) -> None:
    street, communities = quiet.streets[0]
    ids = [21_000_000 + i for i in range(12)]
    rows = [
        synthetic.fact(
            appeal_id=appeal_id,
            day=ON - timedelta(i % 6),
            category="环境保护",
            street_id=street,
            community_id=communities[1],
            lat=30.2601 + 0.0004 * (i % 3),
            lon=120.1302 - 0.0004 * (i % 2),
        )
        for i, appeal_id in enumerate(ids)
    ]
    _plant(session, rows)
    hot = [f for f in _findings(session) if f.kind == "hotspot"]
    assert len(hot) == 1
    ev = hot[0].evidence
    assert set(ids) <= set(ev["appeal_ids"])
    assert ev["top_category"] == "环境保护"
    assert abs(ev["center"][0] - 30.26) < 0.01 and abs(ev["center"][1] - 120.13) < 0.01
    assert hot[0].area_unit_id == communities[1]


def test_planted_topic_is_found(session: Session, quiet: synthetic.Geography) -> None:
    rows = []
    for i in range(25):
        street, communities = quiet.streets[i % len(quiet.streets)]
        rows.append(
            synthetic.fact(
                appeal_id=22_000_000 + i,
                day=ON - timedelta(i % 7),
                category="城乡建设",
                street_id=street,
                community_id=communities[0],
                terms=["充电桩", "电动车"],
            )
        )
    _plant(session, rows)
    topics = {f.evidence["term"]: f for f in _findings(session) if f.kind == "topic"}
    assert set(topics) == {"充电桩", "电动车"}
    assert topics["充电桩"].evidence["observed"] == 25
    assert topics["充电桩"].evidence["related"] == ["电动车"]


def test_rising_words_naming_the_same_appeals_are_one_topic(
    session: Session, quiet: synthetic.Geography
) -> None:
    """Real appeals this week: 停水/自来水 name the same appeals (one topic); 共享单车 is another topic."""
    from xihu.analysis import rollup

    clock.freeze(datetime.combine(ON, time(10, 0), tzinfo=clock.LOCAL_TZ))
    water = ["翠苑三区停水自来水断供", "文一路停水自来水没有通知", "小区停水两天自来水公司不接电话"]
    bikes = ["共享单车乱停放堵塞人行道", "地铁口共享单车堆积"]
    try:
        for i in range(18):
            factories.submitted(session, title=water[i % 3], description=f"第{i}户反映：家里没水，影响生活")
        for i in range(12):
            factories.submitted(session, title=bikes[i % 2], description=f"第{i}次反映：单车挡住了盲道")
        rollup.apply_pending(session)
        session.flush()
        found = [f for f in detectors.topics(session, ON)]
    finally:
        clock.reset()
    groups = {frozenset(f.evidence["terms"]): f for f in found}
    water_topic = next(f for terms, f in groups.items() if "停水" in terms)
    assert {"停水", "自来水"} <= set(water_topic.evidence["terms"])
    assert water_topic.evidence["appeals"] == 18 and len(water_topic.evidence["appeal_ids"]) == 18
    bike_topic = next(f for terms, f in groups.items() if "单车" in terms)
    assert "停水" not in bike_topic.evidence["terms"] and bike_topic.evidence["appeals"] == 12
    assert len(found) == 2, [f.evidence["terms"] for f in found]  # not one warning per word


def test_planted_dissatisfaction_is_found(session: Session, quiet: synthetic.Geography) -> None:
    street, communities = quiet.streets[5]
    rows = [
        synthetic.fact(
            appeal_id=23_000_000 + i,
            day=ON - timedelta(i % 10),
            category="商贸旅游",
            street_id=street,
            community_id=communities[0],
            rating="unsatisfied" if i < 9 else "satisfied",
        )
        for i in range(12)
    ]
    _plant(session, rows)
    found = [f for f in _findings(session) if f.kind == "dissatisfaction"]
    keys = {f.dedup_key for f in found}
    assert f"dissat:street:{street}:商贸旅游" in keys
    ev = next(f for f in found if f.dedup_key == f"dissat:street:{street}:商贸旅游").evidence
    assert ev["unsatisfied"] >= 9 and ev["expected_rate"] < 0.15


def test_repeat_caller_through_real_appeals_is_masked(session: Session) -> None:
    for i in range(5):
        factories.submitted(
            session, description=f"楼上邻居装修噪音太大，第{i + 1}次反映", citizen_phone="13955556666"
        )
    factories.submitted(session, description="另一个市民反映路灯不亮的问题", citizen_phone="13700001111")
    result = analysis_service.run_detectors(session=session, actor=SYSTEM)
    assert result["by_kind"].get("repeat_caller") == 1
    warning = session.scalars(select(AnalysisWarning).where(AnalysisWarning.kind == "repeat_caller")).one()
    assert warning.evidence["phone_masked"] == "139****6666"
    assert warning.evidence["observed"] == 5
    text = warning.title + warning.summary + str(warning.evidence)
    assert "13955556666" not in text


def test_sla_risk_from_the_queue_due_today(session: Session) -> None:
    clock.freeze(datetime.combine(date(2026, 11, 19), time(20, 0), tzinfo=clock.LOCAL_TZ))
    for i in range(5):
        appeal = factories.submitted(session, description=f"道路破损需要修补，位置{i}号路口附近")
        appeal_service.dispatch(
            session=session,
            actor=SYSTEM,
            appeal_id=appeal.id,
            data=DispatchIn(unit_id=factories.unit(session, "D-ZJ"), category="城乡建设"),
        )
    clock.freeze(datetime.combine(date(2026, 11, 20), time(8, 0), tzinfo=clock.LOCAL_TZ))
    result = analysis_service.run_detectors(session=session, actor=SYSTEM)
    assert result["by_kind"].get("sla_risk") == 1
    warning = session.scalars(select(AnalysisWarning).where(AnalysisWarning.kind == "sla_risk")).one()
    assert warning.evidence["queue_due_today"] == 5
    assert warning.evidence["predicted_breaches"] == 5
    assert warning.owner_unit_id == factories.unit(session, "D-ZJ")


def test_a_warning_is_raised_once_and_notified(
    session: Session, quiet: synthetic.Geography, make_user
) -> None:  # type: ignore[no-untyped-def]
    supervisor = make_user(Role.supervisor)
    street, communities = quiet.streets[2]
    _plant(
        session,
        [
            synthetic.fact(
                appeal_id=24_000_000 + i,
                day=ON,
                category="卫生计生",
                street_id=street,
                community_id=communities[0],
            )
            for i in range(15)
        ],
    )
    first = analysis_service.run_detectors(session=session, actor=SYSTEM, on=ON)
    second = analysis_service.run_detectors(session=session, actor=SYSTEM, on=ON)
    assert first["raised"] >= 1 and second["raised"] == 0 and second["refreshed"] == first["found"]
    spikes = list(session.scalars(select(AnalysisWarning).where(AnalysisWarning.kind == "spike")))
    assert len(spikes) == 1
    notes = list(session.scalars(select(OutboxMessage).where(OutboxMessage.user_id == supervisor.id)))
    assert any(f"/staff/warnings/{spikes[0].id}" == n.link for n in notes)
    assert sum(1 for n in notes if n.link == f"/staff/warnings/{spikes[0].id}") == 1
