"""Faults under load on PostgreSQL: kill -9 a web process and a worker mid-load, then check what survived.

Starts `xihu serve --workers 2` and two `xihu worker` processes on a fresh PostgreSQL database, drives intake
with client threads (each submission carries an Idempotency-Key and is retried with the same key after a
connection error or a 5xx, as a real client would), and meanwhile:
  * kill -9 one web worker process (uvicorn's supervisor starts another),
  * kill -9 one `xihu worker` and start it again (as systemd would).
Then it lets the SLA clocks fall due and checks:
  * every acknowledged appeal (a 2xx answer) is present and intact (description and phone as sent),
  * no submission was stored twice (the idempotency key held across the crash),
  * no deadline was escalated twice, and none that is due was missed,
  * the audit hash chain verifies,
  * the server answers /healthz again by itself.
With --pg-restart the faults are PostgreSQL restarts instead: the drill starts a throwaway cluster of its
own (initdb into a temporary directory, as the `postgres` OS user when run as root; the shared server on 5432
is never touched), runs everything on it, and mid-load does `pg_ctl restart -m fast`, then `-m immediate`
(a crash: recovery replays the WAL). Besides the checks above it measures, for each restart, how long intake
was out, what the clients got meanwhile (a 503 is right; a 500, or a request hanging until the client's
timeout, is not), and that the same web and worker processes serve afterwards, with no restart of theirs.
Prints one JSON line. Usage: python bench/faults.py [--seconds 45] [--concurrency 8] [--pg-restart]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, make_url, text

from xihu.core import crypto
from xihu.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]
XIHU = str(Path(sys.executable).parent / "xihu")
PG_URL = os.environ.get("XIHU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DB_NAME = f"xihu_faults_{os.getpid()}"
PG_BIN = Path(os.environ.get("XIHU_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
SLOW = 5.0  # seconds: an answer slower than this during an outage counts as a hang


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """The web worker processes under uvicorn's supervisor (Linux /proc), not its resource tracker."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    workers = []
    for child in found:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline or b"uvicorn" in cmdline:
            workers.append(child)
    return workers


