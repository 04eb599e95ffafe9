"""考核: weights validation, the weighted score worked by hand, ranking order, and the Excel export."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date

import pytest
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from xihu.analysis.schemas import AppealFigures, AreaFigures, UnitRates
from xihu.core.errors import Forbidden, Invalid
from xihu.core.security import Actor
from xihu.indicators import assessment, reporting
from xihu.indicators import service as indicators_service
from xihu.indicators.enums import AssessedKind
from xihu.indicators.schemas import ReportCreate, ReportDecision, SchemeUpdate

STREET = "330106004"  # 西溪街道
OTHER = "330106005"  # 翠苑街道


@pytest.fixture
def rates(monkeypatch: pytest.MonkeyPatch, unit_id: Callable[[str], int]) -> dict[str, object]:
    """Fixed 三率 from the analysis domain: 西溪 90/80/95 %, 翠苑 60/50/70 %; 区住建局 100/100/none."""
    seen: dict[str, object] = {}

    def figures(*, session, actor, area_unit_id, start, end, **_):  # type: ignore[no-untyped-def]
        seen["figures"] = (area_unit_id, start, end)
        return AppealFigures(
            area_unit_id=None,
            area_name="西湖区",
            start=start,
            end=end,
            by_area=[
                AreaFigures(
                    unit_id=unit_id(STREET),
                    name="西溪街道",
                    received=40,
                    response_rate=0.9,
                    resolution_rate=0.8,
                    satisfaction_rate=0.95,
                ),
                AreaFigures(
                    unit_id=unit_id(OTHER),
                    name="翠苑街道",
                    received=10,
                    response_rate=0.6,
                    resolution_rate=0.5,
                    satisfaction_rate=0.7,
                ),
            ],
        )

    def unit_rates(*, session, actor, unit_ids, start, end):  # type: ignore[no-untyped-def]
        seen["unit_rates"] = (tuple(unit_ids), start, end)
        zj = unit_id("D-ZJ")
        return [
            UnitRates(
                unit_id=zj,
                name="区住建局",
                received=5,
                completed=5,
                response_rate=1.0,
                resolution_rate=1.0,
                satisfaction_rate=None,
            )
        ]

    monkeypatch.setattr(assessment.analysis_service, "appeal_figures", figures)
    monkeypatch.setattr(assessment.analysis_service, "unit_rates", unit_rates)
    return seen


def test_weights_must_be_non_negative_and_sum_to_100(
    session: Session, actor_of: Callable[..., Actor]
) -> None:
    admin = actor_of("admin", "330106")
    with pytest.raises(Invalid, match="之和须为 100"):
        assessment.set_scheme(
            session=session,
            actor=admin,
            kind=AssessedKind.street,
            weights=SchemeUpdate(w_indicators=50, w_response=20, w_resolution=20, w_satisfaction=20),
        )
    with pytest.raises(ValueError):
        SchemeUpdate(w_indicators=-10, w_response=50, w_resolution=30, w_satisfaction=30)
    with pytest.raises(Forbidden):
        assessment.set_scheme(
            session=session,
            actor=actor_of("supervisor", "330106"),
            kind=AssessedKind.street,
            weights=SchemeUpdate(w_indicators=25, w_response=25, w_resolution=25, w_satisfaction=25),
        )
    saved = assessment.set_scheme(
        session=session,
        actor=admin,
        kind=AssessedKind.street,
        weights=SchemeUpdate(w_indicators=25, w_response=25, w_resolution=25, w_satisfaction=25),
    )
    assert saved.w_indicators == 25
    # departments keep their defaults
    dept = assessment.get_scheme(session=session, actor=admin, kind=AssessedKind.department)
    assert (dept.w_indicators, dept.w_response, dept.w_resolution, dept.w_satisfaction) == (40, 20, 20, 20)


def test_street_scores_combine_indicator_progress_and_the_three_rates(
    session: Session, actor_of: Callable[..., Actor], unit_id: Callable[[str], int], rates: dict[str, object]
) -> None:
    indicators_service.load_catalog(session=session)
    admin, supervisor = actor_of("admin", "330106"), actor_of("supervisor", "330106")
    # 西溪: good_habits achieved (92 >= 90) -> 100 points; childcare 3.0 (2022) -> 3.63 (2024) moderate -> 70
    for code, period, value in (
        ("good_habits", "2024", 92.0),
        ("childcare_places", "2022", 3.0),
        ("childcare_places", "2024", 3.63),
    ):
        made = reporting.submit_report(
            session=session,
            actor=admin,
            data=ReportCreate(
                indicator_code=code, period=period, unit_id=unit_id(STREET), value=value, source="台账"
            ),
        )
        reporting.decide_report(
            session=session, actor=supervisor, report_id=made.id, decision=ReportDecision(approve=True)
        )
    rows = assessment.score(session=session, actor=supervisor, kind=AssessedKind.street, period="2024")
    assert rates["figures"] == (None, date(2024, 1, 1), date(2024, 12, 31))
    assert len(rows) == 12
    first, second = rows[0], rows[1]
    assert first.unit_name == "西溪街道" and first.rank == 1
    assert first.indicator_score == 85.0 and first.indicators_counted == 2
    # 0.4 * 85 + 0.2 * 90 + 0.2 * 80 + 0.2 * 95 = 34 + 18 + 16 + 19 = 87
    assert first.total == pytest.approx(87.0)
    # 翠苑 has no indicator figures: the indicator part is left out, the rates count 20/20/20 of 60
    assert second.unit_name == "翠苑街道" and second.indicator_score is None
    assert second.total == pytest.approx((60 + 50 + 70) / 3, abs=0.01)
    # streets without any figure come last, unranked by score
    assert all(r.total is None for r in rows[2:])
    # an earlier period ignores later figures: in 2023 西溪 has only the 2022 childcare figure
    earlier = assessment.score(session=session, actor=supervisor, kind=AssessedKind.street, period="2023")
    xixi = next(r for r in earlier if r.unit_name == "西溪街道")
    assert xixi.indicator_score is None and xixi.total == pytest.approx((90 + 80 + 95) / 3, abs=0.01)


def test_departments_use_unit_rates_and_the_indicators_they_own(
    session: Session, actor_of: Callable[..., Actor], unit_id: Callable[[str], int], rates: dict[str, object]
) -> None:
    leader = actor_of("leader", "330106")
    rows = assessment.score(session=session, actor=leader, kind=AssessedKind.department, period="2025-06")
    ids, start, end = rates["unit_rates"]  # type: ignore[misc]
    assert unit_id("D-ZJ") in ids and (start, end) == (date(2025, 6, 1), date(2025, 6, 30))
    zj = next(r for r in rows if r.unit_name == "区住建局")
    # no satisfaction figure and no indicator figure: the mean of 100 and 100 over their weights
    assert zj.rank == 1 and zj.total == pytest.approx(100.0) and zj.satisfaction_rate is None
    with pytest.raises(Invalid):
        assessment.score(session=session, actor=leader, kind=AssessedKind.department, period="2025-13")
    with pytest.raises(Forbidden):
        assessment.score(
            session=session, actor=actor_of("grid", STREET), kind=AssessedKind.street, period="2025"
        )


def test_export_has_the_ranking_and_the_weights(
    session: Session, actor_of: Callable[..., Actor], rates: dict[str, object]
) -> None:
    content = assessment.export_xlsx(
        session=session, actor=actor_of("supervisor", "330106"), kind=AssessedKind.street, period="2024"
    )
    book = load_workbook(io.BytesIO(content))
    sheet = book.worksheets[0]
    assert [c.value for c in sheet[1]] == list(assessment.EXPORT_COLUMNS)
    assert sheet.max_row == 13
    assert sheet.cell(row=2, column=2).value == "西溪街道"
    weights = {r[0]: r[1] for r in book["权重"].iter_rows(min_row=2, values_only=True)}
    assert weights["指标进展"] == 40
