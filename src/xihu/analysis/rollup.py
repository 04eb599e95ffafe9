"""Rollup upkeep: each appeal's counted facts are kept, and a change is applied to the rollups as a delta.

Appeal events only mark the appeal as changed; the rollups are brought up to date just before the unit of
work commits (or when a read of this domain needs them), when the appeal's final state of the transaction
is known. Because the new facts are recomputed from the appeal and the old ones are stored, any sequence of
events (transfer, reopen, merge, a rolled-back savepoint) leaves the rollups equal to a recount.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable
from datetime import date
from typing import Any

import jieba
from sqlalchemy import Date, Table, delete, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from xihu.analysis.models import (
    MEASURES,
    AppealFact,
    AreaMonthRollup,
    AreaRollup,
    CommunityDayRollup,
    CommunityTotalMonthRollup,
    DistrictMonthRollup,
    DistrictRollup,
    RollupQueue,
    StreetDayRollup,
    StreetMonthRollup,
    StreetRollup,
    StreetTotalMonthRollup,
    TermRollup,
    UnitMonthRollup,
    UnitRollup,
)
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import OPEN_STATES, Action, Rating, State
from xihu.appeals.schemas import RollupFacts
from xihu.core import clock, events
from xihu.core.config import get_settings

jieba.setLogLevel(logging.WARNING)


def warm() -> None:
    """Load jieba's dictionary now (about 1.1 s) rather than in the first appeal's commit."""
    jieba.initialize()


PENDING_KEY = "xihu_analysis_pending"
CELL_DEGREES = 0.003  # about 300 m north-south at Hangzhou's latitude
MAX_TERMS = 12
_STOP = frozenset(
    {
        "问题",
        "反映",
        "投诉",
        "咨询",
        "希望",
        "要求",
        "处理",
        "解决",
        "关于",
        "一下",
        "没有",
        "现在",
        "我们",
        "他们",
        "这个",
        "那个",
        "已经",
        "一直",
        "还是",
        "可以",
        "请求",
        "相关",
        "部门",
        "情况",
        "市民",
        "群众",
        "来电",
        "诉求",
    }
)
_TERM_OK = re.compile(r"^[\u4e00-\u9fffA-Za-z][\u4e00-\u9fffA-Za-z0-9]+$")

AREA_KEYS = ("day", "category", "street_id", "community_id", "channel")
STREET_KEYS = ("day", "category", "street_id", "channel")
UNIT_KEYS = ("day", "unit_id", "category")
DISTRICT_KEYS = ("day", "category", "channel")
DAY_ROLLUPS: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (DistrictRollup.__table__, DISTRICT_KEYS),  # type: ignore[assignment]
    (AreaRollup.__table__, AREA_KEYS),
    (StreetRollup.__table__, STREET_KEYS),
    (UnitRollup.__table__, UNIT_KEYS),
    (StreetDayRollup.__table__, ("day", "street_id")),
    (CommunityDayRollup.__table__, ("day", "street_id", "community_id")),
)
# Each day rollup's month twin: the same keys with "month" (the month's first day) in place of "day".
MONTH_OF: dict[Table, Table] = {
    DistrictRollup.__table__: DistrictMonthRollup.__table__,  # type: ignore[dict-item]
    AreaRollup.__table__: AreaMonthRollup.__table__,  # type: ignore[dict-item]
    StreetRollup.__table__: StreetMonthRollup.__table__,  # type: ignore[dict-item]
    UnitRollup.__table__: UnitMonthRollup.__table__,  # type: ignore[dict-item]
    StreetDayRollup.__table__: StreetTotalMonthRollup.__table__,  # type: ignore[dict-item]
    CommunityDayRollup.__table__: CommunityTotalMonthRollup.__table__,  # type: ignore[dict-item]
}
MONTH_ROLLUPS: tuple[tuple[Table, tuple[str, ...]], ...] = tuple(
    (MONTH_OF[table], ("month", *keys[1:])) for table, keys in DAY_ROLLUPS
)
# add_to_rollups writes day and month rows in the same transaction from the same deltas: they cannot disagree.
ROLLUPS = DAY_ROLLUPS + MONTH_ROLLUPS
DIMENSIONS = ("day", "category", "street_id", "community_id", "channel", "unit_id")


def terms_of(title: str) -> list[str]:
    """The distinct words of a title worth counting as topics (two characters or more, no stop words)."""
    seen: dict[str, None] = {}
    for word in jieba.lcut(title):
        word = word.strip()
        if 2 <= len(word) <= 16 and word not in _STOP and _TERM_OK.match(word):
            seen.setdefault(word, None)
        if len(seen) >= MAX_TERMS:
            break
    return list(seen)


def phone_hash(phone: str | None) -> str | None:
    """A keyed hash of a phone number, so callers are grouped without storing or logging the number."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)[-11:]
    key = get_settings().secret_key.encode()
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()[:16]


