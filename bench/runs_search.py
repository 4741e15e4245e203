#!/usr/bin/env python3
"""Searching the runs of one experiment of 100,000 runs (issue 17, "runs/search
over an experiment of 100,000 runs (10 metrics, 5 params, 3 tags each)"):
`tandem server` beside `mlflow server` 3.17.2, the same runs in both,
SQLite both or (`--postgres`) PostgreSQL both.

Each run has metrics k0…k9 (values in [0, 1)), params p0…p3 and lr (one of
0.001, 0.01, 0.1), tags team (a-team … d-team), owner and its name tag, and
distinct start times. Tandem gets them over REST (`runs/create` with the
tags, `runs/log-batch` with params and metrics) by a few threads; mlflow
server's runs are written straight into its database after it created its
schema, because writing 100,000 runs through its REST API takes hours here
(`bench/run.py` measures its writes). Neither fill is timed.

Then, over raw HTTP (`runs/search`, 1,000 runs a page), best of `--reads`:
- the first page by start time (the default order), and the first ten pages;
- `metrics.k1 > 0.5 and params.lr = '0.01'` ordered by `metrics.k2`;
- `tags.team LIKE 'a%'`, `tags.team ILIKE 'A%'`;
- `attributes.run_id IN (…)` with 100 ids (MLflow takes lists for run_id alone).
Figures: wall time, the server's CPU (its process tree from /proc, plus the
PostgreSQL backends serving its database) per search, and the ratios; then
the peak RSS of each server's largest process. The
reader is one Python thread; its own CPU (decoding the JSON) is printed, so
a client-bound wall time shows as such: the server CPU is the figure that
says what the server spends.

    python3 bench/runs_search.py                     # 100,000 runs, SQLite
    python3 bench/runs_search.py --postgres
    python3 bench/runs_search.py --runs 20000 --reads 3

Needs the release build (`--tandem-bin`) and a venv with the full `mlflow`
(`--venv`; psycopg2-binary is added to it for `--postgres`).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import log, peak_rss_mb, table  # noqa: E402
from side_by_side import PG, each_server, server_cpu_s  # noqa: E402
from run import DEFAULT_TANDEM_BIN, process_tree  # noqa: E402

RATES = ["0.001", "0.01", "0.1"]
TEAMS = ["a-team", "b-team", "c-team", "d-team"]
START = 1_700_000_000_000


def run_data(i: int) -> dict:
    """Run `i`'s name, times, metrics, params and tags: the same in both servers."""
    start = START + i * 1000
    return {
        "name": f"run-{i:06d}",
        "start": start,
        "end": start + 500,
        "metrics": {f"k{k}": ((i * 7919 + k * 104729) % 10007) / 10007 for k in range(10)},
        "params": {**{f"p{k}": str((i * 31 + k) % 97) for k in range(4)}, "lr": RATES[i % 3]},
        "tags": {"team": TEAMS[i % 4], "owner": f"user{i % 10}", "mlflow.runName": f"run-{i:06d}"},
    }


def fill_tandem(base: str, experiment_id: str, runs: int) -> None:
    def batch(first: int) -> None:
        session = requests.Session()
        api = f"{base}/api/2.0/mlflow"
        for i in range(first, min(first + 500, runs)):
            data = run_data(i)
            created = session.post(f"{api}/runs/create", timeout=60, json={
                "experiment_id": experiment_id, "run_name": data["name"], "start_time": data["start"],
                "user_id": "bench", "tags": [{"key": k, "value": v} for k, v in data["tags"].items()]})
            created.raise_for_status()
            run_id = created.json()["run"]["info"]["run_id"]
            logged = session.post(f"{api}/runs/log-batch", timeout=60, json={
                "run_id": run_id,
                "params": [{"key": k, "value": v} for k, v in data["params"].items()],
                "metrics": [{"key": k, "value": v, "timestamp": data["end"], "step": 0}
                            for k, v in data["metrics"].items()]})
            logged.raise_for_status()
            ended = session.post(f"{api}/runs/update", timeout=60,
                                 json={"run_id": run_id, "status": "FINISHED", "end_time": data["end"]})
            ended.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(batch, range(0, runs, 500)))


