#!/usr/bin/env python3
"""Tandem failover benchmark: unplanned RTO and planned failover duration.

Every trial builds a fresh two-region deployment on 127.0.0.1: a real etcd
(the witness, its own temporary data directory and free ports), `eastus`
(primary at bootstrap) and `westus` as `tandem server` processes, and a
`tandem gateway` in front of them. The deployment file names the witness
with DEFAULT timings (no ttl/renew_interval/retry_timeout, no [failover]
section: a 6 s lease renewed every second, 2 s per witness request, 5 s
grace period, automatic mode). A writer (the official mlflow client, in a
child process under --client-python) writes through the gateway every
~20 ms, alternating `set_tag` and `log_metric` on one run, and reports every
call with its start, end, outcome and the region that answered (the
gateway's `x-tandem-region` header).

unplanned: after --warmup seconds of writes, SIGKILL the primary's process.
  RTO = time from the kill to the first write acknowledged through the
  gateway by another region. Monitors (every 50 ms) note when etcd's leader
  key vanished (the lease lapsed) and named westus again, when westus first
  said `accepting_writes`, and when the gateway first named westus primary;
  westus's log gives when its grace period started and when it took over.
  Acknowledged writes that westus lacks afterwards are counted (the
  replication is asynchronous, so an unplanned failover may lose the last
  few; informational).

planned: after --warmup seconds of writes, `POST {gateway}/api/tandem/v1/failover
  {"to": "westus"}`. Reports the client-side time of that call, the
  `duration_ms` and `zero_loss` of its answer, the longest stall the writer
  saw (largest gap between two consecutive acknowledgements around the
  failover), and checks zero loss itself: every write acknowledged before,
  during and after the failover is read back from westus directly.

Trials alternate unplanned/planned. The anchors (Azure SQL failover groups,
Aurora Global Database) are published figures printed for reference; they
are not measured here.

The driver (this file without --worker) uses only the standard library; the
writer runs under --client-python (a venv with mlflow or mlflow-skinny).
Not run in CI. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import re
import secrets
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
from common import Proc, busy_cores, free_port, http_json, log, table, tail, try_json, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TARGET = os.environ.get("CARGO_TARGET_DIR", "/root/.cache/tandem-target-bench")
DEFAULT_TANDEM_BIN = os.path.join(DEFAULT_TARGET, "release", "tandem")
DEFAULT_CLIENT_PYTHON = "/root/.cache/tandem-venv/bin/python"
PRIMARY, SECONDARY = "eastus", "westus"
DEPLOYMENT_NAME = "failover-bench"

# Published figures, NOT measured here: what the ratios compare Tandem's
# measured unplanned RTO median against.
ANCHORS = [
    {
        "name": "Azure SQL failover groups (automatic policy, default grace period)",
        "rto_s": 3600.0,
        "source": "Microsoft Learn, 'Overview of business continuity with Azure SQL Database' and "
                  "'Failover groups overview & best practices' (RTO 1 h: automatic failover waits "
                  "out GracePeriodWithDataLossHours, default and minimum 1 hour)",
    },
    {
        "name": "Amazon Aurora Global Database (promote a secondary region)",
        "rto_s": 60.0,
        "source": "AWS, Amazon Aurora User Guide 'Using Amazon Aurora Global Database' "
                  "(a secondary region takes full read/write workloads in under a minute)",
    },
]
GOAL_UNPLANNED_S = 10.0
GOAL_PLANNED_S = 5.0


# --------------------------------------------------------------------------
# Writer (run under --client-python).
#
# Protocol with the driver: the writer creates an experiment and a run
# through the gateway, prints {"run_id": ...} and "READY", waits for "GO" on
# stdin, then writes until "STOP" arrives on stdin, printing one JSON line
# per call: {"i", "op", "t0", "t1", "ok", "region", "error"} with t0/t1 from
# time.monotonic() (CLOCK_MONOTONIC: the same clock as the driver's).
# Finally prints "DONE".
# --------------------------------------------------------------------------


def worker_main(params: dict) -> int:
    os.environ.pop("MLFLOW_ENABLE_ASYNC_LOGGING", None)
    if params.get("client_retries") is not None:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(params["client_retries"])
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(params.get("request_timeout", 60)))
    import requests
    import mlflow
    from mlflow import MlflowClient

    last = {"region": None}
    original_send = requests.Session.send

    def send(self, request, **kwargs):  # notes which region answered
        last["region"] = None
        response = original_send(self, request, **kwargs)
        last["region"] = response.headers.get("x-tandem-region")
        return response

    requests.Session.send = send

    client = MlflowClient(tracking_uri=params["tracking_uri"])
    experiment = client.create_experiment(f"failover-bench-{os.getpid()}-{int(time.time() * 1000)}")
    run_id = client.create_run(experiment).info.run_id
    client.set_tag(run_id, "warmup", "1")
    client.log_metric(run_id, "warmup", 1.0, step=0)
    print(json.dumps({"run_id": run_id, "client_mlflow_version": mlflow.__version__}), flush=True)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    stop = threading.Event()

    def watch_stdin():
        for line in sys.stdin:
            if line.strip() == "STOP":
                break
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    interval = params["interval_s"]
    i = 0
    next_due = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if next_due > now:
            time.sleep(next_due - now)
        i += 1
        op = "set_tag" if i % 2 else "log_metric"
        t0 = time.monotonic()
        error = None
        try:
            if op == "set_tag":
                client.set_tag(run_id, f"t{i:06d}", str(i))
            else:
                client.log_metric(run_id, "m", float(i), step=i)
            ok = True
        except Exception as exc:  # noqa: BLE001 - failures during a failover are counted
            ok = False
            error = f"{type(exc).__name__}: {exc}"[:300]
        t1 = time.monotonic()
        print(json.dumps({"i": i, "op": op, "t0": t0, "t1": t1, "ok": ok,
                          "region": last["region"] if ok else None, "error": error}), flush=True)
        # ~every interval; after a long call (a failover) the next one starts at once.
        next_due = max(t0 + interval, time.monotonic())
    print("DONE", flush=True)
    return 0


# --------------------------------------------------------------------------
# Driver (standard library only).
# --------------------------------------------------------------------------


















class Etcd(Proc):
    def __init__(self, args, root: str):
        self.port, self.peer_port = free_port(), free_port()
        url, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer_port}"
        self.url = url
        argv = [args.etcd_bin, "--name", "default", "--data-dir", os.path.join(root, "etcd"),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}"]
        super().__init__("etcd", argv, os.path.join(root, "etcd.log"))
        self.wait_http(url + "/health", args.startup_timeout, ok=lambda d: d.get("health") == "true")

    def leader(self) -> tuple[str, int] | None:
        """(region, mod_revision) of the deployment's leader key, None if absent.
        Raises OSError if etcd does not answer."""
        key = base64.b64encode(f"/tandem/{DEPLOYMENT_NAME}/leader".encode()).decode()
        doc = http_json("POST", self.url + "/v3/kv/range", {"key": key}, timeout=1)
        kvs = doc.get("kvs") or []
        if not kvs:
            return None
        value = json.loads(base64.b64decode(kvs[0]["value"]))
        return value.get("region"), int(kvs[0].get("mod_revision", 0))


class Region(Proc):
    def __init__(self, args, root: str, name: str, port: int, deployment: str):
        self.port, self.region = port, name
        self.data = os.path.join(root, f"{name}-data")
        os.makedirs(self.data)
        argv = [args.tandem_bin, "server", "--deployment", deployment, "--region", name,
                "--data", self.data, "--listen", f"127.0.0.1:{port}"]
        super().__init__(name, argv, os.path.join(root, f"{name}.log"), env=dict(os.environ))
        self.wait_http(self.url + "/health", args.startup_timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, timeout: float = 1.0) -> dict | None:
        return try_json("GET", self.url + "/api/tandem/v1/regions", timeout=timeout)


class Gateway(Proc):
    def __init__(self, args, root: str, deployment: str):
        self.port = free_port()
        argv = [args.tandem_bin, "gateway", "--deployment", deployment, "--listen", f"127.0.0.1:{self.port}"]
        if args.gateway_poll_interval:
            argv += ["--poll-interval", args.gateway_poll_interval]
        super().__init__("gateway", argv, os.path.join(root, "gateway.log"), env=dict(os.environ))
        self.wait_http(self.url + "/health", args.startup_timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def primary(self) -> str | None:
        doc = try_json("GET", self.url + "/gateway/status", timeout=1)
        if doc is None:
            raise OSError("gateway status unavailable")
        return (doc.get("primary") or {}).get("region")


class Writer:
    """The mlflow writer child; its per-call lines are collected by a thread."""

    def __init__(self, args, root: str, gateway_url: str):
        params = {"tracking_uri": gateway_url, "interval_s": args.write_interval_ms / 1000.0,
                  "client_retries": None if args.client_retries < 0 else args.client_retries}
        self.log_path = os.path.join(root, "writer.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([args.client_python, os.path.abspath(__file__), "--worker", json.dumps(params)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     start_new_session=True)
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.ready = threading.Event()
        self.meta: dict = {}
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(args.startup_timeout + 30):
            self.kill()
            raise RuntimeError(f"the writer did not start; see {self.log_path}:\n{tail(self.log_path)}")
        if "run_id" not in self.meta:
            self.kill()
            raise RuntimeError(f"the writer exited at start-up; see {self.log_path}:\n{tail(self.log_path)}")
        self.run_id = self.meta["run_id"]

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line == "READY":
                self.ready.set()
            elif line == "DONE":
                self.done.set()
            elif line.startswith("{"):
                doc = json.loads(line)
                if "run_id" in doc:
                    self.meta = doc
                else:
                    with self.lock:
                        self.calls.append(doc)
        self.ready.set()
        self.done.set()

    def send(self, word: str) -> None:
        self.proc.stdin.write((word + "\n").encode())
        self.proc.stdin.flush()

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.calls)

    def wait_for(self, predicate, timeout: float, what: str) -> dict:
        """First call (in order) satisfying `predicate`, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            with self.lock:
                fresh = self.calls[seen:]
                seen = len(self.calls)
            for call in fresh:
                if predicate(call):
                    return call
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.01)

    def stop(self, timeout: float = 90) -> None:
        try:
            self.send("STOP")
        except (BrokenPipeError, OSError):
            pass
        if not self.done.wait(timeout):
            log("!! the writer did not stop in time")
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


