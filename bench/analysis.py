"""Analysis at city scale: rollup upkeep per appeal event, analysis and cockpit queries, a full detector run.

Creates a database of its own (PostgreSQL: a new database next to --pg-url, dropped at the end even when
the run fails or is killed; SQLite: a temporary file), migrates it, and writes N generated appeals over
--years years straight into the analysis tables: the per-appeal fact rows generated inside PostgreSQL by
INSERT ... SELECT FROM generate_series in chunks of a million (10M in a few minutes), or from Python by
executemany on SQLite; then the day rollups by one GROUP BY each over those facts and the month rollups from
the day rows, which is exactly what the event-driven upkeep adds up one appeal at a time.
Then it measures:

* upkeep: real appeals driven through submit → dispatch → sign → start → complete → rate with the real
  services; each step's rollup upkeep (facts re-read, fact row written, rollup upserts) is timed;
* queries: the analysis JSON API, the analysis page and the cockpit-style figures (district, street,
  community; 30 days and a year), through the real application in-process as a logged-in supervisor,
  server time p50/p99 over --requests requests;
* detectors: one full run of every detector on the last day.

Prints one JSON line. Examples:

    .venv/bin/python bench/analysis.py --backend postgresql --appeals 1000000
    .venv/bin/python bench/analysis.py --backend sqlite --appeals 1000000
    # keep the database, then measure again on it (and drop it) without regenerating:
    .venv/bin/python bench/analysis.py --appeals 10000000 --keep
    .venv/bin/python bench/analysis.py --appeals 10000000 --reuse postgresql+psycopg://postgres@127.0.0.1:5432/NAME
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

FACT_COLUMNS = (
    "appeal_id",
    "day",
    "category",
    "street_id",
    "community_id",
    "channel",
    "unit_id",
    "place_id",
    "cell",
    "phone_hash",
    "received",
    "open",
    "completed",
    "complete_due",
    "completed_on_time",
    "sign_due",
    "signed_on_time",
    "rated",
    "satisfied",
    "unsatisfied",
)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _create_pg(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    name = f"xihu_bench_analysis_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def _drop_pg(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# One appeal per row of generate_series; the random draws of a row are made once in the inner select.
_PG_FACTS = """
INSERT INTO analysis_appeal_facts ({columns})
SELECT id, day, category, street_id, community_id, channel, unit_id, NULL, cell, phone_hash,
       1, (NOT done)::int, done::int, 1, (done AND on_time)::int, 1, on_time::int,
       rated::int, (rated AND NOT unsat)::int, (rated AND unsat)::int
