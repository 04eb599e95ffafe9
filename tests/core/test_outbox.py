"""The outbox: exactly-once in-app delivery, retries with backoff, dead letters, leases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from xihu.core import clock, outbox
from xihu.core.outbox import InboxMessage, OutboxMessage, deliver_due, enqueue, register_sender

T0 = datetime(2026, 3, 6, 1, 0, tzinfo=UTC)


@pytest.fixture
def sms_sender():
    """Swap the SMS sender for the test and always put the original back."""
    original = outbox.SENDERS["sms"]
    try:
        yield lambda fn: register_sender("sms", fn)
    finally:
        register_sender("sms", original)


def _msg(session, msg_id: int) -> OutboxMessage:
    session.expire_all()
    msg = session.get(OutboxMessage, msg_id)
    assert msg is not None
    return msg


def _sms(session) -> int:
    msg = enqueue(
        session=session, channel="sms", address="13812345678", subject="【西湖码】测试", body="测试短信"
    )
    session.commit()
    return msg.id


def test_inapp_message_is_delivered_exactly_once(session, session_factory, make_user) -> None:
    user = make_user("handler", "D-ZJ")
    clock.freeze(T0)
    msg = enqueue(
        session=session,
        channel="inapp",
        user_id=user.id,
        subject="新派单 XH1",
        body="路灯不亮",
        link="/staff/appeals/1",
    )
    session.commit()
    assert deliver_due(session_factory, "w1") == 1
    session.expire_all()
    inbox = list(session.scalars(select(InboxMessage).where(InboxMessage.user_id == user.id)))
    assert len(inbox) == 1
    assert (inbox[0].outbox_id, inbox[0].subject, inbox[0].body, inbox[0].link) == (
        msg.id,
        "新派单 XH1",
        "路灯不亮",
        "/staff/appeals/1",
    )
    assert inbox[0].read is False
    sent = _msg(session, msg.id)
    assert sent.status == "sent" and sent.sent_at == T0 and sent.attempts == 0
    assert sent.lease_owner is None and sent.lease_until is None

    clock.advance(timedelta(hours=1))
    assert deliver_due(session_factory, "w1") == 0
    assert deliver_due(session_factory, "w2") == 0
    session.expire_all()
    assert (
        session.scalar(select(func.count()).select_from(InboxMessage).where(InboxMessage.user_id == user.id))
        == 1
    )
    assert [m.id for m in outbox.inbox_for(session=session, user_id=user.id)] == [inbox[0].id]


def test_failing_sender_is_retried_with_backoff(session, session_factory, sms_sender) -> None:
    calls: list[int] = []

    def broken(msg: OutboxMessage) -> None:
        calls.append(msg.id)
        raise ConnectionError("短信网关超时")

    sms_sender(broken)
    clock.freeze(T0)
    msg_id = _sms(session)
    assert deliver_due(session_factory, "w1") == 0
    msg = _msg(session, msg_id)
    assert msg.status == "pending"
    assert msg.attempts == 1
    assert msg.next_attempt_at > T0
    assert msg.next_attempt_at == T0 + timedelta(seconds=60)  # 30 s * 2 ** attempts
    assert "短信网关超时" in (msg.last_error or "")
    assert msg.lease_owner is None and msg.lease_until is None
    assert calls == [msg_id]

    # not due yet: nothing is tried
    clock.advance(timedelta(seconds=30))
    assert deliver_due(session_factory, "w1") == 0
    assert calls == [msg_id]

    delivered: list[str] = []
    sms_sender(lambda m: delivered.append(m.address or ""))
    clock.advance(timedelta(seconds=31))
    assert deliver_due(session_factory, "w1") == 1
    msg = _msg(session, msg_id)
    assert msg.status == "sent"
    assert msg.sent_at == T0 + timedelta(seconds=61)
    assert delivered == ["13812345678"]
    assert deliver_due(session_factory, "w1") == 0
    assert delivered == ["13812345678"]


def test_message_is_dead_after_max_attempts(session, session_factory, sms_sender) -> None:
    calls: list[int] = []

    def broken(msg: OutboxMessage) -> None:
        calls.append(msg.id)
        raise RuntimeError("gateway down")

    sms_sender(broken)
    clock.freeze(T0)
    msg_id = _sms(session)
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        assert deliver_due(session_factory, "w1") == 0
        msg = _msg(session, msg_id)
        assert msg.attempts == attempt
        if attempt < outbox.MAX_ATTEMPTS:
            assert msg.status == "pending"
            clock.freeze(msg.next_attempt_at)
    assert msg.status == "dead"
    assert len(calls) == outbox.MAX_ATTEMPTS
    # a dead message is never tried again
    clock.advance(timedelta(days=7))
    assert deliver_due(session_factory, "w1") == 0
    assert len(calls) == outbox.MAX_ATTEMPTS
    assert _msg(session, msg_id).status == "dead"


def test_a_message_leased_by_another_worker_waits_for_the_lease(session, session_factory, sms_sender) -> None:
    sent: list[int] = []
    sms_sender(lambda m: sent.append(m.id))
    clock.freeze(T0)
    msg_id = _sms(session)
    msg = _msg(session, msg_id)
    msg.lease_owner, msg.lease_until = "w2", T0 + outbox.LEASE
    session.commit()
    assert deliver_due(session_factory, "w1") == 0
    assert sent == []
    clock.advance(outbox.LEASE + timedelta(seconds=1))  # w2 died; its lease ran out
    assert deliver_due(session_factory, "w1") == 1
    assert sent == [msg_id]
    assert _msg(session, msg_id).status == "sent"


def test_an_in_app_message_leased_by_another_worker_waits_for_the_lease(
    session, session_factory, make_user
) -> None:
    """In-app messages go without a lease, but one that another worker has leased is left to it."""
    user = make_user("handler", "D-ZJ")
    clock.freeze(T0)
    leased = enqueue(session=session, channel="inapp", user_id=user.id, subject="派单 1", body="b")
    free = enqueue(session=session, channel="inapp", user_id=user.id, subject="派单 2", body="b")
    session.flush()
    leased.lease_owner, leased.lease_until = "w2", T0 + outbox.LEASE
    session.commit()
    assert deliver_due(session_factory, "w1") == 1
    assert (_msg(session, leased.id).status, _msg(session, free.id).status) == ("pending", "sent")
    clock.advance(outbox.LEASE + timedelta(seconds=1))  # w2 died; its lease ran out
    assert deliver_due(session_factory, "w1") == 1
    assert _msg(session, leased.id).status == "sent"
    inbox = session.scalars(select(InboxMessage.outbox_id).where(InboxMessage.user_id == user.id)).all()
    assert sorted(inbox) == sorted([leased.id, free.id])


def test_in_app_messages_of_a_claim_are_delivered_together(session, session_factory, make_user) -> None:
    """Forty in-app notices take a handful of statements, not a transaction each (as they did before)."""
    users = [make_user("handler", "D-ZJ"), make_user("handler", "D-ZJ")]
    msgs = [
        enqueue(session=session, channel="inapp", user_id=users[i % 2].id, subject=f"新派单 {i}", body="b")
        for i in range(40)
    ]
    session.commit()
    ids = [m.id for m in msgs]
    statements: list[str] = []
    engine = session_factory.kw["bind"]

    def count(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert deliver_due(session_factory, "w1") == 40
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) <= 12, statements
    session.expire_all()
    inbox = session.scalars(select(InboxMessage).where(InboxMessage.outbox_id.in_(ids))).all()
    assert sorted(m.outbox_id for m in inbox) == sorted(ids)
    assert {(m.outbox_id, m.user_id) for m in inbox} == {(i, users[n % 2].id) for n, i in enumerate(ids)}
    assert all(_msg(session, i).status == "sent" for i in ids)


def test_an_in_app_message_that_cannot_be_stored_is_retried_and_holds_up_no_other(
    session, session_factory, make_user
) -> None:
    """One notice whose inbox row cannot be written fails alone, with backoff; the others are delivered."""
    user = make_user("handler", "D-ZJ")
    clock.freeze(T0)
    msgs = [
        enqueue(session=session, channel="inapp", user_id=user.id, subject="派单", body="b") for _ in range(4)
    ]
    session.flush()
    ids = [m.id for m in msgs]
    bad, good = ids[2], ids[:2] + ids[3:]
    # a row already holds this notice's place in the inbox (outbox_id is unique), so storing it fails
    session.add(InboxMessage(outbox_id=bad, user_id=user.id, subject="占位", body="b"))
    session.commit()

    assert deliver_due(session_factory, "w1") == 3
    assert all(_msg(session, i).status == "sent" for i in good)
    failed = _msg(session, bad)
    assert (failed.status, failed.attempts, failed.lease_owner) == ("pending", 1, None)
    assert failed.next_attempt_at > T0 and failed.last_error
