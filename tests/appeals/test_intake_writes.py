"""The lean intake write path: a retry racing its first submission, replays that leave nothing behind, and
the cached area check (what it keeps, what it does not keep, and when it forgets)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

import factories
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel
from xihu.appeals.models import Appeal, AppealEvent, IdempotencyKey, RoutingTask
from xihu.appeals.schemas import AppealCreate, SubmitResult
from xihu.appeals.service import intake as appeal_intake
from xihu.core.audit import AuditEntry
from xihu.core.db import make_session_factory
from xihu.core.security import Actor
from xihu.places import service as places_service
from xihu.places.models import Unit

LAMP = "翠苑一区小区门口路灯坏了好几天，晚上很黑"


def _submit(session: Session, street: int, key: str) -> SubmitResult:
    return appeal_service.submit(
        session=session,
        actor=Actor.citizen(),
        appeal_in=AppealCreate(description=LAMP, street_id=street, citizen_phone="13812345678"),
        channel=Channel.api,
        idempotency_key=key,
    )


def _rows(session: Session) -> dict[str, int]:
    session.expire_all()
    counted: dict[str, Any] = {
        "appeals": Appeal,
        "events": AppealEvent,
        "keys": IdempotencyKey,
        "audit": AuditEntry,
        "routing": RoutingTask,
    }
    return {name: session.scalar(select(func.count()).select_from(m)) or 0 for name, m in counted.items()}


def test_a_replay_writes_no_second_row_anywhere(session: Session, deferred: None) -> None:
    street = factories.unit(session, "330106004")
    key = f"replay-{uuid.uuid4().hex}"
    first = _submit(session, street, key)
    after_first = _rows(session)
    again = _submit(session, street, key)
    assert (again.id, again.tracking_code, again.created) == (first.id, first.tracking_code, False)
    assert _rows(session) == after_first  # the row written before the key was found taken is gone again


@pytest.fixture
def committed(engine: Engine) -> Iterator[tuple[sessionmaker[Session], list[int]]]:
    """Sessions that really commit (for a race between two transactions); their appeals are removed after."""
    ids: list[int] = []
    yield make_session_factory(engine), ids
    factories.remove_deferred_appeals(engine, ids)


def test_a_retry_racing_the_first_submission_gets_the_same_appeal(
    committed: tuple[sessionmaker[Session], list[int]], deferred: None
) -> None:
    """The retry's key insert waits for the first transaction, then finds the key taken and replays."""
    factory, ids = committed
    with factory() as s:
        street = factories.unit(s, "330106004")
    key = f"race-{uuid.uuid4().hex}"
    first_wrote = threading.Event()
    results: dict[str, SubmitResult] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with factory() as s:
                results["first"] = _submit(s, street, key)
                first_wrote.set()
                threading.Event().wait(0.5)  # hold the key, uncommitted, while the retry arrives
                s.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            first_wrote.set()

    def retry() -> None:
        try:
            first_wrote.wait(10)
            with factory() as s:
                results["retry"] = _submit(s, street, key)
                s.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=retry)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids.extend({r.id for r in results.values()})
    assert not errors, errors
    assert results["first"].created and not results["retry"].created
    assert results["retry"].id == results["first"].id
    with factory() as s:
        assert (
            s.scalar(select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == key)) == 1
        )
        assert (
            s.scalar(
                select(func.count())
                .select_from(Appeal)
                .where(
                    Appeal.description == LAMP,
                    Appeal.id.in_(select(IdempotencyKey.appeal_id).where(IdempotencyKey.key == key)),
                )
            )
            == 1
        )


def _unit_selects(connection: Connection) -> list[str]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "FROM units" in statement:
            seen.append(statement)

    event.listen(connection, "before_cursor_execute", note)
    return seen


def test_the_area_check_reads_each_unit_once(
    session: Session, connection: Connection, deferred: None
) -> None:
    street = factories.unit(session, "330106004")
    places_service.reset_caches()
    seen = _unit_selects(connection)
    _submit(session, street, f"area-{uuid.uuid4().hex}")
    assert len(seen) == 1
    _submit(session, street, f"area-{uuid.uuid4().hex}")
    assert len(seen) == 1  # the second intake in that street asks the database nothing about it


