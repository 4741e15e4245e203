#!/usr/bin/env python3
"""How fast the web console's pages are at scale: an experiment of 100,000
runs and a metric history of 1,000,000 points, served by a release build of
Tandem on the embedded default (SQLite).

Targets (issue 15): the runs table's first page of a 100,000-run experiment
in < 300 ms; a 1,000,000-point history charted from a server-side reduction
of at most a few thousand points; every page's own requests (the HTML, the
stylesheet, the script, and what the script asks for) < 1 s in total.

Figures per page: the median and the slowest of `--rounds` timed loads
(after one untimed load), the page's size, and the server's CPU per load.
For reference, the same data through the API the mlflow client and MLflow's
own UI use (`runs/search`, `get-history-bulk-interval`). MLflow's server is
not run side by side here: its UI renders in the browser from those API
calls, and loading 100,000 runs into it through its API takes hours on
this machine (bench/README.md has its per-call rates); the issue names no
peer for these figures.

    python3 bench/console.py                       # 100,000 runs, 1,000,000 points
    python3 bench/console.py --runs 20000 --points 200000 --json out.json

Standard library only. Seeding goes through the HTTP API with a few
threads (raw requests, not the Python client, which would be the limit).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, log, proc_cpu_s, table  # noqa: E402
from run import DEFAULT_TANDEM_BIN, Server  # noqa: E402


class Connection:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closes a keep-alive connection idle past its timeout.
            self.conn.close()
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        status, payload = self.call(method, path, body)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {payload[:300]!r}")
        return json.loads(payload or b"{}")


def seed_runs(port: int, experiment: str, runs: int, threads: int) -> float:
    """`runs` runs, each with two metrics, two params and a tag."""
    started = time.perf_counter()
    counter = iter(range(runs))
    lock = threading.Lock()
    errors: list[str] = []

    def work():
        connection = Connection(port)
        while True:
            with lock:
                index = next(counter, None)
            if index is None or errors:
                return
            try:
                run = connection.json("POST", "/api/2.0/mlflow/runs/create", {
                    "experiment_id": experiment, "run_name": f"run-{index:06d}",
                    "start_time": 1_700_000_000_000 + index})["run"]["info"]["run_id"]
                connection.json("POST", "/api/2.0/mlflow/runs/log-batch", {
                    "run_id": run,
                    "metrics": [{"key": "loss", "value": 1.0 / (index + 1), "timestamp": 0, "step": 0},
                                {"key": "accuracy", "value": (index % 1000) / 1000, "timestamp": 0, "step": 0}],
                    "params": [{"key": "lr", "value": str((index % 10) / 100)},
                               {"key": "layers", "value": str(index % 7)}],
                    "tags": [{"key": "team", "value": f"t{index % 5}"}]})
            except Exception as error:  # noqa: BLE001 - reported once, ends the seeding
                errors.append(str(error))
                return
            if index and index % 10_000 == 0:
                log(f"  {index:,} runs ({time.perf_counter() - started:.0f} s)")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - started


def seed_history(connection: Connection, run: str, points: int) -> float:
    """`points` points of one metric, a saw tooth with one spike."""
    started = time.perf_counter()
    for start in range(0, points, 1000):
        connection.json("POST", "/api/2.0/mlflow/runs/log-batch", {
            "run_id": run,
            "metrics": [{"key": "loss", "value": 1e6 if step == points * 2 // 3 else float(step % 100),
                         "timestamp": 1_700_000_000_000 + step, "step": step}
                        for step in range(start, min(points, start + 1000))]})
    return time.perf_counter() - started


def timed(connection: Connection, path: str, pid: int, rounds: int, method: str = "GET",
          body: dict | None = None) -> dict:
    status, payload = connection.call(method, path, body)  # untimed: warms caches
    if status != 200:
        raise RuntimeError(f"{path}: {status} {payload[:300]!r}")
    times = []
    cpu_before = proc_cpu_s(pid)
    for _ in range(rounds):
        started = time.perf_counter()
        status, payload = connection.call(method, path, body)
        times.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"{path}: {status}")
    cpu = (proc_cpu_s(pid) - cpu_before) / rounds
    return {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000,
            "bytes": len(payload), "server_cpu_ms": cpu * 1000, "body": payload}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tmp-dir", default=None)
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the server's data directory")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="tandem-bench-console-", dir=args.tmp_dir)
    data = os.path.join(root, "data")
    os.makedirs(data)
    port = free_port()
    env = {**os.environ, "TANDEM_LOG": "warn"}
    server = Server("tandem", [args.tandem_bin, "server", "--listen", f"127.0.0.1:{port}", "--data", data],
                    env, port, data, os.path.join(root, "server.log"))
    server.start(60)
    try:
        connection = Connection(port)
        experiment = connection.json("POST", "/api/2.0/mlflow/experiments/create",
                                     {"name": "bench-console"})["experiment_id"]
        log(f"seeding {args.runs:,} runs with {args.threads} threads…")
        runs_s = seed_runs(port, experiment, args.runs, args.threads)
        log(f"  {args.runs:,} runs in {runs_s:.0f} s ({args.runs / runs_s:,.0f} runs/s)")
        history_run = connection.json("POST", "/api/2.0/mlflow/runs/create",
                                      {"experiment_id": "0", "run_name": "long-history"})["run"]["info"]["run_id"]
        log(f"seeding a history of {args.points:,} points…")
        history_s = seed_history(connection, history_run, args.points)
        log(f"  {args.points:,} points in {history_s:.0f} s ({args.points / history_s:,.0f} points/s)")

        pid = server.proc.pid
        pages = {
            "runs table, first page (newest first)": f"/experiments/{experiment}",
            "runs table, sorted by a metric": f"/experiments/{experiment}?"
                                               + urllib.parse.urlencode({"order_by": "metrics.`loss` ASC"}),
            "runs table, filtered (1 in 10 runs)": f"/experiments/{experiment}?"
                                                    + urllib.parse.urlencode({"filter": "params.lr = '0.05'"}),
            f"run page, {args.points:,}-point chart": f"/runs/{history_run}",
            "run page, chart zoomed to 1%": f"/runs/{history_run}?from={args.points // 2}&to={args.points // 2 + args.points // 100}",
        }
        assets = ["/console.css", "/console.js", "/api/tandem/v1/workspaces"]
        results = {}
        asset_ms = 0.0
        for asset in assets:
            asset_ms += timed(connection, asset, pid, args.rounds)["median_ms"]
        for name, path in pages.items():
            log(f"timing {name}…")
            figure = timed(connection, path, pid, args.rounds)
            body = figure.pop("body").decode()
            if "chart" in name:
                # "loss — N points, drawn from M (…)" when reduced, else "loss — N points".
                caption = re.search(r"— (\d+) points(?:, drawn from (\d+))?", body)
                figure["chart_points"] = int(caption.group(2) or caption.group(1)) if caption else None
            else:
                figure["rows"] = body.count('name="runs"')
            figure["page_total_ms"] = figure["median_ms"] + asset_ms
            results[name] = figure
        reference = {
            "runs/search API, 100 runs": timed(connection, "/api/2.0/mlflow/runs/search", pid, args.rounds, "POST",
                                               {"experiment_ids": [experiment], "max_results": 100,
                                                "order_by": ["attributes.start_time DESC"]}),
            "get-history-bulk-interval (MLflow UI's chart)": timed(
                connection, "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?"
                + urllib.parse.urlencode({"run_ids": history_run, "metric_key": "loss", "max_results": 320}),
                pid, args.rounds),
        }
        for figure in reference.values():
            figure.pop("body")
        rows = [["page", "median ms", "slowest ms", "+ assets = page total ms", "KB", "server CPU ms", "shown"]]
        for name, figure in results.items():
            shown = (f"{figure['rows']} rows" if "rows" in figure
                     else f"{figure.get('chart_points')} chart points")
            rows.append([name, f"{figure['median_ms']:.0f}", f"{figure['max_ms']:.0f}", f"{figure['page_total_ms']:.0f}",
                         f"{figure['bytes'] / 1024:.0f}", f"{figure['server_cpu_ms']:.0f}", shown])
        for name, figure in reference.items():
            rows.append([name, f"{figure['median_ms']:.0f}", f"{figure['max_ms']:.0f}", "–",
                         f"{figure['bytes'] / 1024:.0f}", f"{figure['server_cpu_ms']:.0f}", "API"])
        print(f"\nConsole pages: {args.runs:,} runs in one experiment, one history of {args.points:,} points, "
              f"{args.rounds} timed loads each (assets: stylesheet, script, workspace list = {asset_ms:.1f} ms)\n")
        table(rows, sys.stdout)
        first = results["runs table, first page (newest first)"]
        chart = results[f"run page, {args.points:,}-point chart"]
        print()
        print(f"goal: first page of the runs table < 300 ms: {first['median_ms']:.0f} ms "
              f"({'met' if first['median_ms'] < 300 else 'NOT met'})")
        print(f"goal: a {args.points:,}-point history charted from a few thousand points: "
              f"{chart.get('chart_points')} points ({'met' if (chart.get('chart_points') or 1e9) <= 5000 else 'NOT met'})")
        slowest = max(figure["page_total_ms"] for figure in results.values())
        print(f"goal: every page's own requests < 1 s in total: slowest page {slowest:.0f} ms "
              f"({'met' if slowest < 1000 else 'NOT met'})")
        if args.json_out:
            with open(args.json_out, "w") as out:
                json.dump({"runs": args.runs, "points": args.points, "pages": results, "reference": reference,
                           "assets_ms": asset_ms}, out, indent=2)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
