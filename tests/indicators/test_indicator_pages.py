"""The 填报 / 审核 / 考核 pages over HTTP: forms, the review queue, the Excel round trip, the weights page."""

from __future__ import annotations

import io
from collections.abc import Callable

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from conftest import login
from xihu.core.security import User
from xihu.indicators import reporting
from xihu.indicators import service as indicators_service

STREET = "330106004"  # 西溪街道
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _csrf(client: TestClient) -> str:
    return client.cookies.get("xihu_csrf") or ""


def test_report_by_form_then_approve_in_the_queue(
    session: Session,
    client: TestClient,
    make_user: Callable[..., User],
    unit_id: Callable[[str], int],
) -> None:
    indicators_service.load_catalog(session=session)
    session.commit()
    grid, supervisor = make_user("grid", STREET), make_user("supervisor", "330106")
    login(client, grid.username)
    form = client.get("/staff/indicators/report")
    assert form.status_code == 200 and "每千人拥有婴幼儿照护设施托位数" in form.text
    pair = f"childcare_places|{unit_id(STREET)}"
    bad = client.post(
        "/staff/indicators/report",
        data={"csrf_token": _csrf(client), "pair": pair, "period": "2024", "value": "很多", "source": "台账"},
    )
    assert bad.status_code == 422 and "数值" in bad.text
    ok = client.post(
        "/staff/indicators/report",
        data={
            "csrf_token": _csrf(client),
            "pair": pair,
            "period": "2024",
            "value": "3.8",
            "source": "卫健台账",
        },
    )
    assert ok.status_code == 200 and "等待审核" in ok.text and "待审核" in ok.text
    assert client.get("/staff/indicators/review").status_code == 403  # unit staff do not approve

    client.cookies.clear()
    login(client, supervisor.username)
    queue = client.get("/staff/indicators/review")
    assert queue.status_code == 200 and "卫健台账" in queue.text
    report_id = reporting.list_reports(session=session, actor=supervisor.to_actor())[0].id
    refused = client.post(
        f"/staff/indicators/review/{report_id}",
        data={"csrf_token": _csrf(client), "decision": "reject", "reason": ""},
        follow_redirects=True,
    )
    assert "退回时请填写原因" in refused.text
    done = client.post(
        f"/staff/indicators/review/{report_id}",
        data={"csrf_token": _csrf(client), "decision": "approve"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    cards = indicators_service.indicator_cards(
        session=session, actor=supervisor.to_actor(), unit_id=unit_id(STREET)
    )
    assert next(c for c in cards if c.code == "childcare_places").latest_value == 3.8


def test_excel_template_download_and_upload_with_row_errors(
    session: Session, client: TestClient, make_user: Callable[..., User]
) -> None:
    indicators_service.load_catalog(session=session)
    session.commit()
    login(client, make_user("grid", STREET).username)
    resp = client.get("/staff/indicators/template.xlsx?period=2024")
    assert resp.status_code == 200 and resp.headers["content-type"] == XLSX
    book = load_workbook(io.BytesIO(resp.content))
    sheet = book["填报"]
    sheet.cell(row=2, column=7).value = "abc"  # row 2: not a number
    sheet.cell(row=2, column=8).value = "台账"
    sheet.cell(row=3, column=7).value = 12.5  # row 3: fine
    sheet.cell(row=3, column=8).value = "台账"
    buf = io.BytesIO()
    book.save(buf)
    upload = client.post(
        "/staff/indicators/import",
        data={"csrf_token": _csrf(client)},
        files={"file": ("t.xlsx", buf.getvalue(), XLSX)},
    )
    assert upload.status_code == 422
    assert "第 2 行" in upload.text and "不是有效数字" in upload.text and "未导入任何数据" in upload.text
    assert "第 3 行" not in upload.text
    sheet.cell(row=2, column=7).value = 4.1
    buf = io.BytesIO()
    book.save(buf)
    upload = client.post(
        "/staff/indicators/import",
        data={"csrf_token": _csrf(client)},
        files={"file": ("t.xlsx", buf.getvalue(), XLSX)},
    )
    assert upload.status_code == 200 and "已导入 2 条" in upload.text


def test_assessment_ranking_export_and_weights_page(
    client: TestClient, login_as: Callable[..., User]
) -> None:
    login_as("admin", "330106")
    page = client.get("/staff/assessment?kind=street&period=2025")
    assert page.status_code == 200 and "镇街考核排名" in page.text and "西溪街道" in page.text
    export = client.get("/staff/assessment/export.xlsx?kind=department&period=2025")
    assert export.status_code == 200 and export.headers["content-type"] == XLSX
    assert load_workbook(io.BytesIO(export.content)).worksheets[0].max_row > 10
    form = {"csrf_token": _csrf(client), "kind": "street"}
    wrong = client.post(
        "/staff/assessment/weights",
        data={**form, "w_indicators": "50", "w_response": "20", "w_resolution": "20", "w_satisfaction": "20"},
    )
    assert wrong.status_code == 422 and "之和须为 100" in wrong.text
    negative = client.post(
        "/staff/assessment/weights",
        data={
            **form,
            "w_indicators": "-10",
            "w_response": "50",
            "w_resolution": "30",
            "w_satisfaction": "30",
        },
    )
    assert negative.status_code == 422
    saved = client.post(
        "/staff/assessment/weights",
        data={**form, "w_indicators": "30", "w_response": "30", "w_resolution": "20", "w_satisfaction": "20"},
    )
    assert saved.status_code == 200 and "已保存" in saved.text
    assert "指标进展 30 分" in client.get("/staff/assessment?kind=street&period=2025").text


def test_the_weights_page_is_for_admins_and_the_ranking_for_assessors(
    client: TestClient, login_as: Callable[..., User]
) -> None:
    login_as("supervisor", "330106")
    assert client.get("/staff/assessment/weights").status_code == 403
    assert client.get("/staff/assessment").status_code == 200
    assert client.get("/staff/indicators").status_code == 200
