#!/usr/bin/env python3
"""Reads per second with 1, 2 and 3 server processes on one PostgreSQL
database (issue 17, item 5: "reads per second with 1, 2 and 3 replicas"):
`tandem server` replicas beside `mlflow server --workers N`, MLflow's own
way of running several server processes on one database.

Each Tandem replica is its own `tandem server` process on the same database
and artifact directory (one holds the region's duties); the load generator
spreads its clients over them evenly (`tandem-loadgen --url a,b,c`: client
`i` talks to replica `i % n`), which is what the gateway or a load balancer
does. `mlflow server` gets the same load on its one port, which gunicorn
shares among its workers.

The load generator is `tandem-loadgen --mix read` (bench/loadgen, Rust, one
thread): each client has its own keep-alive connection and run (10 metrics,
5 params, 3 tags) and reads in a closed loop a `runs/get` of its run and a
`runs/search` of the experiment's first 100 runs in turn. Printed per
process count and server: reads a second, p50/p99 latency, the servers' CPU
per read (every process, plus the PostgreSQL backends serving its
database), the load generator's own CPU, and each server's peak RSS per
process; then Tandem's ratio to mlflow and to its own single process.

On this machine (2 cores) the processes, PostgreSQL and the load generator
share the same two cores: more processes cannot add cores, so what the
figures show is what a replica costs and that requests keep being served
across processes, not the scaling a replica on its own machine adds.

    cargo build --release --bin tandem --bin tandem-loadgen
    python3 bench/replicas.py                     # ~4 min
    python3 bench/replicas.py --replicas 1,3 --clients 64 --only tandem
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, log, peak_rss_mb, proc_cpu_s, table  # noqa: E402
from run import DEFAULT_TANDEM_BIN, Server, process_tree, tree_cpu_s  # noqa: E402
from side_by_side import PG, ensure_psycopg2, psql  # noqa: E402


def tandem_replicas(binary: str, root: str, count: int, database: str) -> list[Server]:
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    replicas = []
    for index in range(count):
        port = free_port()
        env = dict(os.environ, TANDEM_LOG="warn", TANDEM_METADATA_URL=f"{PG}/{database}")
        argv = [binary, "server", "--listen", f"127.0.0.1:{port}", "--data", data]
        replicas.append(Server(f"tandem-{index + 1}", argv, env, port, data,
                               os.path.join(root, f"tandem-{index + 1}.log")))
    return replicas


def mlflow_workers(venv: str, root: str, workers: int, database: str) -> list[Server]:
    port = free_port()
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    argv = [os.path.join(venv, "bin", "mlflow"), "server",
            "--backend-store-uri", f"{PG.replace('postgresql:', 'postgresql+psycopg2:')}/{database}",
            "--artifacts-destination", f"{data}/artifacts", "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return [Server("mlflow", argv, env, port, data, os.path.join(root, "mlflow.log"))]


def servers_cpu_s(servers: list[Server], database: str) -> float:
    total = sum(tree_cpu_s(server.proc.pid) for server in servers)
    pids = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'").split()
    return total + sum(proc_cpu_s(int(pid)) for pid in pids)


def measure(kind: str, count: int, args) -> dict:
    database = f"bench_replicas_{kind}_{count}_{os.getpid()}"
    psql(f"DROP DATABASE IF EXISTS {database}")
    psql(f"CREATE DATABASE {database}")
    root = tempfile.mkdtemp(prefix=f"tandem-bench-replicas-{kind}-")
    servers = (tandem_replicas(args.tandem_bin, root, count, database) if kind == "tandem"
               else mlflow_workers(args.venv, root, count, database))
    try:
        for server in servers:
            server.start(180)
        cpu0 = servers_cpu_s(servers, database)
        answer = subprocess.run(
            [args.loadgen_bin, "--url", ",".join(server.url for server in servers), "--clients",
             str(args.clients), "--seconds", str(args.seconds), "--mix", "read", "--experiment", "replicas"],
            check=True, capture_output=True, text=True, timeout=args.seconds + 600)
        if answer.stderr.strip():
            log(answer.stderr.strip())
        got = json.loads(answer.stdout)
        got["server_cpu_us"] = (servers_cpu_s(servers, database) - cpu0) / max(1, got["ops"]) * 1e6
        got["peak"] = max(peak_rss_mb(pid) for server in servers for pid in process_tree(server.proc.pid))
        log(f"{kind} × {count}: {got['ops_per_s']:,.0f} reads/s, p99 {got['p99_ms']:.1f} ms, "
            f"{got['errors']} errors")
        return got
    finally:
        for server in servers:
            server.stop()
        psql(f"DROP DATABASE IF EXISTS {database}")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=lambda s: [int(c) for c in s.split(",")], default=[1, 2, 3])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--venv", default=os.path.expanduser("~/.cache/tandem-mlflow-server-venv"))
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    p.add_argument("--loadgen-bin", default=None, help="default: tandem-loadgen beside --tandem-bin")
    p.add_argument("--only", choices=["tandem", "mlflow"])
    args = p.parse_args()
    args.loadgen_bin = args.loadgen_bin or os.path.join(os.path.dirname(args.tandem_bin), "tandem-loadgen")
    kinds = [kind for kind in ("tandem", "mlflow") if not args.only or kind == args.only]
    if "mlflow" in kinds:
        ensure_psycopg2(args.venv)
    results = {kind: {count: measure(kind, count, args) for count in args.replicas} for kind in kinds}
    print(f"reads (runs/get and runs/search of 100 runs in turn), PostgreSQL, {args.clients} clients, "
          f"{args.seconds:.0f} s each; Tandem replicas vs mlflow server workers; latencies in ms, "
          f"CPU in µs per read (servers + their PostgreSQL backends)")
    head = ["processes"]
    for kind in kinds:
        head += [f"{kind} reads/s", "p50", "p99", "server CPU", "loadgen CPU", "peak RSS MiB"]
    if len(kinds) == 2:
        head += ["reads/s ratio", "tandem vs 1 process"]
    rows = [head]
    first = args.replicas[0]
    for count in args.replicas:
        row = [str(count)]
        for kind in kinds:
            r = results[kind][count]
            row += [f"{r['ops_per_s']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                    f"{r['server_cpu_us']:.0f}", f"{r['client_cpu_s'] / r['seconds'] * 100:.0f}%",
                    f"{r['peak']:.0f}"]
            if r["errors"]:
                row[-1] += f" ({r['errors']} errors)"
        if len(kinds) == 2:
            t, m = results["tandem"][count], results["mlflow"][count]
            row += [f"{t['ops_per_s'] / max(m['ops_per_s'], 1e-9):.1f}x",
                    f"{t['ops_per_s'] / max(results['tandem'][first]['ops_per_s'], 1e-9):.2f}x"]
        rows.append(row)
    table(rows, sys.stdout)


if __name__ == "__main__":
    main()
