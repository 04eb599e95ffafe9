"""Training fits with no transaction open: on SQLite a transaction holds the one write lock, and a fit on real
data takes about 25 s, during which a running server could not take a single appeal (44 s measured)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from xihu.core.config import get_settings
from xihu.core.db import make_engine, make_session_factory, unit_of_work
from xihu.core.migrate import upgrade
from xihu.core.security import Actor
from xihu.dispatch import training

ADMIN = Actor.system("测试管理员")


def test_retraining_in_steps_leaves_the_database_writable_while_it_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XIHU_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XIHU_DEMO", "1")  # the migrations encrypt personal data with the demo key
    get_settings.cache_clear()
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    # another process's connection, as a server's would be: it gives up on a held lock after 0.2 s
    other = create_engine(url, connect_args={"timeout": 0.2})
    try:
        with unit_of_work(factory) as session:
            training.train_version(
                session=session, actor=ADMIN, rows=training.demo_rows(), data_dir=tmp_path, activate=True
            )
        with other.begin() as conn:
            conn.execute(text("CREATE TABLE intake (n INTEGER)"))
        written: list[str] = []

        def write_while_fitting(step: str) -> None:
            if step.startswith("cross-validation fold 2"):
                with other.begin() as conn:
                    conn.execute(text("INSERT INTO intake VALUES (1)"))
                written.append(step)

        version = training.retrain_in_steps(
            factory, actor=ADMIN, data_dir=tmp_path, progress=write_while_fitting
        )
        assert written and not version.active

        # what the background job and the CLI did before: fit inside the transaction, and the write waits
        with pytest.raises(OperationalError, match="locked"), unit_of_work(factory) as session:
            training.retrain(session=session, actor=ADMIN, data_dir=tmp_path, progress=write_while_fitting)
        with other.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM intake")) == 1
    finally:
        other.dispose()
        engine.dispose()
        get_settings.cache_clear()
