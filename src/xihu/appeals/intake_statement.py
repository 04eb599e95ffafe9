"""A deferred intake's rows written by one PostgreSQL statement (data-modifying CTEs).

An acknowledgement with routing deferred to the workers is five rows: the appeal, its idempotency key, its
first timeline event, its audit entry and its routing task. As separate INSERTs they cost five round trips,
and each round trip cost the web process and PostgreSQL more CPU than the row did (bench/intake_profile.py).
Here they are one statement: the appeal is inserted unless its tracking code is taken, the key only with an
inserted appeal and only if nobody holds it yet, and the other rows only with a claimed key, so the caller
learns from one answer whether the code must be drawn again or the request is a retry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, String, Table, bindparam, cast, literal, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from xihu.appeals.models import Appeal, AppealEvent, IdempotencyKey, RoutingTask
from xihu.core.audit import AuditEntry

_APPEALS: Table = Appeal.__table__  # type: ignore[assignment]
_EVENTS: Table = AppealEvent.__table__  # type: ignore[assignment]
_KEYS: Table = IdempotencyKey.__table__  # type: ignore[assignment]
_ROUTING: Table = RoutingTask.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]

# columns each row takes from the request (the rest are the appeal's id or the tables' defaults)
_APPEAL_COLUMNS = (
    *("tracking_code", "channel", "title", "description", "category_hint", "priority", "state", "place_id"),
    *("street_id", "community_id", "address", "lat", "lon", "citizen_name", "citizen_phone", "external_id"),
    *("created_by_id", "created_at", "updated_at"),
)
_EVENT_COLUMNS: tuple[str, ...] = ("at", "action", "from_state", "to_state", "actor_label", "actor_kind")
_EVENT_COLUMNS += ("unit_id", "message", "public")
_AUDIT_COLUMNS: tuple[str, ...] = ("at", "actor_kind", "actor_id", "actor_label", "action", "entity")
_AUDIT_COLUMNS += ("from_state", "to_state", "reason", "detail")


def _defaults(table: Table, given: tuple[str, ...]) -> dict[str, Any]:
    # a statement in a CTE gets no Python-side column defaults from SQLAlchemy: they are spelled out here
    return {
        c.name: literal(c.default.arg, c.type)
        for c in table.columns
        if c.name not in given and isinstance(c.default, ScalarElementColumnDefault)
    }


def _param(table: Table, prefix: str, column: str) -> ColumnElement[Any]:
    # typed, so that the column's own conversions apply (encrypted phone and name, JSON detail)
    return bindparam(f"{prefix}{column}", type_=table.c[column].type)


def _children_of(source: Any, id_column: Any) -> list[Any]:
    """The event, audit and routing rows, inserted for each row `source` yields (none when it is empty)."""
    event = _EVENTS.insert().from_select(
        ["appeal_id", *_EVENT_COLUMNS],
        select(id_column, *(_param(_EVENTS, "e_", c) for c in _EVENT_COLUMNS)).select_from(source),
    )
    entry_values = [*(_param(_AUDIT, "au_", c) for c in _AUDIT_COLUMNS), cast(id_column, String)]
    entry = _AUDIT.insert().from_select(
        [*_AUDIT_COLUMNS, "entity_id"], select(*entry_values).select_from(source)
    )
    task_values = [id_column, _param(_ROUTING, "r_", "queued_at"), _param(_ROUTING, "r_", "attempts")]
    task = _ROUTING.insert().from_select(
        ["appeal_id", "queued_at", "attempts"], select(*task_values).select_from(source)
    )
    return [event.cte("ev"), entry.cte("au"), task.cte("rt")]


def _statement(keyed: bool) -> Select[Any]:
    appeal = (
        pg_insert(_APPEALS)
        .values(
            {c: _param(_APPEALS, "a_", c) for c in _APPEAL_COLUMNS} | _defaults(_APPEALS, _APPEAL_COLUMNS)
        )
        .on_conflict_do_nothing(index_elements=[_APPEALS.c.tracking_code])
        .returning(_APPEALS.c.id)
        .cte("a")
    )
    if not keyed:
        return select(appeal.c.id, appeal.c.id.label("claimed")).add_cte(*_children_of(appeal, appeal.c.id))
    key = (
        pg_insert(_KEYS)
        .from_select(
            ["key", "fingerprint", "appeal_id", "created_at"],
            select(
                _param(_KEYS, "k_", "key"),
                _param(_KEYS, "k_", "fingerprint"),
                appeal.c.id,
                _param(_KEYS, "k_", "created_at"),
            ).select_from(appeal),
        )
        .on_conflict_do_nothing(index_elements=[_KEYS.c.key])
        .returning(_KEYS.c.appeal_id)
        .cte("k")
    )
    return (
        select(appeal.c.id, key.c.appeal_id.label("claimed"))
        .select_from(appeal.outerjoin(key, true()))
        .add_cte(*_children_of(key, key.c.appeal_id))
    )


# built once: the statement is compiled once per process and then only executed
_KEYED, _UNKEYED = _statement(keyed=True), _statement(keyed=False)


def insert_at_once(
    session: Session,
    *,
    appeal: dict[str, Any],
    event: dict[str, Any],
    entry: dict[str, Any],
    queued_at: Any,
    key: dict[str, Any] | None,
) -> tuple[int | None, bool]:
    """Write a deferred intake's rows; (appeal id or None if the code is taken, whether the key was claimed).

    With a key that another submission holds, the appeal row is written but nothing else: the caller
    deletes it in the same transaction and answers with the holder's appeal.
    """
    params: dict[str, Any] = {f"a_{c}": appeal[c] for c in _APPEAL_COLUMNS}
    params.update({f"e_{c}": event[c] for c in _EVENT_COLUMNS})
    params.update({f"au_{c}": entry[c] for c in _AUDIT_COLUMNS})
    params.update({"r_queued_at": queued_at, "r_attempts": 0})
    if key is not None:
        params.update({f"k_{c}": key[c] for c in ("key", "fingerprint", "created_at")})
    row = session.execute(_KEYED if key is not None else _UNKEYED, params).first()
    if row is None:
        return None, False
    return int(row[0]), row[1] is not None
