"""A large inbox is counted only as far as people page: the total says "more" instead of counting them all."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import factories
from conftest import login
from xihu.appeals import pages
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import State


def _five_dispatched(session: Session) -> set[int]:
    return {factories.dispatched(session, "D-ZJ").id for _ in range(5)}


def test_the_count_stops_at_its_limit_and_says_there_are_more(session: Session, actor_of: Any) -> None:
    ids = _five_dispatched(session)
    actor = actor_of("handler", "D-ZJ")
    exact = appeal_service.search(session=session, actor=actor, states=[State.dispatched])
    assert (exact.total, exact.more) == (5, False)
    capped = appeal_service.search(session=session, actor=actor, states=[State.dispatched], count_up_to=3)
    assert (capped.total, capped.more) == (3, True)
    assert {a.id for a in capped.items} == ids  # the page itself is not cut by the count
    enough = appeal_service.search(session=session, actor=actor, states=[State.dispatched], count_up_to=5)
    assert (enough.total, enough.more) == (5, False)


def test_the_inbox_page_shows_a_capped_count_as_more(
    client: TestClient,
    session: Session,
    make_user: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _five_dispatched(session)
    session.commit()
    user = make_user("handler", "D-ZJ", username=f"h-{uuid.uuid4().hex[:8]}")
    login(client, user.username)
    monkeypatch.setattr(pages, "INBOX_COUNT_LIMIT", 40)
    assert "共 5 件" in client.get("/staff").text
    monkeypatch.setattr(pages, "INBOX_COUNT_LIMIT", 3)
    page = client.get("/staff")
    assert page.status_code == 200
    assert "共 3 余件" in page.text