def test_the_area_cache_keeps_no_misses_and_forgets_on_reset(session: Session) -> None:
    """A unit unknown at first is found once it exists; a reference reload (reset) drops what was kept."""
    missing = (session.scalar(select(func.max(Unit.id))) or 0) + 1000
    assert places_service.unit_kind_and_parent(session=session, unit_id=missing) is None
    street = factories.unit(session, "330106004")
    session.add(
        Unit(
            id=missing,
            code=f"T{missing}",
            name="测试社区",
            short_name="测试",
            kind="community",
            parent_id=street,
        )
    )
    session.flush()
    assert places_service.unit_kind_and_parent(session=session, unit_id=missing) == ("community", street)

    session.execute(update(Unit).where(Unit.id == missing).values(kind="village"))
    assert places_service.unit_kind_and_parent(session=session, unit_id=missing) == ("community", street)
    places_service.reset_caches()  # what load_reference does after changing reference data
    assert places_service.unit_kind_and_parent(session=session, unit_id=missing) == ("village", street)


@pytest.mark.parametrize("mode", ["inline", "deferred"])
def test_a_tracking_code_drawn_twice_is_drawn_again(
    session: Session, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, mode: str
) -> None:
    """Two intakes that draw the same code both succeed: the second draws again instead of failing."""
    if mode == "deferred":
        request.getfixturevalue("deferred")
    street = factories.unit(session, "330106004")
    before = _rows(session)
    taken = f"XH{uuid.uuid4().hex[:12].upper()}"
    draws = iter([taken, taken, f"XH{uuid.uuid4().hex[:12].upper()}"])
    monkeypatch.setattr(appeal_intake, "_tracking_code", lambda: next(draws))
    first = _submit(session, street, f"code-{uuid.uuid4().hex}")
    second = _submit(session, street, f"code-{uuid.uuid4().hex}")
    assert first.tracking_code == taken
    assert second.created and second.tracking_code not in (taken, "")
    assert second.tracking_url == f"/t/{second.tracking_code}"
    stored = session.get(Appeal, second.id)
    assert stored is not None and stored.tracking_code == second.tracking_code
    after = _rows(session)
    assert (after["appeals"] - before["appeals"], after["keys"] - before["keys"]) == (2, 2)


def test_a_deferred_intake_is_one_statement_with_all_its_rows(
    session: Session, connection: Connection, deferred: None
) -> None:
    """On PostgreSQL the appeal, key, event, audit entry and routing task are written by one statement."""
    street = factories.unit(session, "330106004")
    _submit(session, street, f"warm-{uuid.uuid4().hex}")  # the area check's unit is cached from now on
    before = _rows(session)
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    key = f"one-{uuid.uuid4().hex}"
    event.listen(connection, "before_cursor_execute", note)
    result = _submit(session, street, key)
    event.remove(connection, "before_cursor_execute", note)
    written = len(statements)
    assert {k: v - before[k] for k, v in _rows(session).items()} == dict.fromkeys(before, 1)
    if connection.dialect.name == "postgresql":
        assert written == 1, statements
    session.expire_all()
    appeal = session.get(Appeal, result.id)
    assert appeal is not None and appeal.tracking_code == result.tracking_code and appeal.reopen_count == 0
    assert appeal.citizen_phone == "13812345678"
    stored_phone = connection.exec_driver_sql(
        f"SELECT citizen_phone FROM appeals WHERE id = {result.id}"
    ).scalar()
    assert stored_phone and "13812345678" not in stored_phone  # encrypted at rest on this path too
    ev = session.scalars(select(AppealEvent).where(AppealEvent.appeal_id == result.id)).one()
    assert result.tracking_code in ev.message and ev.to_state == "submitted"
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.entity == "appeal", AuditEntry.entity_id == str(result.id))
    ).one()
    assert (entry.action, entry.entity, entry.detail) == ("appeal.submit", "appeal", {"channel": "api"})
    stored_key = session.get(IdempotencyKey, key)
    assert stored_key is not None and stored_key.appeal_id == result.id
    assert session.get(RoutingTask, result.id) is not None
