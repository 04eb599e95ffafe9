"""The SLA policies (time limits by category, priority and unit) that staff manage."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.appeals.models import SlaPolicy
from xihu.appeals.schemas import SlaPolicyIn, SlaPolicyRead
from xihu.appeals.service._common import check_unit
from xihu.core import audit
from xihu.core.errors import Invalid, NotFound
from xihu.core.security import Actor, authorize


def list_sla_policies(*, session: Session, actor: Actor) -> list[SlaPolicyRead]:
    """The configured SLA policies (the seeds' 1 min / 30 min / 24 h apply where none matches)."""
    authorize(actor, "sla.manage")
    return [
        SlaPolicyRead.model_validate(p) for p in session.scalars(select(SlaPolicy).order_by(SlaPolicy.id))
    ]


def save_sla_policy(*, session: Session, actor: Actor, data: SlaPolicyIn) -> SlaPolicyRead:
    """Create or replace the policy of a category/priority/unit; it applies to clocks started from now."""
    authorize(actor, "sla.manage")
    if data.unit_id is not None:
        check_unit(session, data.unit_id)
    if not data.sign_minutes <= data.handle_minutes <= data.complete_minutes:
        raise Invalid("时限应满足：签收 ≤ 流转处置 ≤ 办结", english="sign <= handle <= complete minutes")
    priority = data.priority.value if data.priority else None
    row = session.scalar(
        select(SlaPolicy).where(
            SlaPolicy.category.is_(None) if data.category is None else SlaPolicy.category == data.category,
            SlaPolicy.priority.is_(None) if priority is None else SlaPolicy.priority == priority,
            SlaPolicy.unit_id.is_(None) if data.unit_id is None else SlaPolicy.unit_id == data.unit_id,
        )
    )
    before = SlaPolicyRead.model_validate(row).model_dump(mode="json") if row else None
    if row is None:
        row = SlaPolicy()
        session.add(row)
    row.category, row.priority, row.unit_id = data.category, priority, data.unit_id
    row.sign_minutes, row.handle_minutes = data.sign_minutes, data.handle_minutes
    row.complete_minutes, row.calendar = data.complete_minutes, data.calendar
    session.flush()
    after = SlaPolicyRead.model_validate(row)
    audit.record(
        session=session,
        actor=actor,
        action="sla.save",
        entity="sla_policy",
        entity_id=row.id,
        detail={"before": before, "after": after.model_dump(mode="json")},
    )
    return after


def delete_sla_policy(*, session: Session, actor: Actor, policy_id: int) -> None:
    """Remove a policy; the next most specific one (or the default) applies to new clocks."""
    authorize(actor, "sla.manage")
    row = session.get(SlaPolicy, policy_id)
    if row is None:
        raise NotFound("时限规则不存在", english="SLA policy not found")
    audit.record(
        session=session,
        actor=actor,
        action="sla.delete",
        entity="sla_policy",
        entity_id=row.id,
        detail={"before": SlaPolicyRead.model_validate(row).model_dump(mode="json")},
    )
    session.delete(row)
    session.flush()
