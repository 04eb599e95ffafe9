"""Intake throughput over HTTP: submissions/s with p50/p99, beside the same server's no-op endpoint.

Starts `xihu serve` on a fresh SQLite database and (if reachable) a fresh PostgreSQL database, drives
each with an asyncio load generator on loopback, and prints one JSON line per backend. The ratio
intake/no-op is the figure to compare across machines; on a shared machine the CPU milliseconds the server
(and, on PostgreSQL, its backends) spent per request are the steadier figure, as throughput moves with the
neighbours' load.
Usage: python bench/intake.py [--seconds 15] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from proc_cpu import pg_backends_cpu, pg_delta_ms, tree_cpu
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parents[1]
XIHU = str(Path(sys.executable).parent / "xihu")
PG_URL = os.environ.get("XIHU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_pg(url: str) -> str | None:
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS xihu_bench WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE xihu_bench"))
        admin.dispose()
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL here: bench SQLite only
        print(f"PostgreSQL not available: {exc}", file=sys.stderr)
        return None
    return make_url(url).set(database="xihu_bench").render_as_string(hide_password=False)


async def drive(base: str, path: str, seconds: float, concurrency: int, make_body) -> dict[str, float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                body, headers = make_body()
                t0 = time.perf_counter()
                try:
                    if body is None:
                        r = await client.get(path)
                    else:
                        r = await client.post(path, json=body, headers=headers)
                    ok = r.status_code < 300
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "n": len(latencies),
        "errors": errors,
    }


STREET_ID = {"value": 0}


def intake_body():  # type: ignore[no-untyped-def]
    body = {
        "description": "翠苑一区小区门口路灯坏了好几天，晚上很黑，物业也不处理",
        "street_id": STREET_ID["value"],
        "citizen_phone": "13812345678",
    }
    return body, {"Idempotency-Key": uuid.uuid4().hex}


def run_backend(
    name: str, url: str, seconds: float, concurrency: int, workers: int, defer: bool = False
) -> dict[str, object]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"xihu-bench-{name}-"))
    port = free_port()
    env = {
        **os.environ,
        "XIHU_DATA_DIR": str(data_dir),
        "XIHU_DATABASE_URL": url,
        "XIHU_DEMO": "1",
        "XIHU_PORT": str(port),
        "XIHU_RATE_LIMIT_PER_MINUTE": "0",  # one load-generator address: measure the server, not the limit
        "XIHU_DEFER_TO_WORKERS": "1" if defer else "0",
    }
    subprocess.run([XIHU, "migrate"], env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [XIHU, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        streets = httpx.get(base + "/api/units", params={"kind": "street"}).json()
        STREET_ID["value"] = next(u["id"] for u in streets if u["name"] == "翠苑街道")
        database = make_url(url).database if name == "postgresql" else None

        def measured(path: str, make_body) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
            pg0 = pg_backends_cpu(PG_URL, database) if database else None
            web0 = tree_cpu([server.pid])
            figures: dict[str, float | None] = dict(
                asyncio.run(drive(base, path, seconds, concurrency, make_body))
            )
            web1 = tree_cpu([server.pid])
            pg1 = pg_backends_cpu(PG_URL, database) if database else None
            n = int(figures["n"] or 0)
            figures["server_cpu_ms"] = round((web1 - web0) * 1000 / max(1, n), 2)
            figures["pg_cpu_ms"] = pg_delta_ms(pg0, pg1, n) if pg0 and pg1 else None
            return figures

        asyncio.run(drive(base, "/noop", 2, concurrency, lambda: (None, {})))  # warm-up
        asyncio.run(drive(base, "/api/appeals", 2, concurrency, intake_body))
        noop = measured("/noop", lambda: (None, {}))
        intake = measured("/api/appeals", intake_body)
    finally:
        server.terminate()
        server.wait(timeout=20)
    return {
        "bench": "intake",
        "backend": name,
        "web_workers": workers,
        "deferred": defer,
        "concurrency": concurrency,
        "seconds": seconds,
        "intake_rps": intake["rps"],
        "intake_p50_ms": intake["p50_ms"],
        "intake_p99_ms": intake["p99_ms"],
        "intake_errors": intake["errors"],
        "intake_server_cpu_ms": intake["server_cpu_ms"],
        "intake_pg_cpu_ms": intake["pg_cpu_ms"],
        "noop_rps": noop["rps"],
        "noop_server_cpu_ms": noop["server_cpu_ms"],
        "noop_p50_ms": noop["p50_ms"],
        "noop_p99_ms": noop["p99_ms"],
        "ratio_intake_to_noop": round(intake["rps"] / noop["rps"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pg-workers", type=int, default=2)
    parser.add_argument("--defer", action="store_true", help="XIHU_DEFER_TO_WORKERS=1 (no job worker runs)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        sqlite_dir = Path(tempfile.mkdtemp(prefix="xihu-bench-db-"))
        print(
            json.dumps(
                run_backend(
                    "sqlite",
                    f"sqlite:///{sqlite_dir / 'bench.db'}",
                    args.seconds,
                    args.concurrency,
                    1,
                    args.defer,
                ),
                ensure_ascii=False,
            ),
            flush=True,
        )
    if args.backend in ("postgresql", "both"):
        url = fresh_pg(PG_URL)
        if url:
            print(
                json.dumps(
                    run_backend(
                        "postgresql", url, args.seconds, args.concurrency, args.pg_workers, args.defer
                    ),
                    ensure_ascii=False,
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
