"""Fixtures of the end-to-end suite: a real `tandem server` process per
backend (SQLite, PostgreSQL), driven by the unchanged official MLflow client.

One server runs per backend for the whole session; tests stay independent by
using unique experiment, run and model names (see `unique`), and by pointing
the client at the server in every test (`tracking_uri`).
"""

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

# Before mlflow is imported anywhere: the client must fail fast rather than
# retry a server error for minutes, must not phone home, and may load the
# models these tests themselves logged.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from cluster import free_port  # noqa: E402
from support import unique  # noqa: E402

# `TANDEM_E2E_BACKENDS=sqlite` runs one backend only (e.g. without PostgreSQL).
BACKENDS = [
    name.strip()
    for name in os.environ.get("TANDEM_E2E_BACKENDS", "sqlite,postgres").split(",")
    if name.strip()
]
# The PostgreSQL server's admin URL (as for the Rust suites): each session
# creates a database there and drops it afterwards.
PG_ADMIN_URL = os.environ.get(
    "TANDEM_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)

HEALTH_ATTEMPTS = 200
HEALTH_INTERVAL = 0.05
LOG_TAIL_LINES = 80


@dataclass
class Server:
    backend: str
    url: str
    host: str
    port: int
    data: Path
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(cannot read {self.log_path}: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def stored_files(self) -> set[str]:
        """Every file in the server's local artifact storage, relative to it."""
        root = self.data / "artifacts"
        if not root.exists():
            return set()
        return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def _database_url(database: str) -> str:
    return urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path=f"/{database}"))


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _free_port() -> int:
    # Below the ephemeral range: a port bind(0) hands out can be taken as the
    # source port of an outgoing connection before the server binds it.
    return free_port()


