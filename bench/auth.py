#!/usr/bin/env python3
"""What authentication costs: the foundation benchmark's metric and batch
sections against Tandem with authentication off, and on (an API token as
`MLFLOW_TRACKING_TOKEN`, and HTTP Basic as `MLFLOW_TRACKING_USERNAME` /
`MLFLOW_TRACKING_PASSWORD`), side by side on the same machine, the same
client, alternating rounds; prints each figure and its ratio to the run
without authentication.

Targets (issue 14): an authenticated `log_metric` costs at most 5% more
latency, `log_batch` at most 5% less throughput. The Python client is the
bottleneck of both sections, so the server's own CPU per operation is
reported too (what authentication adds on the server: a cache lookup per
request; an Argon2id verification only on a credential's first use).

    python3 bench/auth.py                      # 3 rounds, ~3 min
    python3 bench/auth.py --rounds 5 --json out.json

Uses bench/run.py's workload (`run.py --worker`) and server handling.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port  # noqa: E402
from run import DEFAULT_CLIENT_PYTHON, DEFAULT_TANDEM_BIN, Server, settle  # noqa: E402

RUN_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py")
MODES = ["off", "token", "basic"]


def request(method: str, url: str, token: str, body: dict) -> dict:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def run_mode(mode: str, args) -> dict:
    root = tempfile.mkdtemp(prefix=f"tandem-bench-auth-{mode}-", dir=args.tmp_dir)
    data = os.path.join(root, "data")
    os.makedirs(data)
    port = free_port()
    env = {**os.environ, "TANDEM_LOG": "warn", "TANDEM_SQLITE_SYNCHRONOUS": args.sync}
    argv = [args.tandem_bin, "server", "--listen", f"127.0.0.1:{port}", "--data", data]
    if mode != "off":
        argv.append("--auth")
    server = Server(f"tandem-auth-{mode}", argv, env, port, data, os.path.join(root, "server.log"))
    try:
        server.start(args.startup_timeout)
        settle(server.proc.pid, args.settle_timeout)
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        client_env["PYTHONUNBUFFERED"] = "1"
        if mode != "off":
            admin = open(os.path.join(data, "admin.token")).read().strip()
            if mode == "token":
                client_env["MLFLOW_TRACKING_TOKEN"] = admin
            else:
                request("POST", f"{server.url}/api/tandem/v1/principals", admin,
                        {"name": "bench", "password": "bench-password", "token": False,
                         "roles": [{"role": "Contributor", "workspace": "default"}]})
                client_env["MLFLOW_TRACKING_USERNAME"] = "bench"
                client_env["MLFLOW_TRACKING_PASSWORD"] = "bench-password"
        params = {
            "tracking_uri": server.url,
            "server_pid": server.proc.pid,
            "sections": ["metric", "batch"],
            "warmup_calls": args.warmup_calls,
            "metric_calls": args.metric_calls,
            "metric_seconds": args.metric_seconds,
            "batch_size": args.batch_size,
            "batch_keys": args.batch_keys,
            "batch_count": args.batch_count,
            "batch_seconds": args.batch_seconds,
            "artifact_mb": 1, "artifact_repeats": 1, "small_files": 1, "small_file_kb": 1, "small_repeats": 1,
            "tmp_dir": args.tmp_dir,
            "null_server": False,
        }
        worker = subprocess.run([args.client_python, RUN_PY, "--worker", json.dumps(params)],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=client_env,
                                timeout=args.worker_timeout)
        if worker.returncode != 0:
            raise RuntimeError(f"workload against auth={mode} failed; server log {server.log_path}")
        result = json.loads(worker.stdout.decode().strip().splitlines()[-1])
        return {
            "mode": mode,
            "log_metric_p50_ms": result["log_metric"]["p50_ms"],
            "log_metric_p99_ms": result["log_metric"]["p99_ms"],
            "log_metric_per_s": result["log_metric_calls_per_s"],
            "log_metric_server_cpu_ms": result["cpu"]["log_metric"].get("server_cpu_ms_per_op"),
            "log_batch_metrics_per_s": result["log_batch_metrics_per_s"],
            "log_batch_server_cpu_ms": result["cpu"]["log_batch"].get("server_cpu_ms_per_op"),
        }
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN, help="release tandem binary [%(default)s]")
    p.add_argument("--client-python", default=DEFAULT_CLIENT_PYTHON, help="python with mlflow [%(default)s]")
    p.add_argument("--rounds", type=int, default=3, help="rounds, modes alternating [%(default)s]")
    p.add_argument("--sync", default="NORMAL", choices=["FULL", "NORMAL"],
                   help="TANDEM_SQLITE_SYNCHRONOUS (NORMAL: fsync noise out of the way) [%(default)s]")
    p.add_argument("--warmup-calls", type=int, default=100)
    p.add_argument("--metric-calls", type=int, default=2000)
    p.add_argument("--metric-seconds", type=float, default=15)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--batch-keys", type=int, default=10)
    p.add_argument("--batch-count", type=int, default=200)
    p.add_argument("--batch-seconds", type=float, default=15)
    p.add_argument("--startup-timeout", type=float, default=60)
    p.add_argument("--settle-timeout", type=float, default=30)
    p.add_argument("--worker-timeout", type=float, default=600)
    p.add_argument("--tmp-dir", default=None)
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    args = p.parse_args(argv)
    if not os.path.exists(args.tandem_bin):
        p.error(f"{args.tandem_bin} does not exist: build it (bash bench/setup.sh) or pass --tandem-bin")

    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for round_index in range(args.rounds):
        order = MODES if round_index % 2 == 0 else list(reversed(MODES))
        for mode in order:
            print(f"== round {round_index + 1}/{args.rounds}: auth={mode}", file=sys.stderr, flush=True)
            runs[mode].append(run_mode(mode, args))

    def median(mode: str, key: str) -> float | None:
        values = [run[key] for run in runs[mode] if run.get(key) is not None]
        return statistics.median(values) if values else None

    rows = [
        ("log_metric p50 latency (ms)", "log_metric_p50_ms", False),
        ("log_metric p99 latency (ms)", "log_metric_p99_ms", False),
        ("log_metric calls/s", "log_metric_per_s", True),
        ("log_metric server CPU (ms/call)", "log_metric_server_cpu_ms", False),
        ("log_batch metrics/s", "log_batch_metrics_per_s", True),
        ("log_batch server CPU (ms/batch)", "log_batch_server_cpu_ms", False),
    ]
    print(f"\nTandem with authentication off vs on ({args.rounds} rounds, medians; "
          f"ratio = on/off, {args.sync} sync)\n")
    print(f"{'figure':<34} {'off':>10} {'token':>10} {'ratio':>7} {'basic':>10} {'ratio':>7}")
    summary = {}
    for label, key, _ in rows:
        off, token, basic = (median(mode, key) for mode in MODES)
        ratio = lambda value: (value / off) if (value is not None and off) else None  # noqa: E731
        summary[key] = {"off": off, "token": token, "basic": basic,
                        "token_ratio": ratio(token), "basic_ratio": ratio(basic)}
        fmt = lambda v, spec=".2f": "-" if v is None else format(v, spec)  # noqa: E731
        print(f"{label:<34} {fmt(off):>10} {fmt(token):>10} {fmt(ratio(token), '.3f'):>7} "
              f"{fmt(basic):>10} {fmt(ratio(basic), '.3f'):>7}")
    latency = summary["log_metric_p50_ms"]
    batch = summary["log_batch_metrics_per_s"]
    print("\ntargets: log_metric latency +<=5%, log_batch throughput -<=5%")
    for mode in ("token", "basic"):
        extra = (latency[f"{mode}_ratio"] - 1) * 100
        loss = (1 - batch[f"{mode}_ratio"]) * 100
        verdict = "met" if extra <= 5 and loss <= 5 else "NOT met"
        print(f"  {mode:<6} log_metric {extra:+.1f}% latency, log_batch {-loss:+.1f}% throughput: {verdict}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"runs": runs, "summary": summary}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