def fill_mlflow(connect, placeholder: str, experiment_id: str, artifact_root: str, runs: int) -> None:
    """Rows as mlflow's SQL store writes them, straight into its tables."""
    database = connect()
    cursor = database.cursor()
    p = placeholder

    def insert(table_name: str, columns: list[str], rows: list[tuple]) -> None:
        sql = f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))})"
        cursor.executemany(sql, rows)

    for first in range(0, runs, 5000):
        run_rows, tags, params, metrics, latest = [], [], [], [], []
        for i in range(first, min(first + 5000, runs)):
            data = run_data(i)
            run_id = uuid.uuid4().hex
            run_rows.append((run_id, data["name"], "UNKNOWN", "", "", "bench", "FINISHED", data["start"],
                             data["end"], "", "active", f"{artifact_root}/{run_id}/artifacts", int(experiment_id)))
            tags += [(k, v, run_id) for k, v in data["tags"].items()]
            params += [(k, v, run_id) for k, v in data["params"].items()]
            metrics += [(k, v, data["end"], run_id, 0, False) for k, v in data["metrics"].items()]
            latest += [(k, v, data["end"], 0, False, run_id) for k, v in data["metrics"].items()]
        insert("runs", ["run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
                        "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri",
                        "experiment_id"], run_rows)
        insert("tags", ["key", "value", "run_uuid"], tags)
        insert("params", ["key", "value", "run_uuid"], params)
        insert("metrics", ["key", "value", "timestamp", "run_uuid", "step", "is_nan"], metrics)
        insert("latest_metrics", ["key", "value", "timestamp", "step", "is_nan", "run_uuid"], latest)
        database.commit()
    database.close()


def workloads(runs: int, ids: list[str]) -> list:
    """(name, search, pages, runs expected); `ids`: the run ids an IN list names."""
    first = min(runs, 1000)
    ids_list = ", ".join(f"'{run_id}'" for run_id in ids)
    return [
        ("first page by start time", {}, 1, first),
        ("ten pages by start time", {}, 10, min(runs, 10_000)),
        ("k1 > 0.5 and lr = '0.01' by k2", {"filter": "metrics.k1 > 0.5 and params.lr = '0.01'",
                                           "order_by": ["metrics.k2 DESC"]}, 1, None),
        ("tags.team LIKE 'a%'", {"filter": "tags.team LIKE 'a%'"}, 1, first),
        ("tags.team ILIKE 'A%'", {"filter": "tags.team ILIKE 'A%'"}, 1, first),
        (f"run_id IN ({len(ids)} ids)", {"filter": f"attributes.run_id IN ({ids_list})"}, 1, len(ids)),
    ]


def search(session, base: str, experiment_id: str, body: dict, pages: int, ids: list | None = None) -> int:
    """Runs found by `pages` pages of the search (their ids added to `ids`)."""
    found, token = 0, None
    for _ in range(pages):
        request = dict(body, experiment_ids=[experiment_id], max_results=1000)
        if token:
            request["page_token"] = token
        answer = session.post(f"{base}/api/2.0/mlflow/runs/search", json=request, timeout=600)
        if answer.status_code != 200:
            raise RuntimeError(f"runs/search {body}: {answer.status_code} {answer.text[:300]}")
        page = answer.json()
        found += len(page.get("runs", []))
        if ids is not None:
            ids.extend(run["info"]["run_id"] for run in page.get("runs", []))
        token = page.get("next_page_token")
        if not token:
            break
    return found


