"""Statements and CPU per intake, in process, through the real app's whole ASGI stack.

Creates a fresh PostgreSQL database (XIHU_BENCH_PG_URL, default the test server), migrates it, builds the app
in deferred mode (XIHU_DEFER_TO_WORKERS=1 unless --inline) and calls it directly as an ASGI application, one
intake after another (middleware, validation, dependencies, unit of work, JSON; no sockets, no HTTP client),
so the process CPU time divided by the intakes is the server's own cost. Prints one JSON line. For where the
time goes, attach py-spy to a `xihu serve` under load instead (`py-spy record --gil -p PID`).
Usage: python bench/intake_profile.py [--n 1000] [--inline] [--show-sql]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, make_url, text

PG_URL = os.environ.get("XIHU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh_pg(url: str, name: str) -> str:
    """A new, empty PostgreSQL database for this run."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def demo_app_deferred(kind: str) -> tuple[Any, str]:
    """The real app on a new PostgreSQL database with the demo data, in deferred mode; (app, database name).

    Drop the database with `drop_pg(PG_URL, name)` when done.
    """
    name = f"xihu_{kind}_{uuid.uuid4().hex[:8]}"
    url = fresh_pg(PG_URL, name)
    os.environ.update(
        {
            "XIHU_DATA_DIR": tempfile.mkdtemp(prefix=f"xihu-{kind}-"),
            "XIHU_DATABASE_URL": url,
            "XIHU_DEMO": "1",
            "XIHU_RATE_LIMIT_PER_MINUTE": "0",
            "XIHU_IN_PROCESS_WORKER": "0",
            "XIHU_DEFER_TO_WORKERS": "1",
        }
    )
    xihu = str(Path(sys.executable).parent / "xihu")
    try:
        subprocess.run([xihu, "migrate"], check=True, capture_output=True)
        subprocess.run([xihu, "demo", "--load-only", "--appeals", "200"], check=True, capture_output=True)
        from xihu.core.config import get_settings
        from xihu.web.app import create_app

        get_settings.cache_clear()
        return create_app(), name
    except BaseException:
        drop_pg(PG_URL, name)
        raise


def drop_pg(url: str, name: str) -> None:
    """Drop the run's database."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


async def _call(
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: bytes = b"",
) -> tuple[int, bytes]:
    """One request straight into the ASGI app; returns status and body."""
    raw = [(b"host", b"bench"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _street_id(app: Any) -> int:
    status, body = await _call(app, "GET", "/api/units", query=b"kind=street")
    assert status == 200, body
    return next(u["id"] for u in json.loads(body) if u["name"] == "翠苑街道")


async def _post_many(app: Any, street: int, run: str, numbers: range) -> list[int]:
    statuses = []
    for i in numbers:
        body = json.dumps(
            {
                "description": f"翠苑一区小区门口路灯坏了好几天，晚上很黑 #{i}",
                "street_id": street,
                "citizen_phone": "13812345678",
            },
            ensure_ascii=False,
        ).encode()
        headers = {"content-type": "application/json", "idempotency-key": f"prof-{run}-{i}"}
        status, _ = await _call(app, "POST", "/api/appeals", body, headers)
        statuses.append(status)
    return statuses


def main() -> None:
    """Post intakes in process and print one JSON line of statements and CPU per intake."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--inline", action="store_true", help="route and seal in the request (not deferred)")
    parser.add_argument("--show-sql", action="store_true", help="print the statements of one intake")
    args = parser.parse_args()
    name = f"xihu_prof_{uuid.uuid4().hex[:8]}"
    url = fresh_pg(PG_URL, name)
    os.environ.update(
        {
            "XIHU_DATA_DIR": tempfile.mkdtemp(prefix="xihu-prof-"),
            "XIHU_DATABASE_URL": url,
            "XIHU_DEMO": "1",
            "XIHU_RATE_LIMIT_PER_MINUTE": "0",
            "XIHU_IN_PROCESS_WORKER": "0",
            "XIHU_DEFER_TO_WORKERS": "0" if args.inline else "1",
        }
    )
    try:
        from xihu.cli import migrate
        from xihu.core.config import get_settings
        from xihu.web.app import create_app

        get_settings.cache_clear()
        migrate()
        app = create_app()
        statements: list[str] = []

        @event.listens_for(app.state.engine, "before_cursor_execute")
        def _count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        @event.listens_for(app.state.engine, "commit")
        def _count_commit(conn: Any) -> None:
            statements.append("COMMIT")

        street = asyncio.run(_street_id(app))

        def run(n: int, first: int) -> list[int]:
            return asyncio.run(_post_many(app, street, name, range(first, first + n)))

        run(50, -1000)  # warm caches, pools and compiled statements
        statements.clear()
        run(1, 0)
        one = list(statements)
        statements.clear()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        statuses = run(args.n, 1)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        assert set(statuses) == {201}, collections.Counter(statuses)
        statements.clear()
        assert run(1, 1) == [200]  # a repeated key is answered from the stored appeal
        replay_statements = len(statements)
        kinds = collections.Counter(s.split(None, 1)[0].upper() for s in one)
        if args.show_sql:
            for s in one:
                print(" ".join(s.split())[:160], file=sys.stderr)
        print(
            json.dumps(
                {
                    "bench": "intake_profile",
                    "mode": "inline" if args.inline else "deferred",
                    "n": args.n,
                    "statements_per_intake": len(one),
                    "statements_by_kind": dict(kinds),
                    # psycopg sends BEGIN on its own before the first statement: one more round trip
                    "round_trips_per_intake": len(one) + 1,
                    "replay_statements": replay_statements,
                    "cpu_ms_per_intake": round(cpu * 1000 / args.n, 2),
                    "wall_ms_per_intake": round(wall * 1000 / args.n, 2),
                    "python": Path(sys.executable).name,
                },
                ensure_ascii=False,
            ),
            flush=True,
        )
    finally:
        drop_pg(PG_URL, name)


if __name__ == "__main__":
    main()
