"""填报 / 审核: who may report what for which unit, approval and rejection, history, and the Excel upload."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core.audit import AuditEntry
from xihu.core.errors import Conflict, Forbidden, Invalid
from xihu.core.security import Actor
from xihu.indicators import reporting
from xihu.indicators import service as indicators_service
from xihu.indicators.schemas import ReportCreate, ReportDecision

STREET = "330106004"  # 西溪街道
COMMUNITY = "330106004053"  # 石灰桥社区, in 西溪街道
OTHER_STREET = "330106005"  # 翠苑街道


@pytest.fixture(autouse=True)
def _catalog(session: Session) -> None:
    indicators_service.load_catalog(session=session)
    session.flush()


def _report(code: str, unit: int | None, value: float, period: str = "2024") -> ReportCreate:
    return ReportCreate(indicator_code=code, period=period, unit_id=unit, value=value, source="街道统计台账")


def _cards(session: Session, unit: int | None) -> dict[str, object]:
    cards = indicators_service.indicator_cards(session=session, actor=Actor.system(), unit_id=unit)
    return {c.code: c for c in cards}


def test_street_staff_report_for_their_street_and_it_counts_only_after_approval(
    session: Session, actor_of: Callable[..., Actor], unit_id: Callable[[str], int]
) -> None:
    street = unit_id(STREET)
    reporter = actor_of("grid", STREET)
    approver = actor_of("supervisor", "330106")
    first = reporting.submit_report(
        session=session, actor=reporter, data=_report("childcare_places", street, 3.0, "2022")
    )
    assert first.status == "pending" and first.unit_name == "西溪街道"
    assert _cards(session, street)["childcare_places"].latest_value is None  # type: ignore[attr-defined]

    reporting.decide_report(
        session=session, actor=approver, report_id=first.id, decision=ReportDecision(approve=True)
    )
    second = reporting.submit_report(
        session=session, actor=reporter, data=_report("childcare_places", street, 3.63, "2024")
    )
    reporting.decide_report(
        session=session, actor=approver, report_id=second.id, decision=ReportDecision(approve=True)
    )
    card = _cards(session, street)["childcare_places"]
    # the street's own series: 3.0 (2022) -> 3.63 (2024) is 10 % a year; 3.0 -> 4.5 by 2025 needs 14.47 %
    assert card.latest_value == 3.63 and card.latest_period == "2024"  # type: ignore[attr-defined]
    assert card.status == "moderate"  # type: ignore[attr-defined]  # ratio 0.10 / 0.1447 = 0.69
    # the district's figure is untouched by a street's
    assert _cards(session, None)["childcare_places"].latest_value is None  # type: ignore[attr-defined]
    actions = session.scalars(
        select(AuditEntry.action).where(AuditEntry.entity == "indicator_report").order_by(AuditEntry.id)
    ).all()
    assert actions == ["indicator.report", "indicator.approve", "indicator.report", "indicator.approve"]


def test_staff_may_not_report_for_another_unit_or_at_a_level_the_indicator_lacks(
    session: Session, actor_of: Callable[..., Actor], unit_id: Callable[[str], int]
) -> None:
    reporter = actor_of("grid", STREET)
    with pytest.raises(Forbidden):
        reporting.submit_report(
            session=session, actor=reporter, data=_report("childcare_places", unit_id(OTHER_STREET), 3.0)
        )
    with pytest.raises(Forbidden):  # a street's staff do not report for its communities
        reporting.submit_report(
            session=session, actor=reporter, data=_report("childcare_places", unit_id(COMMUNITY), 3.0)
        )
    with pytest.raises(Invalid):  # GDP exists at district level only
        reporting.submit_report(session=session, actor=reporter, data=_report("gdp", unit_id(STREET), 30.0))
    with pytest.raises(Forbidden):  # district figures come from the owning department only
        reporting.submit_report(session=session, actor=reporter, data=_report("gdp", None, 2100.0))
    with pytest.raises(Forbidden):  # a supervisor approves but does not report
        reporting.submit_report(
            session=session, actor=actor_of("supervisor", "330106"), data=_report("gdp", None, 2100.0)
        )


def test_the_owning_department_reports_the_district_figure(
    session: Session, actor_of: Callable[..., Actor]
) -> None:
    fg = actor_of("handler", "D-FG")  # 区发改局 owns GDP
    made = reporting.submit_report(session=session, actor=fg, data=_report("gdp", None, 2100.0))
    assert made.unit_name == "全区"
    with pytest.raises(Forbidden):
        reporting.submit_report(
            session=session, actor=actor_of("handler", "D-ZJ"), data=_report("gdp", None, 2100.0, "2023")
        )
    with pytest.raises(Conflict):  # one pending value per indicator, period and unit
        reporting.submit_report(session=session, actor=fg, data=_report("gdp", None, 2101.0))
    codes = {p.indicator_code for p in reporting.reportable(session=session, actor=fg)}
    assert "gdp" in codes and "childcare_places" not in codes  # 区卫健局 owns that one


def test_approval_rules_reject_with_reason_no_self_approval_no_second_decision(
    session: Session, actor_of: Callable[..., Actor], unit_id: Callable[[str], int]
) -> None:
    admin = actor_of("admin", "330106")
    made = reporting.submit_report(
        session=session, actor=admin, data=_report("good_habits", unit_id(STREET), 80.0)
    )
    with pytest.raises(Forbidden):
        reporting.decide_report(
            session=session, actor=admin, report_id=made.id, decision=ReportDecision(approve=True)
        )
    with pytest.raises(Forbidden):  # unit staff may not approve
        reporting.decide_report(
            session=session,
            actor=actor_of("grid", STREET),
            report_id=made.id,
            decision=ReportDecision(approve=True),
        )
    supervisor = actor_of("supervisor", "330106")
    with pytest.raises(Invalid):
        reporting.decide_report(
            session=session, actor=supervisor, report_id=made.id, decision=ReportDecision(approve=False)
        )
    rejected = reporting.decide_report(
        session=session,
        actor=supervisor,
        report_id=made.id,
        decision=ReportDecision(approve=False, reason="与台账不符"),
    )
    assert rejected.status == "rejected" and rejected.decision_reason == "与台账不符"
    with pytest.raises(Conflict):
        reporting.decide_report(
            session=session, actor=supervisor, report_id=made.id, decision=ReportDecision(approve=True)
        )
    assert _cards(session, unit_id(STREET))["good_habits"].latest_value is None  # type: ignore[attr-defined]
    # a corrected value is a new report; the history keeps both
    fixed = reporting.submit_report(
        session=session, actor=admin, data=_report("good_habits", unit_id(STREET), 82.5)
    )
    reporting.decide_report(
        session=session, actor=supervisor, report_id=fixed.id, decision=ReportDecision(approve=True)
    )
    history = reporting.report_history(
        session=session, actor=supervisor, indicator_code="good_habits", unit_id=unit_id(STREET)
    )
    assert [(h.value, h.status) for h in history] == [(80.0, "rejected"), (82.5, "approved")]


def test_a_unit_sees_its_own_reports_and_approvers_see_all(
    session: Session, actor_of: Callable[..., Actor], unit_id: Callable[[str], int]
) -> None:
    mine = actor_of("grid", STREET)
    other = actor_of("grid", OTHER_STREET)
    reporting.submit_report(session=session, actor=mine, data=_report("good_habits", unit_id(STREET), 81))
    reporting.submit_report(
        session=session, actor=other, data=_report("good_habits", unit_id(OTHER_STREET), 83)
    )
    assert [r.value for r in reporting.list_reports(session=session, actor=mine)] == [81]
    everything = reporting.list_reports(session=session, actor=actor_of("supervisor", "330106"))
    assert {r.value for r in everything} >= {81, 83}


def _filled_template(session: Session, actor: Actor, rows: dict[str, tuple[object, str]]) -> bytes:
    """Download the template and fill the value and source of the rows of the given indicator codes."""
    book = load_workbook(io.BytesIO(reporting.template_xlsx(session=session, actor=actor, period="2024")))
    sheet = book["填报"]
    for row in sheet.iter_rows(min_row=2):
        code = row[0].value
        if code in rows:
            row[6].value, row[7].value = rows[code]
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def test_template_lists_what_the_unit_may_report_and_a_good_upload_imports_pending_values(
    session: Session, actor_of: Callable[..., Actor]
) -> None:
    grid = actor_of("grid", STREET)
    book = load_workbook(io.BytesIO(reporting.template_xlsx(session=session, actor=grid, period="2024")))
    sheet = book["填报"]
    header = [c.value for c in sheet[1]]
    assert header == list(reporting.TEMPLATE_COLUMNS)
    codes = [r[0] for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert "childcare_places" in codes and "litigation_rate" in codes and "gdp" not in codes
    assert {r[4] for r in sheet.iter_rows(min_row=2, values_only=True)} == {STREET}

    content = _filled_template(
        session, grid, {"childcare_places": (3.9, "卫健台账"), "good_habits": (88, "测评")}
    )
    result = reporting.import_xlsx(session=session, actor=grid, content=content)
    assert result.errors == [] and result.created == 2 and result.skipped_blank == len(codes) - 2
    pending = reporting.list_reports(session=session, actor=grid)
    assert {(r.indicator_code, r.value, r.channel, r.status) for r in pending} == {
        ("childcare_places", 3.9, "excel", "pending"),
        ("good_habits", 88.0, "excel", "pending"),
    }


def test_an_upload_with_bad_rows_imports_nothing_and_names_each_row(
    session: Session, actor_of: Callable[..., Actor]
) -> None:
    grid = actor_of("grid", STREET)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "填报"
    sheet.append(list(reporting.TEMPLATE_COLUMNS))
    good = ["childcare_places", "", "", "2024", STREET, "", 3.9, "台账", ""]
    sheet.append(good)  # row 2: fine
    sheet.append(["no_such_code", "", "", "2024", STREET, "", 1, "台账", ""])  # row 3
    sheet.append(["good_habits", "", "", "24年", STREET, "", "八十", "台账", ""])  # row 4
    sheet.append(["good_habits", "", "", "2024", OTHER_STREET, "", 80, "台账", ""])  # row 5: another unit
    sheet.append(["gdp", "", "", "2024", STREET, "", 30, "台账", ""])  # row 6: not at street level
    sheet.append(good)  # row 7: duplicate of row 2
    sheet.append(["good_habits", "", "", "2024", STREET, "", 80, "", ""])  # row 8: no source
    buf = io.BytesIO()
    book.save(buf)
    result = reporting.import_xlsx(session=session, actor=grid, content=buf.getvalue())
    assert result.created == 0
    by_row = {e.row: e.message for e in result.errors}
    assert set(by_row) == {3, 4, 5, 6, 7, 8}
    assert "指标代码「no_such_code」不存在" in by_row[3]
    assert "统计期" in by_row[4] and "不是有效数字" in by_row[4]
    assert "本单位" in by_row[5]
    assert "街道层级" in by_row[6]
    assert "第 2 行重复" in by_row[7]
    assert "数据来源" in by_row[8]
    assert reporting.list_reports(session=session, actor=grid) == []


def test_an_upload_that_is_not_the_template_is_refused(
    session: Session, actor_of: Callable[..., Actor]
) -> None:
    grid = actor_of("grid", STREET)
    with pytest.raises(Invalid):
        reporting.import_xlsx(session=session, actor=grid, content=b"not a workbook")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["code", "value"])
    buf = io.BytesIO()
    book.save(buf)
    with pytest.raises(Invalid, match="表头"):
        reporting.import_xlsx(session=session, actor=grid, content=buf.getvalue())
