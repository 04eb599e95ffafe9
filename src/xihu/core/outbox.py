"""Notifications through an outbox table, delivered by the worker with retries."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Boolean, ForeignKey, Integer, String, Table, Text, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from xihu.core import clock
from xihu.core.config import get_settings
from xihu.core.db import Base, UTCDateTime
from xihu.core.jobs import lock_for_update, lock_skip_locked, periodic
from xihu.core.privacy import mask_phone, mask_text

log = logging.getLogger("xihu.outbox")
MAX_ATTEMPTS = 6
LEASE = timedelta(seconds=60)


class OutboxMessage(Base):
    """A message waiting to be delivered (in-app, SMS or webhook)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # inapp | sms | webhook
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class InboxMessage(Base):
    """An in-app message shown to a staff member."""

    __tablename__ = "inbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(255), nullable=True)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


def enqueue(
    *,
    session: Session,
    channel: str,
    subject: str,
    body: str,
    user_id: int | None = None,
    address: str | None = None,
    link: str | None = None,
) -> OutboxMessage:
    """Queue a message in the caller's transaction, so it exists exactly when the change does."""
    msg = OutboxMessage(
        channel=channel,
        subject=subject[:200],
        body=body,
        user_id=user_id,
        address=address,
        link=link,
        next_attempt_at=clock.now(),
    )
    session.add(msg)
    return msg


Sender = Callable[[OutboxMessage], None]


def _log_sender(msg: OutboxMessage) -> None:
    # Logs are not an authorized view of personal data: the number is masked, the text too.
    to = mask_phone(msg.address) if msg.channel == "sms" else (msg.address or msg.user_id)
    log.info("[%s] to %s: %s", msg.channel, to, mask_text(msg.subject))


_INBOX: Table = InboxMessage.__table__  # type: ignore[assignment]


def _webhook_sender(msg: OutboxMessage) -> None:
    url = get_settings().webhook_url
    if not url:
        _log_sender(msg)
        return
    payload = {"id": msg.id, "subject": msg.subject, "body": msg.body, "link": msg.link}
    resp = httpx.post(
        url,
        content=json.dumps(payload, ensure_ascii=False),
        timeout=10,
        headers={"Content-Type": "application/json", "Idempotency-Key": f"outbox-{msg.id}"},
    )
    resp.raise_for_status()


SENDERS: dict[str, Sender] = {"sms": _log_sender, "webhook": _webhook_sender}


def register_sender(channel: str, sender: Sender) -> None:
    """Plug in a real SMS gateway or another channel."""
    SENDERS[channel] = sender


def _claim(factory: sessionmaker[Session], worker_id: str, batch: int) -> list[int]:
    now = clock.now()
    with factory() as session:
        stmt = (
            select(OutboxMessage.id)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
            .where((OutboxMessage.lease_until.is_(None)) | (OutboxMessage.lease_until < now))
            .order_by(OutboxMessage.id)
            .limit(batch)
        )
        ids = list(session.scalars(lock_skip_locked(stmt, session)))
        if ids:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(lease_until=now + LEASE, lease_owner=worker_id)
            )
        session.commit()
        return ids


@periodic("outbox")
def deliver_due(factory: sessionmaker[Session], worker_id: str, batch: int = 50) -> int:
    """Deliver pending messages; failures are retried with backoff, then marked dead.

    In-app messages only write rows, so a batch of them is taken and delivered in one transaction, without a
    lease. The rest (SMS, webhook), and in-app messages whose batch failed, are leased first and then
    delivered: in-app ones of a claim together once more, the others one by one, each in its own
    transaction, so that one failure holds up no other and is recorded on its message.
    """
    try:
        delivered = _deliver_in_app_at_once(factory, batch)
    except OperationalError:
        raise  # the database is away: nothing was taken, the next round tries again
    except Exception:  # noqa: BLE001 - the claim below takes them and finds the culprit
        log.warning("delivering in-app messages at once failed; claiming them instead")
        delivered = 0
    ids = _claim(factory, worker_id, batch)
    if not ids:
        return delivered
    try:
        together, in_app = _deliver_in_app_together(factory, worker_id, ids)
    except OperationalError:
        raise  # the database is away: the leases lapse and the messages are claimed again later
    except Exception:  # noqa: BLE001 - redone one by one below, which records the culprit
        log.warning("delivering %d in-app messages together failed; delivering them one by one", len(ids))
        together, in_app = 0, set()
    delivered += together
    for msg_id in ids:
        if msg_id not in in_app:
            delivered += _deliver_one(factory, worker_id, msg_id)
    return delivered


