"""insert_new_plainly writes what the ORM's flush would: values, Python defaults, table defaults, JSON.

On PostgreSQL rows alike (the same columns set) go by COPY from eight rows on, by executemany below that;
on SQLite always by executemany. Both ways are checked against rows the ORM flushed itself: with n=3 every
group is small, with n=24 every group has eight rows or more.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

import factories
from xihu.appeals.enums import Action
from xihu.appeals.models import AppealEvent
from xihu.core import clock
from xihu.core.db import insert_new_plainly
from xihu.dispatch.models import DispatchDecision


def _decision(appeal_id: int, i: int) -> DispatchDecision:
    # every other row leaves confidence, auto and candidates to their defaults
    if i % 2:
        return DispatchDecision(appeal_id=appeal_id, model_version=f"v{i}", category=None)
    candidates = [{"unit_id": i, "category": "城乡建设", "reasons": ["文本特征：路灯", f"第 {i} 条"]}]
    return DispatchDecision(
        appeal_id=appeal_id,
        model_version=f"v{i}",
        category="城乡建设",
        confidence=0.5 + i / 100,
        auto=True,
        candidates=candidates,
    )


def _event(appeal_id: int, i: int) -> AppealEvent:
    event = AppealEvent(
        appeal_id=appeal_id,
        action=Action.sign.value,
        from_state="dispatched",
        to_state="signed",
        actor_label=f"处理人{i}",
        unit_id=None,
    )
    if i % 3 == 0:  # some rows set what others leave to the defaults
        event.message, event.public, event.actor_kind = f"第 {i} 步：已签收\n「引号」\t制表", False, "system"
    return event


def _columns(row: object, table: object) -> dict[str, object]:
    return {c.key: getattr(row, c.key) for c in table.c if c.key != "id"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("n", [3, 24])
def test_plain_inserts_match_the_orms_rows(session, n: int) -> None:
    appeal_id = factories.submitted(session).id
    clock.freeze(clock.now() + timedelta(hours=1))  # Python defaults (clock.now) must read the same clock
    for make, model in ((_decision, DispatchDecision), (_event, AppealEvent)):
        before = set(session.scalars(select(model.id)))
        session.add_all([make(appeal_id, i) for i in range(n)])
        session.flush()
        by_orm = [r for r in session.scalars(select(model).order_by(model.id)) if r.id not in before]
        known = before | {r.id for r in by_orm}
        session.add_all([make(appeal_id, i) for i in range(n)])
        assert insert_new_plainly(session, model) == n
        assert not [o for o in session.new if isinstance(o, model)]
        session.expire_all()
        plain = [r for r in session.scalars(select(model).order_by(model.id)) if r.id not in known]
        assert len(plain) == len(by_orm) == n
        table = model.__table__
        # rows are written a group of alike rows at a time, so their order (and ids) may differ
        assert sorted(map(str, (_columns(r, table) for r in plain))) == sorted(
            map(str, (_columns(r, table) for r in by_orm))
        )
        assert all(r.id > max(known) for r in plain)  # ids from the table's own sequence
