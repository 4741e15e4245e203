#!/usr/bin/env python3
"""Reading a long metric history (issue 17, "metric history reads"):
`tandem server` beside `mlflow server` 3.17.2, the same points in both.

One run gets `--points` points of one metric (`log-batch`, 1,000 a
request), then the history is read `--reads` times over raw HTTP the way
the official client pages it (`metrics/get-history`, 25,000 a page): wall
time per read, the server's CPU per point (its whole process tree, from
/proc), and Tandem's ratio. The reader is one Python thread that only
fetches and parses JSON; its own CPU is printed too, so a client-bound
figure shows as such.

    python3 bench/history.py                  # 200,000 points, SQLite both
    python3 bench/history.py --points 1000000 --reads 3
    python3 bench/history.py --postgres       # PostgreSQL both (127.0.0.1:5432)

With `--postgres` each server gets a fresh database, and the server CPU
counts the PostgreSQL backends serving that database too (their pids from
`pg_stat_activity`); the peer's venv gets `psycopg2-binary` if it lacks it.
The reads are measured just after the points were written and again once
the bench has vacuumed each database (what autovacuum does a while later).

Needs the venv of bench/setup-moving.sh (`mlflow` for the peer) and the
release build (CARGO_TARGET_DIR, default /root/.cache/tandem-target-bench).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import log, table  # noqa: E402
from side_by_side import each_server, psql, server_cpu_s  # noqa: E402
from run import DEFAULT_TANDEM_BIN  # noqa: E402


def fill(base: str, points: int) -> str:
    session = requests.Session()
    api = lambda route, body: session.post(f"{base}/api/2.0/mlflow/{route}", json=body, timeout=600)  # noqa: E731
    experiment = api("experiments/create", {"name": "history"}).json()["experiment_id"]
    run_id = api("runs/create", {"experiment_id": experiment, "start_time": 0}).json()["run"]["info"]["run_id"]
    for start in range(0, points, 1000):
        batch = [{"key": "loss", "value": 1.0 / (step + 1), "timestamp": 1_700_000_000_000 + step, "step": step}
                 for step in range(start, min(points, start + 1000))]
        api("runs/log-batch", {"run_id": run_id, "metrics": batch}).raise_for_status()
    return run_id


def read(base: str, run_id: str) -> int:
    session = requests.Session()
    count, token = 0, None
    while True:
        params = {"run_id": run_id, "metric_key": "loss", "max_results": 25000}
        if token:
            params["page_token"] = token
        answer = session.get(f"{base}/api/2.0/mlflow/metrics/get-history", params=params, timeout=600).json()
        count += len(answer.get("metrics", []))
        token = answer.get("next_page_token")
        if not token:
            return count


def timed_reads(server, run_id: str, points: int, reads: int, database: str | None) -> dict:
    walls, cpus = [], []
    client0 = time.process_time()
    for _ in range(reads):
        cpu0, wall0 = server_cpu_s(server, database), time.perf_counter()
        got = read(server.url, run_id)
        walls.append(time.perf_counter() - wall0)
        cpus.append(server_cpu_s(server, database) - cpu0)
        if got != points:
            raise RuntimeError(f"{server.name} returned {got} points, not {points}")
    return {"wall": min(walls), "cpu_per_point_us": min(cpus) / points * 1e6,
            "client_cpu": (time.process_time() - client0) / reads}


def measure(server, points: int, reads: int, database: str | None = None) -> dict:
    """The reads just after the points were written, and (PostgreSQL) once
    the database is vacuumed, as autovacuum does a while later: until then
    each point read is also fetched from the table, whose pages the
    visibility map does not yet mark all-visible. The bench vacuums both
    servers' databases itself (autovacuum may be off, as on this machine)."""
    run_id = fill(server.url, points)
    read(server.url, run_id)  # warm: caches, connections
    vacuums = "SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables WHERE relname = 'metrics'"
    before = psql(vacuums, database) if database else None
    results = {"just written": timed_reads(server, run_id, points, reads, database)}
    if database:
        results["vacuumed while just written"] = psql(vacuums, database) != before
        psql("VACUUM ANALYZE", database)
        read(server.url, run_id)
        results["vacuumed"] = timed_reads(server, run_id, points, reads, database)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=200_000)
    p.add_argument("--reads", type=int, default=5)
    p.add_argument("--venv", default=os.path.expanduser("~/.cache/tandem-mlflow-server-venv"))
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    p.add_argument("--postgres", action="store_true", help="both servers on PostgreSQL at 127.0.0.1:5432")
    args = p.parse_args()
    results = {}
    for name, server, database in each_server(args, "history"):
        log(f"{name}: {args.points} points, {args.reads} reads")
        results[name] = measure(server, args.points, args.reads, database)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"reading a {args.points:,}-point history over get-history (25,000 a page), {backend} both, "
          f"best of {args.reads}")
    rows = [["", "tandem server", "mlflow server 3.17.2", "ratio"]]
    for state in ("just written", "vacuumed"):
        if state not in results["tandem"]:
            continue
        t, m = results["tandem"][state], results["mlflow"][state]
        suffix = f" ({state})" if args.postgres else ""
        rows += [[f"wall time per read, s{suffix}", f"{t['wall']:.3f}", f"{m['wall']:.3f}",
                  f"{m['wall'] / t['wall']:.1f}x"],
                 [f"server CPU per point, us{suffix}", f"{t['cpu_per_point_us']:.2f}",
                  f"{m['cpu_per_point_us']:.2f}", f"{m['cpu_per_point_us'] / t['cpu_per_point_us']:.1f}x"],
                 [f"reader's own CPU per read, s{suffix}", f"{t['client_cpu']:.3f}", f"{m['client_cpu']:.3f}", ""]]
    table(rows, sys.stdout)
    for name in results:
        if results[name].get("vacuumed while just written"):
            print(f"note: {name}'s metrics table was vacuumed (by the server or autovacuum) during its "
                  "just-written reads")


if __name__ == "__main__":
    main()
