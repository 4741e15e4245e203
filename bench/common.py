"""Helpers shared by the benchmarks: processes, ports, HTTP, machine load and
tables. Standard library only, so any python3 can run the orchestrators."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by anything on the machine over `seconds` (/proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(1, t1 - t0))


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def http_json(method: str, url: str, body: dict | None = None, timeout: float = 10) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def try_json(method: str, url: str, body: dict | None = None, timeout: float = 1.0) -> dict | None:
    try:
        return http_json(method, url, body, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return None


def tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def wait_until(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """One line of a child's stdout, or '' after `timeout` s or at its exit."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return ""
    return proc.stdout.readline().decode(errors="replace").strip()


def table(rows: list[list[str]], out) -> None:
    """Prints rows as aligned columns, the first row as a header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))),
              file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)


class Proc:
    """A child process in its own session, stopped by signalling its pid
    (SIGTERM, then SIGKILL after a bounded wait)."""

    def __init__(self, name: str, argv: list[str], log_path: str, env: dict | None = None,
                 stdin=subprocess.DEVNULL, stdout=None):
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdin=stdin,
                                     stdout=stdout if stdout is not None else self._log,
                                     stderr=self._log, start_new_session=True)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> int | None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"!! {self.name} (pid {self.pid}) did not stop within {timeout:.0f}s: SIGKILL")
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def wait_http(self, url: str, timeout: float, ok=None) -> None:
        """Until `url` answers 200 (with `ok`: JSON that `ok` accepts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + tail(self.log_path))
            if ok is None:
                try:
                    with urllib.request.urlopen(url, timeout=1) as r:
                        if r.status == 200:
                            return
                except (urllib.error.URLError, OSError, http.client.HTTPException):
                    pass
            else:
                doc = try_json("GET", url, timeout=1)
                if doc is not None and ok(doc):
                    return
            time.sleep(0.05)
        self.stop()  # the caller never gets this object to stop it
        raise RuntimeError(f"{self.name} not ready after {timeout:g} s ({url}); see {self.log_path}:\n"
                           + tail(self.log_path))
