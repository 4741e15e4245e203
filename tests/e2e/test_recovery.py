"""Recovery end to end, in the style of Velero's suite: a workspace generated
through the official mlflow client is backed up, destroyed (purged, and the
region's data directory deleted), and restored into another region on SQLite
and into PostgreSQL; every object and every artifact's checksum must be equal.
Point-in-time restore gives exactly the state between two known writes, and a
corrupted backup is caught by verify and refused by restore.

Each test starts its own `tandem server` processes (not the session's): the
test destroys them."""

import hashlib
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from conftest import _database_url, _psql, _start, _stop, _tandem_bin
from support import unique


def cli(binary: str, url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([binary, *args, "--url", url], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"tandem {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def cli_json(binary: str, url: str, *args: str) -> dict:
    return json.loads(cli(binary, url, *args, "--json").stdout)


@pytest.fixture
def servers(tmp_path):
    """Starts servers on demand; stops every one of them at the end."""
    started, databases = [], []

    def start(name: str, backend: str = "sqlite"):
        metadata_url = None
        if backend == "postgres":
            database = f"tandem_e2e_{uuid.uuid4().hex[:12]}"
            _psql(f'CREATE DATABASE "{database}"')
            databases.append(database)
            metadata_url = _database_url(database)
        root = tmp_path / name
        root.mkdir()
        server = _start(_tandem_bin(), backend, root / "data", root / "server.log", metadata_url)
        started.append(server)
        return server

    yield start
    for server in started:
        _stop(server.process)
    for database in databases:
        _psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def generate(url: str, workspace: str, tmp_path: Path) -> None:
    """A workspace as a team leaves it: experiments, runs with params, metric
    histories, tags and artifacts, a deleted run, a registered model with two
    versions, an alias and a stage."""
    requests.post(f"{url}/api/tandem/v1/workspaces", json={"name": workspace}, timeout=30).raise_for_status()
    uri = f"{url}/w/{workspace}"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment(unique("exp"), tags={"team": "a"})
    runs = []
    for index in range(3):
        run = client.create_run(experiment, run_name=f"run-{index}", tags={"i": str(index)}).info.run_id
        client.log_param(run, "alpha", str(index / 10))
        for step in range(40):
            client.log_metric(run, "loss", 1.0 / (step + 1 + index), step=step, timestamp=1_700_000_000_000 + step)
        artifact = tmp_path / f"report-{index}.txt"
        artifact.write_text(f"report {index}\n" * 1000)
        client.log_artifact(run, str(artifact), artifact_path="reports")
        (tmp_path / f"bin-{index}").mkdir()
        (tmp_path / f"bin-{index}" / "weights.bin").write_bytes(bytes(range(256)) * (index + 1) * 64)
        client.log_artifacts(run, str(tmp_path / f"bin-{index}"), artifact_path="model")
        client.set_terminated(run)
        runs.append(run)
    client.delete_run(runs[2])
    model = unique("model")
    client.create_registered_model(model, description="restored with everything")
    for run in runs[:2]:
        client.create_model_version(model, f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias(model, "champion", "2")
    client.transition_model_version_stage(model, "1", "Staging")


def digest(url: str, workspace: str) -> dict:
    """Everything a user can read of the workspace, artifacts by SHA-256."""
    uri = f"{url}/w/{workspace}"
    client = MlflowClient(uri, uri)
    out: dict = {"experiments": {}, "models": {}}
    for experiment in client.search_experiments(view_type=3):
        runs = {}
        for run in client.search_runs([experiment.experiment_id], run_view_type=3):
            info = run.info
            histories = {key: [(m.step, m.timestamp, m.value) for m in client.get_metric_history(info.run_id, key)]
                         for key in run.data.metrics}
            artifacts = {}
            pending = [None]
            while pending:
                path = pending.pop()
                for entry in client.list_artifacts(info.run_id, path):
                    if entry.is_dir:
                        pending.append(entry.path)
                    else:
                        local = client.download_artifacts(info.run_id, entry.path)
                        artifacts[entry.path] = hashlib.sha256(Path(local).read_bytes()).hexdigest()
            runs[info.run_id] = {
                "name": info.run_name, "status": info.status, "stage": info.lifecycle_stage,
                "start": info.start_time, "end": info.end_time, "params": run.data.params,
                "tags": {k: v for k, v in run.data.tags.items()}, "metrics": histories, "artifacts": artifacts,
            }
        out["experiments"][experiment.experiment_id] = {
            "name": experiment.name, "stage": experiment.lifecycle_stage, "tags": experiment.tags, "runs": runs,
        }
    for model in client.search_registered_models():
        versions = {
            v.version: {"source": v.source, "run_id": v.run_id, "stage": v.current_stage, "status": v.status}
            for v in client.search_model_versions(f"name = '{model.name}'")
        }
        out["models"][model.name] = {"description": model.description, "aliases": model.aliases,
                                     "versions": versions}
    return out


def test_backup_destroy_and_restore_into_another_region_and_postgres(servers, tmp_path):
    binary = _tandem_bin()
    east = servers("eastus")
    workspace = unique("ws")
    generate(east.url, workspace, tmp_path)
    expected = digest(east.url, workspace)
    assert len(next(iter(expected["experiments"].values()))["runs"]) == 3
    workspace_id = requests.get(f"{east.url}/api/tandem/v1/workspaces/{workspace}", timeout=10).json()["workspace"]["workspace_id"]

    repository = f"file://{tmp_path / 'repository'}"
    cli_json(binary, east.url, "backup", "create", "--to", repository, "--workspace", workspace)
    cli(binary, east.url, "backup", "verify", "--from", repository)

    # Destroy it: purged in its region, then the region's data gone too.
    cli(binary, east.url, "workspace", "delete", workspace)
    cli(binary, east.url, "workspace", "purge", workspace)
    assert requests.get(f"{east.url}/api/tandem/v1/workspaces/{workspace}", timeout=10).status_code == 404
    _stop(east.process)
    shutil.rmtree(east.data)

    for name, backend in [("westus", "sqlite"), ("postgres", "postgres")]:
        target = servers(name, backend)
        result = cli_json(binary, target.url, "backup", "restore", "--from", repository, "--workspace", workspace,
                          "--into", target.url)
        assert result["workspace_id"] == workspace_id, result
        assert digest(target.url, workspace) == expected, f"restored into {name} differs"


def next_millisecond(after: int) -> int:
    """The wall clock in milliseconds, once it is past `after`."""
    while (now := int(time.time() * 1000)) <= after:
        time.sleep(0.001)
    return now


def test_point_in_time_restore_between_two_writes(servers, tmp_path):
    binary = _tandem_bin()
    server = servers("pitr")
    workspace = unique("ws")
    requests.post(f"{server.url}/api/tandem/v1/workspaces", json={"name": workspace}, timeout=30).raise_for_status()
    uri = f"{server.url}/w/{workspace}"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment(unique("exp"))
    run = client.create_run(experiment).info.run_id
    client.log_metric(run, "m", 1.0, step=0)
    # A point in time after the first write and before the second: the
    # clock (milliseconds, as journal records carry) moves past it before
    # the second write is sent.
    between = next_millisecond(int(time.time() * 1000))
    next_millisecond(between)
    client.log_metric(run, "m", 2.0, step=1)
    client.set_tag(run, "after", "yes")
    expected_then = [(0, 1.0)]

    repository = f"file://{tmp_path / 'repository'}"
    cli_json(binary, server.url, "backup", "create", "--to", repository, "--workspace", workspace)

    restored = cli_json(binary, server.url, "backup", "restore", "--from", repository, "--workspace", workspace,
                        "--at", str(between), "--as", f"{workspace}-at")
    # A copy beside its original gets its own run ids (run ids are unique
    # in a region): find the run by its experiment.
    at = MlflowClient(f"{server.url}/w/{workspace}-at")
    (copy,) = at.search_runs([experiment])
    assert copy.info.run_id != run
    assert [(m.step, m.value) for m in at.get_metric_history(copy.info.run_id, "m")] == expected_then
    assert "after" not in copy.data.tags
    assert restored["position_recorded_at"] <= between

    # The same moment by journal position: the record of the first metric.
    journal = requests.get(f"{server.url}/api/tandem/v1/journal", params={"after": 0}, timeout=30).text
    records = [json.loads(line) for line in journal.splitlines() if line.strip()]
    first_metric = next(r["seq"] for r in records if r["change"]["type"] == "run_data_logged"
                        and r["change"].get("metrics"))
    cli_json(binary, server.url, "backup", "restore", "--from", repository, "--workspace", workspace,
             "--seq", str(first_metric), "--as", f"{workspace}-seq")
    by_seq = MlflowClient(f"{server.url}/w/{workspace}-seq")
    (copy,) = by_seq.search_runs([experiment])
    assert [(m.step, m.value) for m in by_seq.get_metric_history(copy.info.run_id, "m")] == expected_then
    # And the latest state, for contrast.
    latest = cli_json(binary, server.url, "backup", "restore", "--from", repository, "--workspace", workspace,
                      "--as", f"{workspace}-now")
    now = MlflowClient(f"{server.url}/w/{workspace}-now")
    (copy,) = now.search_runs([experiment])
    assert [(m.step, m.value) for m in now.get_metric_history(copy.info.run_id, "m")] == [(0, 1.0), (1, 2.0)]
    assert latest["records"] > restored["records"]


def test_corrupted_backup_is_caught_by_verify_and_refused_by_restore(servers, tmp_path):
    binary = _tandem_bin()
    server = servers("corrupt")
    workspace = unique("ws")
    generate(server.url, workspace, tmp_path)
    root = tmp_path / "repository"
    repository = f"file://{root}"
    cli_json(binary, server.url, "backup", "create", "--to", repository, "--workspace", workspace)
    blob = sorted(p for p in (root / "blobs").rglob("*") if p.is_file())[0]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    verify = cli(binary, server.url, "backup", "verify", "--from", repository, check=False)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert blob.name in verify.stdout + verify.stderr

    target = f"{workspace}-restored"
    restore = cli(binary, server.url, "backup", "restore", "--from", repository, "--workspace", workspace,
                  "--as", target, check=False)
    assert restore.returncode != 0
    assert blob.name in restore.stderr, restore.stderr
    listed = requests.get(f"{server.url}/api/tandem/v1/workspaces", params={"all": "true"}, timeout=10).json()
    assert target not in [w["name"] for w in listed["workspaces"]], "a refused restore wrote a workspace"
