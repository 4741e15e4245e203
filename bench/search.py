#!/usr/bin/env python3
"""Searching experiments and registered models at 10,000 each (issue 17,
"experiments/search over 10,000 experiments and registered-models/search
over 10,000 models"): `tandem server` beside `mlflow server` 3.17.2, the
same names and tags in both, SQLite both.

Each server gets `--count` experiments (`exp-00000`, … with a tag `team`)
and as many registered models (`model-00000`, … with a tag `stage`),
written over REST by a few threads (not timed). Then, over raw HTTP, best
of `--reads`:
- paging through every experiment, 1,000 a page, by name;
- `name LIKE 'exp-01%'` (1% of them);
- `tags.team = 'a'` (a quarter);
- paging through every registered model, 1,000 a page;
- `name LIKE 'model-01%'`.
Figures: wall time and the server's CPU (its process tree, from /proc) for
each, and the ratios. The reader is one Python thread; its own CPU is
printed, so a client-bound figure shows as such.

    python3 bench/search.py                   # 10,000 of each
    python3 bench/search.py --count 2000 --reads 5

Needs the release build (CARGO_TARGET_DIR, default
/root/.cache/tandem-target-bench) and a venv with `mlflow` (`--venv`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import log, table  # noqa: E402
from side_by_side import each_server  # noqa: E402
from run import DEFAULT_TANDEM_BIN, tree_cpu_s  # noqa: E402

TEAMS = ["a", "b", "c", "d"]


def fill(base: str, count: int) -> None:
    def one(i: int) -> None:
        session = requests.Session()
        api = f"{base}/api/2.0/mlflow"
        created = session.post(f"{api}/experiments/create", timeout=60,
                               json={"name": f"exp-{i:05d}", "tags": [{"key": "team", "value": TEAMS[i % 4]}]})
        created.raise_for_status()
        model = session.post(f"{api}/registered-models/create", timeout=60,
                             json={"name": f"model-{i:05d}", "tags": [{"key": "stage", "value": TEAMS[i % 4]}]})
        model.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def pages(session, base: str, route: str, field: str, params: dict) -> int:
    count, token = 0, None
    while True:
        query = dict(params, max_results=1000)
        if token:
            query["page_token"] = token
        answer = session.get(f"{base}/api/2.0/mlflow/{route}", params=query, timeout=600)
        answer.raise_for_status()
        body = answer.json()
        count += len(body.get(field, []))
        token = body.get("next_page_token")
        if not token:
            return count


def workloads(count: int) -> list:
    hundredth = sum(1 for i in range(count) if f"{i:05d}".startswith("01"))
    return [
        ("experiments: page through all", "experiments/search", "experiments", {"order_by": "name ASC"}, count),
        ("experiments: name LIKE 'exp-01%'", "experiments/search", "experiments",
         {"filter": "name LIKE 'exp-01%'"}, hundredth),
        ("experiments: tags.team = 'a'", "experiments/search", "experiments",
         {"filter": "tags.team = 'a'"}, (count + 3) // 4),
        ("models: page through all", "registered-models/search", "registered_models", {}, count),
        ("models: name LIKE 'model-01%'", "registered-models/search", "registered_models",
         {"filter": "name LIKE 'model-01%'"}, hundredth),
    ]


def measure(server, count: int, reads: int) -> dict:
    fill(server.url, count)
    session = requests.Session()
    results = {}
    for name, route, field, params, expected in workloads(count):
        # The default experiment is found too where it matches.
        got = pages(session, server.url, route, field, params)  # warm
        if got not in (expected, expected + 1):
            raise RuntimeError(f"{server.name}: {name} found {got}, expected {expected}")
        # CPU from /proc counts in 10 ms ticks: the mean over all reads.
        best_wall = float("inf")
        cpu0, own0 = tree_cpu_s(server.proc.pid), time.process_time()
        for _ in range(reads):
            wall0 = time.perf_counter()
            pages(session, server.url, route, field, params)
            best_wall = min(best_wall, time.perf_counter() - wall0)
        results[name] = {"wall": best_wall, "cpu": (tree_cpu_s(server.proc.pid) - cpu0) / reads,
                         "client": (time.process_time() - own0) / reads}
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--reads", type=int, default=5)
    p.add_argument("--venv", default=os.path.expanduser("~/.cache/tandem-mlflow-server-venv"))
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    args = p.parse_args()
    results = {}
    for name, server, _ in each_server(args, "search"):
        log(f"{name}: {args.count} experiments and models, {args.reads} reads each")
        results[name] = measure(server, args.count, args.reads)
    print(f"searching {args.count:,} experiments and {args.count:,} registered models, SQLite both, "
          f"1,000 a page; wall: best of {args.reads}, CPU: mean (ms)")
    rows = [["", "tandem wall", "mlflow wall", "ratio", "tandem CPU", "mlflow CPU", "ratio", "reader CPU"]]
    for name, t in results["tandem"].items():
        m = results["mlflow"][name]
        rows.append([name, f"{t['wall'] * 1e3:.0f}", f"{m['wall'] * 1e3:.0f}", f"{m['wall'] / t['wall']:.1f}x",
                     f"{t['cpu'] * 1e3:.0f}", f"{m['cpu'] * 1e3:.0f}", f"{m['cpu'] / max(t['cpu'], 1e-3):.1f}x",
                     f"{t['client'] * 1e3:.0f}"])
    table(rows, sys.stdout)


if __name__ == "__main__":
    main()
