"""Who may see and act on an appeal: the read scope, and loading an appeal by id or tracking code."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.appeals.models import Appeal
from xihu.appeals.service._common import units
from xihu.core.errors import Forbidden, NotFound
from xihu.core.security import Actor, Role, authorize
from xihu.places import service as places_service
from xihu.places.enums import UnitKind


def read_scope(*, session: Session, actor: Actor) -> int | None:
    """The unit whose appeals bound what the actor may read, or None for the whole district.

    Handlers and grid staff read their unit's appeals; a leader of a street or community reads that area's
    (a district leader, or one without a unit, reads everything); other staff roles read everything.
    """
    if actor.unit_scoped:
        return actor.unit_id if actor.unit_id is not None else -1
    if actor.role == Role.leader and actor.unit_id is not None:
        unit = places_service.get_unit(session=session, unit_id=actor.unit_id)
        return None if unit.kind == UnitKind.district else unit.id
    return None


def scope_ok(session: Session, actor: Actor, appeal: Appeal) -> bool:
    """Whether the actor may read the appeal: it is in, or is handled by, their unit or area."""
    scope = read_scope(session=session, actor=actor)
    if scope is None:
        return True
    if scope == -1:
        return False
    if scope in (appeal.street_id, appeal.community_id, appeal.lead_unit_id):
        return True
    return any(u.unit_id == scope for u in units(session, appeal.id))


def load(session: Session, actor: Actor, appeal_id: int, *, lock: bool = True) -> Appeal:
    """An appeal the actor may see; another unit's appeal is reported as not found."""
    authorize(actor, "appeal.read")
    appeal = session.get(Appeal, appeal_id, with_for_update=lock or None)
    if appeal is None or not scope_ok(session, actor, appeal):
        raise NotFound("诉求不存在或不在您的办理范围内", english="appeal not found")
    return appeal


def require_lead(actor: Actor, appeal: Appeal) -> None:
    """Forbidden unless the actor may act for the appeal's lead unit."""
    if actor.unit_scoped and actor.unit_id != appeal.lead_unit_id:
        raise Forbidden("只有主办单位可以执行此操作", english="only the lead unit may do this")


def by_code(session: Session, code: str, *, lock: bool = False) -> Appeal:
    """The appeal with this tracking code (locked if asked); NotFound if there is none."""
    appeal = session.scalar(
        select(Appeal).where(Appeal.tracking_code == code.strip().upper()).with_for_update()
        if lock
        else select(Appeal).where(Appeal.tracking_code == code.strip().upper())
    )
    if appeal is None:
        raise NotFound("受理编号不存在，请核对", english="unknown tracking code")
    return appeal
