"""Cost of the hash-chained audit log: audited commits/s with concurrent writers, and verification rows/s.

Every audited transaction takes the chain lock for its commit (an advisory lock on PostgreSQL), so this is
the ceiling the chain puts on audited writes. Runs on a fresh PostgreSQL database of its own (and SQLite).
Prints one JSON line per backend. Usage: python bench/audit_chain.py [--threads 8] [--commits 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from xihu.core import audit
from xihu.core.audit import AuditEntry
from xihu.core.db import make_engine, make_session_factory
from xihu.core.security import Actor

PG_URL = os.environ.get("XIHU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ACTOR = Actor.system("bench")


def run(url: str, backend: str, threads: int, commits: int) -> dict[str, object]:
    """Time concurrent audited commits, then a full verification, on one database."""
    engine = make_engine(url)
    AuditEntry.metadata.create_all(engine, tables=[AuditEntry.__table__])
    factory = make_session_factory(engine)
    latencies: list[float] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        mine: list[float] = []
        for j in range(commits):
            start = time.perf_counter()
            with factory() as s:
                audit.record(
                    session=s, actor=ACTOR, action="bench.audit", entity="bench", entity_id=f"{k}-{j}"
                )
                s.flush()
                s.commit()
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    with factory() as s:
        report = audit.verify(session=s)
    verify_s = time.perf_counter() - t1
    engine.dispose()
    latencies.sort()
    return {
        "bench": "audit_chain",
        "backend": backend,
        "threads": threads,
        "commits": threads * commits,
        "audited_commits_per_s": round(threads * commits / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "verify_rows_per_s": round(report.checked / verify_s, 1),
        "chain_ok": report.ok,
    }


def main() -> None:
    """Run on SQLite and, if reachable, on a fresh PostgreSQL database."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--commits", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="xihu-bench-audit-"))
    print(json.dumps(run(f"sqlite:///{folder / 'a.db'}", "sqlite", args.threads, args.commits)))
    name = f"xihu_bench_audit_{os.getpid()}"
    try:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL here: SQLite only
        print(f"PostgreSQL not available: {exc}", file=sys.stderr)
        return
    try:
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        print(json.dumps(run(url, "postgresql", args.threads, args.commits)))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
