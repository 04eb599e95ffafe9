"""A large inbox is counted only as far as people page: the total says "more" instead of counting them all."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import factories
from conftest import login
from xihu.appeals import pages
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import State
from xihu.appeals.models import AppealUnit
from xihu.appeals.schemas import DispatchIn
from xihu.core import clock


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


def test_a_scoped_list_pages_every_way_into_the_scope_newest_first(session: Session, actor_of: Any) -> None:
    # A street's staff see what the street leads, co-handles or has on its ground; each way is read apart and
    # merged, so the pages and capped counts must still be the one newest-first list, each appeal once.
    street, elsewhere = "330106004", "330106005"
    street_id, elsewhere_id = factories.unit(session, street), factories.unit(session, elsewhere)
    made: list[int] = []
    for i in range(14):
        clock.advance(timedelta(minutes=1))
        where = {"street_id": street_id if i % 3 else elsewhere_id}
        if i % 4 == 0:
            made.append(factories.dispatched(session, street, **where).id)  # led by the street
        elif i % 4 == 1:
            appeal = factories.submitted(session, **where)
            appeal_service.dispatch(
                session=session,
                actor=factories.SYSTEM,
                appeal_id=appeal.id,
                data=DispatchIn(unit_id=factories.unit(session, "D-CG"), co_unit_ids=[street_id]),
            )
            made.append(appeal.id)  # co-handled by the street
        else:
            made.append(factories.dispatched(session, "D-ZJ", **where).id)  # a department's
    actor = actor_of("handler", street)
    everything = appeal_service.search(session=session, actor=actor_of("dispatcher"), size=100)
    expected = [
        a.id for a in everything.items if a.street_id == street_id or _in_units(session, a.id, street_id)
    ]
    assert set(expected) < set(made) and len(expected) > 5
    for count_up_to in (None, 3, len(expected), len(expected) + 2):
        pages = [
            appeal_service.search(session=session, actor=actor, page=p, size=4, count_up_to=count_up_to)
            for p in (1, 2, 3, 4)
        ]
        assert [a.id for page in pages for a in page.items] == expected
        capped = count_up_to is not None and len(expected) > count_up_to
        assert pages[0].total == (count_up_to if capped else len(expected))
        assert pages[0].more == capped


def _in_units(session: Session, appeal_id: int, unit_id: int) -> bool:
    return any(
        u.unit_id == unit_id
        for u in session.scalars(select(AppealUnit).where(AppealUnit.appeal_id == appeal_id))
    )