class Cluster:
    """A throwaway PostgreSQL cluster of the drill's own, which it may restart at will."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="xihu-pg-"))
        self.data = self.dir / "data"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the cluster's maintenance database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        # PostgreSQL refuses to run as root: run its tools as the `postgres` OS user then
        cmd = [str(PG_BIN / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        """initdb and start on 127.0.0.1:port, with room for every process's pool."""
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def restart(self, mode: str) -> None:
        """`pg_ctl restart -m fast|immediate`, returning once the server accepts connections again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "restart")

    def destroy(self) -> None:
        """Stop the cluster and remove its files."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_healthy(base: str, seconds: float) -> float | None:
    """Seconds until /healthz answers 200, or None."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return None


class Load:
    """Client threads submitting appeals; remembers every acknowledged one."""

    def __init__(self, base: str, concurrency: int) -> None:
        self.base = base
        self.concurrency = concurrency
        self.acked: dict[str, tuple[str, str]] = {}  # tracking code -> (description, phone)
        self.sent = 0
        self.retries = 0
        self.gave_up = 0
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t0 = time.perf_counter()
        self.attempts: list[tuple[float, float, str]] = []  # (start, end, outcome) since t0

    def _note(self, start: float, outcome: str) -> None:
        with self.lock:
            self.attempts.append((start - self.t0, time.perf_counter() - self.t0, outcome))

    def _one(self, client: httpx.Client, n: int) -> None:
        key = uuid.uuid4().hex
        description = f"故障演练 {key[:12]}：小区门口的路灯坏了，晚上很黑"
        phone = f"139{n % 100_000_000:08d}"
        for attempt in range(8):
            start = time.perf_counter()
            try:
                resp = client.post(
                    "/api/appeals",
                    json={"description": description, "citizen_phone": phone},
                    headers={"Idempotency-Key": key},
                )
            except httpx.HTTPError as exc:
                self._note(start, type(exc).__name__)
                with self.lock:
                    self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
                    self.retries += attempt < 7
                time.sleep(0.2 * (attempt + 1))
                continue
            self._note(start, str(resp.status_code))
            if resp.status_code in (200, 201):
                with self.lock:
                    self.acked[resp.json()["tracking_code"]] = (description, phone)
                return
            with self.lock:
                self.errors[str(resp.status_code)] = self.errors.get(str(resp.status_code), 0) + 1
                self.retries += attempt < 7
            time.sleep(0.2 * (attempt + 1))
        with self.lock:
            self.gave_up += 1

    def _worker(self, k: int) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            n = k
            while not self.stop.is_set():
                with self.lock:
                    self.sent += 1
                self._one(client, n)
                n += self.concurrency

    def start(self) -> list[threading.Thread]:
        """Start the client threads."""
        threads = [
            threading.Thread(target=self._worker, args=(k,), daemon=True) for k in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        return threads


def outage(load: Load, began: float, up: float) -> dict[str, object]:
    """What the clients saw from the start of a restart until intake answered 2xx again."""
    recovered = min(
        (end for start, end, outcome in load.attempts if start >= up and outcome in ("200", "201")),
        default=None,
    )
    until = recovered if recovered is not None else float("inf")
    during = [(start, end, outcome) for start, end, outcome in load.attempts if began <= end <= until]
    outcomes: dict[str, int] = {}
    for _, _, outcome in during:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    failed = [(s, e, o) for s, e, o in during if o not in ("200", "201")]
    return {
        "restart_s": round(up - began, 2),
        "recovered_after_up_s": None if recovered is None else round(recovered - up, 2),
        "outage_s": None if recovered is None else round(recovered - began, 2),
        "answers": outcomes,
        "answers_503": outcomes.get("503", 0),
        "answers_500": sum(n for o, n in outcomes.items() if o.startswith("5") and o != "503"),
        "slowest_failure_s": round(max((e - s for s, e, _ in failed), default=0.0), 2),
        "slowest_answer_s": round(max((e - s for s, e, _ in during), default=0.0), 2),
        "hangs": sum(1 for s, e, o in failed if e - s > SLOW or "Timeout" in o),
    }


def main() -> None:
    """Run the fault drill and print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pg-restart", action="store_true", help="restart a throwaway PostgreSQL mid-load")
    parser.add_argument("--pg-port", type=int, default=55432)
    args = parser.parse_args()

    cluster: Cluster | None = None
    pg_url = PG_URL
    if args.pg_restart:
        cluster = Cluster(args.pg_port)
        cluster.start()
        pg_url = cluster.url
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    url = make_url(pg_url).set(database=DB_NAME).render_as_string(hide_password=False)
    data_dir = Path(tempfile.mkdtemp(prefix="xihu-faults-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        XIHU_DATABASE_URL=url,
        XIHU_DATA_DIR=str(data_dir),
        XIHU_DEMO="1",
        XIHU_PORT=str(port),
        XIHU_RATE_LIMIT_PER_MINUTE="0",
        XIHU_IN_PROCESS_WORKER="0",
        XIHU_SWEEP_INTERVAL_SECONDS="1",
    )
    log = open(data_dir / "processes.log", "w")  # noqa: SIM115 - kept open for the processes' lifetime
    subprocess.run([XIHU, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(*argv: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([XIHU, *argv], env=env, stdout=log, stderr=log, start_new_session=True)
        procs.append(p)
        return p

    result: dict[str, object] = {
        "bench": "faults",
        "fault": "pg-restart" if cluster else "kill-9",
        "backend": "postgresql",
        "seconds": args.seconds,
        "concurrency": args.concurrency,
    }
    try:
        server = spawn("serve", "--workers", "2")
        workers = [spawn("worker", "--interval", "1"), spawn("worker", "--interval", "1")]
        if wait_healthy(base, 60) is None:
            raise SystemExit("server did not start")
        load = Load(base, args.concurrency)
        threads = load.start()
        t0 = load.t0
        events: list[str] = []
        web_children = children(server.pid)
        worker_pids = [w.pid for w in workers]
        restarts: dict[str, dict[str, float]] = {}
        if cluster is not None:
            for k, mode in enumerate(("fast", "immediate")):
                time.sleep(max(0.0, args.seconds * (k + 1) / 3 - (time.perf_counter() - t0)))
                began = time.perf_counter() - t0
                cluster.restart(mode)
                up = time.perf_counter() - t0
                events.append(f"t={began:.1f}s pg_ctl restart -m {mode}; accepting again at t={up:.1f}s")
                restarts[mode] = {"began": began, "up": up}
        else:
            time.sleep(args.seconds / 3)
            if web_children:
                os.kill(web_children[0], signal.SIGKILL)
                events.append(f"t={time.perf_counter() - t0:.1f}s kill -9 web worker {web_children[0]}")
            time.sleep(args.seconds / 6)
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            events.append(f"t={time.perf_counter() - t0:.1f}s kill -9 xihu worker {workers[0].pid}")
            time.sleep(2)
            workers[0] = spawn("worker", "--interval", "1")
            events.append(f"t={time.perf_counter() - t0:.1f}s xihu worker restarted")
        time.sleep(max(0.0, args.seconds - (time.perf_counter() - t0)))
        load.stop.set()
        for t in threads:
            t.join(timeout=90)
        recovered = wait_healthy(base, 30)
        web_after = children(server.pid)

        engine = create_engine(url)
        # let every clock of the run fall due (the sign clock is 1 minute) and the sweepers pass
        with engine.connect() as conn:
            remaining = conn.execute(
                text("SELECT EXTRACT(EPOCH FROM (max(due_at) - now())) FROM deadlines WHERE open")
            ).scalar()
        if remaining is not None:
            time.sleep(min(120.0, max(0.0, float(remaining))) + 5)

        with engine.connect() as conn:
            raw = {
                r[0]: (r[1], r[2])
                for r in conn.execute(text("SELECT tracking_code, description, citizen_phone FROM appeals"))
            }
            duplicates = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT description FROM appeals "
                    "GROUP BY description HAVING count(*) > 1) d"
                )
            ).scalar_one()
            twice = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT deadline_id FROM supervisions WHERE kind = 'auto' "
                    "GROUP BY deadline_id HAVING count(*) > 1) d"
                )
            ).scalar_one()
            breach_audits_twice = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT detail->>'deadline_id' FROM audit_log "
                    "WHERE action = 'appeal.sla_breach' GROUP BY 1 HAVING count(*) > 1) d"
                )
            ).scalar_one()
            escalated = conn.execute(
                text("SELECT count(*) FROM deadlines WHERE escalated_at IS NOT NULL")
            ).scalar_one()
            missed = conn.execute(
                text("SELECT count(*) FROM deadlines WHERE open AND due_at < now() - interval '3 seconds'")
            ).scalar_one()
            deadlines = conn.execute(text("SELECT count(*) FROM deadlines")).scalar_one()
        engine.dispose()
        # the phone is stored encrypted (never in plain text); the drill reads it with the run's demo key
        ring = crypto.keyring_for(Settings(data_dir=data_dir, demo=True))
        plain_phones = sum(1 for _, phone in raw.values() if phone and not crypto.is_encrypted(phone))
        context = "appeals.citizen_phone"
        rows = {
            code: (desc, ring.decrypt(phone, context) if crypto.is_encrypted(phone) else phone)
            for code, (desc, phone) in raw.items()
        }
        lost = [c for c in load.acked if c not in rows]
        altered = [c for c, v in load.acked.items() if c in rows and rows[c] != v]
        chain = subprocess.run([XIHU, "audit", "verify"], env=env, capture_output=True, text=True)
        same_processes = set(web_after) == set(web_children) and all(
            p.poll() is None for p in workers if p.pid in worker_pids
        )
        windows = {mode: outage(load, w["began"], w["up"]) for mode, w in restarts.items()}
        outage_ok = all(
            w["answers_500"] == 0 and w["hangs"] == 0 and w["outage_s"] is not None for w in windows.values()
        )
        result.update(
            {
                "sent": load.sent,
                "acknowledged": len(load.acked),
                "client_retries": load.retries,
                "gave_up": load.gave_up,
                "client_errors": load.errors,
                "appeals_stored": len(rows),
                "acknowledged_lost": len(lost),
                "acknowledged_altered": len(altered),
                "phones_in_plain_text": plain_phones,
                "stored_twice": duplicates,
                "deadlines": deadlines,
                "escalated": escalated,
                "escalated_twice": max(twice, breach_audits_twice),
                "due_but_missed": missed,
                "audit_chain_ok": chain.returncode == 0,
                "recovered_healthz_s": None if recovered is None else round(recovered, 2),
                "web_workers_before": len(web_children),
                "web_workers_after": len(web_after),
                "events": events,
            }
        )
        if cluster is not None:
            result["restarts"] = windows
            result["same_web_and_worker_processes"] = same_processes
        result["ok"] = (
            not lost
            and not altered
            and plain_phones == 0
            and duplicates == 0
            and twice == 0
            and breach_audits_twice == 0
            and missed == 0
            and chain.returncode == 0
            and recovered is not None
            and (cluster is None or (outage_ok and same_processes))
        )
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        log.close()
        if cluster is not None:
            admin.dispose()
            cluster.destroy()
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
            admin.dispose()
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
