"""Analysis pages, warning handling, briefs and the JSON API, with their permissions."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from datetime import timedelta

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session

import factories
from xihu.analysis import service as analysis_service
from xihu.analysis import synthetic
from xihu.analysis.schemas import WarningFinding
from xihu.core.security import Actor, Role

SYSTEM = Actor.system("测试")


def _warning(session: Session) -> int:
    street = factories.unit(session, "330106004")
    finding = WarningFinding(
        kind="spike",
        severity="warning",
        dedup_key=f"spike:{street}:城乡建设",
        title="西溪街道「城乡建设」类诉求突增",
        summary="测试用预警",
        evidence={
            "street_id": street,
            "street_name": "西溪街道",
            "category": "城乡建设",
            "window_days": 3,
            "start": "2026-11-18",
            "end": "2026-11-20",
            "observed": 20,
            "expected": 4.5,
            "baseline": [4, 5, 4, 5, 4, 5, 4, 5],
            "z": 7.3,
            "p_value": 1e-7,
        },
        area_unit_id=street,
        owner_unit_id=street,
    )
    analysis_service.raise_findings(session=session, findings=[finding])
    session.commit()
    return analysis_service.list_open_warnings(session=session, actor=SYSTEM)[0].id


def _csrf(client: TestClient) -> str:
    return client.cookies.get("xihu_csrf") or ""


def test_a_handler_cannot_see_the_analysis(client: TestClient, login_as) -> None:  # type: ignore[no-untyped-def]
    login_as(Role.handler, "D-ZJ")
    assert client.get("/staff/analysis").status_code == 403
    assert client.get("/staff/warnings").status_code == 403
    assert client.get("/staff/briefs").status_code == 403
    assert client.get("/api/analysis/figures").status_code == 403
    assert client.get("/api/warnings").status_code == 403
    assert "研判分析" not in client.get("/staff").text


def test_anonymous_visitors_are_sent_to_login(client: TestClient) -> None:
    resp = client.get("/staff/analysis", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    assert client.get("/api/analysis/figures").status_code == 401


def test_supervisor_sees_figures_charts_and_map(client: TestClient, login_as, session: Session) -> None:  # type: ignore[no-untyped-def]
    factories.completed(session)
    factories.submitted(session, street_id=factories.unit(session, "330106005"))
    session.commit()
    login_as(Role.supervisor)
    page = client.get("/staff/analysis")
    assert page.status_code == 200
    assert "研判分析" in page.text and "签收及时率" in page.text and "示意" in page.text
    data = json.loads(re.search(r'id="analysis-data">(.*?)</script>', page.text, re.S).group(1))  # type: ignore[union-attr]
    assert sum(d[1] for d in data["days"]) == 2
    names = {p["name"] for p in data["map"]["streets"]}
    assert {"西溪街道", "翠苑街道"} <= names and len(names) == 12
    street = factories.unit(session, "330106004")
    drill = client.get(f"/staff/analysis?area={street}&category=城乡建设")
    assert drill.status_code == 200 and "各社区/村" in drill.text
    assert client.get("/staff/analysis/analysis.js").status_code == 200
    assert client.get("/staff/analysis?start=2026-13-01").status_code == 422


def test_figures_api_filters_by_channel_and_category(client: TestClient, login_as, session: Session) -> None:  # type: ignore[no-untyped-def]
    geo = synthetic.geography(session)
    today = analysis_service.today()
    street, communities = geo.streets[0]
    rows = [
        synthetic.fact(
            appeal_id=30_000_000 + i,
            day=today - timedelta(i % 5),
            category="环境保护" if i % 2 else "交通运输",
            street_id=street,
            community_id=communities[0],
            channel="qr" if i < 4 else "hotline",
            unit_id=geo.units[0],
            rating="satisfied" if i % 3 == 0 else None,
        )
        for i in range(10)
    ]
    synthetic.load(session, rows)
    session.commit()
    login_as(Role.leader)
    all_ = client.get("/api/analysis/figures").json()
    assert all_["received"] == 10 and all_["resolution_rate"] == 1.0
    assert client.get("/api/analysis/figures?channel=qr").json()["received"] == 4
    assert client.get("/api/analysis/figures?category=环境保护").json()["received"] == 5
    community = client.get(f"/api/analysis/figures?area_unit_id={communities[0]}").json()
    assert community["received"] == 10 and community["by_area"] == []
    rates = client.get(f"/api/analysis/unit-rates?unit_id={geo.units[0]}").json()
    assert rates[0]["received"] == 10 and rates[0]["satisfaction_rate"] == 1.0


def test_warning_is_acknowledged_and_closed_by_a_supervisor(
    client: TestClient, login_as, session: Session
) -> None:  # type: ignore[no-untyped-def]
    warning_id = _warning(session)
    login_as(Role.supervisor)
    listing = client.get("/staff/warnings")
    assert "诉求量突增" in listing.text and f"/staff/warnings/{warning_id}" in listing.text
    detail = client.get(f"/staff/warnings/{warning_id}")
    assert "观察：西溪街道「城乡建设」类诉求" in detail.text and "偶然出现的概率" in detail.text
    resp = client.post(
        f"/staff/warnings/{warning_id}/acknowledge",
        data={"csrf_token": _csrf(client)},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    assert client.get(f"/api/warnings/{warning_id}").json()["state"] == "acknowledged"
    refused = client.post(
        f"/staff/warnings/{warning_id}/close", data={"csrf_token": _csrf(client), "note": ""}
    )
    assert refused.status_code == 422 and "关闭说明" in refused.text
    client.post(
        f"/staff/warnings/{warning_id}/close",
        data={"csrf_token": _csrf(client), "note": "已联系街道核实处置"},
        follow_redirects=False,
    )
    closed = client.get(f"/api/warnings/{warning_id}").json()
    assert closed["state"] == "closed" and closed["close_note"] == "已联系街道核实处置"
    again = client.post(f"/api/warnings/{warning_id}/close", json={"note": "再次关闭"})
    assert again.status_code == 409


def test_only_warning_handlers_may_acknowledge(client: TestClient, login_as, session: Session) -> None:  # type: ignore[no-untyped-def]
    warning_id = _warning(session)
    login_as(Role.leader)
    assert client.get(f"/api/warnings/{warning_id}").status_code == 200
    assert client.post(f"/api/warnings/{warning_id}/acknowledge").status_code == 403


def test_briefs_as_page_excel_and_pdf(client: TestClient, login_as, session: Session) -> None:  # type: ignore[no-untyped-def]
    factories.completed(session)
    _warning(session)
    session.commit()
    login_as(Role.supervisor)
    day = analysis_service.today()
    page = client.get(f"/staff/briefs?kind=weekly&day={day}")
    assert page.status_code == 200 and "西湖区民呼我为诉求周报" in page.text and "<svg" in page.text
    xlsx = client.get(f"/staff/briefs/daily/{day}.xlsx")
    assert xlsx.status_code == 200
    wb = load_workbook(io.BytesIO(xlsx.content))
    assert wb.sheetnames == ["概览", "街道", "类别", "每日", "预警"]
    assert "日报" in wb["概览"]["A1"].value
    assert wb["概览"]["B4"].value == "1 件"
    assert wb["街道"]._charts, "the street sheet carries a chart"
    pdf = client.get(f"/staff/briefs/weekly/{day}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-", "-"], input=pdf.content, capture_output=True, check=True
        ).stdout.decode()
        assert "西湖区民呼我为诉求周报" in text and "诉求量突增" in text
