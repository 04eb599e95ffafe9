"""Set up a database for the platform: the schema, then the reference data every district needs."""

from __future__ import annotations

from xihu.core.config import get_settings
from xihu.core.errors import DomainError


def migrate_and_seed() -> str:
    """Bring the database to the current schema and load the reference units, default 权责清单 and indicator
    catalog (each only once); a one-line Chinese/English summary."""
    from xihu import registry as _models  # noqa: F401 - every table, so foreign keys resolve
    from xihu.core.db import make_engine, make_session_factory, unit_of_work
    from xihu.core.migrate import upgrade
    from xihu.dispatch import responsibility
    from xihu.indicators import service as indicators_service
    from xihu.places import service as places_service

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            added = places_service.load_reference(session=session)
            rules = responsibility.seed_defaults(session=session)
            indicators = indicators_service.load_catalog(session=session)
            observations = indicators_service.load_observations(session=session)
    finally:
        engine.dispose()
    return (
        f"数据库已是最新结构 (schema is current); 新增参考单位 (reference units added): {added}; "
        f"新增权责规则 (responsibility rules added): {rules}; "
        f"新增指标 (indicators added): {indicators}; 新增指标数据 (observations added): {observations}"
    )


class SchemaNotReady(DomainError):
    """The PostgreSQL database has not been brought to the current schema by `xihu migrate`."""

    status_code = 503
    code = "schema_not_ready"


def ensure_schema() -> str | None:
    """Before a command that uses the database: set up a new or older SQLite database (the embedded default,
    as `make demo` would) and say so; refuse a PostgreSQL database that `xihu migrate` has not updated.

    Returns the summary when it migrated, else None.
    """
    from xihu.core.migrate import is_current

    settings = get_settings()
    if is_current(settings.database_url):
        return None
    if not settings.is_sqlite:
        raise SchemaNotReady(
            "数据库结构不是最新：请先运行 xihu migrate",
            english="the database schema is not current: run xihu migrate",
        )
    return migrate_and_seed()


def ready_or_exit() -> None:
    """For the command line: `ensure_schema`, saying on stderr when it set the database up (stdout may be a
    command's JSON answer); a PostgreSQL schema not brought up to date, or a database out of reach, ends the
    command with a Chinese message instead of a traceback."""
    import typer
    from sqlalchemy.exc import OperationalError

    try:
        done = ensure_schema()
    except DomainError as exc:
        typer.secho(exc.message, err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from exc
    except OperationalError as exc:
        typer.secho(f"无法连接数据库 (cannot reach the database): {exc.orig}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from exc
    if done:
        typer.echo(f"首次使用，已初始化数据库 (first use: database set up)。{done}", err=True)
