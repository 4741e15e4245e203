#!/usr/bin/env python3
"""Backup and restore throughput of Tandem, and what an incremental backup
costs after a 1% change, next to the backup teams make by hand today.

One `tandem server` (release build, SQLite, local directory) is filled through
the official mlflow client with a workspace of at least 1 M metric points and
1 GB of artifacts. Then, timed:

1. `tandem backup create` (full) into a repository on the same disk;
2. a 1% change (1% more metric points, 1% more artifact bytes), then
   `tandem backup create` again (incremental);
3. `tandem backup restore` of the latest backup into a second, empty
   `tandem server`, whose workspace is then checked against the source's;
4. the by-hand peer: stop the server and copy its data directory (SQLite
   file and artifact tree), as teams back up `mlflow server` today — every
   copy is a full one, before and after the 1% change.

Not run in CI. See bench/README.md ("Backup and restore").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Proc, free_port, http_json, log, table  # noqa: E402

MIB = 1024 * 1024
DEFAULT_TARGET = os.environ.get("CARGO_TARGET_DIR", "/root/.cache/tandem-target-bench")
DEFAULT_TANDEM_BIN = os.path.join(DEFAULT_TARGET, "release", "tandem")
DEFAULT_CLIENT_PYTHON = "/root/.cache/tandem-venv/bin/python"


# --------------------------------------------------------------------------
# Worker: fills or changes the workspace through the mlflow client.
# --------------------------------------------------------------------------


def worker_main(params: dict) -> dict:
    import mlflow  # noqa: F401
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=params["tracking_uri"])
    experiment = client.get_experiment_by_name("backup-bench")
    experiment_id = (experiment.experiment_id if experiment
                     else client.create_experiment("backup-bench"))
    run = client.create_run(experiment_id, run_name=params["label"])
    run_id = run.info.run_id
    points, keys, batch = params["metric_points"], params["metric_keys"], 1000
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    for start in range(0, points, batch):
        metrics = [Metric(f"m{(start + i) % keys}", float(start + i), now, (start + i) // keys)
                   for i in range(min(batch, points - start))]
        client.log_batch(run_id, metrics=metrics)
    metrics_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    left, n = params["artifact_bytes"], 0
    with tempfile.TemporaryDirectory(dir=params["tmp_dir"]) as tmp:
        while left > 0:
            size = min(left, params["file_mb"] * MIB)
            path = os.path.join(tmp, f"blob-{params['label']}-{n:03}.bin")
            with open(path, "wb") as f:
                written = 0
                while written < size:
                    chunk = os.urandom(min(8 * MIB, size - written))
                    f.write(chunk)
                    written += len(chunk)
            client.log_artifact(run_id, path, artifact_path="data")
            os.remove(path)
            left -= size
            n += 1
    artifacts_s = time.perf_counter() - t0
    client.set_terminated(run_id)
    return {"run_id": run_id, "metrics_s": metrics_s, "artifacts_s": artifacts_s, "files": n}


# --------------------------------------------------------------------------
# Driver (standard library only).
# --------------------------------------------------------------------------


class Server(Proc):
    def __init__(self, args, root: str, name: str):
        self.port = free_port()
        self.data = os.path.join(root, f"{name}-data")
        os.makedirs(self.data)
        env = {**os.environ, "TANDEM_LOG": os.environ.get("TANDEM_LOG", "warn")}
        super().__init__(name, [args.tandem_bin, "server", "--listen", f"127.0.0.1:{self.port}",
                                "--data", self.data], os.path.join(root, f"{name}.log"), env=env)
        self.wait_http(self.url + "/health", args.startup_timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def fill(args, url: str, label: str, metric_points: int, artifact_bytes: int) -> dict:
    params = {"tracking_uri": url, "label": label, "metric_points": metric_points,
              "metric_keys": args.metric_keys, "artifact_bytes": artifact_bytes,
              "file_mb": args.file_mb, "tmp_dir": args.tmp_dir}
    out = subprocess.run([args.client_python, os.path.abspath(__file__), "--worker", json.dumps(params)],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=args.worker_timeout,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"workload '{label}' failed (exit {out.returncode})")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def tandem(args, url: str, *argv: str) -> tuple[dict, float]:
    """Runs a `tandem` CLI command with --json; its result and wall time."""
    t0 = time.perf_counter()
    out = subprocess.run([args.tandem_bin, *argv, "--url", url, "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=args.worker_timeout)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"tandem {' '.join(argv)} failed (exit {out.returncode}): "
                           f"{out.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(out.stdout), elapsed


def du(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


def copy_by_hand(src: str, dst: str) -> float:
    """What a team does for `mlflow server` today: the server stopped, copy
    the database file and the artifact tree (`cp -a`), all of it each time."""
    t0 = time.perf_counter()
    subprocess.run(["cp", "-a", src, dst], check=True)
    subprocess.run(["sync", "-f", dst], check=True)
    return time.perf_counter() - t0


def workspace_digest(url: str) -> dict:
    """What the check compares between source and restored workspace (a
    copy gets new run ids): every run's metric points and artifact sizes, by
    run name, read back over the API."""
    experiment = http_json("GET", f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=backup-bench")
    runs = http_json("POST", f"{url}/api/2.0/mlflow/runs/search",
                     {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100})
    digest = {}
    for run in runs.get("runs", []):
        run_id, name = run["info"]["run_id"], run["info"]["run_name"]
        keys = sorted(m["key"] for m in run["data"].get("metrics", []))
        points = 0
        for key in keys:
            token = None
            while True:
                query = {"run_id": run_id, "metric_key": key, "max_results": 25000}
                if token:
                    query["page_token"] = token
                page = http_json("GET", f"{url}/api/2.0/mlflow/metrics/get-history?"
                                 + urllib.parse.urlencode(query), timeout=60)
                points += len(page.get("metrics", []))
                token = page.get("next_page_token")
                if not token:
                    break
        files = http_json("GET", f"{url}/api/2.0/mlflow/artifacts/list?"
                          + urllib.parse.urlencode({"run_id": run_id, "path": "data"}))
        sizes = sorted((f["path"], int(f.get("file_size", 0))) for f in files.get("files", []))
        digest[name] = {"metric_keys": len(keys), "points": points, "artifacts": sizes}
    return digest


def run(args) -> dict:
    root = tempfile.mkdtemp(prefix="tandem-bench-backup-", dir=args.tmp_dir)
    repo = os.path.join(root, "repository")
    repo_url = "file://" + repo
    results: dict = {"metric_points": args.metric_points, "artifact_mb": args.artifact_mb}
    servers: list[Server] = []
    try:
        source = Server(args, root, "source")
        servers.append(source)
        log(f"== filling {source.url}: {args.metric_points:,} metric points, {args.artifact_mb} MB of artifacts")
        first = fill(args, source.url, "base", args.metric_points, args.artifact_mb * MIB)
        results["fill"] = first

        log("== full backup")
        full, results["full_s"] = tandem(args, source.url, "backup", "create", "--to", repo_url,
                                         "--workspace", "default")
        results["full"] = full
        results["repository_mb_after_full"] = du(repo) / MIB

        log("== 1% change")
        change_points = max(1, args.metric_points // 100)
        change_bytes = max(1, args.artifact_mb * MIB // 100)
        second = fill(args, source.url, "change", change_points, change_bytes)
        log("== incremental backup")
        incremental, results["incremental_s"] = tandem(args, source.url, "backup", "create", "--to",
                                                       repo_url, "--workspace", "default")
        results["incremental"] = incremental
        results["repository_mb_after_incremental"] = du(repo) / MIB

        log("== restore into an empty region")
        target = Server(args, root, "target")
        servers.append(target)
        # The empty region has its own `default` workspace: restore beside it.
        restored, results["restore_s"] = tandem(args, target.url, "backup", "restore", "--from", repo_url,
                                                "--into", target.url, "--workspace", "default",
                                                "--as", "restored")
        results["restore"] = restored
        if not args.skip_check:
            log("== checking the restored workspace against the source")
            a, b = workspace_digest(source.url), workspace_digest(target.url + "/w/restored")
            assert len(a) == 2, a
            results["restored_equal"] = a == b
            if a != b:
                log(f"!! restored workspace differs:\n{json.dumps(a)[:2000]}\n{json.dumps(b)[:2000]}")

        log("== by hand: stop the server, copy its data directory")
        source.stop()
        results["data_dir_mb"] = du(source.data) / MIB
        results["by_hand_s"] = copy_by_hand(source.data, os.path.join(root, "copy-by-hand"))
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return results


def pick(doc: dict, *names, default=None):
    """The first of `names` found in `doc` or its `result`/`backup` object."""
    for scope in (doc, doc.get("result", {}), doc.get("backup", {}), doc.get("manifest", {})):
        if isinstance(scope, dict):
            for name in names:
                if name in scope:
                    return scope[name]
    return default


def records_of(doc: dict) -> int:
    count = pick(doc, "records")
    if count is None:
        count = sum(w.get("records", 0) for w in pick(doc, "workspaces", default=[]))
    return int(count or 0)


def report(r: dict, out) -> None:
    full_mb = (pick(r["full"], "copied_bytes", default=0) or 0) / MIB
    inc_mb = (pick(r["incremental"], "copied_bytes", default=0) or 0) / MIB
    records = records_of(r["full"])
    restored_mb = (pick(r["restore"], "bytes", default=0) or 0) / MIB
    restored_records = records_of(r["restore"])
    points = r["metric_points"] + max(1, r["metric_points"] // 100)
    rows = [["measure", "Tandem", "by hand (cp -a, server stopped)", "ratio"]]
    rows.append(["full backup", f"{r['full_s']:.1f} s ({full_mb / r['full_s']:.0f} MB/s, "
                 f"{records / r['full_s']:,.0f} records/s, {r['metric_points'] / r['full_s']:,.0f} metric points/s)", f"{r['by_hand_s']:.1f} s "
                 f"({r['data_dir_mb'] / r['by_hand_s']:.0f} MB/s)", f"{r['by_hand_s'] / r['full_s']:.2f}×"])
    rows.append(["incremental after 1% change", f"{r['incremental_s']:.2f} s, {inc_mb:.0f} MB copied "
                 f"({100 * r['incremental_s'] / r['full_s']:.1f}% of full time, "
                 f"{100 * inc_mb / max(full_mb, 1e-9):.1f}% of its bytes)",
                 f"{r['by_hand_s']:.1f} s (100%)", f"{r['by_hand_s'] / r['incremental_s']:.1f}×"])
    rows.append(["restore into an empty region", f"{r['restore_s']:.1f} s ({restored_mb / r['restore_s']:.0f} MB/s, "
                 f"{restored_records / r['restore_s']:,.0f} records/s, {points / r['restore_s']:,.0f} metric points/s)", "-", "-"])
    rows.append(["repository size", f"{r['repository_mb_after_incremental']:.0f} MB (two backups)",
                 f"{2 * r['data_dir_mb']:.0f} MB (two copies)", "-"])
    print(f"workspace: {points:,} metric points, {r['artifact_mb'] * 1.01:.0f} MB of artifacts; "
          f"restored workspace equal to the source: {r.get('restored_equal', 'not checked')}", file=out)
    table(rows, out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    p.add_argument("--client-python", default=DEFAULT_CLIENT_PYTHON)
    p.add_argument("--metric-points", type=int, default=1_000_000)
    p.add_argument("--metric-keys", type=int, default=10)
    p.add_argument("--artifact-mb", type=int, default=1024)
    p.add_argument("--file-mb", type=int, default=64)
    p.add_argument("--tmp-dir", default=None)
    p.add_argument("--startup-timeout", type=float, default=30)
    p.add_argument("--worker-timeout", type=float, default=3600)
    p.add_argument("--skip-check", action="store_true", help="do not compare the restored workspace")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker_main(json.loads(args.worker))))
        return 0
    results = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    report(results, sys.stdout)
    return 0 if results.get("restored_equal", True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
