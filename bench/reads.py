"""What the read pages cost when one unit has many open appeals: tracking page, the unit's inbox, the cockpit.

Creates a fresh PostgreSQL database (XIHU_BENCH_PG_URL, default the test server), migrates it, loads the demo
data, takes N intakes through the real app in deferred mode (all about a street lamp, so the router gives
them all to one unit), drains the worker's jobs and ANALYZEs (as autovacuum would), then calls each page
through the whole ASGI stack, in process, as a logged-in handler of that unit (inbox) and the district's
admin (cockpit). Prints one JSON line: CPU and wall milliseconds per view. The cockpit is measured twice:
computed for every view (XIHU_COCKPIT_CACHE_SECONDS=0) and as configured (views share a computation).
Usage: python bench/reads.py [--n 15000] [--views 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from intake_profile import PG_URL, _call, _post_many, _street_id, demo_app_deferred, drop_pg
from sqlalchemy import text

PASSWORD = "demo12345"


def _views(app: Any, path: str, headers: dict[str, str], n: int) -> dict[str, float]:
    """CPU and wall milliseconds per view of a page (after three warm-up views)."""

    async def run(count: int) -> None:
        for _ in range(count):
            status, body = await _call(app, "GET", path, b"", headers)
            assert status == 200, (path, status, body[:200])

    asyncio.run(run(3))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    asyncio.run(run(n))
    return {
        "cpu_ms": round((time.process_time() - cpu0) * 1000 / n, 2),
        "wall_ms": round((time.perf_counter() - wall0) * 1000 / n, 2),
    }


def main() -> None:
    """Fill one unit's inbox, then time the read pages; print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=15000)
    parser.add_argument("--views", type=int, default=50)
    args = parser.parse_args()
    app, name = demo_app_deferred("reads")
    try:
        from xihu.core import jobs, security
        from xihu.core.config import get_settings

        factory = app.state.session_factory
        street = asyncio.run(_street_id(app))
        asyncio.run(_post_many(app, street, name, range(args.n)))
        busy = True
        while busy:
            busy = any([fn(factory, "bench") > 0 for fn in jobs.registered().values()])
        with factory() as session:
            session.execute(text("ANALYZE"))
            session.commit()
            top_unit, open_count = session.execute(
                text(
                    "SELECT lead_unit_id, count(*) FROM appeals WHERE state IN "
                    "('submitted', 'dispatched', 'signed', 'handling') GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
                )
            ).one()
            handler = session.execute(
                text("SELECT username FROM users WHERE unit_id = :u AND role = 'handler' LIMIT 1"),
                {"u": top_unit},
            ).scalar_one()
            last = text("SELECT tracking_code FROM appeals ORDER BY id DESC LIMIT 1")
            code = session.execute(last).scalar()

            def cookie(username: str) -> dict[str, str]:
                token, _ = security.login(session=session, username=username, password=PASSWORD, hours=1)
                session.commit()
                return {"cookie": f"xihu_session={token}"}

            handler_cookie, admin_cookie = cookie(handler), cookie("admin")
        result: dict[str, Any] = {
            "bench": "reads",
            "intakes": args.n,
            "open_appeals_of_the_unit": int(open_count),
            "views": args.views,
            "noop": _views(app, "/noop", {}, args.views * 10),
            "track": _views(app, f"/t/{code}", {}, args.views),
            "inbox": _views(app, "/staff", handler_cookie, args.views),
        }
        os.environ["XIHU_COCKPIT_CACHE_SECONDS"] = "0"
        get_settings.cache_clear()
        result["cockpit_computed_each_view"] = _views(app, "/cockpit", admin_cookie, args.views)
        del os.environ["XIHU_COCKPIT_CACHE_SECONDS"]
        get_settings.cache_clear()
        result["cockpit_shared_computation"] = _views(app, "/cockpit", admin_cookie, args.views)
        print(json.dumps(result, ensure_ascii=False), flush=True)
    finally:
        drop_pg(PG_URL, name)


if __name__ == "__main__":
    main()
