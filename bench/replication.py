#!/usr/bin/env python3
"""Tandem replication benchmark: replication lag and sync-write latency.

Starts two regions of one deployment as real `tandem server` processes on
127.0.0.1 (primary `eastus`, secondary `westus`, fresh temporary data
directories), optionally with network delay between them, and measures:

A. async lag: tracking and assets `hot-warm`, no `sync`. A workload of
   `MlflowClient.log_batch` calls (default 5,000 metrics/s, paced, from
   several client processes) plus concurrent 1 MB `log_artifact` uploads runs
   against the primary for --duration seconds. The driver follows the journal
   of both regions and, for every record the primary wrote, takes the time it
   was seen on the primary's journal stream and the time its
   (origin_region, origin_seq) was seen on the secondary's: lag = difference.
   Artifact records count too (a secondary applies them only after copying
   the bytes). Also reports what `GET /api/tandem/v1/regions` said.

B. sync write latency: the same two regions with `[classes.tracking]
   sync = true`; sequential `log_metric` calls against the primary, versus a
   standalone `tandem server --data DIR` (no deployment), and versus the async
   deployment.

Network delay: the secondary's deployment file points the primary's url at a
TCP proxy (this file run with --proxy, standard library asyncio) that holds
every chunk in each direction for RTT/2, preserving order. With RTT 0 the
secondary connects to the primary directly.

The driver (this file without --worker/--proxy) uses only the standard
library; the workload runs in child processes under --client-python (a venv
with mlflow or mlflow-skinny). Not run in CI. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Proc, busy_cores, free_port, http_json, log, proc_cpu_s, read_line, table, tail  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TARGET = os.environ.get("CARGO_TARGET_DIR", "/root/.cache/tandem-target-bench")
DEFAULT_TANDEM_BIN = os.path.join(DEFAULT_TARGET, "release", "tandem")
DEFAULT_CLIENT_PYTHON = "/root/.cache/tandem-venv/bin/python"
PRIMARY, SECONDARY = "eastus", "westus"


# --------------------------------------------------------------------------
# Workers: the client workload (run under --client-python).
#
# Protocol with the driver: the worker imports mlflow, warms up, prints
# "READY" on stdout, waits for a line on stdin, runs, and prints its result
# as one JSON line on stdout.
# --------------------------------------------------------------------------


def _ready_then_wait() -> None:
    print("READY", flush=True)
    sys.stdin.readline()


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of `values` (q in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def worker_main(params: dict) -> dict:
    os.environ.pop("MLFLOW_ENABLE_ASYNC_LOGGING", None)
    import mlflow  # noqa: F401
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=params["tracking_uri"])
    run_id = params["run_id"]
    kind = params["kind"]
    duration = params.get("duration", 0.0)
    out: dict = {"kind": kind, "client_mlflow_version": mlflow.__version__}

    if kind == "metrics":
        from mlflow.entities import Metric

        size, keys, me = params["batch_size"], params["batch_keys"], params["index"]
        per_key = max(1, size // keys)
        rate = params["batches_per_s"]

        def batch(b: int) -> list:
            ts = int(time.time() * 1000)
            return [Metric(f"w{me}_m{k}", float(s), ts, b * per_key + s)
                    for k in range(keys) for s in range(per_key)][:size]

        client.log_batch(run_id, metrics=batch(0))  # warm-up: connection, imports
        _ready_then_wait()
        latencies, errors, metrics, n = [], 0, 0, 0
        start = time.perf_counter()
        c0 = time.process_time()
        while True:
            now = time.perf_counter()
            if now - start >= duration:
                break
            if rate > 0:  # paced (open loop): batch n is due at start + n/rate
                due = start + n / rate
                if due - start >= duration:
                    break
                if due > now:
                    time.sleep(due - now)
            t0 = time.perf_counter()
            try:
                client.log_batch(run_id, metrics=batch(n + 1))
                metrics += size
            except Exception as error:  # noqa: BLE001 - counted, reported
                errors += 1
                out["last_error"] = str(error)[:300]
            latencies.append(time.perf_counter() - t0)
            n += 1
        elapsed = time.perf_counter() - start
        out.update(batches=n, metrics=metrics, errors=errors, seconds=elapsed,
                   metrics_per_s=metrics / elapsed, client_cpu_s=time.process_time() - c0,
                   p50_ms=1000 * pct(latencies, 0.5) if latencies else None,
                   p99_ms=1000 * pct(latencies, 0.99) if latencies else None,
                   target_batches=int(rate * duration) if rate > 0 else None)
        return out

    if kind == "artifacts":
        work = tempfile.mkdtemp(prefix="tandem-repl-bench-art-", dir=params.get("tmp_dir"))
        try:
            size = params["artifact_kb"] * 1024
            src = os.path.join(work, "blob.bin")
            rate = params["artifacts_per_s"]
            body = os.urandom(size)

            def write(i: int) -> None:
                # Vary the file per upload so every artifact is distinct.
                with open(src, "wb") as f:
                    f.write(i.to_bytes(8, "little") + body[8:])

            write(0)
            client.log_artifact(run_id, src, artifact_path="warmup")
            _ready_then_wait()
            latencies, errors, n, uploaded = [], 0, 0, 0
            start = time.perf_counter()
            while True:
                now = time.perf_counter()
                if now - start >= duration:
                    break
                if rate > 0:
                    due = start + n / rate
                    if due - start >= duration:
                        break
                    if due > now:
                        time.sleep(due - now)
                write(n + 1)
                t0 = time.perf_counter()
                try:
                    client.log_artifact(run_id, src, artifact_path=f"lag/{n:05d}")
                    uploaded += 1
                except Exception as error:  # noqa: BLE001
                    errors += 1
                    out["last_error"] = str(error)[:300]
                latencies.append(time.perf_counter() - t0)
                n += 1
            elapsed = time.perf_counter() - start
            out.update(uploads=uploaded, errors=errors, seconds=elapsed, bytes=uploaded * size,
                       uploads_per_s=uploaded / elapsed,
                       p50_ms=1000 * pct(latencies, 0.5) if latencies else None,
                       p99_ms=1000 * pct(latencies, 0.99) if latencies else None)
            return out
        finally:
            shutil.rmtree(work, ignore_errors=True)

    if kind == "latency":
        for i in range(params["warmup_calls"]):
            client.log_metric(run_id, "warmup", float(i), step=i)
        _ready_then_wait()
        latencies, errors = [], 0
        start = time.perf_counter()
        for i in range(params["calls"]):
            t0 = time.perf_counter()
            try:
                client.log_metric(run_id, "latency", float(i), step=i)
            except Exception as error:  # noqa: BLE001
                errors += 1
                out["last_error"] = str(error)[:300]
            latencies.append(time.perf_counter() - t0)
            if time.perf_counter() - start >= params["max_seconds"]:
                break
        elapsed = time.perf_counter() - start
        ms = [1000 * x for x in latencies]
        out.update(calls=len(ms), errors=errors, seconds=elapsed, calls_per_s=len(ms) / elapsed,
                   p50_ms=pct(ms, 0.5), p90_ms=pct(ms, 0.9), p99_ms=pct(ms, 0.99),
                   mean_ms=statistics.fmean(ms), min_ms=min(ms), max_ms=max(ms))
        return out

    raise SystemExit(f"unknown worker kind {kind}")


# --------------------------------------------------------------------------
# Delaying TCP proxy (standard library, own process so its work does not
# share the driver's GIL with the journal readers that take timestamps).
# --------------------------------------------------------------------------


def proxy_main(target_port: int, one_way_ms: float) -> None:
    import asyncio

    delay = one_way_ms / 1000.0
    # Diagnostics, written to stderr (the proxy's log) once a second when
    # they change: requests the secondary sent to the primary, by kind.
    counts = {"connections": 0, "acks": 0, "artifact_gets": 0, "journal_gets": 0, "bytes_up": 0,
              "bytes_down": 0}

    def count(data: bytes, upstream: bool) -> None:
        if upstream:
            counts["bytes_up"] += len(data)
            counts["acks"] += data.count(b"POST /api/tandem/v1/replication/ack")
            counts["artifact_gets"] += data.count(b"GET /api/tandem/v1/replication/artifacts/")
            counts["journal_gets"] += data.count(b"GET /api/tandem/v1/replication/journal")
        else:
            counts["bytes_down"] += len(data)

    async def report_counts():
        last = None
        while True:
            await asyncio.sleep(1)
            if counts != last:
                last = dict(counts)
                print(json.dumps(last), file=sys.stderr, flush=True)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        """Forwards reader -> writer, each chunk `delay` after it arrived,
        in order. Reading is not held back by the delay (a link with
        latency, not a bandwidth limit)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def pump_in():
            try:
                while True:
                    data = await reader.read(1 << 16)
                    count(data, upstream)
                    queue.put_nowait((loop.time() + delay, data))
                    if not data:
                        return
            except (ConnectionError, OSError):
                queue.put_nowait((loop.time(), b""))

        async def pump_out():
            try:
                while True:
                    due, data = await queue.get()
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                return

        feeder = asyncio.ensure_future(pump_in())
        try:
            await pump_out()
        finally:
            feeder.cancel()

    async def handle(client_reader, client_writer):
        counts["connections"] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(pipe(client_reader, up_writer, True), pipe(up_reader, client_writer, False))
        finally:
            for w in (client_writer, up_writer):
                try:
                    w.close()
                except Exception:  # noqa: BLE001
                    pass

    async def serve():
        # asyncio sets TCP_NODELAY on its TCP transports: no Nagle delay added.
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        asyncio.ensure_future(report_counts())
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# --------------------------------------------------------------------------
# Driver (standard library only).
# --------------------------------------------------------------------------














