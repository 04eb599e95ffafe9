"""`xihu analysis ...`: rebuild the rollups, run the detectors, write a brief."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import typer
from sqlalchemy.orm import Session

from xihu.core.security import Actor

app = typer.Typer(help="预警和研判 (analysis): 汇总重建、预警研判、日报周报", no_args_is_help=True)


def _actor() -> Actor:
    return Actor.system("命令行")


@contextmanager
def _session() -> Iterator[Session]:
    """A unit of work on the configured database (commits once at the end)."""
    from xihu import registry as _models  # noqa: F401 - every table, so foreign keys resolve
    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory, unit_of_work

    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


@app.command()
def rebuild() -> None:
    """Recount every rollup from the appeals (after an import or a restore)."""
    from xihu.analysis import service

    with _session() as session:
        n = service.rebuild(session=session, actor=_actor())
    typer.echo(f"已重新汇总 {n} 件诉求")


@app.command()
def detect() -> None:
    """Run every detector now and print what was found."""
    from xihu.analysis import service

    with _session() as session:
        result = service.run_detectors(session=session, actor=_actor())
    typer.echo(json.dumps(result, ensure_ascii=False))


@app.command()
def brief(
    out: Path = typer.Argument(..., help="输出文件：.pdf 或 .xlsx"),
    kind: str = typer.Option("daily", help="daily（日报）或 weekly（周报）"),
    day: str = typer.Option("", help="日期 YYYY-MM-DD，默认昨天（日报）或本周（周报）"),
) -> None:
    """Write a 日报 / 周报 as a PDF or an Excel file."""
    from xihu.analysis import briefs, service

    with _session() as session:
        default = service.today() - timedelta(1) if kind == "daily" else service.today()
        b = briefs.build(
            session=session, actor=_actor(), kind=kind, day=date.fromisoformat(day) if day else default
        )
        if out.suffix == ".xlsx":
            out.write_bytes(briefs.to_excel(b))
        elif out.suffix == ".pdf":
            out.write_bytes(briefs.to_pdf(briefs.print_html(b)))
        else:
            raise typer.BadParameter("输出文件须为 .pdf 或 .xlsx")
    typer.echo(f"已写入 {out}")
