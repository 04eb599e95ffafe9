"""Append-only audit log of every state change and every view of personal data, hash-chained.

Each committed row carries `seq` (its place in the chain), `prev_hash` (the hash of the row before it) and
`hash` = sha256 over a canonical serialisation of its fields and `prev_hash`. Changing a field, deleting a
row or reordering rows breaks a link that `verify` finds. Rows are chained when their transaction commits,
under a lock (a transaction-level advisory lock on PostgreSQL; SQLite's single writer already serialises), so
the chain is linear however many processes write, and the lock is held only for the commit itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Table, event, func, insert, inspect, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from xihu.core import clock
from xihu.core.config import get_settings
from xihu.core.db import Base, UTCDateTime
from xihu.core.jobs import periodic
from xihu.core.security import Actor, authorize

GENESIS = "0" * 64
_PENDING = "xihu_audit_pending"
# pg_advisory_xact_lock key of the audit chain ("xihuaudt" as a 64-bit integer)
_LOCK_KEY = int.from_bytes(b"xihuaudt", "big") & 0x7FFF_FFFF_FFFF_FFFF


class AuditEntry(Base):
    """One audited fact. Rows are only ever inserted (and chained once, when their transaction commits)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        # the sealer's queue: unsealed rows by id, without passing the sealed millions before them
        Index(
            "ix_audit_log_unsealed",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )

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
    # NULL only for rows written before the chain existed (and, inside their own transaction, new rows)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True, index=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


_TABLE: Table = AuditEntry.__table__  # type: ignore[assignment]
_INSERT = insert(_TABLE)