class TandemServer(Proc):
    def __init__(self, name: str, args, root: str, port: int, deployment: str | None):
        self.port = port
        self.data = os.path.join(root, f"{name}-data")
        os.makedirs(self.data)
        argv = [args.tandem_bin, "server", "--listen", f"127.0.0.1:{port}", "--data", self.data]
        if deployment:
            argv += ["--deployment", deployment, "--region", name]
        env = dict(os.environ)
        env.setdefault("TANDEM_LOG", "warn")
        env["TANDEM_SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
        super().__init__(name, argv, os.path.join(root, f"{name}.log"), env=env)
        self.wait_healthy(args.startup_timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + tail(self.log_path))
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not healthy after {timeout}s; see {self.log_path}")

    def regions(self) -> dict:
        return http_json("GET", self.url + "/api/tandem/v1/regions", timeout=5)




class DelayProxy(Proc):
    def __init__(self, root: str, target_port: int, rtt_ms: float):
        super().__init__("proxy", [sys.executable, os.path.abspath(__file__), "--proxy",
                                   str(target_port), str(rtt_ms / 2)],
                         os.path.join(root, "proxy.log"), stdout=subprocess.PIPE)
        line = read_line(self.proc, 10)
        if not line.startswith("READY "):
            raise RuntimeError(f"proxy did not start: {line!r}\n{tail(self.log_path)}")
        self.port = int(line.split()[1])

    def counts(self) -> dict:
        """The proxy's last diagnostic line: requests seen from the secondary."""
        for line in reversed(tail(self.log_path, 50).splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
        return {}




def measure_rtt(port: int, samples: int = 7) -> float:
    """Median ms of a keep-alive GET /health to `port`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    times = []
    try:
        for _ in range(samples + 1):
            t0 = time.perf_counter()
            conn.request("GET", "/health")
            conn.getresponse().read()
            times.append(1000 * (time.perf_counter() - t0))
    finally:
        conn.close()
    return statistics.median(times[1:])


class JournalFollower(threading.Thread):
    """Follows one region's journal and notes, for each record, when it was
    first seen: {(origin_region, origin_seq): entry}.

    mode "replication": GET /api/tandem/v1/replication/journal?after=N with the
    replication secret (no `region` parameter, so it is not taken for a
    secondary and acknowledges nothing): NDJSON kept open by the server,
    records pushed as they commit.
    mode "public": GET /api/tandem/v1/journal?after=N; when the server ends
    the response (it does at the journal head), ask again after `poll_s`."""

    def __init__(self, name: str, port: int, mode: str, secret: str, poll_s: float):
        super().__init__(daemon=True, name=f"journal-{name}")
        self.region, self.port, self.mode, self.secret, self.poll_s = name, port, mode, secret, poll_s
        self.seen: dict[tuple[str, int], dict] = {}
        self.position = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.requests = 0
        self.responses_ended = 0
        self.errors: list[str] = []
        self.bytes = 0
        self._conn: http.client.HTTPConnection | None = None

    def _handle(self, line: bytes, t: float, wall: float) -> None:
        doc = json.loads(line)
        if self.mode == "replication":
            doc = doc.get("record")
            if doc is None:  # heartbeat
                return
        change = doc.get("change", {})
        key = (doc["origin_region"], int(doc["origin_seq"]))
        with self.lock:
            self.position = max(self.position, int(doc["seq"]))
            if key not in self.seen:
                self.seen[key] = {
                    "t": t, "wall": wall, "seq": int(doc["seq"]), "kind": change.get("type"),
                    "metrics": len(change.get("metrics", []) or []),
                    "size": change.get("size", 0) if change.get("type") == "artifact_written" else 0,
                    "recorded_at": doc.get("recorded_at"),
                }

    def run(self) -> None:
        while not self.halt.is_set():
            got = 0
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if self.mode == "replication":
                    path = f"/api/tandem/v1/replication/journal?after={self.position}"
                    headers = {"Authorization": f"Bearer {self.secret}"}
                else:
                    path = f"/api/tandem/v1/journal?after={self.position}"
                    headers = {}
                self._conn.request("GET", path, headers=headers)
                self.requests += 1
                resp = self._conn.getresponse()
                if resp.status != 200:
                    raise RuntimeError(f"{path}: HTTP {resp.status} {resp.read()[:300]!r}")
                pending = b""
                while True:
                    chunk = resp.read1(1 << 16)
                    t, wall = time.perf_counter(), time.time()
                    if not chunk:
                        break
                    self.bytes += len(chunk)
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self._handle(line, t, wall)
                            got += 1
                self.responses_ended += 1
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as error:
                if self.halt.is_set():
                    return
                self.errors.append(f"{type(error).__name__}: {error}"[:300])
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                self.halt.wait(0.05)
                continue
            if self.mode == "public" and not got:
                self.halt.wait(self.poll_s)

    def stop(self) -> None:
        self.halt.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.join(timeout=5)

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.seen)


class RegionsSampler(threading.Thread):
    """GET /api/tandem/v1/regions on both regions every `interval` s."""

    def __init__(self, primary: TandemServer, secondary: TandemServer, interval: float = 0.5):
        super().__init__(daemon=True, name="regions-sampler")
        self.primary, self.secondary, self.interval = primary, secondary, interval
        self.samples: list[dict] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            try:
                p, s = self.primary.regions(), self.secondary.regions()
            except (OSError, ValueError, urllib.error.URLError):
                continue
            self.samples.append(summarize_regions(p, s))

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


def summarize_regions(p: dict, s: dict) -> dict:
    """The lag/RPO figures of the two /regions documents."""
    peer = next((r for r in p.get("regions", []) if r.get("name") == SECONDARY), {})
    own = next((r for r in s.get("regions", []) if r.get("name") == SECONDARY), {})
    tracking = next((c for c in p.get("classes", []) if c.get("class") == "tracking"), {})
    return {
        "primary_head": p.get("journal_head"),
        "primary_view": {k: peer.get(k) for k in ("applied", "streaming", "lag_records", "lag_bytes",
                                                  "lag_seconds")},
        "tracking_rpo_seconds": tracking.get("rpo_seconds"),
        "tracking_lag_records": tracking.get("lag_records"),
        "tracking_lag_bytes": tracking.get("lag_bytes"),
        "secondary_view": {k: own.get(k) for k in ("applied", "source_head", "lag_records", "lag_seconds",
                                                   "connected", "records_applied", "artifacts_copied",
                                                   "artifact_bytes_copied", "last_error")},
    }


def write_deployment(path: str, primary_url: str, secondary_url: str, sync: bool) -> None:
    text = f'''# written by bench/replication.py
name = "bench"
primary = "{PRIMARY}"
replication_secret_file = "replication.secret"

[[regions]]
name = "{PRIMARY}"
url = "{primary_url}"
pair = "{SECONDARY}"

[[regions]]
name = "{SECONDARY}"
url = "{secondary_url}"
pair = "{PRIMARY}"

[classes.tracking]
level = "hot-warm"
sync = {"true" if sync else "false"}

[classes.assets]
level = "hot-warm"
'''
    with open(path, "w") as f:
        f.write(text)


class Deployment:
    """Primary and secondary processes (and the delay proxy) of one run."""

    def __init__(self, args, root: str, rtt_ms: float, sync: bool):
        self.root, self.rtt_ms = root, rtt_ms
        self.secret = secrets.token_hex(16)
        with open(os.path.join(root, "replication.secret"), "w") as f:
            f.write(self.secret)
        self.primary = self.secondary = self.proxy = None
        p_port, s_port = free_port(), free_port()
        try:
            primary_url = f"http://127.0.0.1:{p_port}"
            via = primary_url
            if rtt_ms > 0:
                self.proxy = DelayProxy(root, p_port, rtt_ms)
                via = f"http://127.0.0.1:{self.proxy.port}"
            p_file, s_file = os.path.join(root, "primary.toml"), os.path.join(root, "secondary.toml")
            write_deployment(p_file, primary_url, f"http://127.0.0.1:{s_port}", sync)
            # The secondary reaches the primary through the proxy.
            write_deployment(s_file, via, f"http://127.0.0.1:{s_port}", sync)
            self.primary = TandemServer(PRIMARY, args, root, p_port, p_file)
            self.secondary = TandemServer(SECONDARY, args, root, s_port, s_file)
            self.wait_connected(args.startup_timeout)
            self.measured_rtt_ms = (measure_rtt(self.proxy.port) - measure_rtt(p_port)
                                    if self.proxy else 0.0)
        except BaseException:
            self.stop()
            raise

    def wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                s = self.secondary.regions()
                p = self.primary.regions()
                own = next(r for r in s["regions"] if r["name"] == SECONDARY)
                peer = next(r for r in p["regions"] if r["name"] == SECONDARY)
                last = (own, peer)
                if own.get("connected") and peer.get("streaming"):
                    return
            except (OSError, ValueError, StopIteration, KeyError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"secondary did not connect to the primary within {timeout}s: {last}")

    def stop(self) -> None:
        for proc in (self.secondary, self.primary, self.proxy):
            if proc is not None:
                rc = proc.stop()
                if rc not in (0, None, -signal.SIGTERM):
                    log(f"!! {proc.name} exited with {rc}; see {proc.log_path}")


def create_run(url: str) -> str:
    exp = http_json("POST", url + "/api/2.0/mlflow/experiments/create",
                    {"name": f"repl-bench-{os.getpid()}-{time.time_ns()}"})["experiment_id"]
    run = http_json("POST", url + "/api/2.0/mlflow/runs/create",
                    {"experiment_id": exp, "start_time": int(time.time() * 1000)})
    return run["run"]["info"]["run_id"]


class Workers:
    """Client processes started together: each warms up and says READY, then
    all are released at once."""

    def __init__(self, args, root: str, params_list: list[dict]):
        self.args, self.procs = args, []
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               # A refused write must show as an error, not as minutes of retries.
               "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        for i, params in enumerate(params_list):
            self.procs.append(Proc(f"worker-{i}-{params['kind']}",
                                   [args.client_python, os.path.abspath(__file__), "--worker", json.dumps(params)],
                                   os.path.join(root, f"worker-{i}-{params['kind']}.log"), env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE))

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for w in self.procs:
            line = read_line(w.proc, max(0.1, deadline - time.monotonic()))
            if line != "READY":
                self.stop()
                raise RuntimeError(f"{w.name} not ready ({line!r}); see {w.log_path}:\n{tail(w.log_path)}")

    def go(self) -> float:
        t = time.perf_counter()
        for w in self.procs:
            w.proc.stdin.write(b"GO\n")
            w.proc.stdin.flush()
        return t

    def results(self, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        out = []
        for w in self.procs:
            line = read_line(w.proc, max(0.1, deadline - time.monotonic()))
            try:
                out.append(json.loads(line))
            except ValueError:
                self.stop()
                raise RuntimeError(f"{w.name} gave no result ({line!r}); see {w.log_path}:\n{tail(w.log_path)}")
            w.proc.wait(timeout=10)
        return out

    def stop(self) -> None:
        for w in self.procs:
            w.stop(timeout=5)
            for stream in (w.proc.stdin, w.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass


def lag_stats(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"n": 0}
    return {"n": len(values_ms), "p50_ms": pct(values_ms, 0.5), "p90_ms": pct(values_ms, 0.9),
            "p99_ms": pct(values_ms, 0.99), "max_ms": max(values_ms), "mean_ms": statistics.fmean(values_ms)}


def scenario_a(args, rtt_ms: float) -> dict:
    label = f"A rtt={rtt_ms:g}ms"
    root = tempfile.mkdtemp(prefix=f"tandem-repl-bench-a{rtt_ms:g}-", dir=args.tmp_dir)
    busy = busy_cores()
    if busy > args.busy_cores:
        log(f"!! {busy:.2f} cores busy before the run: another job is using the machine; figures will be noisy")
    log(f"== {label}: starting two regions in {root}")
    result: dict = {"scenario": "async_lag", "rtt_ms": rtt_ms, "busy_cores_before": busy,
                    "journal_mode": args.journal}
    dep = followers = sampler = workers = None
    try:
        dep = Deployment(args, root, rtt_ms, sync=False)
        result["measured_rtt_ms"] = dep.measured_rtt_ms
        if rtt_ms:
            log(f"== {label}: proxy adds {dep.measured_rtt_ms:.1f} ms per round trip (measured)")
        followers = {
            name: JournalFollower(name, server.port, args.journal, dep.secret, args.poll_ms / 1000)
            for name, server in ((PRIMARY, dep.primary), (SECONDARY, dep.secondary))
        }
        for f in followers.values():
            f.start()
        run_id = create_run(dep.primary.url)
        per_client = args.metrics_rate / args.metric_clients / args.batch_size if args.metrics_rate else 0
        params = [{"kind": "metrics", "index": i, "tracking_uri": dep.primary.url, "run_id": run_id,
                   "duration": args.duration, "batch_size": args.batch_size, "batch_keys": args.batch_keys,
                   "batches_per_s": per_client} for i in range(args.metric_clients)]
        if args.artifact_rate > 0:
            params.append({"kind": "artifacts", "tracking_uri": dep.primary.url, "run_id": run_id,
                           "duration": args.duration, "artifact_kb": args.artifact_kb,
                           "artifacts_per_s": args.artifact_rate, "tmp_dir": args.tmp_dir})
        workers = Workers(args, root, params)
        workers.wait_ready()
        time.sleep(0.5)  # let the warm-up records replicate before the window opens
        sampler = RegionsSampler(dep.primary, dep.secondary, args.regions_interval)
        cpu0 = {n: proc_cpu_s(s.pid) for n, s in ((PRIMARY, dep.primary), (SECONDARY, dep.secondary))}
        log(f"== {label}: workload for {args.duration:g}s ({args.metric_clients} log_batch clients x "
            f"{args.batch_size} metrics, target {args.metrics_rate:,} metrics/s; "
            f"{args.artifact_rate:g} x {args.artifact_kb} KiB artifacts/s)")
        t_go = workers.go()
        sampler.start()
        worker_results = workers.results(args.duration + args.worker_timeout)
        t_end = time.perf_counter()
        sampler.stop()
        cpu1 = {n: proc_cpu_s(s.pid) for n, s in ((PRIMARY, dep.primary), (SECONDARY, dep.secondary))}
        at_end = summarize_regions(dep.primary.regions(), dep.secondary.regions())
        # Drain: every primary record of the window seen on the secondary.
        window = {k: v for k, v in followers[PRIMARY].snapshot().items()
                  if k[0] == PRIMARY and v["t"] >= t_go}
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            seen = followers[SECONDARY].snapshot()
            if all(k in seen for k in window):
                break
            time.sleep(0.02)
        t_drained = time.perf_counter()
        seen = followers[SECONDARY].snapshot()
        # The secondary acknowledges after applying: give the last
        # acknowledgement (one one-way delay) time to arrive before asking.
        ack_deadline = time.monotonic() + 5
        while True:
            after_drain = summarize_regions(dep.primary.regions(), dep.secondary.regions())
            # (and the primary re-measures class RPO every 200 ms)
            if ((after_drain["primary_view"]["lag_records"] == 0 and not after_drain["tracking_rpo_seconds"])
                    or time.monotonic() > ack_deadline):
                break
            time.sleep(0.05)
        for f in followers.values():
            f.stop()
        if dep.proxy is not None:
            time.sleep(1.1)  # the proxy writes its counters once a second
            result["proxy_counts"] = dep.proxy.counts()

        lags = {"all": [], "metrics": [], "artifacts": []}
        since_commit, primary_stream_delay = [], []
        missing = 0
        for key, p in window.items():
            s = seen.get(key)
            if s is None:
                missing += 1
                continue
            lag = 1000 * (s["t"] - p["t"])
            lags["all"].append(lag)
            if p["kind"] == "artifact_written":
                lags["artifacts"].append(lag)
            elif p["kind"] == "run_data_logged":
                lags["metrics"].append(lag)
            if p.get("recorded_at"):
                since_commit.append(1000 * s["wall"] - p["recorded_at"])
                primary_stream_delay.append(1000 * p["wall"] - p["recorded_at"])
        # The workload's span: the clients' own clocks (t_end also holds their exit).
        duration = max([w["seconds"] for w in worker_results] + [1e-9])
        t_stop = t_go + duration
        metric_records = [v for v in window.values() if v["kind"] == "run_data_logged"]
        art_records = [v for v in window.values() if v["kind"] == "artifact_written"]
        mw = [w for w in worker_results if w["kind"] == "metrics"]
        aw = [w for w in worker_results if w["kind"] == "artifacts"]
        last_seen = max((seen[k]["t"] for k in window if k in seen), default=t_end)
        result.update({
            "duration_s": duration,
            "workers": worker_results,
            "metrics_per_s_clients": sum(w["metrics_per_s"] for w in mw),
            "metrics_per_s_journal": sum(v["metrics"] for v in metric_records) / duration,
            "metric_errors": sum(w["errors"] for w in mw),
            "artifacts_per_s": len(art_records) / duration,
            "artifact_mb_per_s": sum(v["size"] for v in art_records) / duration / 1e6,
            "artifact_errors": sum(w["errors"] for w in aw),
            "records": len(window),
            "records_per_s": len(window) / duration,
            "replicated_records_per_s": (len(window) - missing) / max(1e-9, last_seen - t_go),
            "missing": missing,
            "catch_up_s": max(0.0, last_seen - t_stop),
            "drain_wait_s": t_drained - t_end,
            "lag": {k: lag_stats(v) for k, v in lags.items()},
            "since_commit": lag_stats(since_commit),
            "primary_stream_delay": lag_stats(primary_stream_delay),
            "server_cpu_cores": {n: (cpu1[n] - cpu0[n]) / duration for n in cpu0},
            "regions_at_end": at_end,
            "regions_after_drain": after_drain,
            "regions_samples": len(sampler.samples),
            "regions_max_during": {
                "tracking_rpo_seconds": max((x["tracking_rpo_seconds"] or 0 for x in sampler.samples), default=None),
                "primary_view_lag_seconds": max((x["primary_view"]["lag_seconds"] or 0 for x in sampler.samples),
                                                default=None),
                "primary_view_lag_records": max((x["primary_view"]["lag_records"] or 0 for x in sampler.samples),
                                                default=None),
                "secondary_view_lag_seconds": max((x["secondary_view"]["lag_seconds"] or 0
                                                   for x in sampler.samples), default=None),
                "secondary_view_lag_records": max((x["secondary_view"]["lag_records"] or 0
                                                   for x in sampler.samples), default=None),
            },
            "journal_followers": {n: {"requests": f.requests, "responses_ended": f.responses_ended,
                                      "errors": f.errors[:5], "bytes": f.bytes}
                                  for n, f in followers.items()},
        })
        a = result["lag"]["all"]
        log(f"== {label}: {result['metrics_per_s_journal']:,.0f} metrics/s, {result['artifacts_per_s']:.1f} "
            f"artifacts/s, {result['records_per_s']:.1f} records/s; lag p50 {fmt_ms(a.get('p50_ms'))} "
            f"p99 {fmt_ms(a.get('p99_ms'))} max {fmt_ms(a.get('max_ms'))}; missing {missing}")
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if followers:
            for f in followers.values():
                if f.is_alive():
                    f.stop()
        if workers is not None:
            workers.stop()
        if dep is not None:
            dep.stop()
        cleanup(args, root)
    return result


def latency_run(args, label: str, url: str, root: str) -> dict:
    run_id = create_run(url)
    workers = Workers(args, root, [{"kind": "latency", "tracking_uri": url, "run_id": run_id,
                                    "calls": args.sync_calls, "warmup_calls": args.warmup_calls,
                                    "max_seconds": args.sync_max_seconds}])
    try:
        workers.wait_ready()
        workers.go()
        result = workers.results(args.sync_max_seconds + args.worker_timeout)[0]
    finally:
        workers.stop()
    log(f"== {label}: log_metric p50 {fmt_ms(result['p50_ms'])} p99 {fmt_ms(result['p99_ms'])} "
        f"({result['calls']} calls, {result['errors']} errors)")
    return result


def scenario_b(args) -> list[dict]:
    out = []
    root = tempfile.mkdtemp(prefix="tandem-repl-bench-b-", dir=args.tmp_dir)
    try:
        log("== B standalone: tandem server --data DIR (no deployment)")
        busy = busy_cores()
        server = TandemServer("standalone", args, root, free_port(), None)
        try:
            r = latency_run(args, "B standalone", server.url, root)
        finally:
            server.stop()
        out.append({"scenario": "sync_latency", "config": "standalone", "rtt_ms": None,
                    "busy_cores_before": busy, **r})
    finally:
        cleanup(args, root)
    for rtt_ms in args.rtts:
        for sync in ([False, True] if args.async_baseline else [True]):
            config = "sync" if sync else "async"
            label = f"B {config} rtt={rtt_ms:g}ms"
            root = tempfile.mkdtemp(prefix=f"tandem-repl-bench-b-{config}{rtt_ms:g}-", dir=args.tmp_dir)
            busy = busy_cores()
            if busy > args.busy_cores:
                log(f"!! {busy:.2f} cores busy before the run: figures will be noisy")
            log(f"== {label}: two regions, [classes.tracking] sync = {str(sync).lower()}")
            dep = None
            try:
                dep = Deployment(args, root, rtt_ms, sync=sync)
                r = latency_run(args, label, dep.primary.url, root)
                regions = summarize_regions(dep.primary.regions(), dep.secondary.regions())
            finally:
                if dep is not None:
                    dep.stop()
                cleanup(args, root)
            out.append({"scenario": "sync_latency", "config": config, "rtt_ms": rtt_ms,
                        "measured_rtt_ms": dep.measured_rtt_ms, "busy_cores_before": busy,
                        "regions_at_end": regions, **r})
    return out


def cleanup(args, root: str) -> None:
    if args.keep:
        log(f"   kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------
# Reporting.
# --------------------------------------------------------------------------


def fmt(value) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ms(value) -> str:
    return "-" if value is None else f"{fmt(value)} ms"




def report(results: dict, args) -> None:
    out = sys.stderr if args.json == "-" else sys.stdout
    a_runs = [r for r in results["runs"] if r["scenario"] == "async_lag"]
    b_runs = [r for r in results["runs"] if r["scenario"] == "sync_latency"]
    if a_runs:
        print(f"\nA. async replication lag (tracking+assets hot-warm, no sync), {args.duration:g} s workload, "
              f"journal followed via the {args.journal} stream", file=out)
        rows = [["rtt", "metrics/s", "artifacts/s", "records/s", "applied/s", "lag p50", "lag p99", "lag max",
                 "metric rec p50/p99", "artifact rec p50/p99", "missing", "catch-up"]]
        for r in a_runs:
            lag = r["lag"]
            rows.append([
                f"{r['rtt_ms']:g} ms", fmt(r["metrics_per_s_journal"]), fmt(r["artifacts_per_s"]),
                fmt(r["records_per_s"]), fmt(r["replicated_records_per_s"]), fmt_ms(lag["all"].get("p50_ms")), fmt_ms(lag["all"].get("p99_ms")),
                fmt_ms(lag["all"].get("max_ms")),
                f"{fmt(lag['metrics'].get('p50_ms'))} / {fmt(lag['metrics'].get('p99_ms'))} ms",
                f"{fmt(lag['artifacts'].get('p50_ms'))} / {fmt(lag['artifacts'].get('p99_ms'))} ms",
                str(r["missing"]), f"{r['catch_up_s']:.2f} s",
            ])
        table(rows, out)
        print("lag = time a record was seen on the secondary's journal stream minus the time it was seen on "
              "the primary's\n(same clock); records/s = written at the primary; applied/s = records the "
              "secondary applied per second\nfrom the workload's start to its last one; catch-up = how long "
              "after the workload ended the secondary saw the last record.", file=out)
        for r in a_runs:
            e, d, m = r["regions_at_end"], r["regions_after_drain"], r["regions_max_during"]
            pv, sv = e["primary_view"], e["secondary_view"]
            print(f"\n  rtt {r['rtt_ms']:g} ms (proxy measured +{r.get('measured_rtt_ms', 0):.1f} ms): clients "
                  f"{fmt(r['metrics_per_s_clients'])} metrics/s, {r['metric_errors']} batch errors, "
                  f"{r['artifact_errors']} upload errors, {fmt(r['artifact_mb_per_s'])} MB/s of artifacts; "
                  f"server CPU cores primary {r['server_cpu_cores'][PRIMARY]:.2f}, secondary "
                  f"{r['server_cpu_cores'][SECONDARY]:.2f}", file=out)
            print(f"    from the record's recorded_at (commit clock): seen on primary stream p50 "
                  f"{fmt_ms(r['primary_stream_delay'].get('p50_ms'))}, on secondary p50 "
                  f"{fmt_ms(r['since_commit'].get('p50_ms'))} p99 {fmt_ms(r['since_commit'].get('p99_ms'))}",
                  file=out)
            if r.get("proxy_counts"):
                c = r["proxy_counts"]
                print(f"    through the delay proxy (whole run): {c.get('journal_gets')} journal streams, "
                      f"{c.get('acks')} acknowledgements, {c.get('artifact_gets')} artifact fetches "
                      f"for {r['records']} workload records", file=out)
            if r["journal_mode"] == "public":
                jf = r["journal_followers"]
                print(f"    public journal: {jf[PRIMARY]['requests']} + {jf[SECONDARY]['requests']} requests "
                      f"(each response ended at the journal head)", file=out)
            print(f"    /regions at workload end: primary says westus applied {pv['applied']} of "
                  f"{e['primary_head']}, lag {pv['lag_records']} records / {pv['lag_bytes']} B / "
                  f"{pv['lag_seconds']} s, tracking RPO {e['tracking_rpo_seconds']} s; westus says lag "
                  f"{sv['lag_records']} records / {sv['lag_seconds']} s, connected {sv['connected']}", file=out)
            dv = d["primary_view"]
            print(f"    /regions after drain: lag {dv['lag_records']} records / {dv['lag_seconds']} s, tracking "
                  f"RPO {d['tracking_rpo_seconds']} s; westus applied {d['secondary_view']['records_applied']} "
                  f"records, {d['secondary_view']['artifacts_copied']} artifacts", file=out)
            print(f"    /regions max over {r['regions_samples']} samples during the workload: tracking RPO "
                  f"{m['tracking_rpo_seconds']} s, primary view lag {m['primary_view_lag_records']} records / "
                  f"{m['primary_view_lag_seconds']} s, westus view lag {m['secondary_view_lag_records']} "
                  f"records / {m['secondary_view_lag_seconds']} s", file=out)
    if b_runs:
        print(f"\nB. single log_metric latency against the primary ({args.sync_calls} sequential calls)", file=out)
        base = next((r for r in b_runs if r["config"] == "standalone"), None)
        rows = [["configuration", "rtt", "p50", "p99", "mean", "calls/s", "errors",
                 "p50 vs standalone", "p99 vs standalone"]]
        for r in b_runs:
            name = {"standalone": "standalone (no deployment)", "async": "2 regions, async",
                    "sync": "2 regions, tracking sync"}[r["config"]]
            vs50 = vs99 = ""
            if base is not None and r is not base:
                vs50 = f"+{fmt(r['p50_ms'] - base['p50_ms'])} ms ({r['p50_ms'] / base['p50_ms']:.1f}x)"
                vs99 = f"+{fmt(r['p99_ms'] - base['p99_ms'])} ms ({r['p99_ms'] / base['p99_ms']:.1f}x)"
            rows.append([name, "-" if r["rtt_ms"] is None else f"{r['rtt_ms']:g} ms", fmt_ms(r["p50_ms"]),
                         fmt_ms(r["p99_ms"]), fmt_ms(r["mean_ms"]), fmt(r["calls_per_s"]), str(r["errors"]),
                         vs50, vs99])
        table(rows, out)
    results["summary"] = {
        "async_lag": [{k: r[k] for k in ("rtt_ms", "metrics_per_s_journal", "artifacts_per_s", "records_per_s",
                                        "lag", "missing", "catch_up_s")} for r in a_runs],
        "sync_latency": [{k: r.get(k) for k in ("config", "rtt_ms", "p50_ms", "p99_ms", "mean_ms", "calls_per_s",
                                               "errors")} for r in b_runs],
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN, help="release tandem binary [%(default)s]")
    p.add_argument("--client-python", default=DEFAULT_CLIENT_PYTHON,
                   help="python with mlflow(-skinny) for the workload [%(default)s]")
    p.add_argument("--scenarios", default="A,B", help="A (async lag), B (sync latency), or A,B [%(default)s]")
    p.add_argument("--rtt-ms", default="0,50",
                   help="comma list of round-trip delays between the regions, ms [%(default)s]")
    p.add_argument("--duration", type=float, default=30, help="scenario A workload seconds [%(default)s]")
    p.add_argument("--metrics-rate", type=int, default=5000,
                   help="scenario A target metrics/s over all log_batch clients (0: as fast as they go) "
                        "[%(default)s]")
    p.add_argument("--metric-clients", type=int, default=2, help="log_batch client processes [%(default)s]")
    p.add_argument("--batch-size", type=int, default=100, help="metrics per log_batch (= per record) [%(default)s]")
    p.add_argument("--batch-keys", type=int, default=10, help="metric keys per batch [%(default)s]")
    p.add_argument("--artifact-rate", type=float, default=3,
                   help="scenario A artifact uploads/s (one client process; 0: none) [%(default)s]")
    p.add_argument("--artifact-kb", type=int, default=1024, help="artifact size, KiB [%(default)s]")
    p.add_argument("--journal", choices=["replication", "public"], default="replication",
                   help="how the driver follows each region's journal: 'replication' = the kept-open "
                        "/api/tandem/v1/replication/journal stream (with the secret); 'public' = "
                        "/api/tandem/v1/journal?after=N, asked again every --poll-ms when it ends "
                        "[%(default)s]")
    p.add_argument("--poll-ms", type=float, default=5, help="re-ask interval of --journal public [%(default)s]")
    p.add_argument("--regions-interval", type=float, default=0.5,
                   help="seconds between /api/tandem/v1/regions samples during A [%(default)s]")
    p.add_argument("--drain-timeout", type=float, default=120,
                   help="max seconds to wait for the secondary to catch up after A's workload [%(default)s]")
    p.add_argument("--sync-calls", type=int, default=500, help="scenario B log_metric calls per run [%(default)s]")
    p.add_argument("--sync-max-seconds", type=float, default=60,
                   help="scenario B bound per run, s (calls stop there) [%(default)s]")
    p.add_argument("--warmup-calls", type=int, default=10, help="untimed log_metric calls first [%(default)s]")
    p.add_argument("--no-async-baseline", dest="async_baseline", action="store_false",
                   help="scenario B: skip the two-region async deployment (only standalone and sync)")
    p.add_argument("--sqlite-synchronous", default="FULL",
                   help="TANDEM_SQLITE_SYNCHRONOUS of every server [%(default)s]")
    p.add_argument("--startup-timeout", type=float, default=60, help="server start bound, s [%(default)s]")
    p.add_argument("--worker-timeout", type=float, default=120,
                   help="extra bound on a workload past its own duration, s [%(default)s]")
    p.add_argument("--busy-cores", type=float, default=0.3,
                   help="warn when other processes keep more than this many cores busy [%(default)s]")
    p.add_argument("--tmp-dir", default=None, help="parent of the temp dirs [system temp]")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs (data, logs, deployment files)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="write results as JSON to PATH, or to stdout with no PATH (the text goes to stderr)")
    args = p.parse_args(argv)
    args.scenarios = {s.strip().upper() for s in args.scenarios.split(",") if s.strip()}
    if not args.scenarios or args.scenarios - {"A", "B"}:
        p.error("--scenarios takes A, B or A,B")
    try:
        args.rtts = [float(x) for x in args.rtt_ms.split(",") if x.strip()]
    except ValueError:
        p.error("--rtt-ms takes a comma list of numbers")
    if not args.rtts or any(x < 0 for x in args.rtts):
        p.error("--rtt-ms takes non-negative numbers")
    if args.metric_clients < 1 or args.batch_size < 1:
        p.error("--metric-clients and --batch-size must be at least 1")
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker_main(json.loads(argv[1]))), flush=True)
        return 0
    if argv[:1] == ["--proxy"]:
        proxy_main(int(argv[1]), float(argv[2]))
        return 0
    args = parse_args(argv)
    if not os.access(args.tandem_bin, os.X_OK):
        sys.exit(f"no tandem binary at {args.tandem_bin}: build it with "
                 f"CARGO_TARGET_DIR={DEFAULT_TARGET} cargo build --release -p tandem, or pass --tandem-bin")
    if not os.access(args.client_python, os.X_OK):
        sys.exit(f"no client python at {args.client_python} (bash bench/setup.sh creates it)")
    started = time.perf_counter()
    results: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "machine": {"nproc": os.cpu_count(), "uname": " ".join(os.uname())},
        "runs": [],
    }
    try:
        if "A" in args.scenarios:
            for rtt in args.rtts:
                results["runs"].append(scenario_a(args, rtt))
        if "B" in args.scenarios:
            results["runs"] += scenario_b(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    results["total_s"] = time.perf_counter() - started
    report(results, args)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"\nmachine: {os.cpu_count()} cores; total wall time {results['total_s']:.0f} s", file=out)
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
