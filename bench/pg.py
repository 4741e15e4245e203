"""PostgreSQL for the benchmarks that run both servers on it (`--postgres`):
a database per server, created before it starts and dropped after; the CPU
of the PostgreSQL backends serving it counted with the server's own."""

from __future__ import annotations

import contextlib
import os
import subprocess

from common import proc_cpu_s
from run import tree_cpu_s

PG = "postgresql://postgres@127.0.0.1:5432"


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(["psql", f"{PG}/{database}", "-Atc", sql], check=True, capture_output=True,
                          text=True).stdout


def server_cpu_s(server, database: str | None) -> float:
    """The server's CPU (its process tree), and that of the PostgreSQL
    backends serving its database (which may come and go: counted while
    alive)."""
    total = tree_cpu_s(server.proc.pid)
    if database:
        pids = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'").split()
        total += sum(proc_cpu_s(int(pid)) for pid in pids)
    return total


def ensure_psycopg2(venv: str) -> None:
    """mlflow server needs a PostgreSQL driver; its venv gets one if it lacks it."""
    python = os.path.join(venv, "bin", "python")
    if subprocess.run([python, "-c", "import psycopg2"], capture_output=True).returncode != 0:
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "psycopg2-binary"], check=True)


@contextlib.contextmanager
def database_for(server, prefix: str, enabled: bool):
    """Yields the name of a fresh database `server` (a `moving.Server` of
    Tandem or mlflow, not started yet) is pointed at, or None when not
    `enabled`; drops it afterwards."""
    if not enabled:
        yield None
        return
    database = f"{prefix}_{server.name}_{os.getpid()}"
    psql(f"DROP DATABASE IF EXISTS {database}")
    psql(f"CREATE DATABASE {database}")
    if server.name == "tandem":
        server.env["TANDEM_METADATA_URL"] = f"{PG}/{database}"
    else:
        at = server.argv.index("--backend-store-uri") + 1
        server.argv[at] = f"{PG.replace('postgresql:', 'postgresql+psycopg2:')}/{database}"
    try:
        yield database
    finally:
        psql(f"DROP DATABASE IF EXISTS {database}")
