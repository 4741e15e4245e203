#!/usr/bin/env python3
"""Moving a whole `mlflow server` (issue 16, item 9): `tandem import` vs
mlflow-export-import (`export-all`, then `import-all` into a second `mlflow
server`), the same generated source for both, on this machine.

The source is an `mlflow server` 3.17.2 (SQLite, artifacts through its
proxy) filled over REST by this program: `--runs` runs in 4 experiments
(5 params, 3 tags, finished with start and end times), `--points` metric
points in all (one NaN among them), `--artifact-mb` of random artifacts
(8 MiB files), `--models` registered models (6: 54 versions) of 10 versions each with a gap
(version 5 deleted), version 1 in Production and an alias. Then:

- `tandem import --from SOURCE --into default` into a fresh `tandem server`
  (release build): wall time;
- `export-all` from the source into a directory, `import-all` from it into
  a fresh `mlflow server` (mlflow-export-import 1.2.0, `--use-threads`
  as given): wall time of both;
- each copy compared with the source over REST: every experiment, run
  (status, times, params, tags, every metric point, every artifact's
  size), registered model version (number, stage, description, the run
  name of its run) and alias; the objects that differ are counted and the
  first differences of each kind printed. Tags a tool writes about itself
  (`tandem.origin`, `mlflow_exim.*`) are not counted;
- the same `tandem import` reading the source's own database and artifact
  directory (`--from sqlite:///…/mlflow.db --from-artifacts …`) into a
  second fresh `tandem server`: wall time, objects differing;
- 1% of the runs changed at the source (a metric point and a tag each),
  each `tandem import` again: its wall time beside its full copy's.

    bash bench/setup-moving.sh          # venv with mlflow 3.17.2 + mlflow-export-import 1.2.0
    python3 bench/moving.py             # 2,000 runs, 1,000,000 points, 1 GiB, 54 versions
    python3 bench/moving.py --runs 200 --points 100000 --artifact-mb 64 --models 1   # a quick look

Runs with the venv's python (`--venv`, default ~/.cache/mlflow-exim-venv):
it needs `requests`, and `mlflow` for the servers and export-import.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, log, table, tail  # noqa: E402
from run import DEFAULT_TANDEM_BIN, Server  # noqa: E402

TOOL_TAGS = ("tandem.origin", "mlflow_exim")
FILE_MB = 8


def api(session, base: str, method: str, route: str, body=None, params=None):
    response = session.request(method, f"{base}/api/2.0/mlflow/{route}", json=body, params=params, timeout=600)
    if response.status_code != 200:
        raise RuntimeError(f"{method} {route}: {response.status_code} {response.text[:300]}")
    return response.json()


def pages(session, base: str, route: str, body: dict, field: str, get=False) -> list:
    out, token = [], None
    while True:
        request = dict(body, **({"page_token": token} if token else {}))
        answer = api(session, base, "GET" if get else "POST", route,
                     params=request if get else None, body=None if get else request)
        out.extend(answer.get(field, []))
        token = answer.get("next_page_token")
        if not token:
            return out


def mlflow_server(venv: str, root: str) -> Server:
    port = free_port()
    data = os.path.join(root, "data")
    os.makedirs(data)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    argv = [os.path.join(venv, "bin", "mlflow"), "server", "--backend-store-uri", f"sqlite:///{data}/mlflow.db",
            "--artifacts-destination", f"{data}/artifacts", "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    return Server("mlflow", argv, env, port, data, os.path.join(root, "server.log"))


def tandem_server(binary: str, root: str) -> Server:
    port = free_port()
    data = os.path.join(root, "data")
    os.makedirs(data)
    env = dict(os.environ, TANDEM_LOG="warn")
    argv = [binary, "server", "--listen", f"127.0.0.1:{port}", "--data", data]
    return Server("tandem", argv, env, port, data, os.path.join(root, "server.log"))


def fill(base: str, args) -> None:
    """The source, written over REST by a few threads."""
    import requests
    session = requests.Session()
    experiments = [api(session, base, "POST", "experiments/create", {"name": f"bench-{i}", "tags": [
        {"key": "team", "value": f"t{i}"}]})["experiment_id"] for i in range(4)]
    per_run = max(1, math.ceil(args.points / args.runs))
    files = math.ceil(args.artifact_mb / FILE_MB)
    now = int(time.time() * 1000) - 10_000_000
    blob = os.urandom(FILE_MB << 20)

    def make(i: int) -> tuple[str, str]:
        s = requests.Session()
        experiment = experiments[i % len(experiments)]
        start = now + i * 1000
        run = api(s, base, "POST", "runs/create", {
            "experiment_id": experiment, "run_name": f"run-{i:05d}", "start_time": start, "user_id": "bench",
            "tags": [{"key": f"t{k}", "value": f"v{i % 7}"} for k in range(3)]})["run"]["info"]
        run_id = run["run_id"]
        api(s, base, "POST", "runs/log-batch", {"run_id": run_id, "params": [
            {"key": f"p{k}", "value": str((i * 31 + k) % 97)} for k in range(5)]})
        points = [{"key": "loss", "value": 1.0 / (step + 1 + i), "timestamp": start + step, "step": step}
                  for step in range(per_run)]
        if i == 0:
            points[0]["value"] = "NaN"
        for chunk in range(0, per_run, 1000):
            api(s, base, "POST", "runs/log-batch", {"run_id": run_id, "metrics": points[chunk:chunk + 1000]})
        if i < files:
            # A different file per run: the first bytes are the run's.
            body = i.to_bytes(8, "big") + blob[8:]
            root = run["artifact_uri"].removeprefix("mlflow-artifacts:")
            response = s.put(f"{base}/api/2.0/mlflow-artifacts/artifacts{root}/model/data.bin", data=body,
                             timeout=600)
            response.raise_for_status()
        api(s, base, "POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": start + 999})
        return run_id, run["artifact_uri"]

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(make, range(args.runs)))
    for m in range(args.models):
        name = f"bench-model-{m}"
        api(session, base, "POST", "registered-models/create", {"name": name, "description": f"model {m}"})
        for v in range(1, 11):
            run_id, uri = runs[(m * 10 + v) % min(len(runs), max(files, 1))]
            api(session, base, "POST", "model-versions/create", {
                "name": name, "source": f"{uri}/model", "run_id": run_id, "description": f"v{v}"})
        api(session, base, "DELETE", "model-versions/delete", {"name": name, "version": "5"})
        api(session, base, "POST", "model-versions/transition-stage",
            {"name": name, "version": "1", "stage": "Production", "archive_existing_versions": False})
        api(session, base, "POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "10"})
    log(f"source filled in {time.perf_counter() - started:.0f} s: {args.runs} runs, "
        f"{per_run * args.runs} points, {files * FILE_MB} MiB, {args.models * 9} versions")


def snapshot(base: str) -> dict:
    """Everything compared, keyed by names (ids differ between servers)."""
    import requests
    session = requests.Session()
    out: dict = {"experiments": {}, "runs": {}, "versions": {}, "aliases": {}}
    experiments = pages(session, base, "experiments/search", {"max_results": 1000, "view_type": "ALL"}, "experiments")
    run_names: dict[str, str] = {}
    listed = []
    for experiment in experiments:
        if not experiment["name"].startswith("bench-"):
            continue
        tags = {t["key"]: t["value"] for t in experiment.get("tags", []) if not t["key"].startswith(TOOL_TAGS)
                and not t["key"].startswith("mlflow.")}
        out["experiments"][experiment["name"]] = (experiment["lifecycle_stage"], tags)
        for run in pages(session, base, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                                         "max_results": 1000, "run_view_type": "ALL"}, "runs"):
            listed.append((experiment["name"], run))
            run_names[run["info"]["run_id"]] = run["info"]["run_name"]

    def one(item):
        experiment, run = item
        s = requests.Session()
        info, data = run["info"], run.get("data", {})
        history = {}
        for metric in data.get("metrics", []):
            points = pages(s, base, "metrics/get-history", {"run_id": info["run_id"], "metric_key": metric["key"],
                                                            "max_results": 25000}, "metrics", get=True)
            history[metric["key"]] = sorted((p["step"], p["timestamp"], str(float(p["value"]))) for p in points)
        files, directories = [], [""]
        while directories:
            path = directories.pop()
            answer = api(s, base, "GET", "artifacts/list", params={"run_id": info["run_id"], "path": path})
            for f in answer.get("files", []):
                (directories.append(f["path"]) if f["is_dir"] else files.append((f["path"], f.get("file_size"))))
        tags = {t["key"]: t["value"] for t in data.get("tags", []) if not t["key"].startswith(TOOL_TAGS)}
        if "mlflow.parentRunId" in tags:
            tags["mlflow.parentRunId"] = run_names.get(tags["mlflow.parentRunId"])
        return info["run_name"], {
            "experiment": experiment, "status": info["status"], "start": info.get("start_time"),
            "end": info.get("end_time"), "user": info.get("user_id"), "lifecycle": info["lifecycle_stage"],
            "params": {p["key"]: p["value"] for p in data.get("params", [])}, "tags": tags,
            "history": history, "files": sorted(files)}

    with ThreadPoolExecutor(8) as pool:
        out["runs"] = dict(pool.map(one, listed))
    for model in pages(session, base, "registered-models/search", {"max_results": 1000}, "registered_models", get=True):
        name = model["name"]
        out["aliases"][name] = sorted((a["alias"], a["version"]) for a in model.get("aliases", []))
        for version in pages(session, base, "model-versions/search", {"filter": f"name='{name}'",
                                                                       "max_results": 1000}, "model_versions", get=True):
            out["versions"][(name, version["version"])] = (
                version["current_stage"], version.get("description", ""), run_names.get(version.get("run_id")),
                {t["key"]: t["value"] for t in version.get("tags", []) if not t["key"].startswith(TOOL_TAGS)})
    return out


def differences(source: dict, copy: dict) -> tuple[int, list[str]]:
    count, samples = 0, []
    for kind in ("experiments", "runs", "versions", "aliases"):
        for key, value in source[kind].items():
            theirs = copy[kind].get(key)
            if theirs == value:
                continue
            count += 1
            if len([s for s in samples if s.startswith(kind)]) < 3:
                if theirs is None:
                    samples.append(f"{kind} {key}: missing")
                elif isinstance(value, dict):
                    fields = [f for f in value if value[f] != theirs.get(f)]
                    samples.append(f"{kind} {key}: {', '.join(fields)} differ")
                else:
                    samples.append(f"{kind} {key}: {value} vs {theirs}")
        extra = set(copy[kind]) - set(source[kind])
        count += len(extra)
        if extra:
            samples.append(f"{kind}: {len(extra)} not in the source, e.g. {sorted(extra, key=str)[0]}")
    return count, samples


def timed(argv: list[str], env: dict, log_path: str) -> float:
    """Wall time of a command. Waited for by a blocking wait, not
    `subprocess.run(timeout=…)`, which polls every 50 ms: a copy of a
    fraction of a second would be timed up to 50 ms long."""
    started = time.perf_counter()
    with open(log_path, "ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=os.path.dirname(log_path))
        watchdog = threading.Timer(6 * 3600, process.kill)
        watchdog.start()
        try:
            returncode = process.wait()
        finally:
            watchdog.cancel()
    took = time.perf_counter() - started
    if returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {returncode}:\n{tail(log_path, 30)}")
    return took


def export_import(args, root: str, source, original: dict, servers: list):
    """mlflow-export-import's export-all then import-all into a fresh `mlflow server`."""
    target = mlflow_server(args.venv, os.path.join(root, "target"))
    servers.append(target)
    target.start(180)
    bin_dir = os.path.join(args.venv, "bin")
    env = dict(os.environ, MLFLOW_TRACKING_URI=source.url, PATH=bin_dir + os.pathsep + os.environ["PATH"])
    dump = os.path.join(root, "exim")
    log("mlflow-export-import: export-all")
    export_s = timed([os.path.join(bin_dir, "export-all"), "--output-dir", dump, "--use-threads", args.use_threads],
                     env, os.path.join(root, "exim.log"))
    env["MLFLOW_TRACKING_URI"] = target.url
    log("mlflow-export-import: import-all")
    import_s = timed([os.path.join(bin_dir, "import-all"), "--input-dir", dump, "--use-threads", args.use_threads],
                     env, os.path.join(root, "exim.log"))
    exim_s = export_s + import_s
    exim_diff, exim_samples = differences(original, snapshot(target.url))
    return export_s, import_s, exim_s, exim_diff, exim_samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--artifact-mb", type=int, default=1024)
    p.add_argument("--models", type=int, default=6, help="registered models of 10 versions, one deleted: 54 versions")
    p.add_argument("--venv", default=os.path.expanduser("~/.cache/mlflow-exim-venv"))
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    p.add_argument("--use-threads", choices=["true", "false"], default="true", help="export-import's own option")
    p.add_argument("--skip-exim", action="store_true",
                   help="only Tandem (a quicker look at its own figures; no ratio)")
    p.add_argument("--tmp-dir", default=None)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    # A SIGTERM stops the servers too (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = tempfile.mkdtemp(prefix="tandem-bench-moving-", dir=args.tmp_dir)
    servers = []
    try:
        source = mlflow_server(args.venv, os.path.join(root, "source"))
        servers.append(source)
        source.start(180)
        fill(source.url, args)
        log("reading the source back")
        original = snapshot(source.url)

        tandem = tandem_server(args.tandem_bin, os.path.join(root, "tandem"))
        servers.append(tandem)
        tandem.start(60)
        tandem_argv = [args.tandem_bin, "import", "--from", source.url, "--into", "default", "--json",
                       "--url", tandem.url]
        log("tandem import")
        tandem_s = timed(tandem_argv, os.environ.copy(), os.path.join(root, "tandem-import.log"))
        tandem_diff, tandem_samples = differences(original, snapshot(tandem.url))

        # The same copy read from the source's own database and artifact root.
        store = tandem_server(args.tandem_bin, os.path.join(root, "tandem-store"))
        servers.append(store)
        store.start(60)
        store_argv = [args.tandem_bin, "import", "--from", f"sqlite:///{source.data}/mlflow.db",
                      "--from-artifacts", f"{source.data}/artifacts", "--into", "default", "--json",
                      "--url", store.url]
        log("tandem import from the source's store")
        store_s = timed(store_argv, os.environ.copy(), os.path.join(root, "tandem-store-import.log"))
        store_diff, store_samples = differences(original, snapshot(store.url))

        export_s = import_s = exim_s = float("nan")
        exim_diff, exim_samples = -1, []
        if not args.skip_exim:
            export_s, import_s, exim_s, exim_diff, exim_samples = export_import(args, root, source, original, servers)

        # 1% of the runs change at the source; Tandem copies the change.
        import requests
        session = requests.Session()
        experiment_ids = [e["experiment_id"] for e in pages(session, source.url, "experiments/search",
                                                             {"max_results": 1000}, "experiments")]
        changed = api(session, source.url, "POST", "runs/search", {
            "experiment_ids": experiment_ids, "max_results": max(1, args.runs // 100)})["runs"]
        for run in changed:
            run_id = run["info"]["run_id"]
            api(session, source.url, "POST", "runs/log-batch", {"run_id": run_id, "metrics": [
                {"key": "loss", "value": 0.5, "timestamp": int(time.time() * 1000), "step": 10**6}],
                "tags": [{"key": "changed", "value": "yes"}]})
        log("tandem import after a 1% change")
        incremental_s = timed(tandem_argv, os.environ.copy(), os.path.join(root, "tandem-import.log"))
        changed_source = snapshot(source.url)
        after_diff, after_samples = differences(changed_source, snapshot(tandem.url))
        log("tandem import from the source's store after a 1% change")
        store_incremental_s = timed(store_argv, os.environ.copy(), os.path.join(root, "tandem-store-import.log"))
        store_after_diff, store_after_samples = differences(changed_source, snapshot(store.url))

        files = math.ceil(args.artifact_mb / FILE_MB)
        shape = (f"{args.runs} runs, {max(1, math.ceil(args.points / args.runs)) * args.runs} points, "
                 f"{files * FILE_MB} MiB in {files} files, {args.models * 9} versions")
        rows = [["", "tandem import", "export-all + import-all", "ratio"],
                ["full copy, wall s", f"{tandem_s:.1f}", f"{exim_s:.1f} ({export_s:.1f} + {import_s:.1f})",
                 "n/a" if args.skip_exim else f"{exim_s / tandem_s:.1f}x"],
                ["objects differing from the source", str(tandem_diff), str(exim_diff), ""],
                ["after a 1% change, wall s", f"{incremental_s:.2f} ({100 * incremental_s / tandem_s:.1f}% of full)",
                 "n/a", ""],
                ["  objects differing after it", str(after_diff), "", ""],
                ["from the source's database and files (--from sqlite:///…):", "", "", ""],
                ["full copy, wall s", f"{store_s:.1f}", "", ""],
                ["objects differing from the source", str(store_diff), "", ""],
                ["after a 1% change, wall s",
                 f"{store_incremental_s:.2f} ({100 * store_incremental_s / store_s:.1f}% of full)", "", ""],
                ["  objects differing after it", str(store_after_diff), "", ""]]
        print(f"moving an mlflow server: {shape}; export-import --use-threads {args.use_threads}")
        table(rows, sys.stdout)
        for label, samples in (("tandem", tandem_samples + after_samples),
                               ("tandem from the store", store_samples + store_after_samples),
                               ("export-import", exim_samples)):
            for sample in samples:
                print(f"  {label}: {sample}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"shape": shape, "tandem_s": tandem_s, "exim_export_s": export_s,
                           "exim_import_s": import_s, "tandem_differences": tandem_diff,
                           "exim_differences": exim_diff, "incremental_s": incremental_s,
                           "differences_after_incremental": after_diff,
                           "store_s": store_s, "store_differences": store_diff,
                           "store_incremental_s": store_incremental_s,
                           "store_differences_after_incremental": store_after_diff,
                           "samples": {"tandem": tandem_samples + after_samples, "exim": exim_samples}}, f, indent=2)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
