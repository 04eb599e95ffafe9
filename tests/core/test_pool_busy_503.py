"""When every database connection of a process stays busy, a request gets a clear 503, not a 500 or a hang."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

import factories
from conftest import DATABASE_URL
from xihu.core.config import Settings
from xihu.core.db import make_engine

pytestmark = pytest.mark.skipif(
    os.environ.get("XIHU_TEST_BACKEND") != "postgresql",
    reason="the fixed connection pool is PostgreSQL's (SQLite writes one at a time behind its own lock)",
)


def test_a_request_that_finds_no_free_connection_is_a_503_and_its_retry_is_stored_once(
    tmp_path: Path, engine: Engine, deferred: None
) -> None:
    """Routing is deferred: the appeal the test stores stays unrouted, so it can be removed afterwards."""
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
    factories.remove_deferred_appeals(engine, [stored.json()["id"]])


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


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        conn.commit()


@pytest.mark.parametrize("idle_ping", [True, False])
def test_a_connection_cut_while_idle_is_replaced_before_use(engine: Engine, idle_ping: bool) -> None:
    """Only idle connections are tested before use; one cut while in the pool never reaches a request then.

    Without the idle ping the request that draws the cut connection fails, and the pool recovers after it.
    """
    pooled = make_engine(DATABASE_URL, pool_size=1, ping_idle_after=0.05 if idle_ping else 3600)
    try:
        first = _backend_pid(pooled)
        _terminate(engine, first)
        time.sleep(0.1)
        if idle_ping:
            assert _backend_pid(pooled) != first
        else:
            with pytest.raises(OperationalError):
                _backend_pid(pooled)
            assert _backend_pid(pooled) != first
    finally:
        pooled.dispose()


def test_a_connection_used_moments_ago_is_not_tested_again(engine: Engine) -> None:
    """No ping round trip for busy connections (pool_pre_ping cost one on every request)."""
    pooled = make_engine(DATABASE_URL, pool_size=1)  # the default idle time before a ping
    pings: list[int] = []
    real_ping = pooled.dialect.do_ping
    pooled.dialect.do_ping = lambda conn: pings.append(1) or real_ping(conn)  # type: ignore[method-assign]
    try:
        for _ in range(5):
            _backend_pid(pooled)
        assert pings == []
    finally:
        pooled.dispose()
