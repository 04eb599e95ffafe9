"""What the job worker spends per intake: routing, in-app notices, rollups and audit sealing, in process.

Creates a fresh PostgreSQL database (XIHU_BENCH_PG_URL, default the test server), migrates it, loads the demo
reference data (units, accounts to notify, responsibility rules), takes N intakes through the real app in
deferred mode (XIHU_DEFER_TO_WORKERS=1, so each intake only stores and queues), then runs the worker's
periodic jobs round after round until nothing is left, timing each job. Prints one JSON line: CPU and wall
milliseconds per intake for each job and in all, PostgreSQL's CPU milliseconds per intake for each job (all
its processes on this host, read from /proc around each job), and the statements per intake.
With --per-round B the intakes arrive B at a time, each lot drained before the next, as a live worker meets a
steady trickle: what a round costs beyond its appeals then shows (every job's claim, lookups and commit).
With --breach-minutes M the clock then moves M minutes on after each lot and the worker drains again, as when
nobody signs in time (an unattended load, or staff away): the SLA sweeper's escalations and their notices are
then part of the figures (M=2 breaches the 1-minute sign clocks only).
Usage: python bench/worker.py [--n 3000] [--per-round B] [--breach-minutes M]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
from datetime import timedelta
from typing import Any

from intake_profile import PG_URL, _post_many, _street_id, demo_app_deferred, drop_pg
from proc_cpu import postgres_processes_cpu
from sqlalchemy import event


def main() -> None:
    """Queue N intakes, drain them with the worker's jobs and print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--per-round", type=int, default=0, help="intakes per lot (0: all queued at once)")
    parser.add_argument("--breach-minutes", type=float, default=0, help="move the clock on after each lot")
    args = parser.parse_args()
    app, name = demo_app_deferred("worker")
    try:
        from xihu.core import clock, jobs

        street = asyncio.run(_street_id(app))
        factory = app.state.session_factory

        def drain() -> tuple[int, dict[str, float], dict[str, float], dict[str, int], dict[str, float]]:
            cpu: collections.Counter[str] = collections.Counter()
            pg: collections.Counter[str] = collections.Counter()
            wall: collections.Counter[str] = collections.Counter()
            done: collections.Counter[str] = collections.Counter()
            rounds, busy = 0, True
            while busy:
                rounds, busy = rounds + 1, False
                for job, fn in jobs.registered().items():
                    p0 = postgres_processes_cpu()
                    c0, w0 = time.process_time(), time.perf_counter()
                    n = fn(factory, "bench")
                    cpu[job] += time.process_time() - c0
                    wall[job] += time.perf_counter() - w0
                    pg[job] += sum(t - p0.get(pid, 0.0) for pid, t in postgres_processes_cpu().items())
                    done[job] += max(n, 0)
                    busy = busy or n > 0
            return rounds, dict(cpu), dict(wall), dict(done), dict(pg)

        # warm up: the demo data's own queue, the model, caches and prepared statements
        asyncio.run(_post_many(app, street, name, range(-100, 0)))
        drain()
        statements = [0]

        @event.listens_for(app.state.engine, "before_cursor_execute")
        def _count(*_: Any) -> None:
            statements[0] += 1

        lot = args.per_round if args.per_round > 0 else args.n
        rounds, cpu, wall, done = 0, collections.Counter(), collections.Counter(), collections.Counter()
        pg: collections.Counter[str] = collections.Counter()
        for first in range(0, args.n, lot):
            before = statements[0]
            statuses = asyncio.run(_post_many(app, street, name, range(first, min(first + lot, args.n))))
            assert set(statuses) == {201}, collections.Counter(statuses)
            statements[0] = before  # only the worker's statements are counted
            drains = [drain()]
            if args.breach_minutes > 0:
                clock.advance(timedelta(minutes=args.breach_minutes))
                drains.append(drain())
            for r, c, w, d, p in drains:
                rounds += r
                pg.update(p)
                cpu.update(c)
                wall.update(w)
                done.update(d)
        per = {job: round(cpu[job] * 1000 / args.n, 2) for job in cpu}
        print(
            json.dumps(
                {
                    "bench": "worker",
                    "intakes": args.n,
                    "per_round": lot,
                    "breach_minutes": args.breach_minutes,
                    "rounds": rounds,
                    "done": done,
                    "cpu_ms_per_intake": per,
                    "cpu_ms_per_intake_total": round(sum(cpu.values()) * 1000 / args.n, 2),
                    "wall_ms_per_intake_total": round(sum(wall.values()) * 1000 / args.n, 2),
                    "postgres_cpu_ms_per_intake": {job: round(pg[job] * 1000 / args.n, 2) for job in pg},
                    "postgres_cpu_ms_per_intake_total": round(sum(pg.values()) * 1000 / args.n, 2),
                    "statements_per_intake": round(statements[0] / args.n, 1),
                },
                ensure_ascii=False,
            ),
            flush=True,
        )
    finally:
        drop_pg(PG_URL, name)


if __name__ == "__main__":
    main()
