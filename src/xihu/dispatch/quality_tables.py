"""The 派单质量 tables: counts per week and per unit, and the same as an Excel workbook."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from xihu.appeals.schemas import DispatchQualityRow

__all__ = ["Tally", "UnitLine", "by_unit", "by_week", "quality_xlsx"]


@dataclass
class Tally:
    """Counts behind 首派准确率 and 回退率 for one unit, one week or both."""

    first: int = 0
    correct: int = 0
    auto: int = 0
    dispatched: int = 0
    returned: int = 0

    def add(self, row: DispatchQualityRow) -> None:
        """Count one unit-week row in."""
        self.first += row.first_dispatched
        self.correct += row.first_correct
        self.auto += row.first_auto
        self.dispatched += row.dispatched
        self.returned += row.returned

    @property
    def accuracy(self) -> float | None:
        """首派准确率, None when nothing was first dispatched."""
        return self.correct / self.first if self.first else None

    @property
    def return_rate(self) -> float | None:
        """回退率, None when nothing was dispatched."""
        return self.returned / self.dispatched if self.dispatched else None


@dataclass
class UnitLine:
    """One unit across the report's weeks."""

    unit_name: str
    total: Tally = field(default_factory=Tally)
    by_week: dict[str, Tally] = field(default_factory=dict)


def by_week(rows: list[DispatchQualityRow]) -> list[tuple[str, Tally]]:
    """District totals per ISO week, newest first."""
    weeks: dict[str, Tally] = {}
    for r in rows:
        weeks.setdefault(r.week, Tally()).add(r)
    return sorted(weeks.items(), reverse=True)


def by_unit(rows: list[DispatchQualityRow]) -> list[UnitLine]:
    """One line per unit with its weeks; the units that returned most (then the least accurate) first.

    Leaders look for the units that bounce appeals: those come first, not an alphabetical list.
    """
    units: dict[int, UnitLine] = {}
    for r in rows:
        line = units.setdefault(r.unit_id, UnitLine(r.unit_name))
        line.total.add(r)
        line.by_week.setdefault(r.week, Tally()).add(r)

    def worst_first(line: UnitLine) -> tuple[int, float, str]:
        accuracy = line.total.accuracy
        return (-line.total.returned, 1.0 if accuracy is None else accuracy, line.unit_name)

    return sorted(units.values(), key=worst_first)


PERCENT = "0.0%"


def quality_xlsx(rows: list[DispatchQualityRow]) -> bytes:
    """The report as a workbook: 按周汇总 (newest week first) and 按单位 (the units that return most
    first, each week's 首派准确率 side by side, oldest to newest).

    Rates are real percentages, left blank when undefined.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font

    weeks = by_week(rows)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "按周汇总"
    sheet.append(["周", "首次派单", "其中智能派单", "首派准确率", "派单总数", "退回", "回退率"])
    for week, t in weeks:
        sheet.append([week, t.first, t.auto, t.accuracy, t.dispatched, t.returned, t.return_rate])
    _percent(sheet, ("D", "G"))
    names = [week for week, _ in reversed(weeks)]
    units = book.create_sheet("按单位")
    units.append(
        ["单位", "首次派单", "首派准确率", "派单总数", "退回", "回退率", *[f"{w} 首派准确率" for w in names]]
    )
    for line in by_unit(rows):
        t = line.total
        week_rates = [line.by_week[w].accuracy if w in line.by_week else None for w in names]
        units.append(
            [line.unit_name, t.first, t.accuracy, t.dispatched, t.returned, t.return_rate, *week_rates]
        )
    _percent(units, ("C", "F", *(_column(7 + i) for i in range(len(names)))))
    units.column_dimensions["A"].width = 22
    for ws in (sheet, units):
        for cell in ws[1]:
            cell.font = Font(bold=True)
    notes = book.create_sheet("说明")
    notes.append(["首派准确率", "首次派单后未被退回、未被转办的比例"])
    notes.append(["回退率", "单位退回件数 ÷ 派给该单位的件数（含转办、重办）"])
    notes.append(["空白", "该周或该单位没有可计算的派单"])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _column(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index)


def _percent(sheet, columns: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    for letter in columns:
        for cell in sheet[letter][1:]:
            cell.number_format = PERCENT
