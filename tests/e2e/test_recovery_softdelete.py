"""Soft delete with retention, recover and purge (issue 5), through the
official mlflow client, the Tandem CLI and the region's data directory:
a deleted registered model is gone for MLflow, its name is free, and
`tandem deleted recover` brings it back with its versions and aliases;
workspaces are deleted, recovered and purged with the CLI; a purge removes
artifacts from storage unless asked to keep them."""

import json
import os
import subprocess
import time

import mlflow
import requests
from mlflow.tracking import MlflowClient

from support import expect_error, unique

GC_WAIT_SECONDS = 30


def tandem(server, *args: str, expect: int = 0) -> str:
    """Runs the CLI against the server; checks its exit code."""
    result = subprocess.run(
        [os.environ["TANDEM_BIN"], *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == expect, (args, result.returncode, result.stdout, result.stderr)
    return result.stdout if expect == 0 else result.stderr


def tandem_json(server, *args: str):
    return json.loads(tandem(server, *args, "--json"))


def workspace_files(server, workspace_id: str, area: str = "artifacts") -> set[str]:
    """Files under a workspace's area of the server's storage. os.walk, not
    rglob: the collector may remove directories while we look."""
    root = server.data / "artifacts"
    top = root / "workspaces" / workspace_id / area
    return {
        os.path.relpath(os.path.join(directory, name), root)
        for directory, _, names in os.walk(top)
        for name in names
    }


def wait_until(condition, what: str, seconds: float = GC_WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_deleted_registered_model_is_recovered_with_versions_and_aliases(server, tracking_uri, client):
    name = unique("model")
    experiment_id = mlflow.set_experiment(unique("exp")).experiment_id
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model/weights.txt")
    run_id = run.info.run_id
    client.create_registered_model(name, description="to be deleted")
    for _ in range(2):
        client.create_model_version(
            name, f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/model", run_id=run_id
        )
    client.set_registered_model_alias(name, "champion", "2")
    client.set_registered_model_alias(name, "previous", "1")

    client.delete_registered_model(name)
    error = expect_error("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, name)
    assert name in error.message
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version, name, "1")
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version_by_alias, name, "champion")
    assert client.search_registered_models(f"name = '{name}'") == []
    # As in MLflow the name is free at once (test_registry_names.py covers
    # re-creating it); the deleted model is listed by the key it is kept under.
    listed = tandem_json(server, "deleted", "list", "--workspace", "default")
    mine = [item for item in listed if item["name"] == name]
    assert [item["kind"] for item in mine] == ["registered_model"], listed
    assert mine[0]["purge_after"] - mine[0]["deletion_time"] == 14 * 86_400_000

    tandem(server, "deleted", "recover", "registered_model", name, "--workspace", "default")
    model = client.get_registered_model(name)
    assert model.description == "to be deleted"
    assert model.aliases == {"champion": "2", "previous": "1"}
    assert sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) == ["1", "2"]
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    # Recovering what is not deleted is "not found" (exit 3).
    tandem(server, "deleted", "recover", "registered_model", name, "--workspace", "default", expect=3)

    # A version deleted alone: its alias hides and comes back with it.
    client.delete_model_version(name, "1")
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    tandem(server, "deleted", "recover", "model_version", f"{name}/1", "--workspace", "default")
    assert client.get_model_version_by_alias(name, "previous").version == "1"

    # Purged: gone for good, and the name is free.
    client.delete_registered_model(name)
    tandem(server, "deleted", "purge", "registered_model", name, "--workspace", "default")
    assert not [i for i in tandem_json(server, "deleted", "list") if i["id"] == name]
    client.create_registered_model(name)
    assert client.search_model_versions(f"name = '{name}'") == []


def test_workspaces_are_deleted_recovered_and_purged_with_the_cli(server, tmp_path, monkeypatch):
    name = unique("ws")
    created = tandem_json(server, "workspace", "create", name, "--retention-days", "30")
    assert created["retention_days"] == 30 and created["purge_protection"] is False
    workspace_id = created["workspace_id"]
    uri = f"{server.url}/w/{name}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri, uri)
    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    notes = tmp_path / "notes.txt"
    notes.write_text("kept until purged")
    client.log_artifact(run_id, str(notes))
    assert len(workspace_files(server, workspace_id)) == 1

    deleted = tandem_json(server, "workspace", "delete", name)
    assert deleted["lifecycle_stage"] == "deleted"
    assert deleted["purge_after"] - deleted["deletion_time"] == 30 * 86_400_000
    # Gone for the mlflow client, with a message that says how to recover it.
    error = expect_error("RESOURCE_DOES_NOT_EXIST", client.get_run, run_id)
    assert "was deleted" in error.message and f"tandem workspace recover {name}" in error.message
    # Listed only with --deleted; the name is reserved (exit 4, naming the id).
    assert name not in [w["name"] for w in tandem_json(server, "workspace", "list")]
    assert name in [w["name"] for w in tandem_json(server, "workspace", "list", "--deleted")]
    listed_all = {w["name"]: w["lifecycle_stage"] for w in tandem_json(server, "workspace", "list", "--all")}
    assert listed_all[name] == "deleted" and listed_all["default"] == "active"
    refused = tandem(server, "workspace", "create", name, expect=4)
    assert workspace_id in refused and "recover" in refused

    tandem(server, "workspace", "recover", name)
    assert client.get_run(run_id).info.run_id == run_id
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "kept until purged"

    # Purge protection: once on, the purge waits for the end of retention.
    tandem(server, "workspace", "update", name, "--purge-protection")
    tandem(server, "workspace", "update", name, "--retention-days", "91", expect=1)
    tandem(server, "workspace", "delete", name)
    refused = tandem(server, "workspace", "purge", name, expect=4)
    assert "cannot be purged before" in refused
    tandem(server, "workspace", "recover", name)
    assert tandem_json(server, "workspace", "get", name)["purge_protection"] is True


def _workspace_with_artifact(server, tmp_path) -> tuple[str, str]:
    name = unique("ws")
    workspace_id = tandem_json(server, "workspace", "create", name)["workspace_id"]
    uri = f"{server.url}/w/{name}"
    client = MlflowClient(uri, uri)
    run_id = client.create_run(client.create_experiment(unique("exp"))).info.run_id
    payload = tmp_path / f"{name}.bin"
    payload.write_bytes(os.urandom(2048))
    client.log_artifact(run_id, str(payload))
    assert len(workspace_files(server, workspace_id)) == 1
    return name, workspace_id


def test_a_purge_removes_artifacts_from_storage_unless_kept(server, tmp_path):
    gone, gone_id = _workspace_with_artifact(server, tmp_path)
    kept, kept_id = _workspace_with_artifact(server, tmp_path)
    for name in (gone, kept):
        tandem(server, "workspace", "delete", name)
    tandem(server, "workspace", "purge", kept, "--keep-artifacts")
    purged = tandem_json(server, "workspace", "purge", gone)
    assert purged["purged"] is True and purged["workspace"]["workspace_id"] == gone_id
    wait_until(lambda: not workspace_files(server, gone_id), "the purged workspace's artifacts to be collected")
    assert len(workspace_files(server, kept_id)) == 1, "artifacts kept on request"
    # Purged workspaces are gone, by name and id, and their names are free.
    tandem(server, "workspace", "get", gone_id, expect=3)
    tandem(server, "workspace", "create", gone)

    # Items: a purged run's artifacts go; the runs of a purged experiment too.
    uri = f"{server.url}/w/{gone}"
    client = MlflowClient(uri, uri)
    experiment_id = client.create_experiment(unique("exp"))
    runs = [client.create_run(experiment_id).info.run_id for _ in range(2)]
    workspace_id = tandem_json(server, "workspace", "get", gone)["workspace_id"]
    for run_id in runs:
        payload = tmp_path / f"{run_id}.txt"
        payload.write_text(run_id)
        client.log_artifact(run_id, str(payload))
    assert len(workspace_files(server, workspace_id)) == 2
    client.delete_run(runs[0])
    tandem(server, "deleted", "purge", "run", runs[0], "--workspace", gone)
    wait_until(lambda: len(workspace_files(server, workspace_id)) == 1, "the purged run's artifacts to be collected")
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_run, runs[0])
    client.delete_experiment(experiment_id)
    listed = tandem_json(server, "deleted", "list", "--workspace", gone)
    assert [(i["kind"], i["id"]) for i in listed] == [("experiment", experiment_id)]
    tandem(server, "deleted", "purge", "experiment", experiment_id, "--workspace", gone)
    wait_until(lambda: not workspace_files(server, workspace_id), "the purged experiment's artifacts to be collected")
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_run, runs[1])
    queue = requests.get(f"{server.url}/api/tandem/v1/gc", timeout=30).json()
    assert queue["pending"] == []


