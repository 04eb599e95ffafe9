"""Helpers for tests of dispatch model versions: train the demo model, read versions, add corrections."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel
from xihu.appeals.schemas import AppealCreate
from xihu.core.audit import AuditEntry
from xihu.core.security import Actor
from xihu.dispatch import training
from xihu.dispatch.models import DispatchFeedback, ModelVersion
from xihu.dispatch.schemas import ModelVersionRead

SYSTEM = Actor.system("测试")


def train_demo(
    session: Session, data_dir: Path, *, activate: bool = True, note: str = ""
) -> ModelVersionRead:
    """A version trained on the demo examples (plus any feedback), active unless told otherwise."""
    return training.train_version(
        session=session,
        actor=SYSTEM,
        rows=training.demo_rows(),
        data_dir=data_dir,
        note=note,
        activate=activate,
    )


def audit_entries(session: Session, action: str) -> list[AuditEntry]:
    """The audit entries of one action, oldest first."""
    return list(
        session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
    )


def active_versions(session: Session) -> list[str]:
    """The names of the active model versions (there should be one at most)."""
    return list(session.scalars(select(ModelVersion.version).where(ModelVersion.active.is_(True))))


def add_feedback(session: Session, *rows: tuple[str, str, str | None]) -> None:
    """(kind, text, category) corrections, each of its own citizen appeal."""
    for kind, text, category in rows:
        appeal = appeal_service.submit(
            session=session,
            actor=Actor.citizen(),
            appeal_in=AppealCreate(description=f"西溪路公交站台：{text}，下雨天等车全身淋湿。"),
            channel=Channel.web,
            auto_route=False,
        )
        session.add(DispatchFeedback(appeal_id=appeal.id, kind=kind, text=text, category=category))
    session.flush()
