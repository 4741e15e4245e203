#!/usr/bin/env python3
"""Tandem vs `mlflow server` side-by-side benchmark.

Starts each server on 127.0.0.1 with a fresh temporary data directory, runs
ONE client workload (the official `mlflow` Python client, MlflowClient)
against it in a separate process, samples the server process tree's RSS while
it runs, stops the server, and prints both figures and their ratio.

The orchestrator (this file run without --worker) uses only the standard
library, so any python3 can run it. The workload runs in a child process
under --client-python (a venv with mlflow or mlflow-skinny installed); the
same client is used for both servers.

Not run in CI. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import busy_cores, free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1024 * 1024

DEFAULT_TARGET = os.environ.get("CARGO_TARGET_DIR", "/root/.cache/tandem-target-bench")
DEFAULT_TANDEM_BIN = os.path.join(DEFAULT_TARGET, "release", "tandem")
DEFAULT_PEER_VENV = "/root/.cache/mlflow-peer-venv"
DEFAULT_CLIENT_PYTHON = "/root/.cache/tandem-venv/bin/python"

# Figures measured earlier on this machine kind for `mlflow server` 3.17.2;
# used for ratios when the peer is not run (--only tandem).
REFERENCE_MLFLOW = {
    "log_metric_calls_per_s": 19.8,
    "log_batch_metrics_per_s": 5200.0,
    "peak_rss_mb": 2100.0,
    "upload_mb_per_s": 313.0,
    "download_mb_per_s": 150.0,
    "small_upload_files_per_s": 350.0,
}

# name, label, unit, higher_is_better, goal (as a ratio "x better than mlflow",
# or an absolute bound for RSS).
SECTIONS = [
    ("log_metric_calls_per_s", "log_metric", "calls/s", True, ("ratio", 20.0)),
    ("log_batch_metrics_per_s", "log_batch", "metrics/s", True, ("ratio", 10.0)),
    ("peak_rss_mb", "peak_rss", "MB", False, ("max", 100.0)),
    ("peak_pss_mb", "peak_pss", "MB", False, None),
    ("upload_mb_per_s", "upload", "MB/s", True, ("ratio", 1.0)),
    ("download_mb_per_s", "download", "MB/s", True, ("ratio", 2.0)),
    ("small_upload_files_per_s", "small_upload", "files/s", True, ("ratio", 2.0)),
    ("small_download_files_per_s", "small_download", "files/s", True, None),
]


# --------------------------------------------------------------------------
# Worker: the client workload (runs under --client-python).
# --------------------------------------------------------------------------


def worker_main(params: dict) -> dict:
    # Keep the client's behaviour at its defaults except for what would make the
    # measurement meaningless (no async logging; it is off by default anyway).
    os.environ.pop("MLFLOW_ENABLE_ASYNC_LOGGING", None)
    import mlflow  # noqa: F401
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = params["tracking_uri"]
    sections = set(params["sections"])
    client = MlflowClient(tracking_uri=uri)
    out: dict = {"client_mlflow_version": mlflow.__version__}

    if params.get("null_server"):
        # Calibration against a responder that answers {} at once: what the
        # client itself costs. No downloads (it serves no bytes); uploads go
        # through the same artifact repository class the client picks for a
        # mlflow-artifacts:/ run (it cannot answer get_run).
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        run_id = "0" * 32
        sections -= {"download"}
        null_repo = get_artifact_repository(
            f"{uri}/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts")
        out["artifact_repository"] = type(null_repo).__name__
    else:
        experiment_id = client.create_experiment(f"bench-{os.getpid()}-{time.time_ns()}")
        run = client.create_run(experiment_id)
        run_id = run.info.run_id
        out["artifact_uri"] = run.info.artifact_uri

    def log(msg: str) -> None:
        print(f"[worker] {msg}", file=sys.stderr, flush=True)

    server_pid = params.get("server_pid")
    cpu: dict = {}
    out["cpu"] = cpu

    class Meter:
        """Wall time, client CPU and server-tree CPU spent in one section."""

        def __init__(self, name: str, ops: int = 0):
            self.name, self.ops = name, ops

        def __enter__(self):
            self.w, self.c = time.perf_counter(), time.process_time()
            self.s = tree_cpu_s(server_pid) if server_pid else 0.0
            return self

        def __exit__(self, *exc):
            wall = time.perf_counter() - self.w
            entry = {"wall_s": wall, "client_cpu_s": time.process_time() - self.c}
            if server_pid:
                entry["server_cpu_s"] = tree_cpu_s(server_pid) - self.s
            if self.ops:
                entry["ops"] = self.ops
                for k in ("wall_s", "client_cpu_s", "server_cpu_s"):
                    if k in entry:
                        entry[k.replace("_s", "_ms") + "_per_op"] = 1000 * entry[k] / self.ops
            cpu[self.name] = entry
            return False

    # 1. sequential log_metric calls.
    if "metric" in sections:
        for i in range(params["warmup_calls"]):
            client.log_metric(run_id, "warmup", float(i), step=i)
        n_max, t_max = params["metric_calls"], params["metric_seconds"]
        latencies = []
        with Meter("log_metric") as meter:
            start = time.perf_counter()
            i = 0
            while i < n_max:
                t0 = time.perf_counter()
                client.log_metric(run_id, "loss", 1.0 / (i + 1), step=i)
                t1 = time.perf_counter()
                latencies.append(t1 - t0)
                i += 1
                if t1 - start >= t_max:
                    break
            elapsed = time.perf_counter() - start
            meter.ops = i
        latencies.sort()
        out["log_metric"] = {
            "calls": i,
            "seconds": elapsed,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        }
        out["log_metric_calls_per_s"] = i / elapsed
        log(f"log_metric: {i} calls in {elapsed:.2f}s = {i / elapsed:.1f}/s")

    # 2. log_batch at batch_size metrics per batch: `batch_keys` keys, each with
    # batch_size / batch_keys consecutive steps per batch.
    if "batch" in sections:
        size, keys = params["batch_size"], params["batch_keys"]
        per_key = max(1, size // keys)
        ts = int(time.time() * 1000)

        def make_batch(b: int) -> list:
            return [
                Metric(f"batch_m{k}", float(b * per_key + s), ts + b, b * per_key + s)
                for k in range(keys)
                for s in range(per_key)
            ][:size]

        batches = [make_batch(b) for b in range(params["batch_count"] + 1)]
        client.log_batch(run_id, metrics=batches[0])  # warm-up
        with Meter("log_batch") as meter:
            start = time.perf_counter()
            metrics = 0
            n = 0
            for batch in batches[1:]:
                client.log_batch(run_id, metrics=batch)
                metrics += len(batch)
                n += 1
                if time.perf_counter() - start >= params["batch_seconds"]:
                    break
            elapsed = time.perf_counter() - start
            meter.ops = n
        out["log_batch"] = {"batches": n, "metrics": metrics, "seconds": elapsed}
        out["log_batch_metrics_per_s"] = metrics / elapsed
        log(f"log_batch: {n} x {size} metrics in {elapsed:.2f}s = {metrics / elapsed:.0f}/s")

    work = tempfile.mkdtemp(prefix="tandem-bench-client-", dir=params.get("tmp_dir"))
    try:
        # 4. one big artifact, uploaded and downloaded `artifact_repeats` times.
        if "upload" in sections or "download" in sections:
            size = params["artifact_mb"] * MIB
            src_dir = os.path.join(work, "big")
            os.makedirs(src_dir)
            src = os.path.join(src_dir, "blob.bin")
            with open(src, "wb") as f:
                chunk = os.urandom(MIB)
                for i in range(params["artifact_mb"]):
                    # Vary each MiB so nothing along the way can dedupe it.
                    f.write(i.to_bytes(8, "little") + chunk[8:])
            ups, downs = [], []
            with Meter("upload", params["artifact_repeats"]):
                for r in range(params["artifact_repeats"]):
                    t0 = time.perf_counter()
                    if params.get("null_server"):
                        null_repo.log_artifact(src, artifact_path=f"big/{r}")
                    else:
                        client.log_artifact(run_id, src, artifact_path=f"big/{r}")
                    ups.append(time.perf_counter() - t0)
                    log(f"upload {r}: {size / MIB / ups[-1]:.0f} MB/s")
            if "download" in sections:
                for r in range(params["artifact_repeats"]):
                    dst = os.path.join(work, f"down-{r}")
                    os.makedirs(dst)
                    with Meter(f"download_{r}", 1):
                        t0 = time.perf_counter()
                        got = client.download_artifacts(run_id, f"big/{r}/blob.bin", dst_path=dst)
                        downs.append(time.perf_counter() - t0)
                    got_size = os.path.getsize(got)
                    if got_size != size:
                        raise RuntimeError(f"downloaded {got_size} bytes, expected {size}")
                    if r == 0 and not _same_file(src, got):
                        raise RuntimeError("downloaded artifact differs from the uploaded one")
                    shutil.rmtree(dst)
                    log(f"download {r}: {size / MIB / downs[-1]:.0f} MB/s")
            out["artifact"] = {"mb": params["artifact_mb"], "upload_s": ups, "download_s": downs}
            out["upload_mb_per_s"] = size / MIB / statistics.median(ups)
            if downs:
                out["download_mb_per_s"] = size / MIB / statistics.median(downs)

        # 5. many small files: log_artifacts of a directory, then download it.
        if "small" in sections:
            n, kb = params["small_files"], params["small_file_kb"]
            src = os.path.join(work, "small")
            os.makedirs(src)
            for i in range(n):
                with open(os.path.join(src, f"f{i:05d}.txt"), "wb") as f:
                    f.write(os.urandom(kb * 1024))
            ups, downs = [], []
            for r in range(params["small_repeats"]):
                with Meter(f"small_upload_{r}", n):
                    t0 = time.perf_counter()
                    if params.get("null_server"):
                        null_repo.log_artifacts(src, artifact_path=f"small/{r}")
                    else:
                        client.log_artifacts(run_id, src, artifact_path=f"small/{r}")
                    ups.append(time.perf_counter() - t0)
                log(f"small upload {r}: {n / ups[-1]:.0f} files/s")
            for r in range(params["small_repeats"] if "download" in sections else 0):
                dst = os.path.join(work, f"small-down-{r}")
                os.makedirs(dst)
                with Meter(f"small_download_{r}", n):
                    t0 = time.perf_counter()
                    got = client.download_artifacts(run_id, f"small/{r}", dst_path=dst)
                    downs.append(time.perf_counter() - t0)
                count = len(os.listdir(got))
                if count != n:
                    raise RuntimeError(f"downloaded {count} small files, expected {n}")
                shutil.rmtree(dst)
                log(f"small download {r}: {n / downs[-1]:.0f} files/s")
            out["small"] = {"files": n, "kb": kb, "upload_s": ups, "download_s": downs}
            out["small_upload_files_per_s"] = n / statistics.median(ups)
            if downs:
                out["small_download_files_per_s"] = n / statistics.median(downs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def null_server_main(port: int) -> None:
    """An HTTP/1.1 keep-alive responder answering 200 {} to every request
    (and "OK" to /health): the floor under any server, for calibration."""
    import asyncio

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, chunked = 0, False
                for line in head.split(b"\r\n"):
                    lower = line.lower()
                    if lower.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                    elif lower.startswith(b"transfer-encoding:") and b"chunked" in lower:
                        chunked = True
                if chunked:
                    while True:
                        size = int((await reader.readline()).split(b";")[0], 16)
                        await reader.readexactly(size + 2)  # data and CRLF
                        if size == 0:
                            break
                elif length:
                    while length:  # discard in pieces: bodies can be large
                        piece = await reader.read(min(length, 1 << 20))
                        if not piece:
                            raise ConnectionError("client closed mid-body")
                        length -= len(piece)
                body = b"OK" if head.startswith(b"GET /health ") else b"{}"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def _same_file(a: str, b: str) -> bool:
    import hashlib

    digests = []
    for path in (a, b):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(MIB), b""):
                h.update(block)
        digests.append(h.hexdigest())
    return digests[0] == digests[1]


# --------------------------------------------------------------------------
# Orchestrator: servers, RSS sampling, reporting (standard library only).
# --------------------------------------------------------------------------




def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 (ppid) follows the ")" that closes the command name.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of the tree's live processes (and the reaped
    children they waited for)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime are fields 14-17 (index 11-14 after ")").
        total += sum(int(x) for x in fields[11:15])
    return total / tick


def tree_rss_kb(root: int, pids: list[int] | None = None) -> tuple[int, int]:
    """Sum of VmRSS (kB) over the tree (or `pids`), and the number of processes."""
    total, count = 0, 0
    for pid in pids if pids is not None else process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        count += 1
                        break
        except OSError:
            continue
    return total, count


def tree_pss_kb(root: int, pids: list[int] | None = None) -> int:
    """Sum of Pss (kB) over the tree: shared pages counted once overall."""
    total = 0
    for pid in pids if pids is not None else process_tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class RssSampler(threading.Thread):
    """Samples the tree's VmRSS sum every `interval` s (and its PSS every
    tenth sample: smaps_rollup costs more)."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb, self.peak_procs, self.samples = 0, 0, 0
        self.peak_pss_kb = 0
        self.last_kb = 0
        self._halt = threading.Event()

    def sample(self) -> int:
        # Re-walk /proc for the tree every tenth sample only (it is the costly
        # part); read the known pids' VmRSS every time.
        if self.samples % 10 == 0:
            self.pids = process_tree(self.pid)
        kb, procs = tree_rss_kb(self.pid, self.pids)
        if self.samples % 10 == 0:
            self.peak_pss_kb = max(self.peak_pss_kb, tree_pss_kb(self.pid, self.pids))
        self.samples += 1
        self.last_kb = kb
        if kb > self.peak_kb:
            self.peak_kb, self.peak_procs = kb, procs
        return kb

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sample()