FROM (
  SELECT id, day, category, channel, street_id, community_id, unit_id, cell, phone_hash, done, on_time,
         done AND r_rated < :rated AS rated, r_unsat < :unsat AS unsat
  FROM (
    SELECT g.id,
           CAST(:start AS date) + CAST(floor((g.id - :first) * :days / CAST(:n AS float8)) AS int) AS day,
           CASE {category_case} END AS category,
           CASE {channel_case} END AS channel,
           s.street_id,
           (CAST(:communities AS int[]))[s.offs + CAST(floor(g.r_comm * s.ncomm) AS int)] AS community_id,
           (CAST(:units AS int[]))[1 + CAST(floor(g.r_unit * :n_units) AS int)] AS unit_id,
           round((:lat0 + g.r_lat * :lat_span) / :cell) || ':' || round((:lon0 + g.r_lon * :lon_span) / :cell)
             AS cell,
           substr(md5(CAST(CAST(floor(g.r_phone * :phones) AS bigint) AS text)), 1, 16) AS phone_hash,
           g.r_done < :completed AS done, g.r_on_time < :on_time AS on_time, g.r_rated, g.r_unsat
    FROM (
      SELECT id, random() AS r_cat, random() AS r_chan, random() AS r_street, random() AS r_comm,
             random() AS r_unit, random() AS r_lat, random() AS r_lon, random() AS r_phone,
             random() AS r_done, random() AS r_on_time, random() AS r_rated, random() AS r_unsat
      FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS id
    ) AS g
    JOIN (SELECT * FROM unnest(CAST(:streets AS int[]), CAST(:offsets AS int[]), CAST(:counts AS int[]))
          WITH ORDINALITY AS t(street_id, offs, ncomm, k)) AS s
      ON s.k = 1 + CAST(floor(g.r_street * :n_streets) AS int)
  ) AS drawn
) AS facts
"""


def _weighted_case(column: str, names: tuple[str, ...], weights: tuple[int, ...]) -> str:
    """A CASE over a uniform draw that picks names with the given weights (names are our own constants)."""
    total, acc, parts = sum(weights), 0, []
    for name, weight in zip(names[:-1], weights[:-1], strict=True):
        acc += weight
        parts.append(f"WHEN {column} < {acc / total!r} THEN '{name}'")
    return " ".join(parts) + f" ELSE '{names[-1]}'"


def _load_pg_sql(engine: Any, session_factory: Any, n: int, plan: Any, geo: Any) -> dict[str, Any]:
    """PostgreSQL: generate the facts inside the server (INSERT ... SELECT FROM generate_series, in chunks).

    The secondary indexes of the fact table are dropped for the load and built once at the end (a sorted
    build instead of 10M random inserts into the phone and cell indexes). Days are filled evenly (n / days
    appeals a day); each appeal's title term is one word of its category's vocabulary.
    """
    from sqlalchemy import text

    from xihu.analysis import synthetic
    from xihu.analysis.models import AppealFact

    communities: list[int] = []
    offsets, counts = [], []
    streets = [(sid, comms) for sid, comms in geo.streets if comms]
    for _, comms in streets:
        offsets.append(len(communities) + 1)
        counts.append(len(comms))
        communities.extend(comms)
    sql = _PG_FACTS.format(
        columns=", ".join(FACT_COLUMNS),
        category_case=_weighted_case("g.r_cat", tuple(synthetic.VOCABULARY), synthetic.CATEGORY_WEIGHTS),
        channel_case=_weighted_case("g.r_chan", synthetic.CHANNELS, synthetic.CHANNEL_WEIGHTS),
    )
    params = {
        "start": plan.start,
        "first": plan.first_id,
        "days": plan.days,
        "n": n,
        "communities": communities,
        "streets": [sid for sid, _ in streets],
        "offsets": offsets,
        "counts": counts,
        "n_streets": len(streets),
        "units": geo.units,
        "n_units": len(geo.units),
        "lat0": synthetic.LAT_RANGE[0],
        "lat_span": synthetic.LAT_RANGE[1] - synthetic.LAT_RANGE[0],
        "lon0": synthetic.LON_RANGE[0],
        "lon_span": synthetic.LON_RANGE[1] - synthetic.LON_RANGE[0],
        "cell": 0.003,
        "phones": 7 * plan.phone_pool,
        "completed": plan.completed,
        "on_time": plan.complete_on_time,
        "rated": plan.rated,
        "unsat": plan.unsatisfied,
    }
    table = AppealFact.__table__
    started = time.perf_counter()
    with engine.begin() as conn:
        for index in table.indexes:  # type: ignore[attr-defined]
            index.drop(conn)
    chunk = 1_000_000
    for lo in range(plan.first_id, plan.first_id + n, chunk):
        hi = min(lo + chunk, plan.first_id + n) - 1
        with engine.begin() as conn:
            conn.execute(text(sql), {**params, "lo": lo, "hi": hi})
        print(f"facts {hi - plan.first_id + 1:,} {time.perf_counter() - started:.0f}s", file=sys.stderr)
    facts_s = time.perf_counter() - started
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
        for index in table.indexes:  # type: ignore[attr-defined]
            index.create(conn)
    index_s = time.perf_counter() - started
    vocab = ", ".join(
        f"('{cat}', {k}, {len(words)}, '{word}')"
        for cat, words in synthetic.VOCABULARY.items()
        for k, word in enumerate(words)
    )
    started = time.perf_counter()
    _rollups_in_one_go(session_factory)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL work_mem = '512MB'"))
        conn.execute(
            text(
                "INSERT INTO analysis_rollup_term (day, term, count) "
                "SELECT f.day, v.word, count(*) FROM analysis_appeal_facts AS f "
                f"JOIN (VALUES {vocab}) AS v(category, k, n, word) "
                "ON v.category = f.category AND v.k = f.appeal_id % v.n GROUP BY f.day, v.word"
            )
        )
    return {
        "generated": n,
        "facts_load_s": round(facts_s, 1),
        "fact_index_build_s": round(index_s, 1),
        "rollup_build_s": round(time.perf_counter() - started, 1),
    }


def _rollups_in_one_go(session_factory: Any) -> None:
    """Day rollups by GROUP BY over the facts, month rollups from the day rows (what the upkeep adds up).

    On PostgreSQL the rollups' keys and indexes are dropped for the bulk insert and built afterwards: millions
    of area rows inserted into three B-trees at once would take far longer than sorted builds.
    """
    from sqlalchemy import text

    from xihu.analysis import rollup

    with session_factory() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        tables = [table for table, _ in rollup.ROLLUPS]
        if postgres:
            session.execute(text("SET LOCAL work_mem = '512MB'"))
            session.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
            for table in tables:
                for index in table.indexes:
                    session.execute(text(f"DROP INDEX {index.name}"))
                session.execute(text(f"ALTER TABLE {table.name} DROP CONSTRAINT pk_{table.name}"))
        rollup.rollups_from_facts(session)
        if postgres:
            for table in tables:
                keys = ", ".join(c.name for c in table.primary_key.columns)
                session.execute(
                    text(f"ALTER TABLE {table.name} ADD CONSTRAINT pk_{table.name} PRIMARY KEY ({keys})")
                )
                for index in table.indexes:
                    index.create(session.connection())
        session.commit()


def _load(engine: Any, session_factory: Any, n: int, years: int, postgres: bool) -> dict[str, Any]:
    """Write n generated facts and build the rollups from them; returns timings."""
    from sqlalchemy import text

    from xihu.analysis import rollup, service, synthetic

    with session_factory() as session:
        geo = synthetic.geography(session)
    days = 365 * years
    end = service.today() - timedelta(1)
    plan = synthetic.Plan(
        start=end - timedelta(days - 1), days=days, per_day=n / days, first_id=1_000_000_000
    )
    if postgres:
        load = _load_pg_sql(engine, session_factory, n, plan, geo)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        return load
    terms: dict[Any, int] = {}
    started = time.perf_counter()
    written = 0

    def rows() -> Any:
        nonlocal written
        for r in synthetic.generate(plan, geo):
            for t in r["terms"]:
                key = (r["day"], t)
                terms[key] = terms.get(key, 0) + 1
            written += 1
            yield tuple(r[c] for c in FACT_COLUMNS)

    insert = (
        f"INSERT INTO analysis_appeal_facts ({', '.join(FACT_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in FACT_COLUMNS)})"
    )
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        batch: list[tuple[Any, ...]] = []
        cur.execute("BEGIN")
        for row in rows():
            batch.append(tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in row))
            if len(batch) >= 50_000:
                cur.executemany(insert, batch)
                batch.clear()
        if batch:
            cur.executemany(insert, batch)
        cur.execute("COMMIT")
    finally:
        raw.close()
    facts_s = time.perf_counter() - started
    started = time.perf_counter()
    _rollups_in_one_go(session_factory)
    with session_factory() as session:
        rollup.add_terms(session, terms)
        session.commit()
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
    return {
        "generated": written,
        "facts_load_s": round(facts_s, 1),
        "rollup_build_s": round(time.perf_counter() - started, 1),
    }


def _upkeep(session_factory: Any, samples: int) -> dict[str, Any]:
    """Drive real appeals through their lifecycle; time each event's rollup upkeep."""
    from xihu.analysis import rollup
    from xihu.appeals import service as appeal_service
    from xihu.appeals.enums import Channel, Rating
    from xihu.appeals.schemas import AppealCreate, CompleteIn, DispatchIn, RateIn
    from xihu.core.security import Actor
    from xihu.places import service as places_service

    system = Actor.system("bench")
    upkeep_ms: list[float] = []
    step_ms: list[float] = []

    def step(fn: Any) -> Any:
        session = session_factory()
        try:
            t0 = time.perf_counter()
            result = fn(session)
            t1 = time.perf_counter()
            rollup.apply_pending(session)
            t2 = time.perf_counter()
            session.commit()
            upkeep_ms.append((t2 - t1) * 1000)
            step_ms.append((time.perf_counter() - t0) * 1000)
            return result
        finally:
            session.close()

    with session_factory() as s:
        unit = places_service.get_unit_by_code(session=s, code="D-ZJ").id
    rollup.terms_of("预热分词词典")  # jieba loads its dictionary once per process: not part of an event
    for i in range(samples):
        created = step(
            lambda s, i=i: appeal_service.submit(
                session=s,
                actor=system,
                appeal_in=AppealCreate(
                    description=f"小区门口路灯不亮，已经好几天了，编号{i}",
                    citizen_phone=f"138{i:08d}",
                    lat=30.27,
                    lon=120.12,
                ),
                channel=Channel.web,
                auto_route=False,
            )
        )
        aid, code = created.id, created.tracking_code
        step(
            lambda s, aid=aid: appeal_service.dispatch(
                session=s, actor=system, appeal_id=aid, data=DispatchIn(unit_id=unit, category="城乡建设")
            )
        )
        step(lambda s, aid=aid: appeal_service.sign(session=s, actor=system, appeal_id=aid))
        step(lambda s, aid=aid: appeal_service.start(session=s, actor=system, appeal_id=aid))
        step(
            lambda s, aid=aid: appeal_service.complete(
                session=s, actor=system, appeal_id=aid, data=CompleteIn(reply="已修复，感谢反映")
            )
        )
        step(
            lambda s, code=code: appeal_service.rate(
                session=s, tracking_code=code, data=RateIn(rating=Rating.satisfied)
            )
        )
    return {
        "events": len(upkeep_ms),
        "upkeep_p50_ms": _pct(upkeep_ms, 0.5),
        "upkeep_p99_ms": _pct(upkeep_ms, 0.99),
        "upkeep_mean_ms": round(statistics.mean(upkeep_ms), 2),
        "event_total_p50_ms": _pct(step_ms, 0.5),
    }