def _deliver_in_app_at_once(factory: sessionmaker[Session], batch: int) -> int:
    # The row lock is the claim: the inbox rows and the "sent" mark commit together or not at all, so an
    # in-app message needs no lease (a lease is for sends outside the database, which may hang or fail).
    now = clock.now()
    with factory() as session:
        stmt = (
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending", OutboxMessage.channel == "inapp")
            .where(OutboxMessage.next_attempt_at <= now)
            .where((OutboxMessage.lease_until.is_(None)) | (OutboxMessage.lease_until < now))
            .order_by(OutboxMessage.id)
            .limit(batch)
        )
        msgs = list(session.scalars(lock_skip_locked(stmt, session)))
        if not msgs:
            return 0
        return _mark_delivered(session, msgs, now)


def _mark_delivered(session: Session, msgs: list[OutboxMessage], now: datetime) -> int:
    """Write the in-app messages' inbox rows, mark them sent and commit; how many."""
    rows = [_inbox_row(m, now) for m in msgs if m.user_id is not None]
    if rows:
        session.execute(insert(_INBOX), rows)
    done = [m.id for m in msgs]
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(done))
        .values(status="sent", sent_at=now, lease_until=None, lease_owner=None)
    )
    session.commit()
    return len(done)


def _deliver_in_app_together(
    factory: sessionmaker[Session], worker_id: str, ids: list[int]
) -> tuple[int, set[int]]:
    with factory() as session:
        stmt = select(OutboxMessage).where(
            OutboxMessage.id.in_(ids),
            OutboxMessage.channel == "inapp",
            OutboxMessage.status == "pending",
            OutboxMessage.lease_owner == worker_id,
        )
        msgs = list(session.scalars(lock_for_update(stmt, session)))
        if not msgs:
            return 0, set()
        return _mark_delivered(session, msgs, clock.now()), {m.id for m in msgs}


def _inbox_row(msg: OutboxMessage, now: datetime) -> dict[str, object]:
    return {
        "outbox_id": msg.id,
        "user_id": msg.user_id,
        "subject": msg.subject,
        "body": msg.body,
        "link": msg.link,
        "read": False,
        "created_at": now,
    }


def _deliver_one(factory: sessionmaker[Session], worker_id: str, msg_id: int) -> int:
    with factory() as session:
        msg = session.get(OutboxMessage, msg_id)
        if msg is None or msg.status != "pending" or msg.lease_owner != worker_id:
            return 0
        delivered, in_app = 0, msg.channel == "inapp"
        try:
            if in_app:
                if msg.user_id is not None:
                    session.execute(insert(_INBOX), _inbox_row(msg, clock.now()))
            else:
                SENDERS.get(msg.channel, _log_sender)(msg)
            msg.status = "sent"
            msg.sent_at = clock.now()
            delivered = 1
        except Exception as exc:  # noqa: BLE001 - any sender failure means retry later
            if in_app:  # the failed INSERT spoiled the transaction: start again from the message
                session.rollback()
                msg = session.get(OutboxMessage, msg_id)
                assert msg is not None
            msg.attempts += 1
            msg.last_error = str(exc)[:500]
            if msg.attempts >= MAX_ATTEMPTS:
                msg.status = "dead"
            else:
                msg.next_attempt_at = clock.now() + timedelta(seconds=30 * 2**msg.attempts)
        msg.lease_until = None
        msg.lease_owner = None
        session.commit()
        return delivered


def inbox_for(*, session: Session, user_id: int, limit: int = 50) -> list[InboxMessage]:
    """A staff member's latest in-app messages."""
    stmt = select(InboxMessage).where(InboxMessage.user_id == user_id).order_by(InboxMessage.id.desc())
    return list(session.scalars(stmt.limit(limit)))
