"""Append-only audit log of every state change and every view of personal data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from xihu.core import clock
from xihu.core.db import Base, UTCDateTime
from xihu.core.security import Actor, authorize


class AuditEntry(Base):
    """One audited fact. Rows are only ever inserted."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    actor_label: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48), index=True)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64), index=True)
    from_state: Mapped[str | None] = mapped_column(String(24), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(24), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


def record(
    *,
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object,
    from_state: str | None = None,
    to_state: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an audit row in the caller's transaction."""
    row = AuditEntry(
        at=clock.now(),
        actor_kind=actor.kind,
        actor_id=actor.user_id,
        actor_label=actor.label[:64],
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        from_state=from_state,
        to_state=to_state,
        reason=(reason or None) and reason[:500],
        detail=detail,
    )
    session.add(row)
    return row


def entries_for(*, session: Session, actor: Actor, entity: str, entity_id: object) -> list[AuditEntry]:
    """The audit trail of one entity, for supervisors and admins."""
    authorize(actor, "audit.read")
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.entity == entity, AuditEntry.entity_id == str(entity_id))
        .order_by(AuditEntry.id)
    )
    return list(session.scalars(stmt))
