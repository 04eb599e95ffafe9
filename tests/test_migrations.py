"""Migrations: `alembic upgrade head` builds exactly the models' schema, and `xihu migrate` is idempotent."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from xihu import registry
from xihu.core.config import get_settings
from xihu.core.db import make_engine
from xihu.core.migrate import upgrade


def _differences(engine: Engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(ctx, registry.metadata)


def test_upgrade_head_on_a_fresh_sqlite_database_matches_the_models(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(registry.metadata.tables) <= tables
        assert tables - set(registry.metadata.tables) == {"alembic_version"}
        assert _differences(engine) == []
        # a second upgrade is a no-op
        upgrade(url)
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_the_test_database_was_migrated_to_the_models_schema(engine) -> None:
    """The session's database (SQLite or PostgreSQL) was built by `alembic upgrade head` in conftest."""
    assert _differences(engine) == []


def test_xihu_migrate_twice_is_idempotent(tmp_path, monkeypatch) -> None:
    from xihu.cli import app
    from xihu.places.models import Unit

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("XIHU_DATABASE_URL", url)
    monkeypatch.setenv("XIHU_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        first = runner.invoke(app, ["migrate"])
        assert first.exit_code == 0, first.output
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                units = conn.scalar(select(func.count()).select_from(Unit))
            # 1 district + 12 streets + 222 communities/villages + 222 grids + the departments
            assert units >= 1 + 12 + 222 + 222 + 22
            second = runner.invoke(app, ["migrate"])
            assert second.exit_code == 0, second.output
            assert "'street': 0" in second.output and "'department': 0" in second.output
            with engine.connect() as conn:
                assert conn.scalar(select(func.count()).select_from(Unit)) == units
            assert _differences(engine) == []
        finally:
            engine.dispose()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_long_job_upgrade_fails_old_retraining_runs_and_leaves_recent_ones_to_resume(tmp_path) -> None:
    from datetime import UTC, datetime, timedelta

    from alembic import command
    from sqlalchemy import text

    from xihu.core.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    command.upgrade(alembic_config(url), "b8c9c0de0017")
    engine = create_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for status, age in (("queued", 60), ("running", 20), ("running", 5), ("finished", 60)):
            stamp = (now - timedelta(minutes=age)).strftime("%Y-%m-%d %H:%M:%S.%f")
            conn.execute(
                text(
                    "INSERT INTO dispatch_training_jobs (status, note, created_by, created_at, error)"
                    " VALUES (:s, :n, '', :t, '')"
                ),
                {"s": status, "n": f"{status}-{age}", "t": stamp},
            )
    upgrade(url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT note, status FROM dispatch_training_jobs")).all())
        attempts = conn.scalars(text("SELECT DISTINCT attempts FROM dispatch_training_jobs")).all()
    engine.dispose()
    assert rows == {
        "queued-60": "failed",
        "running-20": "failed",
        "running-5": "running",
        "finished-60": "finished",
    }
    assert attempts == [0]


def test_import_errors_move_to_rows_of_their_own_and_back(tmp_path) -> None:
    from alembic import command
    from sqlalchemy import text

    from xihu.core.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'imports.db'}"
    command.upgrade(alembic_config(url), "c9d0c0de0018")
    engine = create_engine(url)
    listed = '[{"row": 3, "error": "街道「火星街道」不存在"}, {"row": null, "error": "导入中断：磁盘错误"}]'
    with engine.begin() as conn:
        for name, errors in (("a.csv", listed), ("b.csv", "[]")):
            conn.execute(
                text(
                    "INSERT INTO import_jobs (filename, status, total, processed, created_count,"
                    " skipped_count, errors, created_at, claimed_by, attempts)"
                    " VALUES (:f, 'finished', 5, 5, 3, 0, :e, '2026-12-01 00:00:00.000000', '', 1)"
                ),
                {"f": name, "e": errors},
            )
    upgrade(url)
    with engine.connect() as conn:
        moved = conn.execute(
            text(
                "SELECT j.filename, e.row, e.ref, e.error FROM import_row_errors e"
                " JOIN import_jobs j ON j.id = e.job_id ORDER BY e.id"
            )
        ).all()
        assert "errors" not in {c["name"] for c in inspect(conn).get_columns("import_jobs")}
    assert [tuple(r) for r in moved] == [
        ("a.csv", 3, "", "街道「火星街道」不存在"),
        ("a.csv", None, "", "导入中断：磁盘错误"),
    ]
    command.downgrade(alembic_config(url), "c9d0c0de0018")
    with engine.connect() as conn:
        back = dict(conn.execute(text("SELECT filename, errors FROM import_jobs")).all())
    engine.dispose()
    assert {name: json.loads(errors) for name, errors in back.items()} == {
        "a.csv": json.loads(listed),
        "b.csv": [],
    }
