"""The indicator catalog, GET /api/indicators (contract) and `xihu indicators export`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from xihu.core.config import get_settings
from xihu.indicators import service as indicators_service
from xihu.indicators.catalog import CATALOG, load_observations

CONTRACT = {
    "code",
    "name",
    "unit",
    "direction",
    "target_value",
    "target_year",
    "latest_value",
    "latest_period",
    "status",
}
STATUSES = {"achieved", "substantial", "moderate", "limited", "deterioration", "no_data"}

FACTS = """indicator,year,value,unit,source,note
gdp,2020,1587.6,亿元,https://example.org/a,
gdp,2022,1970.1,亿元,https://example.org/b,
urban_disposable_income_per_capita,2022,82700,元,https://example.org/b,8.27万元
urban_rural_income_ratio,2022,1.53,ratio,https://example.org/b,DERIVED
hangzhou_gdp,2021,18109,亿元,https://example.org/c,city level
"""


def test_catalog_loads_once_with_sources(session: Session) -> None:
    first = indicators_service.load_catalog(session=session)
    assert indicators_service.load_catalog(session=session) == 0
    rows = indicators_service.list_indicators(session=session)
    assert len(rows) >= len(CATALOG) and first in (0, len(CATALOG))
    assert all(spec.source_sentence and spec.source_seed for spec in CATALOG)
    assert len({spec.code for spec in CATALOG}) == len(CATALOG)


def test_observations_from_a_facts_table_drive_the_status(session: Session, tmp_path: Path) -> None:
    indicators_service.load_catalog(session=session)
    facts = tmp_path / "facts.csv"
    facts.write_text(FACTS, encoding="utf-8")
    load_observations(session=session, path=facts)
    assert load_observations(session=session, path=facts) == 0
    rows = {r.code: r for r in indicators_service.list_indicators(session=session)}
    # 1587.6 (2020) -> 1970.1 (2022) grows faster than 2000 by 2025 needs
    assert rows["gdp"].latest_value == 1970.1 and rows["gdp"].latest_period == "2022"
    assert rows["gdp"].status == "substantial"
    assert rows["urban_income"].latest_value == 8.27
    assert rows["urban_rural_ratio"].status == "achieved"  # 1.53 is within 1.7
    assert rows["life_expectancy"].status == "no_data"


def test_api_lists_every_indicator_with_the_contract_keys(session: Session, client: TestClient) -> None:
    indicators_service.load_catalog(session=session)
    session.commit()
    resp = client.get("/api/indicators")
    assert resp.status_code == 200, resp.text
    rows = resp.json()
    assert len(rows) >= len(CATALOG)
    for row in rows:
        assert set(row) == CONTRACT
        assert row["status"] in STATUSES
    by_code = {r["code"]: r for r in rows}
    assert by_code["gdp"]["target_value"] == 2000 and by_code["gdp"]["target_year"] == 2025
    ratio = by_code["urban_rural_ratio"]
    assert ratio["target_value"] == 1.7 and ratio["direction"] == "lower"


def test_cli_export_csv_after_migrate(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from xihu.cli import app

    monkeypatch.setenv("XIHU_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("XIHU_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        migrated = runner.invoke(app, ["migrate"])
        assert migrated.exit_code == 0, migrated.output
        out = tmp_path / "indicators.csv"
        result = runner.invoke(app, ["indicators", "export", "--format", "csv", "--out", str(out)])
        assert result.exit_code == 0, result.output
        rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
        assert rows[0] == [
            "code",
            "name",
            "unit",
            "direction",
            "target_value",
            "target_year",
            "latest_value",
            "latest_period",
            "status",
        ]
        assert len(rows) == 1 + len(CATALOG)
        xlsx = tmp_path / "indicators.xlsx"
        result = runner.invoke(app, ["indicators", "export", "--format", "xlsx", "--out", str(xlsx)])
        assert result.exit_code == 0, result.output
        from openpyxl import load_workbook

        sheet = load_workbook(xlsx).active
        assert sheet is not None
        assert [c.value for c in sheet[1]] == rows[0]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_report_and_decide_through_the_json_api(
    session: Session,
    client: TestClient,
    make_user,
    unit_id,  # type: ignore[no-untyped-def]
) -> None:
    from conftest import login

    indicators_service.load_catalog(session=session)
    session.commit()
    grid, supervisor = make_user("grid", "330106004"), make_user("supervisor", "330106")
    body = {
        "indicator_code": "good_habits",
        "period": "2024",
        "unit_id": unit_id("330106004"),
        "value": 88.5,
        "source": "文明办测评",
    }
    assert client.post("/api/indicators/reports", json=body).status_code == 401
    login(client, grid.username)
    assert client.post("/api/indicators/reports", json={**body, "period": "24"}).status_code == 422
    made = client.post("/api/indicators/reports", json=body)
    assert made.status_code == 201, made.text
    report = made.json()
    assert report["status"] == "pending" and report["channel"] == "api"
    denied = client.post(f"/api/indicators/reports/{report['id']}/decision", json={"approve": True})
    assert denied.status_code == 403
    client.cookies.clear()
    login(client, supervisor.username)
    listed = client.get("/api/indicators/reports", params={"status": "pending"}).json()
    assert [r["id"] for r in listed] == [report["id"]]
    done = client.post(f"/api/indicators/reports/{report['id']}/decision", json={"approve": True})
    assert done.status_code == 200 and done.json()["status"] == "approved"
    again = client.post(
        f"/api/indicators/reports/{report['id']}/decision", json={"approve": False, "reason": "x"}
    )
    assert again.status_code == 409
