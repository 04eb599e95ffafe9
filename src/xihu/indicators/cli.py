"""`xihu indicators ...`: export the indicator list."""

from __future__ import annotations

import csv
import enum
import io
from pathlib import Path

import typer

from xihu.indicators.schemas import IndicatorRead

app = typer.Typer(help="共富指标体系 (indicators): 导出", no_args_is_help=True)

COLUMNS = tuple(IndicatorRead.model_fields)


class Format(enum.StrEnum):
    """Export formats."""

    csv = "csv"
    xlsx = "xlsx"


def _rows() -> list[IndicatorRead]:
    from xihu import registry as _models  # noqa: F401 - every table, so foreign keys resolve
    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory, unit_of_work
    from xihu.indicators import service as indicators_service

    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return indicators_service.list_indicators(session=session)
    finally:
        engine.dispose()


def _cells(row: IndicatorRead) -> list[object]:
    data = row.model_dump()
    return ["" if data[c] is None else data[c] for c in COLUMNS]


@app.command()
def export(
    format: Format = typer.Option(Format.csv, "--format", help="csv 或 xlsx"),  # noqa: A002 - the option's name
    out: Path | None = typer.Option(None, "--out", help="输出文件 (默认: csv 输出到标准输出)"),
) -> None:
    """Export every indicator with target, latest value and status."""
    rows = _rows()
    if format == Format.xlsx:
        from openpyxl import Workbook

        if out is None:
            raise typer.BadParameter("xlsx 需要 --out 文件路径", param_hint="--out")
        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = "indicators"
        sheet.append(list(COLUMNS))
        for row in rows:
            sheet.append(_cells(row))
        book.save(out)
        typer.echo(f"已导出 {len(rows)} 项指标到 {out}")
        return
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(_cells(row))
    if out is None:
        typer.echo(buf.getvalue(), nl=False)
    else:
        out.write_text(buf.getvalue(), encoding="utf-8")
        typer.echo(f"已导出 {len(rows)} 项指标到 {out}")
