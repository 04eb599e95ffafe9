"""Backup and restore of the whole platform: the database and the files beside it (photos, models, imports).

An archive is a gzipped tar holding `manifest.json`, the database (`database.sqlite3`, made with SQLite's
online backup API so it is consistent while the service runs, or `database.pgdump`, made by `pg_dump -Fc`)
and `files/<dir>/...` for each data directory. Restoring puts the database back (SQLite's backup API in the
other direction, or `pg_restore --clean --if-exists --single-transaction`) and replaces those directories.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.engine import URL

from xihu.core import clock
from xihu.core.config import Settings
from xihu.core.errors import Invalid

FORMAT = 1
# Directories of the data dir that belong to the platform's state (the SQLite file is taken separately).
DATA_DIRS = ("uploads", "models", "imports")
MANIFEST = "manifest.json"


class BackupError(RuntimeError):
    """A backup or restore step failed (the message says which, in Chinese and English)."""


@dataclass(frozen=True)
class BackupInfo:
    """What an archive holds."""

    path: Path
    backend: str
    files: int
    created_at: str


def _sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        raise BackupError("无法备份内存数据库 (cannot back up an in-memory database)")
    return Path(database)


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment that carries the password."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600, check=False)
    except FileNotFoundError as exc:
        raise BackupError(f"找不到 {args[0]}，请安装 PostgreSQL 客户端 ({args[0]} not found)") from exc
    if done.returncode != 0:
        raise BackupError(f"{what}失败 ({args[0]} exited {done.returncode}): {done.stderr.strip()[-2000:]}")


def _dump_database(settings: Settings, folder: Path) -> str:
    """Write the database into the folder; returns its file name."""
    if settings.is_sqlite:
        target = folder / "database.sqlite3"
        src = sqlite3.connect(_sqlite_path(settings))
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # a consistent copy even while other processes write (WAL included)
        finally:
            dst.close()
            src.close()
        return target.name
    url = make_url(settings.database_url)
    if not url.drivername.startswith("postgresql"):
        raise BackupError(f"不支持的数据库 (unsupported database): {url.drivername}")
    target = folder / "database.pgdump"
    uri, env = _libpq(url)
    _run(
        ["pg_dump", "--format=custom", "--no-owner", f"--file={target}", f"--dbname={uri}"], env, "数据库导出"
    )
    return target.name


def backup(*, settings: Settings, output: Path | None = None) -> BackupInfo:
    """Write a complete backup archive; by default into <data_dir>/backups/xihu-<UTC time>.tar.gz."""
    now = clock.now()
    if output is None:
        output = settings.data_dir / "backups" / f"xihu-{now:%Y%m%dT%H%M%SZ}.tar.gz"
    output.parent.mkdir(parents=True, exist_ok=True)
    files = 0
    with tempfile.TemporaryDirectory(prefix="xihu-backup-") as tmp:
        folder = Path(tmp)
        db_name = _dump_database(settings, folder)
        partial = output.with_name(output.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(folder / db_name, arcname=db_name)
            for name in DATA_DIRS:
                source = settings.data_dir / name
                if source.is_dir():
                    tar.add(source, arcname=f"files/{name}")
                    files += sum(1 for p in source.rglob("*") if p.is_file())
            manifest = {
                "format": FORMAT,
                "backend": "sqlite" if settings.is_sqlite else "postgresql",
                "database": db_name,
                "data_dirs": [n for n in DATA_DIRS if (settings.data_dir / n).is_dir()],
                "files": files,
                "created_at": now.isoformat(),
            }
            blob = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(blob)
            info.mtime = int(now.timestamp())
            tar.addfile(info, io.BytesIO(blob))
        partial.replace(output)  # a crash mid-backup never leaves a truncated archive under the real name
    return BackupInfo(path=output, backend=str(manifest["backend"]), files=files, created_at=now.isoformat())


def read_manifest(archive: Path) -> dict[str, object]:
    """The manifest of an archive (to show what a restore would bring back)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest: dict[str, object] = json.loads(member.read())
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise Invalid(
            "不是有效的备份文件 (not a backup archive)", english=f"not a backup archive: {exc}"
        ) from exc
    if manifest.get("format") != FORMAT:
        raise Invalid("备份文件版本不受支持", english=f"unsupported archive format {manifest.get('format')}")
    return manifest


def restore(*, settings: Settings, archive: Path) -> BackupInfo:
    """Put the database and the data directories back as they were in the archive (replacing them)."""
    manifest = read_manifest(archive)
    backend = "sqlite" if settings.is_sqlite else "postgresql"
    if manifest["backend"] != backend:
        raise Invalid(
            f"备份来自 {manifest['backend']}，不能恢复到 {backend}",
            english=f"archive is from {manifest['backend']}, target is {backend}",
        )
    with tempfile.TemporaryDirectory(prefix="xihu-restore-") as tmp:
        folder = Path(tmp)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")  # no absolute paths, no '..', no device files
        db_file = folder / str(manifest["database"])
        if settings.is_sqlite:
            target = _sqlite_path(settings)
            target.parent.mkdir(parents=True, exist_ok=True)
            src = sqlite3.connect(db_file)
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)  # page by page under SQLite's lock, so a reader never sees half a database
            finally:
                dst.close()
                src.close()
        else:
            uri, env = _libpq(make_url(settings.database_url))
            _run(
                [
                    "pg_restore",
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--single-transaction",
                    f"--dbname={uri}",
                    str(db_file),
                ],
                env,
                "数据库恢复",
            )
        for name in DATA_DIRS:
            target_dir = settings.data_dir / name
            source = folder / "files" / name
            if target_dir.exists():
                shutil.rmtree(target_dir)
            if source.is_dir():
                shutil.copytree(source, target_dir)
    return BackupInfo(
        path=archive,
        backend=backend,
        files=int(str(manifest["files"])),
        created_at=str(manifest["created_at"]),
    )