class Monitor(threading.Thread):
    """Samples `probe()` every `interval` s and keeps the changes: [(t, value)]."""

    def __init__(self, name: str, probe, interval: float = 0.05):
        super().__init__(daemon=True, name=f"monitor-{name}")
        self.probe, self.interval = probe, interval
        self.changes: list[tuple[float, object]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        last = object()
        while not self.halt.is_set():
            try:
                value = self.probe()
            except Exception:  # noqa: BLE001 - "unreachable" is a value too
                value = "unreachable"
            t = time.monotonic()
            if value != last:
                self.changes.append((t, value))
                last = value
            self.halt.wait(self.interval)

    def first(self, predicate, after: float) -> float | None:
        """When a value satisfying `predicate` was first current at or after
        `after` (`after` itself if the value current then satisfies it)."""
        changes = list(self.changes)
        current = [value for t, value in changes if t <= after]
        if current and predicate(current[-1]):
            return after
        return next((t for t, value in changes if t > after and predicate(value)), None)


def write_deployment(root: str, east_port: int, west_port: int, etcd_url: str) -> str:
    text = (
        f'name = "{DEPLOYMENT_NAME}"\n'
        f'primary = "{PRIMARY}"\n'
        f'replication_secret = "{secrets.token_hex(16)}"\n\n'
        f'[[regions]]\nname = "{PRIMARY}"\nurl = "http://127.0.0.1:{east_port}"\n\n'
        f'[[regions]]\nname = "{SECONDARY}"\nurl = "http://127.0.0.1:{west_port}"\n\n'
        # Default witness timings and failover policy: nothing else set.
        f'[witness]\nkind = "etcd"\nendpoints = ["{etcd_url}"]\n'
    )
    path = os.path.join(root, "deployment.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


class Setup:
    """etcd + two regions + gateway + writer, started and stopped in order."""

    def __init__(self, args, root: str):
        self.args, self.root = args, root
        self.etcd = self.east = self.west = self.gateway = self.writer = None
        self.monitors: dict[str, Monitor] = {}
        try:
            self.etcd = Etcd(args, root)
            east_port, west_port = free_port(), free_port()
            self.deployment = write_deployment(root, east_port, west_port, self.etcd.url)
            self.east = Region(args, root, PRIMARY, east_port, self.deployment)
            self.west = Region(args, root, SECONDARY, west_port, self.deployment)
            wait_until(lambda: (self.east.status() or {}).get("accepting_writes") is True,
                       args.startup_timeout, "eastus to accept writes")
            self.gateway = Gateway(args, root, self.deployment)
            wait_until(lambda: self._gateway_primary() == PRIMARY, args.startup_timeout,
                       "the gateway to name eastus primary")
            self.writer = Writer(args, root, self.gateway.url)
            self.wait_caught_up()
            self.monitors = {
                "etcd": Monitor("etcd", self.etcd.leader),
                "west": Monitor("west", lambda: _region_view(self.west)),
                "east": Monitor("east", lambda: _region_view(self.east)),
                "gateway": Monitor("gateway", self.gateway.primary),
            }
            for m in self.monitors.values():
                m.start()
        except BaseException:
            self.stop()
            raise

    def _gateway_primary(self) -> str | None:
        try:
            return self.gateway.primary()
        except OSError:
            return None

    def wait_caught_up(self) -> None:
        def caught_up():
            doc = self.east.status(timeout=2) or {}
            head = doc.get("journal_head")
            west = next((r for r in doc.get("regions", []) if r.get("name") == SECONDARY), {})
            return head is not None and west.get("applied", -1) >= head
        wait_until(caught_up, self.args.startup_timeout, "westus to apply eastus's journal")

    def stop(self) -> None:
        for m in self.monitors.values():
            m.halt.set()
        if self.writer is not None:
            self.writer.kill()
        for p in (self.gateway, self.east, self.west, self.etcd):
            if p is not None:
                p.stop()


def _region_view(region: Region):
    doc = region.status(timeout=1)
    if doc is None:
        return "unreachable"
    return (bool(doc.get("accepting_writes")), doc.get("role"), doc.get("epoch"))


LOG_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?Z\s+(\w+)\s+(.*)$")


def parse_log(path: str) -> list[tuple[float, str, str]]:
    """[(unix time, level, message)] of a tracing text log."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = LOG_TS.match(line.strip())
                if not m:
                    continue
                frac = (m.group(2) or ".0")[1:7].ljust(6, "0")
                dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
                    microsecond=int(frac), tzinfo=datetime.timezone.utc)
                out.append((dt.timestamp(), m.group(3), m.group(4)))
    except OSError:
        pass
    return out


def log_findings(root: str) -> dict:
    """WARN/ERROR lines and panics of every log of a trial (deduplicated
    after stripping numbers, with counts)."""
    findings: dict[str, dict] = {}
    for name in (PRIMARY, SECONDARY, "gateway"):
        path = os.path.join(root, f"{name}.log")
        counts: dict[str, int] = {}
        try:
            with open(path, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            continue
        for line in lines:
            if " ERROR " in line or " WARN " in line or "panicked" in line:
                text = LOG_TS.sub(lambda m: f"{m.group(3)} {m.group(4)}", line.strip())
                key = re.sub(r"\d+(\.\d+)?", "N", text)[:240]
                counts[key] = counts.get(key, 0) + 1
        findings[name] = {"lines": len(lines), "warn_error": counts}
    return findings


def first_call(calls: list[dict], predicate) -> dict | None:
    return next((c for c in calls if predicate(c)), None)


def rel(t: float | None, origin: float) -> float | None:
    return None if t is None else t - origin


def read_back(url: str, run_id: str) -> tuple[set[str], set[int]]:
    """Tag keys and metric `m` steps of the run, read from `url` directly."""
    run = http_json("GET", f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=30)
    tags = {t["key"] for t in run["run"]["data"].get("tags", [])}
    steps: set[int] = set()
    token = None
    for _ in range(1000):
        q = f"run_id={run_id}&metric_key=m&max_results=25000" + (f"&page_token={token}" if token else "")
        doc = http_json("GET", f"{url}/api/2.0/mlflow/metrics/get-history?{q}", timeout=30)
        steps.update(int(m.get("step", 0)) for m in doc.get("metrics", []))
        token = doc.get("next_page_token")
        if not token:
            break
    return tags, steps


def missing_writes(calls: list[dict], tags: set[str], steps: set[int]) -> list[int]:
    out = []
    for c in calls:
        if not c["ok"]:
            continue
        if c["op"] == "set_tag" and f"t{c['i']:06d}" not in tags:
            out.append(c["i"])
        if c["op"] == "log_metric" and c["i"] not in steps:
            out.append(c["i"])
    return out


def max_gap(calls: list[dict], start: float, end: float) -> tuple[float | None, float | None]:
    """Largest gap between consecutive acknowledgements (ok calls' t1) among
    those whose interval touches [start, end]; and where it began."""
    acks = sorted(c["t1"] for c in calls if c["ok"])
    best, at = None, None
    for a, b in zip(acks, acks[1:]):
        if b >= start and a <= end:
            if best is None or b - a > best:
                best, at = b - a, a
    return best, at


def unplanned_trial(args, n: int) -> dict:
    root = tempfile.mkdtemp(prefix=f"tandem-failover-bench-u{n}-", dir=args.tmp_dir)
    busy = busy_cores()
    out: dict = {"scenario": "unplanned", "trial": n, "busy_cores_before": busy, "root": root}
    setup = None
    try:
        setup = Setup(args, root)
        w = setup.writer
        w.send("GO")
        time.sleep(args.warmup)
        before = w.snapshot()
        if not any(c["ok"] and c["region"] == PRIMARY for c in before):
            raise RuntimeError("no write acknowledged by eastus during the warm-up")
        kill_wall, killed_at = time.time(), time.monotonic()
        setup.east.kill9()
        recovered = w.wait_for(lambda c: c["ok"] and c["t1"] > killed_at and c["region"] not in (None, PRIMARY),
                               args.rto_timeout, "a write acknowledged by another region after the kill")
        time.sleep(args.after)
        w.stop()
        calls = w.snapshot()
        tags, steps = read_back(setup.west.url, w.run_id)
        acked_before_kill = [c for c in calls if c["ok"] and c["t1"] <= killed_at]
        lost = missing_writes(acked_before_kill, tags, steps)
        lost_after = missing_writes([c for c in calls if c["ok"] and c["t1"] > killed_at], tags, steps)
        mon = setup.monitors
        lease_gone = mon["etcd"].first(lambda v: v is None, killed_at)
        west_leader = mon["etcd"].first(lambda v: isinstance(v, tuple) and v[0] == SECONDARY, killed_at)
        west_accepting = mon["west"].first(lambda v: isinstance(v, tuple) and v[0] is True, killed_at)
        gw_west = mon["gateway"].first(lambda v: v == SECONDARY, killed_at)
        gw_none = mon["gateway"].first(lambda v: v is None, killed_at)
        # westus's own log (wall clock): grace period start, takeover, accepting.
        events = {}
        for ts, level, msg in parse_log(os.path.join(root, f"{SECONDARY}.log")):
            if ts < kill_wall - 1:
                continue
            for key, needle in (("grace_started", "takes over if it stays unreachable"),
                                ("taking_over", "taking over as primary"),
                                ("accepting_writes", "accepting writes")):
                if needle in msg and key not in events:
                    events[key] = ts - kill_wall
        failed = [c for c in calls if not c["ok"] and c["t1"] > killed_at]
        out.update({
            "rto_s": recovered["t1"] - killed_at,
            "recovering_call": {"i": recovered["i"], "started_s": recovered["t0"] - killed_at,
                                "latency_s": recovered["t1"] - recovered["t0"], "region": recovered["region"]},
            "lease_lapsed_s": rel(lease_gone, killed_at),
            "witness_names_westus_s": rel(west_leader, killed_at),
            "westus_accepting_s": rel(west_accepting, killed_at),
            "gateway_no_primary_s": rel(gw_none, killed_at),
            "gateway_names_westus_s": rel(gw_west, killed_at),
            "westus_log_s": events,
            "writes_acked_before_kill": len(acked_before_kill),
            "acked_writes_lost": len(lost),
            "acked_writes_lost_ids": lost[:20],
            "acked_after_kill_missing": len(lost_after),
            "failed_calls_after_kill": len(failed),
            "errors_sample": sorted({c["error"] for c in failed if c["error"]})[:5],
            "calls": len(calls),
        })
        log(f"   unplanned #{n}: RTO {out['rto_s']:.2f} s (lease lapsed {fmt_s(out['lease_lapsed_s'])}, "
            f"witness -> westus {fmt_s(out['witness_names_westus_s'])}, westus accepting "
            f"{fmt_s(out['westus_accepting_s'])}, gateway -> westus {fmt_s(out['gateway_names_westus_s'])}; "
            f"recovering call started {recovered['t0'] - killed_at:+.2f} s); "
            f"{len(failed)} failed calls, {len(lost)} acked writes lost")
    except Exception as error:  # noqa: BLE001 - a failed trial is reported, not fatal
        out["error"] = f"{type(error).__name__}: {error}"
        log(f"!! unplanned #{n} failed: {out['error']}")
    finally:
        if setup is not None:
            setup.stop()
        out["logs"] = log_findings(root)
        cleanup(args, root)
    return out


def planned_trial(args, n: int) -> dict:
    root = tempfile.mkdtemp(prefix=f"tandem-failover-bench-p{n}-", dir=args.tmp_dir)
    busy = busy_cores()
    out: dict = {"scenario": "planned", "trial": n, "busy_cores_before": busy, "root": root}
    setup = None
    try:
        setup = Setup(args, root)
        w = setup.writer
        w.send("GO")
        time.sleep(args.warmup)
        t0 = time.monotonic()
        status, answer = None, None
        try:
            req = urllib.request.Request(f"{setup.gateway.url}/api/tandem/v1/failover",
                                         data=json.dumps({"to": SECONDARY}).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=args.failover_timeout) as r:
                status, answer = r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as error:
            status, answer = error.code, {"body": error.read().decode(errors="replace")[:500]}
        t1 = time.monotonic()
        out.update({"http_status": status, "answer": answer, "client_s": t1 - t0})
        if status != 200:
            raise RuntimeError(f"failover answered {status}: {answer}")
        first_west = w.wait_for(lambda c: c["ok"] and c["t1"] > t0 and c["region"] == SECONDARY,
                                args.rto_timeout, "a write acknowledged by westus after the failover")
        time.sleep(args.after)
        w.stop()
        calls = w.snapshot()
        tags, steps = read_back(setup.west.url, w.run_id)
        missing = missing_writes(calls, tags, steps)
        acked_until_switch = [c for c in calls if c["ok"] and c["t1"] <= first_west["t1"]]
        stall, stall_at = max_gap(calls, t0, first_west["t1"])
        window = [c for c in calls if c["t1"] >= t0 and c["t0"] <= first_west["t1"]]
        failed = [c for c in window if not c["ok"]]
        mon = setup.monitors
        gw_west = mon["gateway"].first(lambda v: v == SECONDARY, t0)
        west_accepting = mon["west"].first(lambda v: isinstance(v, tuple) and v[0] is True, t0)
        east_view = _region_view(setup.east)
        out.update({
            "duration_ms": answer.get("duration_ms"),
            "zero_loss_reported": answer.get("zero_loss"),
            "epoch": answer.get("epoch"),
            "records_confirmed": answer.get("records_confirmed"),
            "stall_s": stall,
            "stall_began_s": rel(stall_at, t0),
            "first_westus_ack_s": first_west["t1"] - t0,
            "westus_accepting_s": rel(west_accepting, t0),
            "gateway_names_westus_s": rel(gw_west, t0),
            "failed_calls": len(failed),
            "errors_sample": sorted({c["error"] for c in failed if c["error"]})[:5],
            "max_call_latency_s": max((c["t1"] - c["t0"] for c in window if c["ok"]), default=None),
            "acked_writes": sum(1 for c in calls if c["ok"]),
            "acked_until_switch": len(acked_until_switch),
            "missing_on_westus": len(missing),
            "missing_ids": missing[:20],
            "zero_loss_verified": not missing,
            "eastus_after": east_view,
            "calls": len(calls),
        })
        log(f"   planned #{n}: {out['client_s']:.2f} s client-side ({out['duration_ms']} ms reported, zero_loss "
            f"{out['zero_loss_reported']}), writer stall {fmt_s(stall)}, {len(failed)} failed calls, "
            f"{len(missing)} of {out['acked_writes']} acked writes missing on westus")
    except Exception as error:  # noqa: BLE001
        out["error"] = f"{type(error).__name__}: {error}"
        log(f"!! planned #{n} failed: {out['error']}")
    finally:
        if setup is not None:
            setup.stop()
        out["logs"] = log_findings(root)
        cleanup(args, root)
    return out


def cleanup(args, root: str) -> None:
    if args.keep:
        log(f"   kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------
# Reporting.
# --------------------------------------------------------------------------


def fmt_s(value) -> str:
    return "-" if value is None else f"{value:.2f} s"




def med_max(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.median(values), max(values)


def _diff(a, b):
    return None if a is None or b is None else a - b


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def report(results: dict, args) -> dict:
    out = sys.stderr if args.json == "-" else sys.stdout
    u = [r for r in results["trials"] if r["scenario"] == "unplanned"]
    p = [r for r in results["trials"] if r["scenario"] == "planned"]
    summary: dict = {}
    if u:
        print("\nUnplanned: kill -9 of the primary (eastus) -> first write acknowledged through the gateway "
              "(seconds after the kill)", file=out)
        rows = [["trial", "RTO", "lease lapsed", "grace began*", "witness->westus", "westus accepting",
                 "gateway->westus", "failed calls", "acked lost", "busy cores"]]
        for r in u:
            if "error" in r:
                rows.append([f"#{r['trial']}", "FAILED", *[""] * 7, f"{r['busy_cores_before']:.1f}"])
                continue
            rows.append([f"#{r['trial']}", fmt_s(r["rto_s"]), fmt_s(r["lease_lapsed_s"]),
                         fmt_s(r["westus_log_s"].get("grace_started")), fmt_s(r["witness_names_westus_s"]),
                         fmt_s(r["westus_accepting_s"]), fmt_s(r["gateway_names_westus_s"]),
                         str(r["failed_calls_after_kill"]), str(r["acked_writes_lost"]),
                         f"{r['busy_cores_before']:.1f}"])
        ok = [r for r in u if "error" not in r]
        cols = ["rto_s", "lease_lapsed_s", None, "witness_names_westus_s", "westus_accepting_s",
                "gateway_names_westus_s"]
        for label, pick in (("median", 0), ("max", 1)):
            row = [label]
            for c in cols:
                vals = [r["westus_log_s"].get("grace_started") for r in ok] if c is None else [r[c] for r in ok]
                row.append(fmt_s(med_max(vals)[pick]))
            rows.append(row + ["", "", ""])
        table(rows, out)
        parts = {
            "kill -> lease lapsed (etcd key gone)": [r["lease_lapsed_s"] for r in ok],
            "lease lapsed -> westus starts its grace period (log)": [
                _diff(r["westus_log_s"].get("grace_started"), r["lease_lapsed_s"]) for r in ok],
            "grace period (log: grace began -> taking over)": [
                _diff(r["westus_log_s"].get("taking_over"), r["westus_log_s"].get("grace_started")) for r in ok],
            "takeover (log: taking over -> accepting writes)": [
                _diff(r["westus_log_s"].get("accepting_writes"), r["westus_log_s"].get("taking_over")) for r in ok],
            "westus accepting -> gateway names westus": [
                _diff(r["gateway_names_westus_s"], r["westus_accepting_s"]) for r in ok],
            "gateway names westus -> first write acknowledged": [
                _diff(r["rto_s"], r["gateway_names_westus_s"]) for r in ok],
        }
        print("RTO decomposition (median [max] over trials):", file=out)
        for label, values in parts.items():
            m, x = med_max(values)
            print(f"  {label:55s} {fmt_s(m):>8s} [{fmt_s(x)}]", file=out)
        print("* grace began = westus's log line 'takes over if it stays unreachable' (its own clock); the other "
              "columns are\n  the driver's monitors, sampled every 50 ms. 'acked lost' = writes acknowledged by "
              "eastus before the kill\n  that westus does not hold (asynchronous replication).", file=out)
        rto_med, rto_max = med_max([r["rto_s"] for r in ok])
        summary["unplanned"] = {"trials": len(u), "failed_trials": len(u) - len(ok), "rto_median_s": rto_med,
                                "rto_max_s": rto_max,
                                "lease_lapsed_median_s": med_max([r["lease_lapsed_s"] for r in ok])[0],
                                "westus_accepting_median_s": med_max([r["westus_accepting_s"] for r in ok])[0],
                                "gateway_names_westus_median_s": med_max([r["gateway_names_westus_s"] for r in ok])[0],
                                "acked_writes_lost_total": sum(r["acked_writes_lost"] for r in ok)}
    if p:
        print("\nPlanned: POST /api/tandem/v1/failover {\"to\": \"westus\"} through the gateway, under writes",
              file=out)
        rows = [["trial", "client", "duration_ms", "zero_loss (answer)", "missing on westus", "writer stall",
                 "first westus ack", "gateway->westus", "failed calls", "busy cores"]]
        for r in p:
            if "error" in r:
                rows.append([f"#{r['trial']}", "FAILED", *[""] * 7, f"{r['busy_cores_before']:.1f}"])
                continue
            rows.append([f"#{r['trial']}", fmt_s(r["client_s"]), str(r["duration_ms"]),
                         str(r["zero_loss_reported"]).lower(), f"{r['missing_on_westus']} of {r['acked_writes']}",
                         fmt_s(r["stall_s"]), fmt_s(r["first_westus_ack_s"]), fmt_s(r["gateway_names_westus_s"]),
                         str(r["failed_calls"]), f"{r['busy_cores_before']:.1f}"])
        ok = [r for r in p if "error" not in r]
        for label, pick in (("median", 0), ("max", 1)):
            dm = med_max([r["duration_ms"] for r in ok])[pick]
            rows.append([label, fmt_s(med_max([r["client_s"] for r in ok])[pick]),
                         "-" if dm is None else f"{dm:.0f}", "", "",
                         fmt_s(med_max([r["stall_s"] for r in ok])[pick]),
                         fmt_s(med_max([r["first_westus_ack_s"] for r in ok])[pick]),
                         fmt_s(med_max([r["gateway_names_westus_s"] for r in ok])[pick]), "", ""])
        table(rows, out)
        zero = sum(1 for r in ok if r["zero_loss_reported"] and r["zero_loss_verified"])
        print(f"zero loss (answer says zero_loss and every acknowledged write read back from westus): "
              f"{zero} of {len(p)} trials", file=out)
        c_med, c_max = med_max([r["client_s"] for r in ok])
        s_med, s_max = med_max([r["stall_s"] for r in ok])
        summary["planned"] = {"trials": len(p), "failed_trials": len(p) - len(ok), "client_median_s": c_med,
                              "client_max_s": c_max,
                              "duration_ms_median": med_max([r["duration_ms"] for r in ok])[0],
                              "duration_ms_max": med_max([r["duration_ms"] for r in ok])[1],
                              "stall_median_s": s_med, "stall_max_s": s_max, "zero_loss_trials": zero}
    print("\nGoals", file=out)
    rows = [["goal", "median", "max", "met"]]
    if "unplanned" in summary:
        s = summary["unplanned"]
        met = s["rto_max_s"] is not None and s["rto_max_s"] < GOAL_UNPLANNED_S and not s["failed_trials"]
        rows.append([f"unplanned RTO < {GOAL_UNPLANNED_S:g} s", fmt_s(s["rto_median_s"]), fmt_s(s["rto_max_s"]),
                     f"{mark(met)} (median {mark((s['rto_median_s'] or 1e9) < GOAL_UNPLANNED_S)}, every trial "
                     f"{mark(met)})"])
        s["goal_met"] = met
    if "planned" in summary:
        s = summary["planned"]
        met_t = s["client_max_s"] is not None and s["client_max_s"] < GOAL_PLANNED_S and not s["failed_trials"]
        met_z = s["zero_loss_trials"] == s["trials"]
        rows.append([f"planned failover < {GOAL_PLANNED_S:g} s (client-side)", fmt_s(s["client_median_s"]),
                     fmt_s(s["client_max_s"]), f"{mark(met_t)} (every trial)"])
        rows.append([f"planned writer stall < {GOAL_PLANNED_S:g} s (informational)", fmt_s(s["stall_median_s"]),
                     fmt_s(s["stall_max_s"]), mark(s["stall_max_s"] is not None and s["stall_max_s"] < GOAL_PLANNED_S)])
        rows.append(["planned zero loss", "", "", f"{mark(met_z)} ({s['zero_loss_trials']} of {s['trials']})"])
        s["goal_met"] = met_t and met_z
    table(rows, out)
    if "unplanned" in summary and summary["unplanned"]["rto_median_s"] is not None:
        med = summary["unplanned"]["rto_median_s"]
        print("\nAnchors: PUBLISHED figures, not measured on this machine; ratio = anchor RTO / Tandem's measured "
              "unplanned RTO median", file=out)
        rows = [["anchor (published)", "RTO", "Tandem median", "ratio", "source"]]
        summary["anchors"] = []
        for a in ANCHORS:
            ratio = a["rto_s"] / med
            rows.append([a["name"], f"{a['rto_s']:g} s", fmt_s(med), f"{ratio:.0f}x faster", a["source"]])
            summary["anchors"].append({**a, "measured": False, "tandem_median_s": med,
                                       "ratio_anchor_over_tandem": ratio, "tandem_over_anchor": med / a["rto_s"]})
        table(rows, out)
    # What the logs said (WARN/ERROR lines, counted over all trials).
    merged: dict[str, dict[str, int]] = {}
    for r in results["trials"]:
        for name, f in (r.get("logs") or {}).items():
            for line, count in f["warn_error"].items():
                merged.setdefault(name, {})
                merged[name][line] = merged[name].get(line, 0) + count
    summary["log_warn_error"] = merged
    print("\nWARN/ERROR lines in the logs (all trials; numbers replaced by N):", file=out)
    for name, lines in merged.items():
        for line, count in sorted(lines.items(), key=lambda kv: -kv[1])[: args.log_lines]:
            print(f"  {name}: {count:4d} x {line[:200]}", file=out)
    return summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN, help="release tandem binary [%(default)s]")
    p.add_argument("--client-python", default=DEFAULT_CLIENT_PYTHON,
                   help="python with mlflow(-skinny) for the writer [%(default)s]")
    p.add_argument("--etcd-bin", default=shutil.which("etcd") or "etcd", help="etcd binary [%(default)s]")
    p.add_argument("--scenarios", default="unplanned,planned", help="unplanned, planned or both [%(default)s]")
    p.add_argument("--trials", type=int, default=5, help="trials per scenario [%(default)s]")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of writes before the failure [%(default)s]")
    p.add_argument("--after", type=float, default=1.0,
                   help="seconds of writes after the first acknowledgement by westus [%(default)s]")
    p.add_argument("--write-interval-ms", type=float, default=20, help="one write every this many ms [%(default)s]")
    p.add_argument("--client-retries", type=int, default=0,
                   help="MLFLOW_HTTP_REQUEST_MAX_RETRIES of the writer (-1: mlflow's default, 7 with "
                        "exponential backoff, which would add the client's own back-off to the RTO); the writer "
                        "itself tries again every --write-interval-ms [%(default)s]")
    p.add_argument("--gateway-poll-interval", default=None,
                   help="the gateway's --poll-interval (default: the gateway's own, 500ms)")
    p.add_argument("--rto-timeout", type=float, default=90,
                   help="bound on the wait for the first write after the failure, s [%(default)s]")
    p.add_argument("--failover-timeout", type=float, default=60, help="bound on the failover call, s [%(default)s]")
    p.add_argument("--startup-timeout", type=float, default=60, help="bound on each start-up, s [%(default)s]")
    p.add_argument("--busy-cores", type=float, default=0.3,
                   help="warn when other processes keep more than this many cores busy [%(default)s]")
    p.add_argument("--log-lines", type=int, default=12, help="distinct WARN/ERROR lines shown per log [%(default)s]")
    p.add_argument("--tmp-dir", default=None, help="parent of the temp dirs [system temp]")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs (data, logs, deployment files)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="write results as JSON to PATH, or to stdout with no PATH (the text goes to stderr)")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not args.scenarios or set(args.scenarios) - {"unplanned", "planned"}:
        p.error("--scenarios takes unplanned, planned or unplanned,planned")
    if args.trials < 1:
        p.error("--trials must be at least 1")
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        return worker_main(json.loads(argv[1]))
    args = parse_args(argv)
    if not os.access(args.tandem_bin, os.X_OK):
        sys.exit(f"no tandem binary at {args.tandem_bin}: build it with "
                 f"CARGO_TARGET_DIR={DEFAULT_TARGET} cargo build --release -p tandem, or pass --tandem-bin")
    if not os.access(args.client_python, os.X_OK):
        sys.exit(f"no client python at {args.client_python} (bash bench/setup.sh creates it)")
    if not shutil.which(args.etcd_bin) and not os.access(args.etcd_bin, os.X_OK):
        sys.exit(f"no etcd at {args.etcd_bin} (Debian: apt-get install etcd-server)")
    started = time.perf_counter()
    results: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "machine": {"nproc": os.cpu_count(), "uname": " ".join(os.uname())},
        "settings": {"witness": "etcd, default timings (ttl 6 s, renew_interval 1 s, retry_timeout 2 s)",
                     "failover": "default (automatic, grace_period 5 s, maximum_lag_on_failover 1000)",
                     "gateway_poll_interval": args.gateway_poll_interval or "default (500ms)"},
        "trials": [],
    }
    try:
        for n in range(1, args.trials + 1):
            for scenario in args.scenarios:
                busy = busy_cores(0.5)
                if busy > args.busy_cores:
                    log(f"!! {busy:.2f} cores busy before the trial: timings may be noisy")
                log(f"== {scenario} trial {n}/{args.trials}")
                trial = unplanned_trial if scenario == "unplanned" else planned_trial
                results["trials"].append(trial(args, n))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    results["total_s"] = time.perf_counter() - started
    results["summary"] = report(results, args)
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
