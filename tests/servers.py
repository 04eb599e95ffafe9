"""Real servers for tests: `xihu migrate`, `xihu demo --load-only`, `xihu serve` in a subprocess on a free
port with a fresh data folder, on SQLite, or on the PostgreSQL pass a database of the server's own (never a
shared one, since test files run in parallel)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from xihu.core.config import normalize_url

BIN = Path(sys.executable).parent
# Browser tests: Debian's Chromium, where screenshots go, the demo accounts' password, Chromium's flags.
CHROMIUM = Path("/usr/bin/chromium")
# The browser tests take their screenshots under var/ (looked at after a run, never committed by accident);
# XIHU_UPDATE_SCREENSHOTS=1 writes them to docs/screenshots, which the README shows.
SHOTS = Path(__file__).resolve().parents[1] / (
    "docs/screenshots" if os.environ.get("XIHU_UPDATE_SCREENSHOTS") == "1" else "var/screenshots"
)
DEMO_PASSWORD = "demo12345"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XIHU = str(BIN / "xihu")


def server_database(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """(database URL, cleanup) for a server under test."""
    if os.environ.get("XIHU_TEST_BACKEND") != "postgresql":
        return f"sqlite:///{data_dir / 'xihu.db'}", lambda: None
    admin_url = normalize_url(os.environ["XIHU_TEST_DATABASE_URL"])
    name = f"xihu_srv_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"server not healthy in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def demo_server(prefix: str, appeals: int = 20, **settings: str) -> Iterator[dict[str, Any]]:
    """A running server with demo data; yields base URL, folder, environment and the xihu command."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    port = _free_port()
    database_url, drop_database = server_database(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIHU_")}
    env.update(
        XIHU_DATA_DIR=str(tmp),
        XIHU_DEMO="1",
        XIHU_DATABASE_URL=database_url,
        XIHU_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        **settings,
    )
    proc = None
    try:
        for args in (["migrate"], ["demo", "--load-only", "--appeals", str(appeals)]):
            done = subprocess.run([XIHU, *args], env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (
                f"xihu {' '.join(args)} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        log = tmp / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [XIHU, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, proc, log)
        yield {"base": base, "tmp": tmp, "env": env, "xihu": XIHU}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        drop_database()


def staff_page(browser: Any, base: str, username: str) -> tuple[Any, list[str]]:
    """A desktop page (zh-CN, Asia/Shanghai) logged in as a demo account, and the list of its JS errors."""
    ctx = browser.new_context(
        viewport={"width": 1366, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/staff$"))
    return page, errors
