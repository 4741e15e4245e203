"""Tandem beside `mlflow server`, one after the other, each fresh: what the
benchmarks that compare the two share. With `--postgres` each server gets a
database of its own at 127.0.0.1:5432, created before it starts and dropped
after, and the CPU of the PostgreSQL backends serving it is counted with the
server's own."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile

from common import proc_cpu_s
from moving import mlflow_server, tandem_server
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


def each_server(args, prefix: str, only: str | None = None):
    """Yields ("tandem", server, database), then ("mlflow", …): each
    started fresh from `args.tandem_bin` / `args.venv` in a temporary
    directory (and, with `args.postgres`, a database of its own, else None),
    stopped once the loop body is done with it."""
    postgres = getattr(args, "postgres", False)
    if postgres:
        ensure_psycopg2(args.venv)
    root = tempfile.mkdtemp(prefix=f"tandem-bench-{prefix}-")
    try:
        for name, make in (("tandem", lambda: tandem_server(args.tandem_bin, os.path.join(root, "tandem"))),
                           ("mlflow", lambda: mlflow_server(args.venv, os.path.join(root, "mlflow")))):
            if only and name != only:
                continue
            server = make()
            with database_for(server, f"bench_{prefix.replace('-', '_')}", postgres) as database:
                server.start(180)
                try:
                    yield name, server, database
                finally:
                    server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
