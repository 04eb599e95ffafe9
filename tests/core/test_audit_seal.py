"""XIHU_DEFER_TO_WORKERS: requests leave audit rows unchained and a worker seals them into the same chain."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from xihu.core import audit
from xihu.core.audit import AuditEntry
from xihu.core.security import Actor

SYSTEM = Actor.system("封存测试")


def _write(session: Session, n: int) -> list[int]:
    rows = [
        audit.record(session=session, actor=SYSTEM, action="test.seal", entity="seal_test", entity_id=i)
        for i in range(n)
    ]
    session.commit()
    return [r.id for r in rows]


def _rows(session: Session, ids: list[int]) -> list[AuditEntry]:
    session.expire_all()
    return list(session.scalars(select(AuditEntry).where(AuditEntry.id.in_(ids)).order_by(AuditEntry.id)))


def test_requests_leave_rows_unchained_and_the_worker_seals_them(
    session: Session, session_factory: sessionmaker[Session], deferred: None
) -> None:
    _write(session, 2)
    audit.seal_job(session_factory, "w0")  # whatever came before is sealed: the chain has started
    ids = _write(session, 4)
    assert all(r.seq is None and r.hash is None for r in _rows(session, ids))
    pending = audit.verify(session=session)
    assert pending.ok, pending
    assert pending.pending == 4

    assert audit.seal_job(session_factory, "w1", batch=3) == 4  # two batches
    rows = _rows(session, ids)
    assert [r.seq for r in rows] == list(range(rows[0].seq or 0, (rows[0].seq or 0) + 4))
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.prev_hash == before.hash
    report = audit.verify(session=session)
    assert report.ok and report.pending == 0
    assert report.head == rows[-1].hash
    assert audit.seal_job(session_factory, "w2") == 0


def test_a_sealed_row_altered_afterwards_is_detected(
    session: Session, session_factory: sessionmaker[Session], deferred: None
) -> None:
    ids = _write(session, 3)
    audit.seal_job(session_factory, "w1")
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[1]).values(reason="改过了"))
    session.commit()
    report = audit.verify(session=session)
    assert not report.ok
    assert report.broken_id == ids[1]


def test_without_deferral_rows_are_chained_at_commit(session: Session) -> None:
    ids = _write(session, 2)
    assert all(r.seq is not None for r in _rows(session, ids))