def _queries(app: Any, username: str, password: str, requests: int, ids: dict[str, int]) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from xihu.analysis import service

    today = service.today()
    month = (today - timedelta(29)).isoformat()
    year = (today - timedelta(364)).isoformat()
    three_years = (today - timedelta(365 * 3 - 1)).isoformat()
    street, community = ids["street"], ids["community"]
    targets = {
        "api_district_30d": f"/api/analysis/figures?start={month}",
        "api_district_365d": f"/api/analysis/figures?start={year}",
        "api_district_3y": f"/api/analysis/figures?start={three_years}",
        "api_district_365d_category_channel": (
            f"/api/analysis/figures?start={year}&category=环境保护&channel=hotline"
        ),
        "api_street_30d": f"/api/analysis/figures?start={month}&area_unit_id={street}",
        "api_street_365d": f"/api/analysis/figures?start={year}&area_unit_id={street}",
        "api_community_365d": f"/api/analysis/figures?start={year}&area_unit_id={community}",
        "api_unit_rates_30d": f"/api/analysis/unit-rates?start={month}",
        "api_warnings": "/api/warnings?state=active",
        "page_analysis_district_30d": "/staff/analysis",
        "page_analysis_street_365d": f"/staff/analysis?start={year}&area={street}",
        "page_analysis_district_3y": f"/staff/analysis?start={three_years}",
        "page_analysis_street_3y": f"/staff/analysis?start={three_years}&area={street}",
        "page_warnings": "/staff/warnings",
        "page_brief_weekly": "/staff/briefs?kind=weekly",
    }
    out: dict[str, Any] = {}
    with TestClient(app) as client:
        r = client.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        probe = client.get("/cockpit")
        if probe.status_code == 200:
            targets["page_cockpit_district"] = "/cockpit"
            targets["page_cockpit_district_365d"] = "/cockpit?days=365"
            targets["page_cockpit_street_365d"] = f"/cockpit/street/{street}?days=365"
            targets["page_cockpit_community_365d"] = f"/cockpit/community/{community}?days=365"
        for name, url in targets.items():
            for _ in range(2):
                assert client.get(url).status_code == 200, (name, url)
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                resp = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                assert resp.status_code == 200
            out[name] = {"p50_ms": _pct(times, 0.5), "p95_ms": _pct(times, 0.95), "p99_ms": _pct(times, 0.99)}
    return out


