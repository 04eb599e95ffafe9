"""Public writes are rate-limited per address with 429 and Retry-After; staff are not."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from conftest import login
from xihu.appeals.models import Appeal
from xihu.core.ratelimit import RateLimiter
from xihu.core.security import Role


def test_bucket_refills_over_time(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("xihu.core.ratelimit.time.monotonic", lambda: now[0])
    limiter = RateLimiter(per_minute=60, burst=2)
    assert [limiter.retry_after("a"), limiter.retry_after("a")] == [0, 0]
    assert limiter.retry_after("a") == 1
    assert limiter.retry_after("b") == 0  # another address has its own bucket
    now[0] += 1.0
    assert limiter.retry_after("a") == 0


def test_public_intake_gets_429_with_retry_after_and_staff_are_exempt(app, session, make_user) -> None:
    from xihu.web.app import create_app

    # 8 a minute gives a burst of 2; the app under test was built with the limit off, so build one with it.
    limited = create_app(app.state.settings.model_copy(update={"rate_limit_per_minute": 8}))
    limited.state.session_factory = app.state.session_factory
    before = session.scalar(select(func.count()).select_from(Appeal))
    with TestClient(limited) as staff, TestClient(limited) as citizen:
        login(staff, make_user(Role.intake).username)  # the login itself takes one token
        hotline = [
            staff.post("/api/appeals", json={"description": f"热线来电：路灯不亮第{i}天"}).status_code
            for i in range(4)
        ]
        assert hotline == [201, 201, 201, 201]
        first = citizen.post("/api/appeals", json={"description": "路灯不亮好几天了"})
        refused = citizen.post("/api/appeals", json={"description": "路灯还是不亮"})
    assert first.status_code == 201
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "频繁" in refused.json()["error"]["message"]
    assert session.scalar(select(func.count()).select_from(Appeal)) - before == 5
