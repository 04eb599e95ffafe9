"""Mixed load on loopback: intake, tracking pages, unit inboxes and the cockpit, beside the no-op endpoint.

Starts a fresh PostgreSQL database (or SQLite with --backend sqlite), `xihu migrate`, the demo data,
`xihu serve --workers W` and K `xihu worker` processes with XIHU_DEFER_TO_WORKERS=1 (the request stores and
acknowledges; the workers route and update the rollups). The load comes from wrk (Debian package `wrk`, a C
load generator, so the generator takes little of the machine's two cores): one wrk per kind of request,
all at the same time, then wrk on /noop alone for the baseline. Afterwards it checks that every
acknowledged appeal is in the database and that the workers' queues (routing, rollups, audit seal) drain.

Prints one JSON line. Usage:
  python bench/load.py [--seconds 300] [--backend postgresql|sqlite] [--web-workers 2] [--job-workers 1]
                       [--intake-rate 300 --intake-connections 128 --read-rate 10]
                       [--job-nice N] [--keep-database]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from intake_profile import fresh_pg
from proc_cpu import machine_cpu, machine_share, postgres_delta_seconds, postgres_processes_cpu, tree_cpu
from sqlalchemy import create_engine, text

XIHU = str(Path(sys.executable).parent / "xihu")
PG_URL = os.environ.get("XIHU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "demo12345"

# wrk scripts. Each intake carries a unique Idempotency-Key; the tracking code of every acknowledged (2xx)
# intake is written down, so that the check afterwards can look each one up.
INTAKE_LUA = r"""
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("id", thread_id); thread_id = thread_id + 1 end
init = function(args) acked = io.open("ACKDIR/acked-" .. id .. ".txt", "w") end
request = function()
  counter = counter + 1
  local body = '{"description":"翠苑一区小区门口路灯坏了好几天，晚上很黑 #'
    .. id .. '-' .. counter .. '","street_id":STREET,"citizen_phone":"13812345678"}'
  local headers = {["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "load-RUN-" .. id .. "-" .. counter}
  return wrk.format("POST", "/api/appeals", headers, body)
end
response = function(status, headers, body)
  if status == 201 or status == 200 then
    local code = string.match(body, '"tracking_code":%s*"(XH[0-9A-Z]+)"')
    if code then acked:write(code, "\n"); acked:flush() end
  end
end
"""

# --intake-rate: an open-loop schedule instead of "send again as soon as answered". Each wrk thread sends at
# fixed intervals (RATE per second over all threads) on whichever of its connections is free, timed with
# clock_gettime through LuaJIT's ffi, so a slow answer does not slow the offered load down; the achieved
# rate falls short of RATE only when every connection is waiting on the server.
PACING_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } xihu_timespec;
           int clock_gettime(int clk_id, xihu_timespec *tp); ]]
local ts = ffi.new("xihu_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = 1000 / (RATE / THREADS)
local next_at = nil
delay = function()
  local now = now_ms()
  if next_at == nil then next_at = now end
  next_at = next_at + interval
  if next_at < now - 1000 then next_at = now end  -- more than a second behind: start afresh, do not burst
  return math.max(0, next_at - now)
end
"""

GET_LUA = r"""
local paths = {PATHS}
local cookie = "COOKIE"
local n = 0
request = function()
  n = n + 1
  local headers = {}
  if cookie ~= "" then headers["Cookie"] = cookie end
  return wrk.format("GET", paths[(n % #paths) + 1], headers)
end
"""

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_sessions(url: str) -> int:
    """Sessions (connections) opened so far on the run's database, from pg_stat_database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/s, latency percentiles and errors from wrk's --latency report."""

    def ms(value: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", value)
        assert m, value
        return round(float(m.group(1)) * UNIT[m.group(2)], 2)

    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "n": int(total.group(1)) if total else 0,
        "p50_ms": ms(pct["50"]) if "50" in pct else None,
        "p99_ms": ms(pct["99"]) if "99" in pct else None,
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0),
    }


def wrk_threads(connections: int) -> int:
    """wrk threads for a number of connections (two at most: the machine has two cores)."""
    return max(1, min(2, connections))


def wrk(base: str, script: Path, seconds: float, connections: int) -> subprocess.Popen[str]:
    """Start one wrk process (one thread per connection pair) with a Lua script."""
    threads = wrk_threads(connections)
    return subprocess.Popen(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            base,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def login(base: str, username: str) -> str:
    """The session cookie of a demo account."""
    r = httpx.post(f"{base}/api/auth/login", json={"username": username, "password": PASSWORD}, timeout=30)
    r.raise_for_status()
    return "; ".join(f"{k}={v}" for k, v in r.cookies.items())


def autovacuum_on(url: str) -> bool:
    """Make sure the server runs autovacuum, as every production PostgreSQL does; True if it was off.

    Without it nothing is ANALYZEd while the tables grow from a few hundred rows to tens of thousands, so the
    planner keeps the plans of small tables (an inbox view took 40 ms instead of 3), and the queues' dead rows
    are never cleaned up.
    """
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(text("SHOW autovacuum")).scalar() == "on":
                return False
            conn.execute(text("ALTER SYSTEM SET autovacuum = on"))
            conn.execute(text("SELECT pg_reload_conf()"))
            return True
    finally:
        admin.dispose()


def wait_healthy(base: str, procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait until /healthz answers."""
    for _ in range(600):
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a server process exited during start-up")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become healthy")


def main() -> None:
    """Run the mixed load and print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--job-workers", type=int, default=1)
    parser.add_argument("--intake-connections", type=int, default=32)
    parser.add_argument(
        "--intake-rate",
        type=float,
        default=0,
        help="offered intakes/s on an open-loop schedule (0: each connection sends again when answered)",
    )
    parser.add_argument(
        "--job-nice", type=int, default=0, help="run the job workers at this niceness (requests first)"
    )
    parser.add_argument("--keep-database", action="store_true", help="leave the run's database to inspect")
    parser.add_argument("--read-connections", type=int, default=4, help="each for tracking, inbox, cockpit")
    parser.add_argument(
        "--read-rate",
        type=float,
        default=0,
        help="offered requests/s of each read kind on an open-loop schedule (0: closed loop, which takes"
        " whatever CPU intake leaves)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="xihu-load-"))
    run = uuid.uuid4().hex[:8]
    switched_autovacuum = False
    if args.backend == "postgresql":
        url = fresh_pg(PG_URL, f"xihu_load_{run}")
        switched_autovacuum = autovacuum_on(PG_URL)
    else:
        url = f"sqlite:///{work / 'load.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "XIHU_DATA_DIR": str(work),
        "XIHU_DATABASE_URL": url,
        "XIHU_DEMO": "1",
        "XIHU_PORT": str(port),
        "XIHU_RATE_LIMIT_PER_MINUTE": "0",  # one generator address: measure the server, not the limiter
        "XIHU_DEFER_TO_WORKERS": "1",
        "XIHU_SWEEP_INTERVAL_SECONDS": "1",
    }
    subprocess.run([XIHU, "migrate"], env=env, check=True, capture_output=True)
    demo = [XIHU, "demo", "--load-only", "--appeals", "200"]
    subprocess.run(demo, env=env, check=True, capture_output=True)
    procs: list[subprocess.Popen[bytes]] = [
        subprocess.Popen(
            [XIHU, "serve", "--port", str(port), "--workers", str(args.web_workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "serve.log", "wb"),  # noqa: SIM115 - kept open for the server's life
        )
    ]
    if args.backend == "postgresql":
        procs += [
            subprocess.Popen(
                [*(["nice", "-n", str(args.job_nice)] if args.job_nice else []), XIHU, "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(work / f"worker{i}.log", "wb"),  # noqa: SIM115
            )
            for i in range(args.job_workers)
        ]
    result: dict[str, Any] = {
        "bench": "load",
        "backend": args.backend,
        "seconds": args.seconds,
        "intake_offered_rps": args.intake_rate or "closed loop",
        "intake_connections": args.intake_connections,
        "job_nice": args.job_nice,
        "read_offered_rps_each": args.read_rate or "closed loop",
    }
    try:
        wait_healthy(base, procs)
        streets = httpx.get(base + "/api/units", params={"kind": "street"}).json()
        street = next(u["id"] for u in streets if u["name"] == "翠苑街道")
        codes = []
        for i in range(20):
            r = httpx.post(
                base + "/api/appeals",
                json={"description": f"预热：小区路灯不亮了，请维修 {i}", "street_id": street},
                headers={"Idempotency-Key": f"warm-{run}-{i}"},
            )
            r.raise_for_status()
            codes.append(r.json()["tracking_code"])
        handler, leader = login(base, "zj_handler"), login(base, "admin")
        cockpit = httpx.get(base + "/cockpit", headers={"Cookie": leader}).status_code == 200

        scripts = {
            "intake": (
                INTAKE_LUA
                + (
                    PACING_LUA.replace("RATE", str(args.intake_rate)).replace(
                        "THREADS", str(wrk_threads(args.intake_connections))
                    )
                    if args.intake_rate
                    else ""
                )
            )
            .replace("STREET", str(street))
            .replace("RUN", run)
            .replace("ACKDIR", str(work)),
            "track": GET_LUA.replace("{PATHS}", "{" + ",".join(f'"/t/{c}"' for c in codes) + "}").replace(
                "COOKIE", ""
            ),
            "inbox": GET_LUA.replace("{PATHS}", '{"/staff"}').replace("COOKIE", handler),
        }
        if cockpit:
            scripts["cockpit"] = GET_LUA.replace("{PATHS}", '{"/cockpit"}').replace("COOKIE", leader)
        if args.read_rate:
            pacing = PACING_LUA.replace("RATE", str(args.read_rate)).replace(
                "THREADS", str(wrk_threads(args.read_connections))
            )
            for kind in ("track", "inbox", "cockpit"):
                if kind in scripts:
                    scripts[kind] += pacing
        scripts["noop"] = GET_LUA.replace("{PATHS}", '{"/noop"}').replace("COOKIE", "")
        paths = {}
        for name, body in scripts.items():
            paths[name] = work / f"{name}.lua"
            paths[name].write_text(body)

        # Baseline first, alone, with as many connections as the mixed run uses in all.
        total_conn = args.intake_connections + args.read_connections * (len(scripts) - 2)
        noop = wrk(base, paths["noop"], min(30, args.seconds), total_conn)
        noop_out, _ = noop.communicate()
        result["noop"] = parse_wrk(noop_out)

        def cpu() -> dict[str, Any]:
            return {
                "web": tree_cpu([procs[0].pid]),
                "job_workers": tree_cpu([p.pid for p in procs[1:]]),
                "postgres": postgres_processes_cpu() if args.backend == "postgresql" else {},
            }

        cpu_before, machine_before = cpu(), machine_cpu()
        sessions_before = pg_sessions(url) if args.backend == "postgresql" else 0
        running = {
            name: wrk(
                base,
                paths[name],
                args.seconds,
                args.intake_connections if name == "intake" else args.read_connections,
            )
            for name in scripts
            if name != "noop"
        }
        for name, proc in running.items():
            out, _ = proc.communicate()
            result[name] = parse_wrk(out)
        cpu_after, machine_after = cpu(), machine_cpu()
        if args.backend == "postgresql":
            # new backends (connections) opened during the run: each costs PostgreSQL a fork and start-up
            result["pg_connections_opened"] = pg_sessions(url) - sessions_before
        # CPU is the steady figure on a shared machine (requests/s move with the neighbours' load)
        spent: dict[str, float | None] = {
            k: round(cpu_after[k] - cpu_before[k], 1) for k in ("web", "job_workers")
        }
        # the whole server (WAL writer and checkpointer included): nothing else uses it during a run
        spent["postgres"] = postgres_delta_seconds(cpu_before["postgres"], cpu_after["postgres"])
        requests = sum(result[name]["n"] for name in running)
        result["cpu_seconds"] = spent
        ours = sum(v or 0.0 for v in spent.values())
        result["machine_share"] = machine_share(machine_before, machine_after, ours)
        result["web_cpu_ms_per_request"] = round(spent["web"] * 1000 / max(1, requests), 2)
        result["postgres_cpu_ms_per_intake"] = round(
            (spent["postgres"] or 0.0) * 1000 / max(1, result["intake"]["n"]), 2
        )
        result["job_cpu_ms_per_intake"] = round(
            spent["job_workers"] * 1000 / max(1, result["intake"]["n"]), 2
        )

        # Every acknowledged intake is stored; the routing queue drains.
        acked = {c for f in work.glob("acked-*.txt") for c in f.read_text().split()}
        engine = create_engine(url)
        with engine.connect() as conn:
            stored = set(
                conn.execute(
                    text("SELECT tracking_code FROM appeals WHERE description LIKE :p"),
                    {"p": "翠苑一区小区门口路灯%"},
                ).scalars()
            )
            backlog = text(
                "SELECT (SELECT count(*) FROM routing_tasks), (SELECT count(*) FROM analysis_rollup_queue),"
                " (SELECT count(*) FROM audit_log WHERE seq IS NULL)"
            )
            deadline = time.monotonic() + 120
            pending = tuple(conn.execute(backlog).one())
            while any(pending) and time.monotonic() < deadline:
                time.sleep(1)
                pending = tuple(conn.execute(backlog).one())
        engine.dispose()
        intake = result["intake"]
        acknowledged = intake["n"] - intake["errors"]
        result.update(
            {
                "web_workers": args.web_workers,
                "job_workers": args.job_workers if args.backend == "postgresql" else "in-process",
                "intake_rps": intake["rps"],
                "intake_p50_ms": intake["p50_ms"],
                "intake_p99_ms": intake["p99_ms"],
                "noop_rps": result["noop"]["rps"],
                "ratio_intake_to_noop": round(intake["rps"] / result["noop"]["rps"], 3),
                "acknowledged": acknowledged,
                "acknowledged_codes_logged": len(acked),
                "stored": len(stored),
                "acknowledged_but_missing": len(acked - stored),
                "worker_backlog_after_wait": dict(
                    zip(("routing", "rollups", "audit_seal"), pending, strict=True)
                ),
                "cockpit_measured": cockpit,
            }
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if args.backend == "postgresql":
            admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                if args.keep_database:
                    result["database_kept"] = f"xihu_load_{run}"
                else:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "xihu_load_{run}" WITH (FORCE)'))
                if switched_autovacuum:  # leave the server as it was
                    conn.execute(text("ALTER SYSTEM RESET autovacuum"))
                    conn.execute(text("SELECT pg_reload_conf()"))
            admin.dispose()
            result["autovacuum"] = "switched on for this run" if switched_autovacuum else "on"
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
