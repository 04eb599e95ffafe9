"""The command line on a machine where nothing was set up yet: a new SQLite database is set up by the first
command that needs it; a PostgreSQL database `xihu migrate` has not updated is refused with that advice."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from servers import XIHU, server_database

PASSWORD = "Xihu-first-run-2026"


def _runner(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIHU_")}  # outside demo mode, no PII key
    env.update(XIHU_DATA_DIR=str(tmp_path / "var"), XIHU_DATABASE_URL=url)

    def xihu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([XIHU, *args], env=env, capture_output=True, text=True, timeout=300)

    return xihu


def test_the_first_command_that_needs_the_database_sets_it_up(tmp_path: Path) -> None:
    url, drop = server_database(tmp_path)
    xihu = _runner(tmp_path, url)
    try:
        shown = xihu("users", "create", "--help")
        assert shown.returncode == 0 and "首次使用" not in shown.stderr
        assert not (tmp_path / "var").exists() or not any(
            (tmp_path / "var").iterdir()
        )  # help touches nothing
        if not url.startswith("sqlite"):
            refused = xihu("users", "create", "boss", "admin", "--password", PASSWORD)
            assert refused.returncode == 1 and "请先运行 xihu migrate" in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr and "已创建账号" not in refused.stdout
            assert xihu("migrate").returncode == 0
        made = xihu("users", "create", "boss", "admin", "--password", PASSWORD)
        assert made.returncode == 0, made.stderr
        assert "已创建账号 boss" in made.stdout
        assert ("首次使用" in made.stderr) == url.startswith("sqlite")
        again = xihu("users", "create", "clerk", "intake", "--password", PASSWORD)
        assert again.returncode == 0 and "首次使用" not in again.stderr
    finally:
        drop()


def test_an_unreachable_database_is_reported_without_a_traceback(tmp_path: Path) -> None:
    xihu = _runner(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    failed = xihu("users", "create", "boss", "admin", "--password", PASSWORD)
    assert failed.returncode == 1 and "无法连接数据库" in failed.stderr and "Traceback" not in failed.stderr
