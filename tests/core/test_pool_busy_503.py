"""When every database connection of a process stays busy, a request gets a clear 503, not a 500 or a hang."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from conftest import DATABASE_URL
from xihu.core.config import Settings
from xihu.core.db import make_engine

pytestmark = pytest.mark.skipif(
    os.environ.get("XIHU_TEST_BACKEND") != "postgresql",
    reason="the fixed connection pool is PostgreSQL's (SQLite writes one at a time behind its own lock)",
)


def test_a_request_that_finds_no_free_connection_is_a_503_and_its_retry_is_stored_once(
    tmp_path: Path, engine: Engine
) -> None:
    from xihu.web.app import create_app

    settings = Settings(
        data_dir=tmp_path,
        database_url=DATABASE_URL,
        demo=True,
        in_process_worker=False,
        rate_limit_per_minute=0,
        db_pool_size=1,
        db_pool_timeout_seconds=0.3,
    )
    app = create_app(settings)
    key = f"pool-busy-{uuid.uuid4().hex}"
    body = {"description": "连接池测试：路口的红绿灯不亮了"}
    with TestClient(app) as client:
        held = app.state.engine.connect()  # the process's only connection, kept busy
        try:
            busy = client.post("/api/appeals", json=body, headers={"Idempotency-Key": key})
        finally:
            held.close()
        assert busy.status_code == 503, busy.text
        assert "系统繁忙" in busy.json()["error"]["message"]
        assert app.state.engine.pool.checkedout() == 0  # nothing left holding a connection

        stored = client.post("/api/appeals", json=body, headers={"Idempotency-Key": key})
        again = client.post("/api/appeals", json=body, headers={"Idempotency-Key": key})
    assert stored.status_code == 201, stored.text
    assert again.status_code == 200 and again.json()["tracking_code"] == stored.json()["tracking_code"]
    app.state.engine.dispose()


def test_connections_are_kept_not_reopened_under_concurrency(tmp_path: Path, engine: Engine) -> None:
    """The pool has no overflow: more concurrent work than connections waits instead of opening new ones."""
    pooled = make_engine(DATABASE_URL, pool_size=3, pool_timeout=10)
    opened: list[int] = []
    event.listen(pooled, "connect", lambda *_: opened.append(1))

    def work(_: int) -> None:
        with pooled.connect() as conn:
            conn.execute(text("SELECT pg_sleep(0.02)"))

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(work, range(60)))
    assert len(opened) == 3, len(opened)
    pooled.dispose()
