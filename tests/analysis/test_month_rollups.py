"""Month rollups: kept in step with the day rollups; figures over any period equal a count of the facts."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.analysis import rollup, service, spans, synthetic
from xihu.analysis.models import MEASURES, AppealFact
from xihu.core.security import Actor

SYSTEM = Actor.system("测试")
END = date(2026, 11, 20)
DAYS = 130  # 2026-07-14 .. 2026-11-20: whole months in the middle, partial months at both ends


@pytest.fixture
def loaded(session: Session) -> synthetic.Geography:
    """Random facts over four and a half months, added through the upkeep (not the bulk GROUP BY)."""
    geo = synthetic.geography(session)
    plan = synthetic.Plan(start=END - timedelta(DAYS - 1), days=DAYS, per_day=12, seed=5, first_id=20_000_000)
    synthetic.load(session, list(synthetic.generate(plan, geo)))
    return geo


def _facts(session: Session) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(select(AppealFact.__table__)).mappings()]


def _expected(
    facts: list[dict[str, Any]], start: date, end: date, match: dict[str, Any], child: str | None
) -> dict[str, Any]:
    """The figures counted straight from the fact rows."""
    rows = [
        f
        for f in facts
        if start <= f["day"] <= end and all(f[k] == v for k, v in match.items() if v is not None)
    ]
    total = {m: sum(f[m] for f in rows) for m in MEASURES}
    cats: dict[str, int] = defaultdict(int)
    chans: dict[str, int] = defaultdict(int)
    days: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    kids: dict[int, int] = defaultdict(int)
    for f in rows:
        cats[f["category"] or "未分类"] += f["received"]
        chans[f["channel"]] += f["received"]
        days[f["day"]][0] += f["received"]
        days[f["day"]][1] += f["completed"]
        if child:
            kids[f[child]] += f["received"]
    return {
        "total": total,
        "cats": {c: n for c, n in cats.items() if n},
        "chans": {c: n for c, n in chans.items() if n},
        "days": {d: v for d, v in days.items() if v != [0, 0]},
        "kids": {k: n for k, n in kids.items() if n},
    }


def _got(figures: Any) -> dict[str, Any]:
    return {
        "total": {m: getattr(figures, m) for m in MEASURES},
        "cats": {c.category: c.count for c in figures.top_categories},
        "chans": {c.channel: c.count for c in figures.by_channel},
        "days": {d.day: [d.received, d.completed] for d in figures.by_day if d.received or d.completed},
        "kids": {a.unit_id: a.received for a in figures.by_area if a.received},
    }


def _periods(seed: int, n: int) -> list[tuple[date, date]]:
    first = END - timedelta(DAYS - 1)
    fixed = [
        (first, END),
        (date(2026, 8, 1), date(2026, 10, 31)),  # exactly whole months
        (date(2026, 8, 1), date(2026, 8, 31)),  # one whole month
        (date(2026, 8, 2), date(2026, 8, 30)),  # inside one month
        (date(2026, 8, 31), date(2026, 9, 1)),  # across a month boundary, no whole month
        (date(2026, 9, 1), date(2026, 9, 1)),
        (date(2026, 7, 31), date(2026, 10, 1)),  # one day either side of two whole months
        (date(2026, 5, 1), date(2027, 2, 28)),  # beyond the data on both sides
        (date(2026, 8, 1), date(2026, 9, 29)),  # one day short of a second whole month
        (date(2026, 8, 2), date(2026, 9, 30)),  # one day short of the first whole month
    ]
    rng = random.Random(seed)
    out = list(fixed)
    for _ in range(n):
        a = first - timedelta(10) + timedelta(rng.randrange(DAYS + 20))
        b = a + timedelta(rng.randrange(150))
        out.append((a, b))
    return out


def test_figures_over_any_period_equal_a_count_of_the_facts(session: Session, loaded: Any) -> None:
    facts = _facts(session)
    street_id, communities = loaded.streets[1]
    community = communities[0]
    areas: list[tuple[int | None, dict[str, Any], str | None]] = [
        (None, {}, "street_id"),
        (street_id, {"street_id": street_id}, "community_id"),
        (community, {"community_id": community}, None),
    ]
    for i, (start, end) in enumerate(_periods(seed=9, n=30)):
        area, match, child = areas[i % 3]
        category, channel = [(None, None), ("环境保护", None), (None, "hotline"), ("城乡建设", "web")][i % 4]
        got = service.appeal_figures(
            session=session,
            actor=SYSTEM,
            area_unit_id=area,
            start=start,
            end=end,
            category=category,
            channel=channel,
        )
        want = _expected(facts, start, end, {**match, "category": category, "channel": channel}, child)
        assert _got(got) == want, (start, end, area, category, channel)
        assert len(got.by_day) == (end - start).days + 1


def test_unit_rates_over_any_period_equal_a_count_of_the_facts(session: Session, loaded: Any) -> None:
    facts = _facts(session)
    for start, end in _periods(seed=4, n=6):
        got = {
            r.unit_id: (r.received, r.completed)
            for r in service.unit_rates(session=session, actor=SYSTEM, unit_ids=None, start=start, end=end)
        }
        want: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for f in facts:
            if start <= f["day"] <= end and f["unit_id"]:
                want[f["unit_id"]][0] += f["received"]
                want[f["unit_id"]][1] += f["completed"]
        assert got == {u: tuple(v) for u, v in want.items()}, (start, end)


def _table_rows(session: Session, table: Any) -> set[tuple[Any, ...]]:
    return {
        tuple(sorted(r.items()))
        for r in session.execute(select(table)).mappings()
        if any(r[m] for m in MEASURES)
    }


def test_month_rows_equal_the_day_rows_summed_by_month(session: Session, loaded: Any) -> None:
    upkept = {t.name: _table_rows(session, t) for t, _ in rollup.MONTH_ROLLUPS}
    assert all(upkept.values())
    assert {r[0] for r in session.execute(select(rollup.MONTH_ROLLUPS[0][0].c.month))} == {
        date(2026, m, 1) for m in (7, 8, 9, 10, 11)
    }
    rollup.rollups_from_facts(session)  # day rows from the facts, month rows grouped from the day rows
    assert {t.name: _table_rows(session, t) for t, _ in rollup.MONTH_ROLLUPS} == upkept


def test_whole_months_of_a_period() -> None:
    assert spans.whole_months(date(2026, 1, 1), date(2026, 1, 31)) == (date(2026, 1, 1), date(2026, 2, 1))
    assert spans.whole_months(date(2026, 1, 2), date(2026, 1, 31)) is None
    assert spans.whole_months(date(2026, 1, 15), date(2026, 3, 14)) == (date(2026, 2, 1), date(2026, 3, 1))
    assert spans.whole_months(date(2025, 12, 1), date(2026, 2, 28)) == (date(2025, 12, 1), date(2026, 3, 1))
    assert spans.whole_months(date(2024, 2, 29), date(2024, 2, 29)) is None
    assert spans.next_month(date(2024, 12, 31)) == date(2025, 1, 1)


def test_the_migration_fills_the_new_rollups_from_the_day_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    from xihu.core.db import make_engine
    from xihu.core.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        geo = synthetic.Geography(streets=[(1, [11, 12]), (2, [21])], units=[5, 6])
        plan = synthetic.Plan(start=date(2026, 1, 20), days=70, per_day=6, seed=2)
        with Session(engine) as s:
            synthetic.load(s, list(synthetic.generate(plan, geo)))
            s.commit()
            upkept = {t.name: _table_rows(s, t) for t, _ in rollup.ROLLUPS}
        assert all(upkept.values())
        # Back to the revision before: the new tables go; upgrading refills them from the day rows alone.
        command.downgrade(alembic_config(url), "f9a1c0de0009")
        command.upgrade(alembic_config(url), "heads")
        with Session(engine) as s:
            assert {t.name: _table_rows(s, t) for t, _ in rollup.ROLLUPS} == upkept
    finally:
        engine.dispose()
