"""Two `tandem server` processes on one PostgreSQL database and one artifact
store serve one region as one (issue 17, item 3, without a deployment):
each accepts reads and writes and sees the other's, exactly one holds the
region's background duties (purge, garbage collection, archiving: counted
per process in `tandem_region_duty_runs_total`, which stays at 0 on the
other), and when it is killed with `kill -9` the other takes them over
within seconds and runs them.
"""

import json
import os
import signal
import time

import pytest
import requests
from mlflow.tracking import MlflowClient

from conftest import BACKENDS, _database_url, _psql, _start, _stop, _tandem_bin
from support import unique
from test_auth import UNAUTHENTICATED, AuthServer, bearer

pytestmark = pytest.mark.skipif("postgres" not in BACKENDS, reason="needs PostgreSQL")


def duties_held(server) -> bool:
    for line in requests.get(f"{server.url}/metrics", timeout=30).text.splitlines():
        if line.startswith("tandem_region_duties_held"):
            return float(line.split()[-1]) == 1.0
    return False


def duty_runs(server, duty: str) -> float:
    """How many times this process ran `duty` (0 when it never did)."""
    for line in requests.get(f"{server.url}/metrics", timeout=30).text.splitlines():
        if line.startswith("tandem_region_duty_runs_total{") and f'duty="{duty}"' in line:
            return float(line.split()[-1])
    return 0.0


def wait_for(condition, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:.0f} s: {what}"
        time.sleep(0.1)


def test_two_processes_share_a_region_and_hand_over_the_duties(tmp_path, monkeypatch):
    database = f"tandem_shared_{unique('db').replace('-', '_')}"
    _psql(f"CREATE DATABASE {database}")
    monkeypatch.setenv("TANDEM_ARTIFACTS_URL", f"file://{tmp_path / 'artifacts'}")
    # Garbage collection every 100 ms: a duty run often enough to count.
    monkeypatch.setenv("TANDEM_GC_INTERVAL_MS", "100")
    servers = []
    try:
        for name in ("a", "b"):
            servers.append(_start(_tandem_bin(), "postgres", tmp_path / name, tmp_path / f"{name}.log",
                                  _database_url(database)))
        a, b = servers
        wait_for(lambda: duties_held(a) or duties_held(b), "one process takes the duties")
        assert [duties_held(a), duties_held(b)].count(True) == 1
        # Only the holder collects garbage; the other never has.
        holder, other = (a, b) if duties_held(a) else (b, a)
        wait_for(lambda: duty_runs(holder, "gc") >= 3, "the holder collects garbage")
        assert duty_runs(other, "gc") == 0

        # Either accepts writes; each reads what the other wrote, files included.
        first, second = MlflowClient(a.url), MlflowClient(b.url)
        experiment = first.create_experiment(unique("shared"))
        run_id = second.create_run(experiment).info.run_id
        for step in range(20):
            (first if step % 2 else second).log_metric(run_id, "m", float(step), step=step)
        (tmp_path / "f.txt").write_text("shared")
        first.log_artifact(run_id, str(tmp_path / "f.txt"))
        for client in (first, second):
            assert [m.step for m in client.get_metric_history(run_id, "m")] == list(range(20))
            assert [f.path for f in client.list_artifacts(run_id)] == ["f.txt"]
        assert second.get_experiment(experiment).name == first.get_experiment(experiment).name

        # The holder dies: the other takes the duties over and keeps serving.
        assert duties_held(holder) and not duties_held(other)
        assert duty_runs(other, "gc") == 0
        holder.process.send_signal(signal.SIGKILL)
        holder.process.wait(timeout=30)
        wait_for(lambda: duties_held(other), "the surviving process takes the duties over")
        wait_for(lambda: duty_runs(other, "gc") >= 1, "the survivor collects garbage")
        survivor = MlflowClient(other.url)
        survivor.log_metric(run_id, "m", 20.0, step=20)
        assert [m.step for m in survivor.get_metric_history(run_id, "m")] == list(range(21))
    finally:
        for server in servers:
            if server.process.poll() is None:
                _stop(server.process)
        _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def test_a_token_revoked_through_one_process_is_refused_by_the_other_at_once(tmp_path):
    """Each process caches the credentials it verified (30 s at most); a
    revocation committed by another process on the same database reaches
    its cache through the journal head it watches, well within that."""
    database = f"tandem_shared_{unique('db').replace('-', '_')}"
    _psql(f"CREATE DATABASE {database}")
    extra = ("--metadata-url", _database_url(database))
    first = AuthServer(_tandem_bin(), tmp_path / "a", extra)
    second = None
    try:
        second = AuthServer(_tandem_bin(), tmp_path / "b", extra)
        assert first.admin_token and second.admin_token is None, "one administrator for the database"
        created = json.loads(first.cli("user", "create", "bot", "--service", "--role", "Reader", "--json"))
        search = "/api/2.0/mlflow/experiments/search?max_results=1"
        # Verified (and cached) by both processes.
        for server in (first, second):
            assert requests.get(server.url + search, headers=bearer(created["token"])).status_code == 200
        first.cli("token", "revoke", created["token_id"])
        # Refused at once by the process that revoked it, and within
        # seconds (not the cache's 30) by the other.
        assert requests.get(first.url + search, headers=bearer(created["token"])).status_code == UNAUTHENTICATED
        wait_for(lambda: requests.get(second.url + search, headers=bearer(created["token"])).status_code
                 == UNAUTHENTICATED, "the other process refuses the revoked token", seconds=5)
        refused = requests.get(second.url + search, headers=bearer(created["token"]))
        assert "revoked" in refused.json()["message"], refused.text
        # A new token made through the second process works on the first.
        fresh = json.loads(second.cli("token", "create", "--principal", "bot", "--json",
                                      token=first.admin_token))
        assert requests.get(first.url + search, headers=bearer(fresh["token"])).status_code == 200
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()
        _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
