"""A workspace's storage quota: set with `tandem workspace update
--storage-quota`, journaled, and enforced on artifact and file uploads with
507 RESOURCE_EXHAUSTED, saying the quota, the usage and how to raise it;
nothing of a refused upload is kept."""

import json
import subprocess

import pytest
import requests
from mlflow.tracking import MlflowClient

from conftest import _tandem_bin
from support import unique


def cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_tandem_bin(), *args, "--url", server.url], capture_output=True, text=True, timeout=60)


def test_uploads_past_a_workspaces_quota_are_refused_and_keep_nothing(server, tmp_path):
    name = unique("quota")
    assert cli(server, "workspace", "create", name).returncode == 0
    done = cli(server, "workspace", "update", name, "--storage-quota", "10KiB", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["storage_quota"] == 10 * 1024
    bad = cli(server, "workspace", "update", name, "--storage-quota", "lots")
    assert bad.returncode == 2 and "not a size" in bad.stderr

    uri = f"{server.url}/w/{name}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment(unique("q"))).info.run_id
    first = tmp_path / "first.bin"
    first.write_bytes(b"a" * 6000)
    client.log_artifact(run_id, str(first))
    second = tmp_path / "second.bin"
    second.write_bytes(b"b" * 6000)
    # The client surfaces the 507 with the server's message, at once (it
    # does not retry 507).
    with pytest.raises(Exception) as refused_by_client:
        client.log_artifact(run_id, str(second))
    assert "507" in str(refused_by_client.value) and "storage quota" in str(refused_by_client.value)
    assert [f.path for f in client.list_artifacts(run_id)] == ["first.bin"], "the refused upload left nothing"

    experiment = client.get_run(run_id).info.experiment_id
    refused = requests.put(
        f"{uri}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/third.bin",
        data=b"c" * 6000, timeout=30)
    assert refused.status_code == 507, refused.text
    body = refused.json()
    assert body["error_code"] == "RESOURCE_EXHAUSTED"
    assert "10240 bytes allowed, 6000 in use" in body["message"] and "--storage-quota" in body["message"]

    # The file share counts against the same quota.
    share = requests.put(f"{server.url}/api/tandem/v1/workspaces/{name}/files/notes.txt", data=b"n" * 5000,
                         timeout=30)
    assert share.status_code == 507, share.text
    small = requests.put(f"{server.url}/api/tandem/v1/workspaces/{name}/files/notes.txt", data=b"n" * 1000,
                         timeout=30)
    assert small.status_code == 200, small.text

    # Journaled like every change to a workspace.
    kinds = subprocess.run([_tandem_bin(), "journal", "--workspace", name, "--url", server.url],
                           capture_output=True, text=True, timeout=60).stdout
    assert '"workspace_quota_set"' in kinds

    # Raised (removed), the upload goes through.
    assert cli(server, "workspace", "update", name, "--storage-quota", "none").returncode == 0
    client.log_artifact(run_id, str(second))
    assert sorted(f.path for f in client.list_artifacts(run_id)) == ["first.bin", "second.bin"]
    shown = cli(server, "workspace", "get", name, "--json")
    assert "storage_quota" not in json.loads(shown.stdout)