def settle(pid: int, timeout: float, window: float = 2.0) -> float:
    """Waits until the tree's RSS changes < 1% over `window` seconds."""
    t0 = time.perf_counter()
    last = tree_rss_kb(pid)[0]
    while time.perf_counter() - t0 < timeout:
        time.sleep(window)
        now = tree_rss_kb(pid)[0]
        if abs(now - last) <= 0.01 * max(last, 1):
            break
        last = now
    return time.perf_counter() - t0


class Server:
    def __init__(self, name: str, argv: list[str], env: dict, port: int, data: str, log_path: str):
        self.name, self.argv, self.env, self.port, self.data = name, argv, env, port, data
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float) -> float:
        self._log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        # Own session = own process group, so the whole tree can be stopped.
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not healthy after {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # session leader: pgid == pid
        if self.proc.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Kill any stragglers of the group (workers that outlived the parent).
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        self.proc = None


def make_server(kind: str, args, root: str, sync: str | None) -> Server:
    port = free_port()
    data = os.path.join(root, "data")
    os.makedirs(data)
    log_path = os.path.join(root, "server.log")
    env = dict(os.environ)
    if kind == "null":
        argv = [sys.executable, os.path.abspath(__file__), "--null-server", str(port)]
    elif kind == "tandem":
        if sync:
            env["TANDEM_SQLITE_SYNCHRONOUS"] = sync
        else:
            env.pop("TANDEM_SQLITE_SYNCHRONOUS", None)
        env.setdefault("TANDEM_LOG", "warn")
        argv = [args.tandem_bin, "server", "--listen", f"127.0.0.1:{port}", "--data", data]
    else:
        mlflow_bin = args.mlflow_bin or os.path.join(args.peer_venv, "bin", "mlflow")
        # The peer's own venv first on PATH, so its workers (uvicorn/gunicorn,
        # huey) resolve to that venv's executables.
        env["PATH"] = os.path.dirname(mlflow_bin) + os.pathsep + env.get("PATH", "")
        env.pop("VIRTUAL_ENV", None)
        argv = [
            mlflow_bin, "server",
            "--backend-store-uri", f"sqlite:///{data}/mlflow.db",
            "--artifacts-destination", f"{data}/artifacts",
            "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port),
        ]
    return Server(kind, argv, env, port, data, log_path)


def run_one(kind: str, args, sync: str | None = None) -> dict:
    label = kind if kind != "tandem" else f"tandem({sync or 'FULL'})"
    root = tempfile.mkdtemp(prefix=f"tandem-bench-{kind}-", dir=args.tmp_dir)
    server = make_server(kind, args, root, sync)
    print(f"== {label}: starting on {server.url} (data {server.data})", file=sys.stderr, flush=True)
    result: dict = {"server": kind, "label": label}
    try:
        result["startup_s"] = server.start(args.startup_timeout)
        sampler = RssSampler(server.proc.pid, args.rss_interval)
        # /health can answer before every worker has finished importing: wait
        # (bounded) until the tree's RSS stops moving, so no section pays for
        # a cold worker.
        result["settle_s"] = settle(server.proc.pid, args.settle_timeout)
        result["idle_rss_mb"] = sampler.sample() / 1024
        result["idle_processes"] = len(process_tree(server.proc.pid))
        sampler.start()
        params = {
            "tracking_uri": server.url,
            "server_pid": server.proc.pid,
            "sections": args.sections,
            "warmup_calls": args.warmup_calls,
            "metric_calls": args.metric_calls,
            "metric_seconds": args.metric_seconds,
            "batch_size": args.batch_size,
            "batch_keys": args.batch_keys,
            "batch_count": args.batch_count,
            "batch_seconds": args.batch_seconds,
            "artifact_mb": args.artifact_mb,
            "artifact_repeats": args.artifact_repeats,
            "small_files": args.small_files,
            "small_file_kb": args.small_file_kb,
            "small_repeats": args.small_repeats,
            "tmp_dir": args.tmp_dir,
            "null_server": kind == "null",
        }
        t0 = time.perf_counter()
        try:
            worker = subprocess.run(
                [args.client_python, os.path.abspath(__file__), "--worker", json.dumps(params)],
                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=args.worker_timeout,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            sampler.stop()
        result["workload_s"] = time.perf_counter() - t0
        if worker.returncode != 0:
            raise RuntimeError(f"client workload against {label} failed (exit {worker.returncode}); "
                               f"server log: {server.log_path}")
        result.update(json.loads(worker.stdout.decode().strip().splitlines()[-1]))
        result["peak_rss_mb"] = sampler.peak_kb / 1024
        result["peak_rss_processes"] = sampler.peak_procs
        result["peak_pss_mb"] = sampler.peak_pss_kb / 1024
        result["rss_samples"] = sampler.samples
        result["data_dir_mb"] = _du(server.data) / MIB
        print(f"== {label}: peak RSS {result['peak_rss_mb']:.1f} MB over "
              f"{sampler.peak_procs} process(es), {sampler.samples} samples", file=sys.stderr, flush=True)
    finally:
        server.stop()
        if args.keep:
            print(f"== {label}: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


def _du(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


def aggregate(runs: list[dict]) -> list[dict]:
    """One run per label: the median of every numeric figure over the rounds
    (and of the per-operation CPU entries)."""
    by_label: dict[str, list[dict]] = {}
    for run in runs:
        by_label.setdefault(run["label"], []).append(run)
    out = []
    for label, group in by_label.items():
        merged = {"server": group[0]["server"], "label": label, "rounds": len(group)}
        keys = {k for r in group for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for k in keys:
            values = [r[k] for r in group if isinstance(r.get(k), (int, float))]
            # The null responder gives a ceiling: its best round is the bound.
            merged[k] = max(values) if merged["server"] == "null" else statistics.median(values)
            if k in {s[0] for s in SECTIONS}:
                merged.setdefault("spread", {})[k] = [min(values), max(values)]
        cpu: dict = {}
        for name in {n for r in group for n in r.get("cpu", {})}:
            entries = [r["cpu"][name] for r in group if name in r.get("cpu", {})]
            cpu[name] = {f: statistics.median([e[f] for e in entries if f in e])
                         for f in entries[0] if all(f in e for e in entries)}
        merged["cpu"] = cpu
        out.append(merged)
    return out


def better_ratio(tandem: float, mlflow: float, higher_is_better: bool) -> float | None:
    if not tandem or not mlflow:
        return None
    return tandem / mlflow if higher_is_better else mlflow / tandem


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_spread(spread) -> str:
    return f" [{fmt(spread[0])}..{fmt(spread[1])}]" if spread else ""


def report(results: dict, args) -> dict:
    """Per-section lines, a final table, and the JSON document."""
    tandem_runs = [r for r in results["runs"] if r["server"] == "tandem"]
    mlflow_run = next((r for r in results["runs"] if r["server"] == "mlflow"), None)
    null_run = next((r for r in results["runs"] if r["server"] == "null"), None)
    peer_label = "mlflow"
    peer = mlflow_run
    if peer is None and not args.no_reference:
        peer, peer_label = {**REFERENCE_MLFLOW, "label": "mlflow(ref)"}, "mlflow(ref)"
    rows = []
    for key, name, unit, higher, goal in SECTIONS:
        peer_value = peer.get(key) if peer else None
        row = {"name": name, "key": key, "unit": unit, "higher_is_better": higher,
               "mlflow": peer_value, "mlflow_label": peer_label, "tandem": {},
               "mlflow_spread": (peer or {}).get("spread", {}).get(key)}
        present = peer_value is not None
        for run in tandem_runs:
            value = run.get(key)
            present = present or value is not None
            ratio = better_ratio(value, peer_value, higher) if value is not None and peer_value else None
            met = None
            if goal and value is not None:
                kind, bound = goal
                if kind == "ratio" and ratio is not None:
                    met = ratio >= bound
                elif kind == "max":
                    met = value <= bound
            row["tandem"][run["label"]] = {"value": value, "ratio": ratio, "goal_met": met,
                                           "spread": run.get("spread", {}).get(key)}
        if null_run is not None and higher:
            row["client_ceiling"] = null_run.get(key)
            row["client_ceiling_ratio"] = (better_ratio(row["client_ceiling"], peer_value, higher)
                                           if row["client_ceiling"] and peer_value else None)
        if goal:
            row["goal"] = (f">= {goal[1]:g}x" if goal[0] == "ratio" else f"<= {goal[1]:g} {unit}")
        if present:
            rows.append(row)

    out = sys.stderr if args.json == "-" else sys.stdout
    print("", file=out)
    for row in rows:
        parts = []
        for label, cell in row["tandem"].items():
            parts.append(f"{label} {fmt(cell['value'])}{fmt_spread(cell['spread'])}")
        ratios = ", ".join(
            f"ratio {fmt(cell['ratio'])}" + (f" [{label}]" if len(row["tandem"]) > 1 else "")
            for label, cell in row["tandem"].items()
        ) or "ratio -"
        ceiling = ""
        if row.get("client_ceiling"):
            ceiling = (f"; client ceiling {fmt(row['client_ceiling'])} "
                       f"= {fmt(row['client_ceiling_ratio'])}x mlflow")
        print(f"{row['name']}: {', '.join(parts) or 'tandem -'}, {row['mlflow_label']} "
              f"{fmt(row['mlflow'])}{fmt_spread(row['mlflow_spread'])}, {ratios}  ({row['unit']}{ceiling})", file=out)

    # Final table.
    labels = [r["label"] for r in tandem_runs]
    header = (["figure", "unit"] + labels + [peer_label]
              + [f"ratio {l}" if len(labels) > 1 else "ratio" for l in labels] + ["goal"]
              + (["client ceiling"] if null_run else []))
    table = [header]
    for row in rows:
        line = [row["name"], row["unit"]]
        line += [fmt(row["tandem"][l]["value"]) for l in labels]
        line += [fmt(row["mlflow"])]
        for l in labels:
            cell = row["tandem"][l]
            mark = "" if cell["goal_met"] is None else (" ok" if cell["goal_met"] else " MISS")
            line.append(f"{fmt(cell['ratio'])}x{mark}" if cell["ratio"] is not None else ("-" + mark))
        line.append(row.get("goal", ""))
        if null_run:
            c = row.get("client_ceiling")
            line.append(f"{fmt(c)} ({fmt(row['client_ceiling_ratio'])}x)" if c else "")
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print("", file=out)
    for i, line in enumerate(table):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths))), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    print("\nratio = how many times better Tandem is: throughput tandem/mlflow, RSS mlflow/tandem.", file=out)

    # Where the time of one operation goes: wall, client CPU, server-tree CPU.
    runs = results["runs"]
    names = [n for n in ("log_metric", "log_batch", "upload", "small_upload_0")
             if any(n in r.get("cpu", {}) for r in runs)]
    if names:
        print("\nper operation (ms): wall / client CPU / server CPU", file=out)
        for run in runs:
            cells = []
            for n in names:
                e = run.get("cpu", {}).get(n)
                if e and e.get("ops"):
                    cells.append(f"{n} {e['wall_ms_per_op']:.2f} / {e['client_cpu_ms_per_op']:.2f} / "
                                 f"{e.get('server_cpu_ms_per_op', 0):.2f}")
            print(f"  {run['label']}: " + "; ".join(cells), file=out)
    if null_run:
        print("client ceiling = the same client against a null responder that answers {} at once "
              "(no server could beat it; best round).", file=out)
    if peer_label == "mlflow(ref)":
        print("mlflow(ref) = reference figures measured earlier (the peer was not run).", file=out)
    results["table"] = rows
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN, help="release tandem binary [%(default)s]")
    p.add_argument("--peer-venv", default=DEFAULT_PEER_VENV, help="venv with mlflow==3.17.2 [%(default)s]")
    p.add_argument("--mlflow-bin", default=None, help="mlflow executable [PEER_VENV/bin/mlflow]")
    p.add_argument("--client-python", default=None,
                   help=f"python with mlflow(-skinny) for the workload [{DEFAULT_CLIENT_PYTHON} if present, "
                        "else PEER_VENV/bin/python]")
    p.add_argument("--only", choices=["tandem", "mlflow"], help="run one server only")
    p.add_argument("--tandem-sync", default="FULL",
                   help="TANDEM_SQLITE_SYNCHRONOUS for Tandem: FULL (default), NORMAL, or 'both' "
                        "(runs Tandem twice)")
    p.add_argument("--sections", default="metric,batch,upload,download,small",
                   help="comma list of metric,batch,upload,download,small [%(default)s]")
    p.add_argument("--metric-calls", type=int, default=2000, help="max log_metric calls [%(default)s]")
    p.add_argument("--metric-seconds", type=float, default=20, help="max log_metric seconds [%(default)s]")
    p.add_argument("--warmup-calls", type=int, default=10, help="untimed log_metric calls first [%(default)s]")
    p.add_argument("--batch-size", type=int, default=500, help="metrics per log_batch [%(default)s]")
    p.add_argument("--batch-keys", type=int, default=10, help="metric keys per batch [%(default)s]")
    p.add_argument("--batch-count", type=int, default=200, help="max batches [%(default)s]")
    p.add_argument("--batch-seconds", type=float, default=20, help="max log_batch seconds [%(default)s]")
    p.add_argument("--artifact-mb", type=int, default=64, help="big artifact size, MiB [%(default)s]")
    p.add_argument("--artifact-repeats", type=int, default=3, help="uploads and downloads [%(default)s]")
    p.add_argument("--small-files", type=int, default=500, help="small files per directory [%(default)s]")
    p.add_argument("--small-file-kb", type=int, default=1, help="small file size, KiB [%(default)s]")
    p.add_argument("--small-repeats", type=int, default=3, help="small-file rounds [%(default)s]")
    p.add_argument("--rss-interval", type=float, default=0.1, help="RSS sampling period, s [%(default)s]")
    p.add_argument("--startup-timeout", type=float, default=180, help="server start bound, s [%(default)s]")
    p.add_argument("--settle-timeout", type=float, default=60,
                   help="max wait for the server tree RSS to settle after /health, s [%(default)s]")
    p.add_argument("--worker-timeout", type=float, default=1200, help="workload bound per server, s [%(default)s]")
    p.add_argument("--tmp-dir", default=None, help="parent of the temp dirs (same disk for both) [system temp]")
    p.add_argument("--calibrate", action="store_true",
                   help="also run the metric and batch sections against a null responder (answers {} at "
                        "once) to show the client's own ceiling")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every server this many times (order alternating) and report medians [%(default)s]")
    p.add_argument("--busy-cores", type=float, default=0.3,
                   help="warn when other processes keep more than this many cores busy before a run "
                        "[%(default)s]")
    p.add_argument("--keep", action="store_true", help="keep the servers' temp dirs")
    p.add_argument("--no-reference", action="store_true", help="no reference ratios with --only tandem")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="write results as JSON to PATH, or to stdout with no PATH (the text goes to stderr)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = set(args.sections) - {"metric", "batch", "upload", "download", "small"}
    if bad:
        p.error(f"unknown sections: {', '.join(sorted(bad))}")
    if "download" in args.sections and "upload" not in args.sections:
        args.sections.append("upload")  # download needs the uploaded artifact
    if args.client_python is None:
        args.client_python = (DEFAULT_CLIENT_PYTHON if os.path.exists(DEFAULT_CLIENT_PYTHON)
                              else os.path.join(args.peer_venv, "bin", "python"))
    sync = args.tandem_sync.upper()
    if sync not in ("FULL", "NORMAL", "OFF", "BOTH"):
        p.error("--tandem-sync must be FULL, NORMAL, OFF or both")
    args.tandem_syncs = ["FULL", "NORMAL"] if sync == "BOTH" else [sync]
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["--null-server"]:
        null_server_main(int(argv[1]))
        return 0
    if argv[:1] == ["--worker"]:
        result = worker_main(json.loads(argv[1]))
        print(json.dumps(result))
        return 0
    args = parse_args(argv)
    if args.only != "mlflow" and not os.access(args.tandem_bin, os.X_OK):
        sys.exit(f"no tandem binary at {args.tandem_bin}: run bench/setup.sh or pass --tandem-bin")
    if args.only != "tandem":
        mlflow_bin = args.mlflow_bin or os.path.join(args.peer_venv, "bin", "mlflow")
        if not os.access(mlflow_bin, os.X_OK):
            sys.exit(f"no mlflow at {mlflow_bin}: run bench/setup.sh or pass --peer-venv/--mlflow-bin")
    if not os.access(args.client_python, os.X_OK):
        sys.exit(f"no client python at {args.client_python}")

    started = time.perf_counter()
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": {
        k: v for k, v in vars(args).items() if k not in ("tandem_syncs",)}, "runs": []}
    results["machine"] = {"nproc": os.cpu_count(), "uname": " ".join(os.uname())}
    plan = []
    if args.only != "mlflow":
        plan += [("tandem", sync) for sync in args.tandem_syncs]
    if args.only != "tandem":
        plan.append(("mlflow", None))
    if args.calibrate:
        plan.append(("null", None))
    for round_no in range(args.rounds):
        # Alternate the order each round, so drift in the machine's load does
        # not always favour the same server.
        for kind, sync in (plan if round_no % 2 == 0 else plan[::-1]):
            busy = busy_cores()  # nothing of ours runs now
            if busy > args.busy_cores:
                print(f"!! {busy:.2f} cores busy before the run: another job is using the machine; "
                      "figures will be low and noisy", file=sys.stderr, flush=True)
            run = run_one(kind, args, sync)
            run["round"] = round_no
            run["busy_cores_before"] = busy
            results["runs"].append(run)
    results["total_s"] = time.perf_counter() - started
    results["rounds"] = args.rounds
    if args.rounds > 1:
        results["round_runs"] = results["runs"]
        results["runs"] = aggregate(results["runs"])
    report(results, args)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"\ntotal wall time: {results['total_s']:.0f} s", file=out)
    if args.json:
        text = json.dumps(results, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