def canonical(row: AuditEntry) -> bytes:
    """The bytes a row's hash covers: every field but the id, with its seq and the previous hash."""
    fields = {
        "seq": row.seq,
        "at": clock.as_utc(row.at).isoformat(timespec="microseconds"),
        "actor_kind": row.actor_kind,
        "actor_id": row.actor_id,
        "actor_label": row.actor_label,
        "action": row.action,
        "entity": row.entity,
        "entity_id": row.entity_id,
        "from_state": row.from_state,
        "to_state": row.to_state,
        "reason": row.reason,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def compute_hash(row: AuditEntry) -> str:
    """sha256 (hex) of a row's canonical serialisation."""
    return hashlib.sha256(canonical(row)).hexdigest()


def entry_values(
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object,
    from_state: str | None,
    to_state: str | None,
    reason: str | None,
    detail: dict[str, Any] | None,
) -> dict[str, Any]:
    """The column values of a new, not yet chained audit row."""
    return {
        # whole microseconds survive every backend, so the hash computed now verifies after a round trip
        "at": clock.now(),
        "actor_kind": actor.kind,
        "actor_id": actor.user_id,
        "actor_label": actor.label[:64],
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "from_state": from_state,
        "to_state": to_state,
        "reason": (reason or None) and reason[:500],
        "detail": detail,
    }


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
    """Append an audit row in the caller's transaction; it joins the chain when that transaction commits."""
    row = AuditEntry(**entry_values(actor, action, entity, entity_id, from_state, to_state, reason, detail))
    session.add(row)
    session.info.setdefault(_PENDING, []).append(row)
    return row


def append(
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
) -> None:
    """Like `record`, for hot paths that need no row object back (intake).

    With XIHU_DEFER_TO_WORKERS the row is one plain INSERT at once, without an ORM object to track and
    flush: a worker seals it later anyway. Otherwise it is `record`, so the row is chained at commit.
    """
    if not get_settings().defer_to_workers:
        record(
            session=session,
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            from_state=from_state,
            to_state=to_state,
            reason=reason,
            detail=detail,
        )
        return
    values = entry_values(actor, action, entity, entity_id, from_state, to_state, reason, detail)
    session.execute(_INSERT, values)


def _chain_pending(session: Session) -> None:
    """Give this transaction's new audit rows their seq and hashes, after the last committed row."""
    pending: list[AuditEntry] = session.info.pop(_PENDING, [])
    if pending and get_settings().defer_to_workers:
        return  # busy deployments: `seal` chains them from a worker, so requests never queue for the lock
    # rows of a rolled-back savepoint are no longer in the session: they are not part of the log
    rows = [r for r in pending if not inspect(r).transient and not inspect(r).detached and r.seq is None]
    if not rows:
        return
    _append(session, rows)


def seal(*, session: Session, batch: int = 1000) -> int:
    """Chain committed rows that were left unchained (XIHU_DEFER_TO_WORKERS), oldest first; returns how many.

    The chain order is then the order of sealing: a row that commits late simply joins the chain later.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    rows = list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.seq.is_(None)).order_by(AuditEntry.id).limit(batch)
        )
    )
    if rows:
        _append(session, rows)
    return len(rows)


def _append(session: Session, rows: list[AuditEntry]) -> None:
    # Write everything else first, so every row lock this transaction needs is held before it waits for the
    # chain lock: whoever holds the chain lock then touches only its own audit rows, and no deadlock can form.
    session.flush()
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # serialise chain appends across processes until this transaction ends (committed or not)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    last = conn.execute(
        select(AuditEntry.seq, AuditEntry.hash)
        .where(AuditEntry.seq.is_not(None))
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    ).first()
    seq: int = (last[0] or 0) if last is not None else 0
    prev: str = (last[1] or GENESIS) if last is not None else GENESIS
    for row in sorted(rows, key=lambda r: (r.id is None, r.id or 0)):
        seq += 1
        row.seq = seq
        row.prev_hash = prev
        row.hash = compute_hash(row)
        prev = row.hash


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _chain_pending(session)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    # a fully rolled-back transaction leaves nothing to chain (savepoints are filtered in _chain_pending)
    if not session.in_transaction():
        session.info.pop(_PENDING, None)


def entries_for(*, session: Session, actor: Actor, entity: str, entity_id: object) -> list[AuditEntry]:
    """The audit trail of one entity, for supervisors and admins."""
    authorize(actor, "audit.read")
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.entity == entity, AuditEntry.entity_id == str(entity_id))
        .order_by(AuditEntry.id)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class ChainReport:
    """What a walk of the chain found: how many rows verified, and the first broken link if any."""

    checked: int
    unchained: int  # rows older than the chain (written before it existed)
    head: str  # the hash of the last row: write it down elsewhere to detect truncation later
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str | None = None
    pending: int = 0  # rows a worker has yet to seal (XIHU_DEFER_TO_WORKERS)

    @property
    def ok(self) -> bool:
        """True when every link holds."""
        return self.problem is None


def _walk(session: Session, batch: int) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq or last


def verify(*, session: Session, batch: int = 2000) -> ChainReport:
    """Walk the chain in order and report the first link that does not hold."""
    first_chained = session.scalar(
        select(AuditEntry.id).where(AuditEntry.seq.is_not(None)).order_by(AuditEntry.id)
    )
    unchained = AuditEntry.seq.is_(None)
    if first_chained is None:
        legacy = session.scalar(select(func.count()).where(unchained)) or 0
        late: int | None = None
    else:
        legacy = session.scalar(select(func.count()).where(unchained, AuditEntry.id < first_chained)) or 0
        late = session.scalar(
            select(AuditEntry.id).where(unchained, AuditEntry.id > first_chained).order_by(AuditEntry.id)
        )
    prev, expected, checked = GENESIS, 1, 0

    def broken(row: AuditEntry, problem: str) -> ChainReport:
        return ChainReport(checked, legacy, prev, row.seq, row.id, problem)

    for row in _walk(session, batch):
        if row.seq != expected:
            return broken(
                row,
                f"序号应为 {expected}，实为 {row.seq}：有记录被删除或重排 (seq gap: row missing or moved)",
            )
        if row.prev_hash != prev:
            return broken(row, "前一条的哈希不符：有记录被删除、插入或重排 (prev_hash mismatch)")
        if row.hash != compute_hash(row):
            return broken(row, "内容与哈希不符：记录被篡改 (hash mismatch: row altered)")
        prev, expected, checked = row.hash, expected + 1, checked + 1
    if late is not None and get_settings().defer_to_workers:
        pending = session.scalar(select(func.count()).where(unchained, AuditEntry.id > first_chained)) or 0
        return ChainReport(checked, legacy, prev, pending=pending)
    if late is not None:
        return ChainReport(
            checked,
            legacy,
            prev,
            None,
            late,
            "链外插入的记录 (a row outside the chain, inserted after it began)",
        )
    return ChainReport(checked, legacy, prev)


@periodic("audit.seal")
def seal_job(factory: sessionmaker[Session], worker_id: str, batch: int = 1000, max_batches: int = 10) -> int:
    """Seal the rows requests left unchained (XIHU_DEFER_TO_WORKERS), a batch per transaction."""
    sealed = 0
    for _ in range(max_batches):  # bounded: the worker's other jobs get their turn under sustained load
        with factory() as session:
            n = seal(session=session, batch=batch)
            session.commit()
        sealed += n
        if n < batch:
            break
    return sealed
