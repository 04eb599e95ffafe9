"""Background work of the appeals domain: the SLA sweeper that escalates breached clocks, deferred routing,
bulk imports."""

from __future__ import annotations

import logging
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from xihu.appeals import importer
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Action, DeadlineKind, State
from xihu.appeals.models import Appeal, AppealEvent, AppealUnit, Deadline, ImportJob, RoutingTask, Supervision
from xihu.core import audit, clock, events, outbox
from xihu.core.audit import AuditEntry
from xihu.core.config import get_settings
from xihu.core.db import batch_memo, insert_new_plainly
from xihu.core.jobs import lock_for_update, lock_skip_locked, periodic
from xihu.core.longjobs import LongJobKind
from xihu.core.outbox import OutboxMessage
from xihu.core.security import Actor, Role, list_users_with_role
from xihu.dispatch.models import DispatchDecision

log = logging.getLogger("xihu.sla")
SWEEPER = Actor.system("时限监控")


# Above this many breaches for one person in one sweep batch, the person gets one digest instead of a
# message each: a backlog breaches hundreds of clocks at once, and hundreds of messages bury the inbox.
DIGEST_ABOVE = 3
DIGEST_LISTS = 10  # appeals named in a digest; the link lists them all


class _Breach(NamedTuple):
    appeal: Appeal
    kind: DeadlineKind
    reason: str


def _escalate(session: Session, deadline: Deadline, appeal: Appeal) -> tuple[_Breach, list[int]]:
    """Record one breach; return it and the accounts to tell."""
    now = clock.now()
    deadline.open = False
    deadline.breached_at = now
    deadline.escalated_at = now
    kind = DeadlineKind(deadline.kind)
    reason = f"超时未{kind.label}（时限 {clock.fmt(deadline.due_at, '%m-%d %H:%M')}），系统自动督办"
    appeal.flagged = True
    session.add(
        Supervision(
            appeal_id=appeal.id, deadline_id=deadline.id, unit_id=deadline.unit_id, kind="auto", reason=reason
        )
    )
    state = State(appeal.state)
    session.add(
        AppealEvent(
            appeal_id=appeal.id,
            at=now,
            action=Action.supervise.value,
            from_state=state.value,
            to_state=state.value,
            actor_label=SWEEPER.label,
            actor_kind=SWEEPER.kind,
            unit_id=deadline.unit_id,
            message=reason,
            public=False,
        )
    )
    audit.record(
        session=session,
        actor=SWEEPER,
        action="appeal.sla_breach",
        entity="appeal",
        entity_id=appeal.id,
        reason=reason,
        detail={"deadline_id": deadline.id, "kind": kind.value},
    )
    recipients = list_users_with_role(session=session, role=Role.supervisor)
    if deadline.unit_id is not None:
        recipients += list_users_with_role(session=session, role=Role.handler, unit_id=deadline.unit_id)
        recipients += list_users_with_role(session=session, role=Role.grid, unit_id=deadline.unit_id)
    return _Breach(appeal, kind, reason), [user.id for user in recipients]


def _notify(session: Session, breaches: dict[int, list[_Breach]]) -> None:
    """Tell each account of its breaches: a message each, or one digest by appeal when there are many."""
    for user_id, items in breaches.items():
        if len(items) <= DIGEST_ABOVE:
            for b in items:
                outbox.enqueue(
                    session=session,
                    channel="inapp",
                    user_id=user_id,
                    subject=f"超时督办 {b.appeal.tracking_code}",
                    body=b.reason,
                    link=f"/staff/appeals/{b.appeal.id}",
                )
            continue
        # a backlog breaches an appeal's three clocks together: one line per appeal, not per clock
        kinds: dict[str, list[str]] = {}
        for b in items:
            kinds.setdefault(b.appeal.tracking_code, []).append(b.kind.label)
        named = "；".join(
            f"{code} 超时未{'、'.join(labels)}" for code, labels in list(kinds.items())[:DIGEST_LISTS]
        )
        more = f"；另有 {len(kinds) - DIGEST_LISTS} 件" if len(kinds) > DIGEST_LISTS else ""
        clocks = f"（{len(items)} 项时限）" if len(items) > len(kinds) else ""
        outbox.enqueue(
            session=session,
            channel="inapp",
            user_id=user_id,
            subject=f"超时督办 {len(kinds)} 件诉求{clocks}",
            body=f"{named}{more}。系统已自动督办，请在工作台「已超时」中查看。",
            link="/staff?overdue=true",
        )


@periodic("sla")
def sweep_deadlines(factory: sessionmaker[Session], worker_id: str, batch: int = 100) -> int:
    """Mark every due, unmet clock as breached and escalate it exactly once.

    Rows are claimed with FOR UPDATE SKIP LOCKED inside a short transaction: the lock is the lease, so
    any number of workers can sweep together, and a crashed worker's claim is released by its rollback.
    """
    escalated = 0
    while True:
        with factory() as session:
            stmt = (
                select(Deadline)
                .where(Deadline.open.is_(True), Deadline.due_at <= clock.now())
                .order_by(Deadline.due_at)
                .limit(batch)
            )
            rows = list(session.scalars(lock_skip_locked(stmt, session)))
            _escalate_together(session, rows)
            session.commit()
        escalated += len(rows)
        if len(rows) < batch:
            return escalated


# the rows an escalation adds, written as plain many-row INSERTs
_ESCALATION_ROWS = (Supervision, AppealEvent, OutboxMessage)