def _tandem_bin() -> str:
    binary = os.environ.get("TANDEM_BIN")
    if not binary:
        pytest.fail(
            "TANDEM_BIN is not set: point it at a built `tandem` binary, e.g. "
            "TANDEM_BIN=target/debug/tandem after `cargo build -p tandem`",
            pytrace=False,
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"TANDEM_BIN={binary} is not an executable file", pytrace=False)
    return binary


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def own_server(backend: str, root: Path, name: str = "own"):
    """A `tandem server` of the test's own on `backend` (on PostgreSQL in a
    database made for it and dropped afterwards), with the environment the
    test set (e.g. a shorter collector interval)."""
    database = None
    metadata_url = None
    if backend == "postgres":
        database = f"tandem_{name}_{uuid.uuid4().hex[:12]}"
        _psql(f'CREATE DATABASE "{database}"')
        metadata_url = _database_url(database)
    server = None
    try:
        server = _start(_tandem_bin(), backend, root / "data", root / "server.log", metadata_url)
        yield server
    finally:
        if server is not None:
            _stop(server.process)
        if database is not None:
            _psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _start(binary: str, backend: str, data: Path, log_path: Path, metadata_url: str | None) -> Server:
    port = _free_port()
    command = [binary, "server", "--listen", f"127.0.0.1:{port}", "--data", str(data)]
    if metadata_url:
        command += ["--metadata-url", metadata_url]
    env = dict(os.environ)
    env.setdefault("TANDEM_LOG", "info")
    env.setdefault("NO_COLOR", "1")  # plain text in failure reports
    # SQLite durability is not under test here; NORMAL keeps fsyncs cheap.
    env.setdefault("TANDEM_SQLITE_SYNCHRONOUS", "NORMAL")
    log = open(log_path, "ab")
    try:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()
    server = Server(backend, f"http://127.0.0.1:{port}", "127.0.0.1", port, data, log_path, process)
    for _ in range(HEALTH_ATTEMPTS):
        if process.poll() is not None:
            raise RuntimeError(
                f"tandem server ({backend}) exited with {process.returncode} before it was healthy:\n"
                + server.log_tail()
            )
        try:
            # Ready, not merely alive: its store answers and holds the default workspace.
            if requests.get(f"{server.url}/ready", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(HEALTH_INTERVAL)
    _stop(process)
    raise RuntimeError(
        f"tandem server ({backend}) not healthy after {HEALTH_ATTEMPTS * HEALTH_INTERVAL:.0f}s:\n"
        + server.log_tail()
    )


@pytest.fixture(scope="session", autouse=True)
def backup_repositories(tmp_path_factory):
    """Servers accept only the backup repositories their configuration
    allows: every server these tests start allows the session's temporary
    directory (each test keeps its repositories in its own `tmp_path`)."""
    allowed = f"file://{tmp_path_factory.getbasetemp()}"
    saved = os.environ.get("TANDEM_BACKUP_REPOSITORIES")
    os.environ["TANDEM_BACKUP_REPOSITORIES"] = allowed
    yield allowed
    if saved is None:
        os.environ.pop("TANDEM_BACKUP_REPOSITORIES", None)
    else:
        os.environ["TANDEM_BACKUP_REPOSITORIES"] = saved


@pytest.fixture(scope="session", params=BACKENDS)
def server(request, tmp_path_factory, backup_repositories):
    """A running `tandem server` on one metadata backend."""
    binary = _tandem_bin()
    backend = request.param
    root = tmp_path_factory.mktemp(f"tandem-{backend}")
    data = root / "data"
    log_path = root / "server.log"
    database = None
    metadata_url = None
    if backend == "postgres":
        if shutil.which("psql") is None:
            pytest.fail("psql is needed to create the PostgreSQL test database", pytrace=False)
        database = f"tandem_e2e_{uuid.uuid4().hex[:12]}"
        try:
            _psql(f'CREATE DATABASE "{database}"')
        except subprocess.CalledProcessError as error:
            pytest.fail(f"cannot create database {database}: {error.stderr}", pytrace=False)
        metadata_url = _database_url(database)
    elif backend != "sqlite":
        pytest.fail(f"unknown backend {backend!r} in TANDEM_E2E_BACKENDS", pytrace=False)
    started = None
    try:
        # A port taken between choosing and binding it is retried.
        for attempt in range(3):
            try:
                started = _start(binary, backend, data, log_path, metadata_url)
                break
            except RuntimeError as error:
                if attempt == 2 or "cannot listen" not in str(error):
                    pytest.fail(str(error), pytrace=False)
        yield started
    finally:
        clean_exit = None
        if started is not None:
            _stop(started.process)
            clean_exit = _shutdown_problem(started)
        if database is not None:
            try:
                _psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            except subprocess.CalledProcessError as error:
                print(f"warning: cannot drop database {database}: {error.stderr}")
    if clean_exit:
        pytest.fail(clean_exit, pytrace=False)


def _shutdown_problem(server: Server) -> str | None:
    """Why the server's run was not clean, if it was not: SIGTERM must shut it
    down gracefully (exit 0), and nothing may have panicked on the way."""
    log = server.log_path.read_text(errors="replace")
    if "panicked at" in log:
        return f"tandem server ({server.backend}) panicked:\n{server.log_tail()}"
    if server.process.returncode != 0:
        return (
            f"tandem server ({server.backend}) exited with {server.process.returncode} "
            f"after SIGTERM:\n{server.log_tail()}"
        )
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds the tail of the server's log (or each process's, for a cluster) to a
    failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        server = funcargs.get("server")
        if isinstance(server, Server):
            report.sections.append(
                (f"tandem server log ({server.backend}), last {LOG_TAIL_LINES} lines", server.log_tail())
            )
        # Clusters and deployments of several processes say what each logged.
        for value in funcargs.values():
            if hasattr(value, "failure_logs"):
                report.sections.extend(value.failure_logs())


def _point_client_at(url: str, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)


def _reset_fluent_state() -> None:
    while mlflow.active_run() is not None:
        mlflow.end_run()
    # The fluent API remembers the experiment of the last set_experiment,
    # which belongs to whichever server that test used.
    import mlflow.tracking.fluent as fluent

    fluent._active_experiment_id = None


@pytest.fixture
def tracking_uri(server, monkeypatch):
    """Points the MLflow client (fluent API and env) at the server's default workspace."""
    _reset_fluent_state()
    _point_client_at(server.url, monkeypatch)
    yield server.url
    _reset_fluent_state()


@pytest.fixture
def client(tracking_uri):
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@pytest.fixture
def make_workspace(server):
    """Creates a fresh Tandem workspace; returns its MLflow tracking URI."""

    def create() -> str:
        name = unique("ws")
        response = requests.post(
            f"{server.url}/api/tandem/v1/workspaces", json={"name": name}, timeout=30
        )
        assert response.status_code in (200, 201), response.text
        assert response.json()["workspace"]["name"] == name
        return f"{server.url}/w/{name}"

    return create


@pytest.fixture
def workspace_uri(make_workspace, server, monkeypatch):
    """A fresh workspace, with the MLflow client pointed at it."""
    _reset_fluent_state()
    uri = make_workspace()
    _point_client_at(uri, monkeypatch)
    yield uri
    _reset_fluent_state()
