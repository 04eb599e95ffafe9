"""A deferred intake on PostgreSQL runs on the event loop over the asynchronous driver (`web.deps.run_write`).

These tests build the app on the real database, as `xihu serve` does (the other tests run every request on
the test's own connection, which takes the thread-pool path), and remove what they stored afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import delete, event, func, select
from sqlalchemy.engine import Engine

from conftest import DATABASE_URL
from xihu.appeals.models import Appeal, AppealEvent, IdempotencyKey, RoutingTask
from xihu.core.config import Settings
from xihu.core.db import make_session_factory

pytestmark = pytest.mark.skipif(
    os.environ.get("XIHU_TEST_BACKEND") != "postgresql",
    reason="the asynchronous driver is used on PostgreSQL only",
)

LAMP = "事件循环测试：文三路口的路灯坏了好几天"
T = TypeVar("T")


@pytest.fixture
def real_app(tmp_path: Path, engine: Engine, deferred: None) -> Iterator[Any]:
    """The app on the real database in deferred mode; the appeals it stored are removed afterwards."""
    from xihu.web.app import create_app

    settings = Settings(
        data_dir=tmp_path,
        database_url=DATABASE_URL,
        demo=True,
        in_process_worker=False,
        rate_limit_per_minute=0,
        defer_to_workers=True,
        db_pool_size=1,
        db_pool_timeout_seconds=1.0,
    )
    app = create_app(settings)
    yield app
    with make_session_factory(engine).begin() as session:
        ids = select(Appeal.id).where(Appeal.description.startswith(LAMP))
        for model in (RoutingTask, AppealEvent, IdempotencyKey):
            session.execute(delete(model).where(model.appeal_id.in_(ids)))  # type: ignore[attr-defined]
        session.execute(delete(Appeal).where(Appeal.id.in_(ids)))
    app.state.engine.dispose()


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def _run(app: Any, scenario: Callable[[Callable[..., Awaitable[httpx.Response]]], Awaitable[T]]) -> T:
    """Run a scenario of requests on one event loop (the async pool's connections belong to it)."""

    async def main() -> T:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def post(body: dict[str, Any], key: str | None = None) -> httpx.Response:
                return await client.post(
                    "/api/appeals", json=body, headers={"Idempotency-Key": key} if key else {}
                )

            try:
                return await scenario(post)
            finally:
                await app.state.async_session_factory.kw["bind"].dispose()

    return asyncio.run(main())


def _stored(engine: Engine, code: str) -> dict[str, int]:
    with engine.connect() as conn:
        appeal_id = conn.scalar(select(Appeal.id).where(Appeal.tracking_code == code))
        assert appeal_id is not None, code
        return {
            m.__tablename__: conn.scalar(
                select(func.count()).select_from(m).where(m.appeal_id == appeal_id)  # type: ignore[attr-defined]
            )
            or 0
            for m in (AppealEvent, IdempotencyKey, RoutingTask)
        }


def _count(engine: Engine, description: str) -> int:
    with engine.connect() as conn:
        return (
            conn.scalar(select(func.count()).select_from(Appeal).where(Appeal.description == description))
            or 0
        )


def test_an_intake_is_stored_through_the_async_driver_not_the_thread_pool(
    real_app: Any, engine: Engine
) -> None:
    via_loop = _statements(real_app.state.async_session_factory.kw["bind"].sync_engine)
    via_pool = _statements(real_app.state.engine)
    key = f"loop-{uuid.uuid4().hex}"
    body = {"description": f"{LAMP} 1", "citizen_phone": "13812345678"}

    async def scenario(post: Callable[..., Awaitable[httpx.Response]]) -> list[httpx.Response]:
        first = await post(body, key)
        return [first, await post(body, key), await post({**body, "description": f"{LAMP} 2"}, key)]

    first, again, changed = _run(real_app, scenario)
    assert first.status_code == 201, first.text
    assert [s.split(None, 1)[0] for s in via_loop][:1] == ["WITH"] and via_pool == []
    code = first.json()["tracking_code"]
    assert again.status_code == 200 and again.json()["tracking_code"] == code
    assert changed.status_code == 409, changed.text
    assert _stored(engine, code) == {"appeal_events": 1, "idempotency_keys": 1, "routing_tasks": 1}
    assert _count(engine, f"{LAMP} 1") == 1 and _count(engine, f"{LAMP} 2") == 0


def test_retries_racing_each_other_on_the_loop_store_one_appeal(real_app: Any, engine: Engine) -> None:
    key = f"race-{uuid.uuid4().hex}"
    body = {"description": f"{LAMP} 3"}

    async def scenario(post: Callable[..., Awaitable[httpx.Response]]) -> list[httpx.Response]:
        return list(await asyncio.gather(*(post(body, key) for _ in range(4))))

    answers = _run(real_app, scenario)
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201], [r.text for r in answers]
    assert len({r.json()["tracking_code"] for r in answers}) == 1
    assert _count(engine, f"{LAMP} 3") == 1


def test_bad_input_is_refused_and_nothing_is_stored(real_app: Any, engine: Engine) -> None:
    async def scenario(post: Callable[..., Awaitable[httpx.Response]]) -> httpx.Response:
        return await post({"description": "短", "citizen_phone": "12"}, f"bad-{uuid.uuid4().hex}")

    refused = _run(real_app, scenario)
    assert refused.status_code == 422 and "诉求内容" in refused.json()["error"]["message"], refused.text
    assert _count(engine, "短") == 0


def test_no_free_connection_is_a_503_and_the_retry_is_stored_once(real_app: Any, engine: Engine) -> None:
    key = f"busy-{uuid.uuid4().hex}"
    body = {"description": f"{LAMP} 4"}
    pooled = real_app.state.async_session_factory.kw["bind"]

    async def scenario(post: Callable[..., Awaitable[httpx.Response]]) -> list[httpx.Response]:
        held = await pooled.connect()  # the process's only connection for this path, kept busy
        try:
            busy = await post(body, key)
        finally:
            await held.close()
        return [busy, await post(body, key), await post(body, key)]

    busy, stored, again = _run(real_app, scenario)
    assert busy.status_code == 503 and "系统繁忙" in busy.json()["error"]["message"], busy.text
    assert stored.status_code == 201, stored.text
    assert again.status_code == 200 and again.json()["tracking_code"] == stored.json()["tracking_code"]
    assert _count(engine, f"{LAMP} 4") == 1
