"""`xihu backup` and `xihu restore`: a round trip brings back the database and the files exactly, on SQLite
and on PostgreSQL (into a database of the test's own); broken or foreign archives are refused."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, make_url, select, text
from typer.testing import CliRunner

import factories
from conftest import DATABASE_URL
from xihu.appeals.models import Appeal
from xihu.core import audit, backup
from xihu.core.config import Settings, get_settings
from xihu.core.db import make_engine, make_session_factory, unit_of_work
from xihu.core.errors import Invalid
from xihu.core.migrate import upgrade

PHOTO = b"\xff\xd8\xff\xe0 not really a jpeg, but bytes to compare"


def _fill(url: str, data_dir: Path) -> str:
    """A migrated database with the reference units and one appeal, plus a photo and a model file."""
    from xihu.places import service as places_service

    upgrade(url)
    engine = make_engine(url)
    with unit_of_work(make_session_factory(engine)) as session:
        places_service.load_reference(session=session)
        code = factories.submitted(session, description="备份测试：路灯坏了很多天").tracking_code
    engine.dispose()
    (data_dir / "uploads").mkdir(parents=True, exist_ok=True)
    (data_dir / "uploads" / "p1.jpg").write_bytes(PHOTO)
    (data_dir / "models" / "v1").mkdir(parents=True, exist_ok=True)
    (data_dir / "models" / "v1" / "model.json").write_text('{"version": 1}', encoding="utf-8")
    return code


def _codes(url: str) -> dict[str, str]:
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        codes = {a.tracking_code: a.description for a in session.scalars(select(Appeal))}
        assert audit.verify(session=session).ok
    engine.dispose()
    return codes


def _damage(url: str, data_dir: Path) -> None:
    """After the backup: an appeal changed, another added, a photo deleted, a new file written."""
    engine = make_engine(url)
    with unit_of_work(make_session_factory(engine)) as session:
        session.execute(text("UPDATE appeals SET description = '备份之后被改坏的内容'"))
        factories.submitted(session, description="备份之后才提交的诉求，恢复后应当不见")
    engine.dispose()
    (data_dir / "uploads" / "p1.jpg").unlink()
    (data_dir / "uploads" / "later.jpg").write_bytes(b"later")


def _round_trip(url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _fill(url, data_dir)
    monkeypatch.setenv("XIHU_DATABASE_URL", url)
    monkeypatch.setenv("XIHU_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    from xihu.cli import app

    runner = CliRunner()
    archive = data_dir.parent / "backup.tar.gz"
    made = runner.invoke(app, ["backup", "--output", str(archive)])
    assert made.exit_code == 0, made.output
    assert archive.is_file()
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "files/uploads/p1.jpg", "files/models/v1/model.json"} <= names
    _damage(url, data_dir)
    assert len(_codes(url)) == 2
    refused = runner.invoke(app, ["restore", str(archive)], input="n\n")
    assert refused.exit_code != 0  # without --yes it asks, and "no" changes nothing
    assert len(_codes(url)) == 2
    restored = runner.invoke(app, ["restore", str(archive), "--yes"])
    assert restored.exit_code == 0, restored.output
    assert _codes(url) == {code: "备份测试：路灯坏了很多天"}
    assert (data_dir / "uploads" / "p1.jpg").read_bytes() == PHOTO
    assert not (data_dir / "uploads" / "later.jpg").exists()
    assert (data_dir / "models" / "v1" / "model.json").read_text(encoding="utf-8") == '{"version": 1}'


@pytest.fixture
def _settings_cache() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_sqlite_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _settings_cache: None) -> None:
    """Back up a SQLite platform, lose and change data, restore: everything is as it was at the backup."""
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    _round_trip(f"sqlite:///{data_dir / 'xihu.db'}", data_dir, monkeypatch)


@pytest.mark.skipif(os.environ.get("XIHU_TEST_BACKEND") != "postgresql", reason="needs PostgreSQL")
def test_postgresql_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _settings_cache: None
) -> None:
    """The same with pg_dump/pg_restore, in a database this test creates and drops."""
    name = f"xihu_backup_{os.getpid()}"
    admin = create_engine(make_url(DATABASE_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    try:
        data_dir = tmp_path / "var"
        data_dir.mkdir()
        _round_trip(url, data_dir, monkeypatch)
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(text("units"))).scalar_one() > 200
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_not_an_archive_is_refused(tmp_path: Path) -> None:
    """A file that is not a backup archive is refused before anything is touched."""
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(Invalid):
        backup.read_manifest(junk)


def test_archive_of_the_other_backend_is_refused(tmp_path: Path) -> None:
    """A PostgreSQL dump is not restored into SQLite (or the other way round)."""
    archive = tmp_path / "pg.tar.gz"
    blob = b'{"format": 1, "backend": "postgresql", "database": "db.pgdump", "files": 0, "created_at": "x"}'
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}", demo=True)
    with pytest.raises(Invalid):
        backup.restore(settings=settings, archive=archive)
    assert not (tmp_path / "x.db").exists()


def test_path_traversal_in_an_archive_is_refused(tmp_path: Path) -> None:
    """A crafted archive cannot write outside the restore folder."""
    archive = tmp_path / "evil.tar.gz"
    blob = (
        b'{"format": 1, "backend": "sqlite", "database": "database.sqlite3", "files": 0, "created_at": "x"}'
    )
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("manifest.json", blob), ("../../escaped.txt", b"owned")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    settings = Settings(
        data_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'var' / 'x.db'}", demo=True
    )
    with pytest.raises(tarfile.TarError):
        backup.restore(settings=settings, archive=archive)
    assert not (tmp_path.parent / "escaped.txt").exists()
