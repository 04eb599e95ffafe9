"""A full database gives a clear 503 in Chinese and nothing half-written; once there is room again, the same
retried submission (same Idempotency-Key) is stored exactly once.

SQLite: the app's connections get `PRAGMA max_page_count` at the file's size after a VACUUM (no free pages),
so the file really cannot grow and SQLite answers SQLITE_FULL. PostgreSQL: the test's own database gets a
trigger that raises SQLSTATE 53100 (disk_full) from inside the server on the transaction's audit write, after
the appeal, its timeline and its clocks were written, as a full disk would in the middle of a transaction.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine

from conftest import DATABASE_URL
from xihu.core.config import Settings
from xihu.core.db import make_engine, make_session_factory, unit_of_work
from xihu.core.migrate import upgrade

PG = os.environ.get("XIHU_TEST_BACKEND") == "postgresql"
TABLES = ("appeals", "appeal_events", "deadlines", "audit_log", "idempotency_keys", "outbox")
# long enough to need overflow pages on SQLite (6000 bytes > one 4096-byte page)
DESCRIPTION = "磁盘已满测试：" + "小区门口的路灯坏了，晚上很黑。" * 130


@dataclass
class Full:
    """The app under test, a writable engine to look with, and the switch that makes the storage full."""

    client: TestClient
    look: Engine
    make_full: Any
    make_room: Any


def _migrated(url: str) -> None:
    from xihu.places import service as places_service

    upgrade(url)
    engine = make_engine(url)
    with unit_of_work(make_session_factory(engine)) as session:
        places_service.load_reference(session=session)
    engine.dispose()


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Full]:
    """A real app on a database of its own that can be made full and given room again."""
    from xihu.web.app import create_app

    admin: Engine | None = None
    if PG:
        name = f"xihu_full_{os.getpid()}"
        admin = create_engine(make_url(DATABASE_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path / 'full.db'}"
    _migrated(url)
    settings = Settings(
        data_dir=tmp_path, database_url=url, demo=True, in_process_worker=False, rate_limit_per_minute=0
    )
    app = create_app(settings)
    engine: Engine = app.state.engine
    look = make_engine(url)
    cap: dict[str, int | None] = {"pages": None}

    if not PG:

        @event.listens_for(engine, "connect")
        def _cap(dbapi_conn: Any, _record: Any) -> None:
            if cap["pages"] is not None:
                dbapi_conn.execute(f"PRAGMA max_page_count = {cap['pages']}")

    def make_full() -> None:
        if PG:
            with look.begin() as conn:
                conn.execute(
                    text(
                        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                        "RAISE EXCEPTION 'could not extend file: No space left on device' "
                        "USING ERRCODE = 'disk_full'; END $$"
                    )
                )
                conn.execute(
                    text(
                        "CREATE TRIGGER disk_full BEFORE INSERT ON audit_log "
                        "FOR EACH ROW EXECUTE FUNCTION disk_full()"
                    )
                )
            return
        engine.dispose()  # the app's next connections come up capped
        db = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        try:
            db.execute("VACUUM")  # no free pages left to reuse
            cap["pages"] = db.execute("PRAGMA page_count").fetchone()[0]
            assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
        finally:
            db.close()

    def make_room() -> None:
        if PG:
            with look.begin() as conn:
                conn.execute(text("DROP TRIGGER disk_full ON audit_log"))
            return
        cap["pages"] = None
        engine.dispose()

    try:
        with TestClient(app) as client:
            yield Full(client, look, make_full, make_room)
    finally:
        look.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def test_full_database_is_a_clear_503_and_the_retry_is_stored_once(full: Full) -> None:
    """While full: 503 with the Chinese message, and not one row of the appeal anywhere. With room again:
    the same request with the same key is stored, and a further retry returns that same appeal."""
    body = {"description": DESCRIPTION, "citizen_phone": "13900006666", "citizen_name": "王五"}
    headers = {"Idempotency-Key": "full-disk-retry-1"}
    before = _counts(full.look)
    full.make_full()
    resp = full.client.post("/api/appeals", json=body, headers=headers)
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unavailable"
    assert "存储空间已满" in error["message"] and "未被保存" in error["message"]
    assert _counts(full.look) == before
    # still full: the citizen's form gets the Chinese error page, not a stack trace or a false success
    full.client.cookies.set("xihu_csrf", "full-token")
    page = full.client.post("/report", data={"csrf_token": "full-token", "description": DESCRIPTION})
    assert page.status_code == 503 and "未被保存" in page.text
    assert _counts(full.look) == before

    full.make_room()
    stored = full.client.post("/api/appeals", json=body, headers=headers)
    assert stored.status_code == 201, stored.text
    again = full.client.post("/api/appeals", json=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["tracking_code"] == stored.json()["tracking_code"]
    after = _counts(full.look)
    assert after["appeals"] == before["appeals"] + 1
    assert after["idempotency_keys"] == before["idempotency_keys"] + 1
    assert after["appeal_events"] > before["appeal_events"] and after["audit_log"] > before["audit_log"]
