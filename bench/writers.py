#!/usr/bin/env python3
"""Many concurrent writers (issue 17, "64 concurrent clients logging
metrics, params and tags"): `tandem server` beside `mlflow server` 3.17.2,
SQLite both or (`--postgres`) PostgreSQL both, 1, 8, 64 and 256 clients.

The load generator is `tandem-loadgen` (bench/loadgen, Rust, one thread):
each client is a task with its own keep-alive connection and its own run,
writing in a closed loop — a metric, a param and a tag in turn (`--mix all`,
the default) or metrics only (`--mix metric`) — for `--seconds`. Every
request must answer 200. Printed per client count and server: requests a
second, p50/p99/max latency, the fewest requests any one client got done
(no writer starved), the server's CPU per request (its process tree, plus
the PostgreSQL backends serving its database) and the load generator's own
CPU (so a client-bound figure shows as such); then the ratios and the peak
RSS of each server's largest process.

Tandem runs with its defaults: SQLite `synchronous = FULL` (every
acknowledged write is on disk: group commit shares one fsync among the
writes that arrive together). mlflow server runs with 2 workers (one per
core here) on SQLite's defaults (rollback journal, synchronous FULL).

    cargo build --release --bin tandem --bin tandem-loadgen
    python3 bench/writers.py                  # SQLite, ~6 min
    python3 bench/writers.py --postgres
    python3 bench/writers.py --clients 64 --seconds 30 --only tandem
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import log, peak_rss_mb, table  # noqa: E402
from side_by_side import each_server, server_cpu_s  # noqa: E402
from run import DEFAULT_TANDEM_BIN, process_tree  # noqa: E402


def load(loadgen: str, url: str, clients: int, seconds: float, mix: str) -> dict:
    answer = subprocess.run([loadgen, "--url", url, "--clients", str(clients), "--seconds", str(seconds),
                             "--mix", mix, "--experiment", f"writers-{clients}"],
                            check=True, capture_output=True, text=True, timeout=seconds + 600)
    if answer.stderr.strip():
        log(answer.stderr.strip())
    return json.loads(answer.stdout)


def measure(server, database: str | None, args) -> dict:
    results = {}
    for clients in args.clients:
        cpu0 = server_cpu_s(server, database)
        got = load(args.loadgen_bin, server.url, clients, args.seconds, args.mix)
        got["server_cpu_us"] = (server_cpu_s(server, database) - cpu0) / max(1, got["ops"]) * 1e6
        log(f"{server.name}, {clients} clients: {got['ops_per_s']:.0f}/s, p99 {got['p99_ms']:.1f} ms, "
            f"{got['errors']} errors")
        results[clients] = got
    results["peak"] = max(peak_rss_mb(pid) for pid in process_tree(server.proc.pid))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 64, 256])
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--mix", choices=["all", "metric"], default="all")
    p.add_argument("--venv", default=os.path.expanduser("~/.cache/tandem-mlflow-server-venv"))
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    p.add_argument("--loadgen-bin", default=None, help="default: tandem-loadgen beside --tandem-bin")
    p.add_argument("--postgres", action="store_true", help="both servers on PostgreSQL at 127.0.0.1:5432")
    p.add_argument("--only", choices=["tandem", "mlflow"])
    args = p.parse_args()
    args.loadgen_bin = args.loadgen_bin or os.path.join(os.path.dirname(args.tandem_bin), "tandem-loadgen")
    results = {}
    for name, server, database in each_server(args, "writers", args.only):
        results[name] = measure(server, database, args)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"concurrent writers ({args.mix}: " + ("metric, param, tag in turn" if args.mix == "all" else "log-metric")
          + f"), {backend}, {args.seconds:.0f} s each; latencies in ms, CPU in µs per request")
    servers = list(results)
    head = ["clients"]
    for name in servers:
        head += [f"{name} req/s", "p50", "p99", "max", "min/client", "server CPU", "loadgen CPU"]
    if len(servers) == 2:
        head += ["req/s ratio", "p99 ratio"]
    rows = [head]
    for clients in args.clients:
        row = [str(clients)]
        for name in servers:
            r = results[name][clients]
            row += [f"{r['ops_per_s']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.0f}",
                    f"{r['min_client_ops']:,}", f"{r['server_cpu_us']:.0f}",
                    f"{r['client_cpu_s'] / r['seconds'] * 100:.0f}%"]
            if r["errors"]:
                row[-1] += f" ({r['errors']} errors)"
        if len(servers) == 2:
            t, m = results["tandem"][clients], results["mlflow"][clients]
            row += [f"{t['ops_per_s'] / max(m['ops_per_s'], 1e-9):.1f}x",
                    f"{m['p99_ms'] / max(t['p99_ms'], 1e-9):.1f}x"]
        rows.append(row)
    table(rows, sys.stdout)
    print("peak RSS of the largest process: " + ", ".join(f"{name} {results[name]['peak']:.0f} MiB"
                                                            for name in servers))


if __name__ == "__main__":
    main()
