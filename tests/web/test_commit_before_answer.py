"""The unit of work commits before the answer is sent: a failed commit is never acknowledged."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import factories
from xihu.appeals.models import Appeal


@pytest.fixture
def failing_commits(app):  # type: ignore[no-untyped-def]
    """Sessions whose commit fails as a full or read-only database would."""
    real_factory = app.state.session_factory

    def factory() -> Session:
        session = real_factory()

        def commit() -> None:
            raise OperationalError("COMMIT", {}, Exception("could not extend file: No space left on device"))

        session.commit = commit  # type: ignore[method-assign]
        return session

    app.state.session_factory = factory
    yield
    app.state.session_factory = real_factory


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Appeal)) or 0)


def test_an_intake_whose_commit_fails_is_answered_503_not_201(client, session, failing_commits) -> None:
    before = _count(session)
    response = client.post(
        "/api/appeals",
        json={
            "description": "楼下烧烤油烟很大，每天晚上到十二点",
            "street_id": factories.unit(session, "330106004"),
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 503
    assert "未被保存" in response.json()["error"]["message"]
    assert _count(session) == before


def test_a_committed_intake_is_readable_as_soon_as_it_is_answered(client, session) -> None:
    response = client.post(
        "/api/appeals",
        json={
            "description": "小区门口的井盖松动了，车一过就响",
            "street_id": factories.unit(session, "330106004"),
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201
    code = response.json()["tracking_code"]
    assert client.get(f"/api/appeals/track/{code}").status_code == 200