def measure(server, experiment_id: str, runs: int, reads: int, database: str | None) -> dict:
    session = requests.Session()
    results = {}
    # The IN list: 100 runs spread over the newest 10,000 (MLflow takes
    # lists for run_id alone).
    newest: list[str] = []
    search(session, server.url, experiment_id, {}, 10, newest)
    ids = newest[::max(1, len(newest) // 100)][:100]
    for name, body, pages, expected in workloads(runs, ids):
        got = search(session, server.url, experiment_id, body, pages)  # warm
        if expected is not None and got != expected:
            raise RuntimeError(f"{server.name}: {name} found {got} runs, expected {expected}")
        walls, cpus = [], []
        own0 = time.process_time()
        for _ in range(reads):
            cpu0, wall0 = server_cpu_s(server, database), time.perf_counter()
            search(session, server.url, experiment_id, body, pages)
            walls.append(time.perf_counter() - wall0)
            cpus.append(server_cpu_s(server, database) - cpu0)
        results[name] = {"wall": min(walls), "cpu": sum(cpus) / reads, "found": got,
                         "client": (time.process_time() - own0) / reads}
    # Issue 17: every process stays under 200 MB; the largest one's peak.
    results["peak RSS, MiB"] = max(peak_rss_mb(pid) for pid in process_tree(server.proc.pid))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--reads", type=int, default=5)
    p.add_argument("--venv", default=os.path.expanduser("~/.cache/tandem-mlflow-server-venv"))
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    p.add_argument("--postgres", action="store_true", help="both servers on PostgreSQL at 127.0.0.1:5432")
    args = p.parse_args()
    python = os.path.join(args.venv, "bin", "python")
    results = {}
    for name, server, database in each_server(args, "runs-search"):
        created = requests.post(f"{server.url}/api/2.0/mlflow/experiments/create",
                                json={"name": "search-bench"}, timeout=60)
        created.raise_for_status()
        experiment_id = created.json()["experiment_id"]
        log(f"{name}: writing {args.runs:,} runs")
        fill0 = time.perf_counter()
        if name == "tandem":
            fill_tandem(server.url, experiment_id, args.runs)
        else:
            fill_mlflow_process(python, server, database, experiment_id, args.runs)
        log(f"{name}: written in {time.perf_counter() - fill0:.0f}s; {args.reads} reads of each search")
        results[name] = measure(server, experiment_id, args.runs, args.reads, database)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"runs/search over one experiment of {args.runs:,} runs (10 metrics, 5 params, 3 tags each), "
          f"{backend} both, 1,000 a page; wall: best of {args.reads}, CPU: mean (ms)")
    rows = [["", "found", "tandem wall", "mlflow wall", "ratio", "tandem CPU", "mlflow CPU", "ratio",
             "reader CPU (tandem)"]]
    peaks = {server: results[server].pop("peak RSS, MiB") for server in ("tandem", "mlflow")}
    for name, t in results["tandem"].items():
        m = results["mlflow"][name]
        if m["found"] != t["found"]:
            raise SystemExit(f"{name}: tandem found {t['found']} runs, mlflow server {m['found']}")
        rows.append([name, f"{t['found']:,}", f"{t['wall'] * 1e3:.0f}", f"{m['wall'] * 1e3:.0f}",
                     f"{m['wall'] / t['wall']:.1f}x", f"{t['cpu'] * 1e3:.0f}", f"{m['cpu'] * 1e3:.0f}",
                     f"{m['cpu'] / max(t['cpu'], 1e-3):.1f}x", f"{t['client'] * 1e3:.0f}"])
    table(rows, sys.stdout)
    print(f"peak RSS of the largest process: tandem {peaks['tandem']:.0f} MiB, "
          f"mlflow server {peaks['mlflow']:.0f} MiB (PostgreSQL's own processes not counted)")


def fill_mlflow_process(python: str, server, database: str | None, experiment_id: str, runs: int) -> None:
    """mlflow server's rows, written by this script under the venv's Python
    (which has psycopg2 for PostgreSQL)."""
    if database:
        target = f"{PG}/{database}"
    else:
        target = os.path.join(server.data, "mlflow.db")
    artifact_root = f"mlflow-artifacts:/{experiment_id}"
    subprocess.run([python, os.path.abspath(__file__), "--fill-mlflow", target, experiment_id, artifact_root,
                    str(runs)], check=True)


def fill_mlflow_main(target: str, experiment_id: str, artifact_root: str, runs: int) -> None:
    if target.startswith("postgresql://"):
        import psycopg2

        fill_mlflow(lambda: psycopg2.connect(target), "%s", experiment_id, artifact_root, runs)
    else:
        fill_mlflow(lambda: sqlite3.connect(target, timeout=60), "?", experiment_id, artifact_root, runs)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--fill-mlflow":
        fill_mlflow_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
