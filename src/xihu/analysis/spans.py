"""Reading a period from the rollups: whole calendar months from the month rows, edge days from the day rows.

A year of a street's community figures is then ~12 month rows per key instead of ~365 day rows, and three
years ~36, while the sums are exactly those of the day rows (both are upkept by the same statements).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import Subquery, Table, select, union_all

from xihu.analysis.models import MEASURES
from xihu.analysis.rollup import MONTH_OF


def next_month(day: date) -> date:
    """The first day of the month after the one of `day`."""
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def whole_months(start: date, end: date) -> tuple[date, date] | None:
    """[first, stop) of the calendar months lying wholly inside [start, end], or None if there is none."""
    first = start if start.day == 1 else next_month(start)
    stop = (end + timedelta(days=1)).replace(day=1)
    return (first, stop) if first < stop else None


def _where(table: Table, match: dict[str, Any]) -> list[Any]:
    return [table.c[k] == v for k, v in match.items() if v is not None]


def span(day_model: Any, start: date, end: date, match: dict[str, Any], columns: list[str]) -> Subquery:
    """The rows of a day rollup over [start, end] where `match` holds, as `columns` + the measures.

    Whole months come from the month twin of the rollup, the partial months at either edge from its day rows;
    summing the result gives exactly what summing the day rows would.
    """
    day_table: Table = day_model.__table__
    month_table = MONTH_OF[day_table]

    def part(table: Table, key: str, lo: date, hi: date) -> Any:
        cols = [table.c[c] for c in columns] + [table.c[m] for m in MEASURES]
        return select(*cols).where(table.c[key] >= lo, table.c[key] < hi, *_where(table, match))

    months = whole_months(start, end)
    stop = end + timedelta(days=1)
    if months is None:
        return part(day_table, "day", start, stop).subquery()
    first, last = months
    parts = [part(month_table, "month", first, last)]
    if start < first:
        parts.append(part(day_table, "day", start, first))
    if last < stop:
        parts.append(part(day_table, "day", last, stop))
    return union_all(*parts).subquery()