def test_delete_recover_and_purge_are_the_same_in_both_regions(tmp_path):
    """Deletes, recoveries and purges replicate like any change; every
    region collects the purged artifacts from its own storage."""
    from cluster import make_cluster
    from conftest import _tandem_bin

    root = tmp_path / "cluster"
    root.mkdir()
    cluster = make_cluster(_tandem_bin(), root)
    try:
        primary, secondary = cluster.primary, cluster.secondaries[0]
        name = unique("ws")
        created = requests.post(f"{primary.url}/api/tandem/v1/workspaces", json={"name": name}, timeout=30)
        assert created.status_code == 201, created.text
        workspace_id = created.json()["workspace"]["workspace_id"]
        uri = f"{primary.url}/w/{name}"
        writer = MlflowClient(uri, uri)
        run_id = writer.create_run(writer.create_experiment(unique("exp"))).info.run_id
        payload = tmp_path / "weights.bin"
        payload.write_bytes(os.urandom(4096))
        writer.log_artifact(run_id, str(payload))
        model = unique("model")
        writer.create_registered_model(model)
        writer.create_model_version(model, "s3://bucket/model", run_id=run_id)
        writer.set_registered_model_alias(model, "prod", "1")

        def stored(region):
            artifacts = region.data / "artifacts" / "workspaces" / workspace_id / "artifacts"
            return [os.path.join(directory, name) for directory, _, names in os.walk(artifacts) for name in names]

        def reader(region):
            return MlflowClient(f"{region.url}/w/{name}", f"{region.url}/w/{name}")

        cluster.wait_caught_up()
        assert len(stored(secondary)) == 1
        writer.delete_registered_model(model)
        cluster.wait_caught_up()
        for region in (primary, secondary):
            expect_error("RESOURCE_DOES_NOT_EXIST", reader(region).get_registered_model, model)
            listed = requests.get(f"{region.url}/api/tandem/v1/workspaces/{name}/deleted", timeout=30).json()
            assert [(i["kind"], i["name"]) for i in listed["deleted"]] == [("registered_model", model)], region.name
            # Kept under the same key in every region (the journal carries it).
            kept = {i["id"] for i in listed["deleted"]}
            assert len(kept) == 1 and next(iter(kept)).startswith(f"{model}:"), listed
        # A secondary takes no local deletes, recoveries or purges.
        refused = requests.post(
            f"{secondary.url}/api/tandem/v1/workspaces/{name}/deleted/registered_model/{model}/recover", timeout=30
        )
        assert refused.status_code == 403, refused.text
        tandem(primary, "deleted", "recover", "registered_model", model, "--workspace", name)
        cluster.wait_caught_up()
        for region in (primary, secondary):
            assert reader(region).get_model_version_by_alias(model, "prod").version == "1", region.name

        tandem(primary, "workspace", "delete", name)
        cluster.wait_caught_up()
        for region in (primary, secondary):
            workspace = requests.get(f"{region.url}/api/tandem/v1/workspaces/{workspace_id}", timeout=30).json()
            assert workspace["workspace"]["lifecycle_stage"] == "deleted", region.name
            expect_error("RESOURCE_DOES_NOT_EXIST", reader(region).get_run, run_id)
        tandem(primary, "workspace", "purge", name)
        cluster.wait_caught_up()
        for region in (primary, secondary):
            gone = requests.get(f"{region.url}/api/tandem/v1/workspaces/{workspace_id}", timeout=30)
            assert gone.status_code == 404, (region.name, gone.text)
            wait_until(lambda region=region: not stored(region), f"{region.name} to collect the purged artifacts")
    finally:
        cluster.close()