def cell_of(lat: float | None, lon: float | None) -> str | None:
    """The ~300 m grid cell of a point (hotspots are counted per cell and its neighbours)."""
    if lat is None or lon is None:
        return None
    return f"{round(lat / CELL_DEGREES)}:{round(lon / CELL_DEGREES)}"


def fact_row(f: RollupFacts) -> dict[str, Any]:
    """The fact row counted for an appeal: dimensions and 0/1 measures (merged duplicates count nothing)."""
    local = clock.local(f.created_at)
    assert local is not None
    counted = f.state != State.merged.value
    rated = f.rating is not None and counted
    row: dict[str, Any] = {
        "appeal_id": f.appeal_id,
        "day": local.date(),
        "category": f.category or "",
        "street_id": f.street_id or 0,
        "community_id": f.community_id or 0,
        "channel": f.channel,
        "unit_id": f.lead_unit_id or 0,
        "place_id": f.place_id,
        "cell": cell_of(f.lat, f.lon),
        "phone_hash": phone_hash(f.citizen_phone),
        "received": int(counted),
        "open": int(counted and State(f.state) in OPEN_STATES),
        "completed": int(counted and f.completed),
        "complete_due": int(counted and f.complete_due),
        "completed_on_time": int(counted and f.completed_on_time),
        "sign_due": int(counted and f.sign_due),
        "signed_on_time": int(counted and f.signed_on_time),
        "rated": int(rated),
        "satisfied": int(rated and f.rating in (Rating.satisfied.value, Rating.basic.value)),
        "unsatisfied": int(rated and f.rating == Rating.unsatisfied.value),
    }
    return row


