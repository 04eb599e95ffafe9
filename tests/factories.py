"""Factories for appeals in a given state, through the real service."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel
from xihu.appeals.models import Appeal, AppealEvent, IdempotencyKey, RoutingTask
from xihu.appeals.schemas import AppealCreate, CompleteIn, DispatchIn, SubmitResult
from xihu.core.audit import AuditEntry
from xihu.core.security import Actor
from xihu.places import service as places_service

SYSTEM = Actor.system("测试")


def unit(session: Session, code: str) -> int:
    """A unit id by code."""
    return places_service.get_unit_by_code(session=session, code=code).id


def submitted(session: Session, **overrides: Any) -> SubmitResult:
    """A submitted appeal waiting in the dispatch queue (no auto-routing)."""
    data = {
        "description": "小区门口的路灯坏了好几天，晚上很黑",
        "citizen_name": "张三丰",
        "citizen_phone": "13812345678",
        "street_id": unit(session, "330106004"),
    }
    data.update(overrides)
    return appeal_service.submit(
        session=session,
        actor=Actor.citizen(),
        appeal_in=AppealCreate(**data),
        channel=Channel.web,
        auto_route=False,
    )


def dispatched(session: Session, unit_code: str = "D-ZJ", **overrides: Any) -> SubmitResult:
    """An appeal dispatched to a unit."""
    result = submitted(session, **overrides)
    appeal_service.dispatch(
        session=session,
        actor=SYSTEM,
        appeal_id=result.id,
        data=DispatchIn(unit_id=unit(session, unit_code), category="城乡建设"),
    )
    return result


def signed(session: Session, unit_code: str = "D-ZJ", **overrides: Any) -> SubmitResult:
    """An appeal signed by its unit."""
    result = dispatched(session, unit_code, **overrides)
    appeal_service.sign(session=session, actor=SYSTEM, appeal_id=result.id)
    return result


def handling(session: Session, unit_code: str = "D-ZJ", **overrides: Any) -> SubmitResult:
    """An appeal being handled."""
    result = signed(session, unit_code, **overrides)
    appeal_service.start(session=session, actor=SYSTEM, appeal_id=result.id)
    return result


def completed(session: Session, unit_code: str = "D-ZJ", **overrides: Any) -> SubmitResult:
    """An appeal completed with a reply."""
    result = handling(session, unit_code, **overrides)
    appeal_service.complete(
        session=session,
        actor=SYSTEM,
        appeal_id=result.id,
        data=CompleteIn(reply="已派人修复路灯，感谢反映。"),
    )
    return result


def remove_deferred_appeals(engine: Engine, ids: list[int]) -> None:
    """Delete appeals a test really committed with routing deferred (nothing routed them), and their rows.

    The test database is shared by the whole run: what a test commits, later tests would count.
    """
    with engine.begin() as conn:
        for model in (IdempotencyKey, AppealEvent, RoutingTask):
            conn.execute(delete(model).where(model.appeal_id.in_(ids)))
        conn.execute(
            delete(AuditEntry).where(AuditEntry.entity == "appeal", AuditEntry.entity_id.in_(map(str, ids)))
        )
        conn.execute(delete(Appeal).where(Appeal.id.in_(ids)))
        conn.exec_driver_sql(
            f"DELETE FROM analysis_rollup_queue WHERE appeal_id IN ({','.join(map(str, ids)) or 'NULL'})"
        )
