"""The 派单质量 report: weeks newest first; units that return most first, their weeks side by side."""

from __future__ import annotations

import pytest

import factories
from conftest import login
from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import DispatchQualityRow
from xihu.dispatch.quality_tables import by_unit, by_week


def _row(unit_id: int, name: str, week: str, first: int, correct: int, dispatched: int, returned: int):
    return DispatchQualityRow(
        unit_id=unit_id,
        unit_name=name,
        week=week,
        dispatched=dispatched,
        first_dispatched=first,
        first_correct=correct,
        first_auto=first,
        returned=returned,
        first_accuracy=correct / first if first else None,
        return_rate=returned / dispatched if dispatched else None,
    )


ROWS = [
    _row(1, "区住建局", "2026-W47", 10, 10, 10, 0),
    _row(1, "区住建局", "2026-W48", 10, 8, 11, 2),
    _row(2, "区城管局", "2026-W48", 4, 4, 4, 0),
    _row(3, "区教育局", "2026-W47", 5, 4, 5, 1),
    _row(4, "西溪街道", "2026-W48", 0, 0, 1, 0),  # only a transfer reached it: no first dispatch
]


def test_weeks_are_summed_over_units_newest_first() -> None:
    weeks = by_week(ROWS)
    assert [w for w, _ in weeks] == ["2026-W48", "2026-W47"]
    w48 = weeks[0][1]
    assert (w48.first, w48.correct, w48.dispatched, w48.returned) == (14, 12, 16, 2)
    assert w48.accuracy == pytest.approx(12 / 14) and w48.return_rate == pytest.approx(2 / 16)


def test_units_with_most_returns_come_first_then_the_least_accurate() -> None:
    units = by_unit(ROWS)
    assert [u.unit_name for u in units] == ["区住建局", "区教育局", "区城管局", "西溪街道"]
    zj = units[0]
    assert (zj.total.first, zj.total.correct, zj.total.returned, zj.total.dispatched) == (20, 18, 2, 21)
    assert sorted(zj.by_week) == ["2026-W47", "2026-W48"] and zj.by_week["2026-W48"].returned == 2
    assert units[-1].total.accuracy is None and units[-1].total.return_rate == 0.0


def _two_to_zj_one_returned_one_to_cg(session, actor_of) -> None:  # type: ignore[no-untyped-def]
    """区住建局 gets two appeals and returns one; 区城管局 gets one."""
    returned = factories.dispatched(session, "D-ZJ")
    factories.dispatched(session, "D-ZJ")
    factories.dispatched(session, "D-CG")
    appeal_service.return_to_dispatcher(
        session=session, actor=actor_of("handler", "D-ZJ"), appeal_id=returned.id, reason="不属于本单位"
    )
    session.commit()


def test_the_page_shows_each_unit_once_with_its_weeks(client, session, make_user, actor_of) -> None:
    _two_to_zj_one_returned_one_to_cg(session, actor_of)
    login(client, make_user("supervisor").username)
    page = client.get("/staff/dispatch/report").text
    units = page[page.index('data-testid="quality-units"') :]
    assert units.count("区住建局") == 1 and units.index("区住建局") < units.index("区城管局")
    zj = units[units.index("区住建局") : units.index("</tr>", units.index("区住建局"))]
    assert "50.0%" in zj and "cell-warn" in zj  # one of its two first dispatches came back


def test_the_report_downloads_as_excel_with_the_pages_figures(client, session, make_user, actor_of) -> None:
    import io
    from urllib.parse import unquote

    from openpyxl import load_workbook

    _two_to_zj_one_returned_one_to_cg(session, actor_of)
    login(client, make_user("supervisor").username)
    assert 'href="/staff/dispatch/report.xlsx?weeks=4"' in client.get("/staff/dispatch/report?weeks=4").text
    resp = client.get("/staff/dispatch/report.xlsx?weeks=4")
    assert resp.status_code == 200 and resp.headers["content-type"].endswith("spreadsheetml.sheet")
    assert unquote(resp.headers["content-disposition"]).endswith("派单质量_近4周.xlsx")
    book = load_workbook(io.BytesIO(resp.content))
    assert book.sheetnames == ["按周汇总", "按单位", "说明"]
    api = client.get("/api/dispatch/quality?weeks=4").json()
    week = book["按周汇总"]
    assert [c.value for c in week[1]][:4] == ["周", "首次派单", "其中智能派单", "首派准确率"]
    assert week["A2"].value == api[0]["week"] and week["B2"].value == sum(r["first_dispatched"] for r in api)
    units = {row[0].value: row for row in book["按单位"].iter_rows(min_row=2)}
    zj = units["区住建局"]
    # a real number formatted as a percentage, not text: leaders sort and chart it in Excel
    assert zj[2].value == pytest.approx(0.5) and zj[2].number_format == "0.0%"
    assert (zj[3].value, zj[4].value) == (2, 1) and zj[5].value == pytest.approx(0.5)
    assert units["区城管局"][4].value == 0 and list(units)[0] == "区住建局"  # most returns first
    assert client.get("/staff/dispatch/report.xlsx?weeks=0").status_code == 422