def _insert(session: Session, table: Table) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# Upsert statements by (dialect, table), built once: building one (its `excluded` alias and SET clause) cost
# about 0.7 ms, twelve times per worker round, which at a few appeals a round was most of the rollup job.
_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert(session: Session, table: Table, keys: Iterable[str], measures: Iterable[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET m = m + excluded.m for each measure (cached)."""
    cache_key = (session.get_bind().dialect.name, table.name)
    stmt = _UPSERTS.get(cache_key)
    if stmt is None:
        base = _insert(session, table)
        stmt = base.on_conflict_do_update(
            index_elements=list(keys), set_={m: table.c[m] + base.excluded[m] for m in measures}
        )
        _UPSERTS[cache_key] = stmt
    return stmt


def add_to_rollups(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add measure deltas to every rollup, one upsert statement per rollup (executemany for many rows)."""
    if not rows:
        return
    rows = [{**row, "month": row["day"].replace(day=1)} for row in rows]
    for table, keys in ROLLUPS:
        merged: dict[tuple[Any, ...], dict[str, int]] = {}
        for row in rows:
            key = tuple(row[k] for k in keys)
            acc = merged.setdefault(key, dict.fromkeys(MEASURES, 0))
            for m in MEASURES:
                acc[m] += row[m]
        # Sorted keys: concurrent transactions lock the rollup rows in the same order (no deadlocks).
        params = [
            {**dict(zip(keys, key, strict=True)), **acc}
            for key, acc in sorted(merged.items(), key=lambda kv: tuple(str(k) for k in kv[0]))
            if any(acc.values())
        ]
        if not params:
            continue
        session.execute(_upsert(session, table, keys, MEASURES), params)


def add_terms(session: Session, counts: dict[tuple[date, str], int]) -> None:
    """Add term counts to the term rollup in one upsert statement."""
    if not counts:
        return
    table: Table = TermRollup.__table__  # type: ignore[assignment]
    stmt = _upsert(session, table, ("day", "term"), ("count",))
    session.execute(stmt, [{"day": d, "term": t, "count": n} for (d, t), n in sorted(counts.items())])


def _negate(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, **{m: -row[m] for m in MEASURES}}


def refresh(session: Session, facts: Iterable[RollupFacts]) -> int:
    """Bring the rollups up to date for these appeals; returns how many fact rows changed."""
    new_rows = {f.appeal_id: (fact_row(f), f.title) for f in facts}
    if not new_rows:
        return 0
    fact_table: Table = AppealFact.__table__  # type: ignore[assignment]
    old_rows = {
        r["appeal_id"]: dict(r)
        for r in session.execute(
            select(fact_table).where(fact_table.c.appeal_id.in_(list(new_rows)))
        ).mappings()
    }
    deltas: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    terms: dict[tuple[date, str], int] = {}
    changed = 0
    for appeal_id, (new, title) in new_rows.items():
        old = old_rows.get(appeal_id)
        if old is None:
            inserts.append(new)
            deltas.append(new)
            for term in terms_of(title):
                terms[(new["day"], term)] = terms.get((new["day"], term), 0) + 1
            changed += 1
            continue
        if all(old[k] == new[k] for k in new):
            continue
        changed += 1
        if all(old[k] == new[k] for k in DIMENSIONS):
            deltas.append({**new, **{m: new[m] - old[m] for m in MEASURES}})
        else:
            deltas.append(_negate(old))
            deltas.append(new)
        values = {k: v for k, v in new.items() if k != "appeal_id"}
        session.execute(update(fact_table).where(fact_table.c.appeal_id == appeal_id).values(**values))
    if inserts:
        session.execute(fact_table.insert(), inserts)
    add_to_rollups(session, deltas)
    add_terms(session, terms)
    return changed


def mark(session: Session, appeal_id: int) -> None:
    """Remember that an appeal changed in this unit of work."""
    session.info.setdefault(PENDING_KEY, set()).add(appeal_id)


def apply_pending(session: Session) -> int:
    """Apply every change marked in this session to the rollups (idempotent; cheap when nothing is marked)."""
    pending: set[int] = session.info.get(PENDING_KEY) or set()
    if not pending:
        return 0
    ids = sorted(pending)
    session.info[PENDING_KEY] = set()
    session.flush()
    return refresh(session, appeal_service.rollup_facts(session=session, appeal_ids=ids))


def rebuild(session: Session, *, batch: int = 2000) -> int:
    """Recount every rollup from the appeals (after an import, a restore or a change of counting rules)."""
    session.execute(delete(AppealFact))
    for table, _ in ROLLUPS:
        session.execute(delete(table))
    session.execute(delete(TermRollup))
    after, total = 0, 0
    while True:
        facts = appeal_service.rollup_facts_page(session=session, after_id=after, limit=batch)
        if not facts:
            break
        refresh(session, facts)
        after = facts[-1].appeal_id
        total += len(facts)
    session.flush()
    return total


def _on_appeal_event(*, session: Session, appeal_id: int, **_: Any) -> None:
    mark(session, appeal_id)


def _before_commit(session: Session) -> None:
    if not session.info.get(PENDING_KEY):
        return
    if get_settings().defer_to_workers:
        queue_pending(session)
    else:
        apply_pending(session)


_QUEUE: Table = RollupQueue.__table__  # type: ignore[assignment]
_INSERT_QUEUE = insert(_QUEUE)


def queue_pending(session: Session) -> int:
    """Hand this session's marked appeals to the workers instead of updating the rollups now."""
    pending: set[int] = session.info.get(PENDING_KEY) or set()
    session.info[PENDING_KEY] = set()
    if pending:
        now = clock.now()
        rows = [{"appeal_id": i, "queued_at": now} for i in sorted(pending)]
        # a plain table INSERT, not the ORM's bulk path: this runs in every intake's commit, where the ORM's
        # bulk machinery took a tenth of the web process's time
        session.execute(_INSERT_QUEUE, rows[0] if len(rows) == 1 else rows)
    return len(pending)


# pg_advisory_xact_lock key of the rollup appliers ("xihurlup"): one applies at a time, so two workers never
# compare and update the same appeal's fact row at once.
_APPLY_LOCK = int.from_bytes(b"xihurlup", "big") & 0x7FFF_FFFF_FFFF_FFFF


def apply_queued(session: Session, *, batch: int = 1000) -> int:
    """Apply up to `batch` queued appeals to the rollups in one go; returns how many queue rows were done."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _APPLY_LOCK})
    rows = session.execute(
        select(RollupQueue.id, RollupQueue.appeal_id).order_by(RollupQueue.id).limit(batch)
    ).all()
    if not rows:
        return 0
    ids = sorted({appeal_id for _, appeal_id in rows})
    refresh(session, appeal_service.rollup_facts(session=session, appeal_ids=ids))
    session.execute(delete(RollupQueue).where(RollupQueue.id.in_([queue_id for queue_id, _ in rows])))
    return len(rows)


def install() -> None:
    """Subscribe to the appeal events and hook the commit (idempotent)."""
    events.subscribe("appeal.submitted")(_on_appeal_event)
    for action in Action:
        events.subscribe(f"appeal.{action.value}")(_on_appeal_event)
    if not event.contains(Session, "before_commit", _before_commit):
        event.listen(Session, "before_commit", _before_commit)
        event.listen(Session, "after_soft_rollback", _after_soft_rollback)


def _after_soft_rollback(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(PENDING_KEY, None)


install()


def month_of(session: Session, day: Any) -> Any:
    """SQL for the first day of the month of a date column (the key of the month rollups)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.cast(func.date_trunc("month", day), Date)
    return func.date(day, "start of month")


def rollups_from_facts(session: Session) -> None:
    """Rebuild the rollups (not the terms) from the stored fact rows by one GROUP BY each (bulk loads)."""
    for table, _ in ROLLUPS:
        session.execute(delete(table))
    fact_table: Table = AppealFact.__table__  # type: ignore[assignment]
    for table, keys in DAY_ROLLUPS:
        cols = [fact_table.c[k] for k in keys]
        sums = [func.sum(fact_table.c[m]) for m in MEASURES]
        # In day order, as the upkeep appends them: a period's rows then lie close together on disk.
        stmt = select(*cols, *sums).group_by(*cols).order_by(cols[0])
        session.execute(table.insert().from_select([*keys, *MEASURES], stmt))
    months_from_days(session)


def months_from_days(session: Session) -> None:
    """Fill the (empty) month rollups from the day rollups, one GROUP BY each (bulk loads)."""
    for day_table, keys in DAY_ROLLUPS:
        month = month_of(session, day_table.c.day)
        cols = [day_table.c[k] for k in keys[1:]]
        sums = [func.sum(day_table.c[m]) for m in MEASURES]
        stmt = select(month, *cols, *sums).group_by(month, *cols).order_by(month)
        session.execute(MONTH_OF[day_table].insert().from_select(["month", *keys[1:], *MEASURES], stmt))
