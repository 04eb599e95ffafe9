"""CPU seconds used by a process tree and by a database's PostgreSQL backends, from /proc (Linux, loopback).

On a machine shared with other work, requests per second move with the neighbours' load; CPU time spent per
request by our own processes moves far less, so the benchmarks report both.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, text

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces: the fields after it start past the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def _cpu(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else 0.0  # utime + stime


def descendants(root: int) -> set[int]:
    """A process and all its living descendants."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, frontier = {root}, [root]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found.update(children)
        frontier.extend(children)
    return found


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds so far of some processes and everything they started."""
    return sum(_cpu(pid) for root in roots for pid in descendants(root))


def pg_backends_cpu(url: str, database: str) -> tuple[float, frozenset[int]]:
    """CPU seconds so far of the PostgreSQL backends connected to one database (server on this host), and
    their pids: a difference over a run only counts when the same backends lived throughout (a backend that
    exits takes its CPU time with it)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            pids = frozenset(
                int(pid)
                for pid in conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
                    {"d": database},
                ).scalars()
            )
    finally:
        engine.dispose()
    return sum(_cpu(pid) for pid in pids), pids


def pg_delta_ms(
    before: tuple[float, frozenset[int]], after: tuple[float, frozenset[int]], n: int
) -> float | None:
    """PostgreSQL CPU milliseconds per request over a run, or None when backends came or went meanwhile."""
    if before[1] != after[1] or n <= 0:
        return None
    return round((after[0] - before[0]) * 1000 / n, 2)


def postgres_processes_cpu() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL process on this host (backends, WAL writer, checkpointer)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            found[int(entry.name)] = _cpu(int(entry.name))
    return found


def postgres_delta_seconds(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds PostgreSQL spent between two snapshots: processes that lived on, plus those started since
    (a process that exited in between takes its time with it, so this is a floor)."""
    return round(sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()), 1)


def machine_cpu() -> dict[str, float]:
    """CPU seconds so far of the whole machine by kind (all cores), from the first line of /proc/stat."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return {name: int(value) / _TICK for name, value in zip(names, fields, strict=False)}


def machine_share(before: dict[str, float], after: dict[str, float], ours: float) -> dict[str, float]:
    """What the machine did between two `machine_cpu` readings, as shares of all its cores' time.

    `others_busy` is the busy time not spent by `ours` (CPU seconds of the processes under test) nor by
    niced processes: the load generator, the kernel's own work and any neighbour. `niced` is work running at
    a lower priority (it yields to ours, but still takes cache and memory bandwidth), and `steal` is time the
    hypervisor gave to other machines. Figures from runs whose shares differ are not comparable.
    """
    delta = {k: after[k] - before[k] for k in after}
    total = sum(delta.values()) or 1.0
    busy = total - delta["idle"] - delta["iowait"] - delta["steal"]
    return {
        "busy": round(busy / total, 3),
        "ours": round(ours / total, 3),
        "niced": round(delta["nice"] / total, 3),
        "others_busy": round(max(0.0, busy - ours - delta["nice"]) / total, 3),
        "steal": round(delta["steal"] / total, 3),
    }
