"""A database that refuses writes (read-only) gives a clear 503 in Chinese, and nothing half-written."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, make_url, select
from sqlalchemy.engine import Engine

from conftest import DATABASE_URL
from xihu.appeals.models import Appeal
from xihu.core.config import Settings
from xihu.core.db import make_engine

DESCRIPTION = "只读数据库测试：小区门口的路灯坏了"


def _read_only_url(tmp_path: Path) -> tuple[str, str]:
    """(a read-only URL, a writable URL) of a migrated database."""
    if os.environ.get("XIHU_TEST_BACKEND") == "postgresql":
        # every transaction of this connection is read-only, as on a standby or a database set read-only
        url = make_url(DATABASE_URL).update_query_dict({"options": "-c default_transaction_read_only=on"})
        return url.render_as_string(hide_password=False), DATABASE_URL
    from xihu.core.migrate import upgrade
    from xihu.places import service as places_service

    path = tmp_path / "ro.db"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}")
    from xihu.core.db import make_session_factory, unit_of_work

    with unit_of_work(make_session_factory(engine)) as session:
        places_service.load_reference(session=session)
    engine.dispose()
    return f"sqlite:///file:{path}?mode=ro&uri=true", f"sqlite:///{path}"


@pytest.fixture
def read_only(tmp_path: Path, engine: Engine) -> Iterator[tuple[TestClient, Engine]]:
    """A real app (its own engine, no test transaction) on a database that refuses writes; `engine` makes
    sure the test database is migrated."""
    from xihu.web.app import create_app

    ro_url, rw_url = _read_only_url(tmp_path)
    settings = Settings(
        data_dir=tmp_path, database_url=ro_url, demo=True, in_process_worker=False, rate_limit_per_minute=0
    )
    writable = make_engine(rw_url)
    with TestClient(create_app(settings)) as client:
        yield client, writable
    writable.dispose()


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(Appeal).where(Appeal.description == DESCRIPTION)
        ).scalar_one()


def test_intake_on_a_read_only_database_is_a_clear_503(
    read_only: tuple[TestClient, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    """The JSON intake answers 503 with the Chinese message; no appeal (or part of one) is stored, and the
    logged database error does not carry the citizen's phone number or name."""
    client, writable = read_only
    before = _count(writable)
    with caplog.at_level(logging.INFO):
        resp = client.post(
            "/api/appeals",
            json={"description": DESCRIPTION, "citizen_phone": "13900005555", "citizen_name": "李四光"},
        )
    assert "database error" in caplog.text
    assert "13900005555" not in caplog.text and "李四光" not in caplog.text
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unavailable"
    assert "未被保存" in error["message"]
    assert _count(writable) == before


def test_report_form_on_a_read_only_database_is_a_503_page(read_only: tuple[TestClient, Engine]) -> None:
    """The citizen's form gets the Chinese error page with 503, not a stack trace or a false success."""
    client, writable = read_only
    client.cookies.set("xihu_csrf", "ro-token")
    resp = client.post("/report", data={"csrf_token": "ro-token", "description": DESCRIPTION})
    assert resp.status_code == 503
    assert "未被保存" in resp.text
    assert _count(writable) == 0
