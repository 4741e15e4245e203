"""Artifacts through the server's artifact proxy (`mlflow-artifacts:`)."""

import hashlib
import json
import os

import mlflow
import requests

from support import unique


def test_log_list_download_and_load_text(tracking_uri, client, tmp_path):
    mlflow.set_experiment(unique("exp"))
    source = tmp_path / "source"
    (source / "nested").mkdir(parents=True)
    (source / "a.txt").write_text("alpha\n")
    (source / "b.json").write_text('{"b": 2}')
    (source / "nested" / "c.csv").write_text("x,y\n1,2\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, tandem\n")

    with mlflow.start_run() as run:
        run_id = run.info.run_id
        mlflow.log_artifact(str(notes))
        mlflow.log_artifact(str(notes), artifact_path="docs")
        mlflow.log_artifacts(str(source), artifact_path="data")
        mlflow.log_text("some text", "texts/t.txt")
        mlflow.log_dict({"k": [1, 2]}, "config.json")

    root = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert root == {
        ("notes.txt", False), ("docs", True), ("data", True), ("texts", True), ("config.json", False),
    }
    sizes = {f.path: f.file_size for f in client.list_artifacts(run_id)}
    assert sizes["notes.txt"] == len("hello, tandem\n")

    data = {(f.path, f.is_dir) for f in client.list_artifacts(run_id, "data")}
    assert data == {("data/a.txt", False), ("data/b.json", False), ("data/nested", True)}
    nested = [(f.path, f.file_size) for f in client.list_artifacts(run_id, "data/nested")]
    assert nested == [("data/nested/c.csv", len("x,y\n1,2\n"))]
    assert client.list_artifacts(run_id, "no-such-dir") == []

    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "hello, tandem\n"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/texts/t.txt") == "some text"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json") == {"k": [1, 2]}

    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="data", dst_path=str(tmp_path / "out")
    )
    assert (tmp_path / "out" / "data" / "a.txt").read_text() == "alpha\n"
    assert json.loads((tmp_path / "out" / "data" / "b.json").read_text()) == {"b": 2}
    assert open(os.path.join(downloaded, "nested", "c.csv")).read() == "x,y\n1,2\n"

    whole = client.download_artifacts(run_id, "", str(tmp_path / "all"))
    files = sorted(
        os.path.relpath(os.path.join(directory, name), whole)
        for directory, _, names in os.walk(whole)
        for name in names
    )
    assert files == sorted([
        "notes.txt", "docs/notes.txt", "data/a.txt", "data/b.json", "data/nested/c.csv",
        "texts/t.txt", "config.json",
    ])


def test_binary_artifact_round_trip(tracking_uri, server, client, tmp_path):
    experiment_id = mlflow.set_experiment(unique("exp")).experiment_id
    # Larger than the JSON body limit (16 MiB): uploads stream, unlimited.
    payload = os.urandom(17 * 1024 * 1024 + 123)
    digest = hashlib.sha256(payload).hexdigest()
    blob = tmp_path / "weights.bin"
    blob.write_bytes(payload)

    with mlflow.start_run() as run:
        run_id = run.info.run_id
        mlflow.log_artifact(str(blob), artifact_path="bin")

    [info] = client.list_artifacts(run_id, "bin")
    assert (info.path, info.file_size) == ("bin/weights.bin", len(payload))

    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="bin/weights.bin", dst_path=str(tmp_path / "down")
    )
    with open(local, "rb") as downloaded:
        assert hashlib.sha256(downloaded.read()).hexdigest() == digest

    # The proxy also serves byte ranges of the stored file.
    url = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/bin/weights.bin"
    response = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=60)
    assert response.status_code == 206
    assert response.content == payload[100:200]
