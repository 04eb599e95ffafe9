"""Bring a database to the current schema with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[3]


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the project's migrations and the given database."""
    ini = ROOT / "alembic.ini"
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Migrate the database at `url` to the newest revision."""
    command.upgrade(alembic_config(url), "heads")


def is_current(url: str) -> bool:
    """Whether the database at `url` is at the newest revision (False for a new or empty database).

    A SQLite file that cannot be opened (its folder does not exist yet) is a database still to be made; any
    other connection failure is raised, so that a wrong PostgreSQL address is not taken for an empty one.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads()) == heads
    except OperationalError:
        if url.startswith("sqlite"):
            return False
        raise
    finally:
        engine.dispose()