def _escalate_together(session: Session, deadlines: list[Deadline]) -> None:
    # A backlog (nobody signed in time, or the worker was down) breaches hundreds of clocks at once: their
    # appeals are read in one statement and the accounts to notify once per batch, and nothing is flushed
    # row by row in between (each account lookup used to flush the rows the escalations before it had added).
    if not deadlines:
        return
    ids = sorted({d.appeal_id for d in deadlines})
    appeals = {a.id: a for a in session.scalars(select(Appeal).where(Appeal.id.in_(ids)))}
    breaches: dict[int, list[_Breach]] = {}
    with batch_memo(session):
        for deadline in deadlines:
            breach, user_ids = _escalate(session, deadline, appeals[deadline.appeal_id])
            for user_id in user_ids:
                breaches.setdefault(user_id, []).append(breach)
        _notify(session, breaches)
    # audit rows too where a worker seals them later; else the ORM keeps them, to be chained at commit
    sealed_later = (AuditEntry,) if get_settings().defer_to_workers else ()
    insert_new_plainly(session, *_ESCALATION_ROWS, *sealed_later)


MAX_ROUTING_ATTEMPTS = 5


@periodic("route")
def route_deferred(
    factory: sessionmaker[Session], worker_id: str, batch: int = 50, max_batches: int = 10
) -> int:
    """Route appeals acknowledged without routing (XIHU_DEFER_TO_WORKERS), each exactly once.

    Tasks are claimed like deadlines (FOR UPDATE SKIP LOCKED). A batch is routed in one transaction with its
    reference lookups asked once and its rows written together; if anything in it fails, the batch is
    routed again appeal by appeal, each in a savepoint, so one that fails is retried later and the others
    go on. After MAX_ROUTING_ATTEMPTS an appeal is left to the dispatchers, in whose queue it has been all
    along (state 待派单).
    """
    routed = 0
    # bounded, so that under sustained load the other jobs of this worker get their turn too
    for _ in range(max_batches):
        with factory() as session:
            tasks = _claim_routing(session, batch)
            ids = [t.appeal_id for t in tasks]
            try:
                routed += _route_together(session, ids)
                session.commit()
            except OperationalError:
                raise  # the database is away: the tasks stay queued for the next round, nothing to single out
            except Exception:  # noqa: BLE001 - the batch is redone one by one, which records the culprit
                session.rollback()
                log.warning("routing %d appeals together failed; routing them one by one", len(ids))
                routed += _route_one_by_one(session, _claim_routing(session, batch, only=ids))
                session.commit()
        if len(tasks) < batch:
            break
    return routed


def _claim_routing(session: Session, batch: int, only: list[int] | None = None) -> list[RoutingTask]:
    stmt = select(RoutingTask).order_by(RoutingTask.queued_at).limit(batch)
    if only is not None:
        stmt = stmt.where(RoutingTask.appeal_id.in_(only))
    return list(session.scalars(lock_skip_locked(stmt, session)))


_ROUTING_ROWS = (AppealEvent, AuditEntry, Deadline, AppealUnit, DispatchDecision, OutboxMessage)


def _route_together(session: Session, ids: list[int]) -> int:
    if not ids:
        return 0
    # Held here so that the router's lookups find them in the session. FOR UPDATE waits for a dispatcher
    # who is dispatching one of them by hand, and the router then sees that it is no longer waiting.
    stmt = select(Appeal).where(Appeal.id.in_(ids)).order_by(Appeal.id)
    appeals = list(session.scalars(lock_for_update(stmt, session)))
    routed = 0
    with batch_memo(session):
        appeal_service.score_ahead(session=session, appeals=appeals)
        for appeal in appeals:
            routed += appeal_service.route_queued(session=session, appeal_id=appeal.id)
    # the rows routing adds per appeal, written as plain many-row INSERTs (nothing reads them back here)
    insert_new_plainly(session, *_ROUTING_ROWS)
    session.execute(delete(RoutingTask).where(RoutingTask.appeal_id.in_(ids)))
    for appeal in appeals:
        _announce(session, appeal.id)
    return routed


def _announce(session: Session, appeal_id: int) -> None:
    # A deferred intake is announced here, once, not by the request: so the request writes one statement, and
    # the analysis rollups of a batch are queued together.
    events.publish("appeal.submitted", session=session, appeal_id=appeal_id)


def _route_one_by_one(session: Session, tasks: list[RoutingTask]) -> int:
    routed = 0
    for task in tasks:
        try:
            with session.begin_nested():
                routed += appeal_service.route_queued(session=session, appeal_id=task.appeal_id)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the appeal with the dispatchers
            log.exception("routing appeal %s failed", task.appeal_id)
            task.attempts += 1
            task.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if task.attempts >= MAX_ROUTING_ATTEMPTS:
                audit.record(
                    session=session,
                    actor=SWEEPER,
                    action="appeal.routing_failed",
                    entity="appeal",
                    entity_id=task.appeal_id,
                    reason="智能派单多次失败，转人工派单",
                    detail={"error": task.last_error},
                )
                session.delete(task)
                _announce(session, task.appeal_id)
            continue
        session.delete(task)
        _announce(session, task.appeal_id)
    return routed


def _import(factory: sessionmaker[Session], job_id: int) -> None:
    importer.process(factory, job_id, get_settings().data_dir)


# an import resumes at its first unprocessed chunk, so a restart costs little; a file that kills its process
# (a worker out of memory, say) is given up after three tries
IMPORTS = LongJobKind("appeals.import", ImportJob, _import, importer.give_up, max_attempts=3)


@periodic("appeals.import")
def import_jobs(factory: sessionmaker[Session], worker_id: str) -> int:
    """Start the oldest queued import (or one whose process died) in a thread of this worker."""
    return IMPORTS.tick(factory, worker_id)