def main() -> None:
    """Run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--appeals", type=int, default=0, help="default 10M on PostgreSQL, 1M on SQLite")
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--upkeep-appeals", type=int, default=40)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database (for EXPLAIN); prints its URL")
    parser.add_argument(
        "--reuse",
        default="",
        help="a database kept by --keep: skip the load, measure again (dropped unless --keep)",
    )
    args = parser.parse_args()
    postgres = args.backend == "postgresql"
    # A kill (timeout, another agent) unwinds through the finally below, so the database is still dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n = args.appeals or (10_000_000 if postgres else 1_000_000)
    # With --reuse, XIHU_DATA_DIR may name the first run's directory: its demo key reads that run's appeals.
    given = os.environ.get("XIHU_DATA_DIR") if args.reuse else None
    tmp = Path(given) if given else Path(tempfile.mkdtemp(prefix="xihu-bench-analysis-"))
    pg_name = ""
    if args.reuse:
        url = args.reuse
        pg_name = url.rsplit("/", 1)[1] if postgres else ""
    elif postgres:
        url, pg_name = _create_pg(args.pg_url)
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    os.environ.update(
        XIHU_DATA_DIR=str(tmp), XIHU_DATABASE_URL=url, XIHU_DEMO="1", XIHU_IN_PROCESS_WORKER="0"
    )
    try:
        from xihu import registry as _models  # noqa: F401 - every table
        from xihu.analysis import service as analysis_service
        from xihu.core.config import Settings
        from xihu.core.db import make_engine, make_session_factory, unit_of_work
        from xihu.core.migrate import upgrade
        from xihu.core.security import Actor, Role, create_user
        from xihu.places import service as places_service
        from xihu.places.enums import UnitKind
        from xihu.web.app import create_app

        upgrade(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        with unit_of_work(factory) as s:
            if not args.reuse:
                places_service.load_reference(session=s)
                create_user(
                    session=s,
                    username="bench_sup",
                    password="bench-pass-1",
                    display_name="督办员",
                    role=Role.supervisor,
                    unit_id=None,
                )
            street = places_service.list_units(session=s, kinds=[UnitKind.street])[1]
            community = places_service.list_units(session=s, kinds=[UnitKind.community], parent_id=street.id)[
                0
            ]
        load = {} if args.reuse else _load(engine, factory, n, args.years, postgres)
        print(f"load {json.dumps(load)}", file=sys.stderr)  # kept even if a later phase fails
        upkeep = _upkeep(factory, args.upkeep_appeals)
        t0 = time.perf_counter()
        with unit_of_work(factory) as s:
            detected = analysis_service.run_detectors(session=s, actor=Actor.system("bench"))
        detector_s = time.perf_counter() - t0
        settings = Settings(
            data_dir=tmp, database_url=url, demo=True, in_process_worker=False, rate_limit_per_minute=0
        )
        app = create_app(settings)
        gc.freeze()  # as xihu.web.asgi does in every uvicorn worker
        queries = _queries(
            app, "bench_sup", "bench-pass-1", args.requests, {"street": street.id, "community": community.id}
        )
        engine.dispose()
        worst = max(v["p99_ms"] for v in queries.values())
        print(
            json.dumps(
                {
                    "bench": "analysis",
                    "backend": args.backend,
                    "appeals": n,
                    "years": args.years,
                    **load,
                    **upkeep,
                    "detector_run_s": round(detector_s, 2),
                    "detector_found": detected["found"],
                    "queries": queries,
                    "worst_query_p99_ms": worst,
                    "goal_300ms_met": worst < 300,
                    "worst_query_p50_ms": max(v["p50_ms"] for v in queries.values()),
                    # Other processes share the machine: a high load inflates the tail percentiles.
                    "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
                    "cpus": os.cpu_count(),
                    "python": sys.version.split()[0],
                },
                ensure_ascii=False,
            )
        )
    finally:
        if args.keep:
            print(f"kept: {url}", file=sys.stderr)
        else:
            if postgres and pg_name:
                _drop_pg(args.pg_url, pg_name)
            if not given:
                shutil.rmtree(tmp, ignore_errors=True)  # the SQLite database and the demo key


if __name__ == "__main__":
    main()
