"""Connections: Tandem vs `mlflow server`, side by side on this machine.

For each server: memory per idle connection (RSS of the server's process
tree with N idle TCP connections open, minus before, over N), memory after
they all close (RSS back near where it started?), and how many of 200
slowloris connections (a request head that never ends) are still open after
45 s. Prints both figures and their ratio.

    bash bench/setup.sh                       # the peer's venv and a release build
    python bench/connections.py [--connections 5000] [--tandem-bin PATH]
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, table, wait_until  # noqa: E402

DEFAULT_TANDEM_BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/root/.cache/tandem-target-bench"),
                                  "release", "tandem")


def tree_rss_kb(pid: int) -> int:
    """RSS of `pid` and its descendants (mlflow server runs workers)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = open(f"/proc/{current}/status").read()
            total += int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
            children = open(f"/proc/{current}/task/{current}/children").read().split()
            pending += [int(child) for child in children]
        except (OSError, StopIteration):
            pass
    return total


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return b"200" in sock.recv(1024)
    except OSError:
        return False


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1)  # EOF, or the server's refusal before it closes
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def measure(name: str, argv: list[str], env: dict, port: int, connections: int) -> dict:
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: answers(port), 120, f"{name} to answer")
        time.sleep(1)
        before = tree_rss_kb(process.pid)
        sockets = []
        for _ in range(connections):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        time.sleep(3)
        held = tree_rss_kb(process.pid)
        for sock in sockets:
            sock.close()
        time.sleep(5)
        after = tree_rss_kb(process.pid)
        slow = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        time.sleep(45)
        open_after = sum(still_open(sock) for sock in slow)
        for sock in slow:
            sock.close()
        return {
            "before_mb": before / 1024,
            "per_conn_kb": (held - before) / connections,
            "after_mb": after / 1024,
            "slowloris_open": open_after,
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--tandem-bin", default=os.environ.get("TANDEM_BIN", DEFAULT_TANDEM_BIN))
    parser.add_argument("--peer-venv", default="/root/.cache/mlflow-peer-venv")
    args = parser.parse_args()
    results = {}
    data = tempfile.mkdtemp(prefix="bench-connections-")
    port = free_port()
    env = dict(os.environ, TANDEM_LOG="warn")
    results["tandem"] = measure("tandem", [args.tandem_bin, "server", "--listen", f"127.0.0.1:{port}",
                                           "--data", f"{data}/tandem"], env, port, args.connections)
    mlflow = os.path.join(args.peer_venv, "bin", "mlflow")
    if os.path.exists(mlflow):
        port = free_port()
        peer_env = dict(os.environ, PATH=os.path.dirname(mlflow) + os.pathsep + os.environ.get("PATH", ""))
        os.makedirs(f"{data}/mlflow", exist_ok=True)
        results["mlflow"] = measure("mlflow", [mlflow, "server", "--backend-store-uri",
                                               f"sqlite:///{data}/mlflow/mlflow.db", "--artifacts-destination",
                                               f"{data}/mlflow/artifacts", "--serve-artifacts", "--host",
                                               "127.0.0.1", "--port", str(port)], peer_env, port, args.connections)
    else:
        print(f"(no peer: {mlflow} missing; run bash bench/setup.sh)", file=sys.stderr)
    rows = [["figure", "tandem", "mlflow server", "mlflow / tandem"]]
    for key, label in [("per_conn_kb", f"KB per idle connection ({args.connections} open)"),
                       ("before_mb", "RSS before, MB"), ("after_mb", "RSS after they closed, MB"),
                       ("slowloris_open", "slowloris connections open after 45 s (of 200)")]:
        t = results["tandem"][key]
        m = results.get("mlflow", {}).get(key)
        ratio = f"{m / t:.1f}x" if m is not None and t else "-"
        rows.append([label, f"{t:.1f}", "-" if m is None else f"{m:.1f}", ratio])
    table(rows, sys.stdout)


if __name__ == "__main__":
    main()
