"""Server time of the district cockpit page (/cockpit) with many appeals in the database.

Builds a fresh database of its own (SQLite in a temporary folder, or --database-url for PostgreSQL), bulk
inserts N appeals spread over the last 365 days across the streets, communities, categories and states,
recounts the analysis rollups from them (what the cockpit reads), then requests /cockpit as a logged-in
leader through the real application in-process and prints one JSON line:
{"bench": "cockpit_district", "appeals": N, "p50_ms": ..., "p99_ms": ..., ...}

The appeals carry no SLA deadline rows (on-time rates are then empty); the page's cost does not depend on
them, because it reads the day x category x area rollups, not the appeals.

    .venv/bin/python bench/cockpit.py --appeals 1000000 --requests 60
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def main() -> None:
    """Run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--appeals", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--chunk", type=int, default=20_000)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="xihu-bench-cockpit-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    os.environ.update(
        XIHU_DATA_DIR=str(tmp), XIHU_DATABASE_URL=url, XIHU_DEMO="1", XIHU_IN_PROCESS_WORKER="0"
    )

    from fastapi.testclient import TestClient
    from sqlalchemy import insert

    from xihu import registry as _models  # noqa: F401 - every table
    from xihu.analysis import service as analysis_service
    from xihu.appeals.models import Appeal
    from xihu.core import clock
    from xihu.core.config import Settings
    from xihu.core.db import make_engine, make_session_factory, unit_of_work
    from xihu.core.migrate import upgrade
    from xihu.core.security import Actor, Role, create_user
    from xihu.indicators import service as indicators_service
    from xihu.places import service as places_service
    from xihu.places.enums import UnitKind
    from xihu.web.app import create_app

    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        places_service.load_reference(session=session)
        indicators_service.load_catalog(session=session)
        indicators_service.load_observations(session=session)
        district = places_service.get_unit_by_code(session=session, code="330106")
        create_user(
            session=session,
            username="bench_leader",
            password="bench-password",
            display_name="压测领导",
            role=Role.leader,
            unit_id=district.id,
        )
        streets = places_service.list_units(session=session, kinds=[UnitKind.street])
        communities = {
            s.id: [
                c.id
                for c in places_service.list_units(
                    session=session, kinds=[UnitKind.community, UnitKind.village], parent_id=s.id
                )
            ]
            for s in streets
        }
        departments = [u.id for u in places_service.list_units(session=session, kinds=[UnitKind.department])]

    rng = random.Random(7)
    categories = [
        "城乡建设",
        "环境保护",
        "交通运输",
        "教育文体",
        "劳动和社会保障",
        "卫生计生",
        "商贸旅游",
        "公安司法",
    ]
    states = ["closed"] * 6 + ["rated"] * 2 + ["handling", "signed", "dispatched", "submitted"]
    ratings = ["satisfied", "basic", "satisfied", "unsatisfied"]
    now = clock.now()
    started = time.perf_counter()
    inserted = 0
    while inserted < args.appeals:
        rows = []
        for i in range(inserted, min(inserted + args.chunk, args.appeals)):
            street = rng.choice(streets)
            created = now - timedelta(days=365 * rng.random() ** 1.5, minutes=rng.randint(0, 1440))
            state = rng.choice(states)
            done = state in ("closed", "rated")
            category = rng.choice(categories)
            rows.append(
                {
                    "tracking_code": f"XB{i:010d}",
                    "channel": rng.choice(["web", "qr", "hotline", "wechat"]),
                    "title": f"{category}问题反映",
                    "description": f"{street.name}{category}相关诉求，压测数据 {i}",
                    "category": category,
                    "priority": "normal",
                    "state": state,
                    "street_id": street.id,
                    "community_id": rng.choice(communities[street.id] or [None]),
                    "address": "",
                    "lead_unit_id": rng.choice(departments) if state != "submitted" else None,
                    "rating": rng.choice(ratings) if state == "closed" and rng.random() < 0.6 else None,
                    "reopen_count": 0,
                    "return_count": 0,
                    "flagged": False,
                    "created_at": created,
                    "updated_at": created,
                    "dispatched_at": created + timedelta(minutes=20) if state != "submitted" else None,
                    "signed_at": created + timedelta(hours=2)
                    if state not in ("submitted", "dispatched")
                    else None,
                    "completed_at": created + timedelta(days=2) if done else None,
                    "closed_at": created + timedelta(days=3) if state == "closed" else None,
                }
            )
        with unit_of_work(factory) as session:
            session.execute(insert(Appeal), rows)
        inserted += len(rows)
        print(f"inserted {inserted}", file=sys.stderr, flush=True)
    insert_s = time.perf_counter() - started

    started = time.perf_counter()
    with unit_of_work(factory) as session:
        counted = analysis_service.rebuild(session=session, actor=Actor.system("压测"))
    rebuild_s = time.perf_counter() - started
    print(f"rollups rebuilt from {counted} appeals in {rebuild_s:.0f} s", file=sys.stderr, flush=True)
    engine.dispose()

    settings = Settings(
        data_dir=tmp, database_url=url, demo=True, in_process_worker=False, rate_limit_per_minute=0
    )
    app = create_app(settings)
    gc.freeze()  # as xihu.web.asgi does in every uvicorn worker
    timings: list[float] = []
    with TestClient(app) as client:
        resp = client.post("/api/auth/login", json={"username": "bench_leader", "password": "bench-password"})
        assert resp.status_code == 200, resp.text
        first = client.get("/cockpit")
        assert first.status_code == 200 and "共同富裕驾驶舱" in first.text, first.text[:500]
        for _ in range(args.requests):
            t0 = time.perf_counter()
            resp = client.get("/cockpit")
            timings.append((time.perf_counter() - t0) * 1000)
            assert resp.status_code == 200
    timings.sort()
    p99 = timings[min(len(timings) - 1, round(0.99 * (len(timings) - 1)))]
    print(
        json.dumps(
            {
                "bench": "cockpit_district",
                "backend": url.split(":", 1)[0],
                "appeals": args.appeals,
                "requests": args.requests,
                "p50_ms": round(statistics.median(timings), 1),
                "p99_ms": round(p99, 1),
                "max_ms": round(timings[-1], 1),
                "insert_s": round(insert_s, 1),
                "rollup_rebuild_s": round(rebuild_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
