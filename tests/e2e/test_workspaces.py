"""Tandem workspaces: each `/w/<name>` tracking URI is a separate MLflow
server as far as the client can tell."""

import mlflow
import requests
from mlflow.tracking import MlflowClient

from support import expect_error, raw_request, unique


def test_workspace_tracking_uri_works_with_the_fluent_api(workspace_uri, tmp_path):
    experiment = mlflow.set_experiment(unique("exp"))
    notes = tmp_path / "notes.txt"
    notes.write_text("in a workspace")
    with mlflow.start_run() as run:
        mlflow.log_param("p", "1")
        mlflow.log_metric("m", 2.0)
        mlflow.log_artifact(str(notes))
    fetched = MlflowClient(workspace_uri).get_run(run.info.run_id)
    assert fetched.info.experiment_id == experiment.experiment_id
    assert fetched.data.params == {"p": "1"}
    assert fetched.data.metrics == {"m": 2.0}
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt") == "in a workspace"


def test_workspaces_are_isolated(server, make_workspace, monkeypatch, tmp_path):
    uri_a, uri_b = make_workspace(), make_workspace()
    a, b, default = MlflowClient(uri_a, uri_a), MlflowClient(uri_b, uri_b), MlflowClient(server.url, server.url)
    name = unique("exp")

    experiment_a = a.create_experiment(name)
    assert b.get_experiment_by_name(name) is None
    assert default.get_experiment_by_name(name) is None
    assert b.search_experiments(filter_string=f"name = '{name}'") == []
    assert default.search_experiments(filter_string=f"name = '{name}'") == []
    # The same name is free in another workspace.
    experiment_b = b.create_experiment(name)
    assert b.get_experiment_by_name(name).experiment_id == experiment_b

    run_a = a.create_run(experiment_a).info
    a.log_param(run_a.run_id, "where", "a")
    expect_error("RESOURCE_DOES_NOT_EXIST", b.get_run, run_a.run_id)
    expect_error("RESOURCE_DOES_NOT_EXIST", default.get_run, run_a.run_id)
    expect_error("RESOURCE_DOES_NOT_EXIST", b.log_param, run_a.run_id, "where", "b")
    assert b.search_runs([experiment_b]) == []
    assert b.search_runs([experiment_a], f"attributes.run_id = '{run_a.run_id}'") == []
    assert a.get_run(run_a.run_id).data.params == {"where": "a"}

    logged = a.create_logged_model(experiment_a, name="isolated")
    expect_error("RESOURCE_DOES_NOT_EXIST", b.get_logged_model, logged.model_id)
    expect_error("RESOURCE_DOES_NOT_EXIST", default.get_logged_model, logged.model_id)

    model = unique("model")
    a.create_registered_model(model)
    expect_error("RESOURCE_DOES_NOT_EXIST", b.get_registered_model, model)
    assert default.search_registered_models(f"name = '{model}'") == []

    # Artifacts: logged in a, readable only through a.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri_a)
    mlflow.set_tracking_uri(uri_a)
    secret = tmp_path / "secret.txt"
    secret.write_text("only in a")
    a.log_artifact(run_a.run_id, str(secret))
    assert [f.path for f in a.list_artifacts(run_a.run_id)] == ["secret.txt"]

    relative = f"{experiment_a}/{run_a.run_id}/artifacts/secret.txt"
    proxy = "/api/2.0/mlflow-artifacts/artifacts"
    prefix_a, prefix_b = uri_a[len(server.url):], uri_b[len(server.url):]
    assert raw_request(server.url, "GET", f"{prefix_a}{proxy}/{relative}") == (200, b"only in a")
    for prefix in (prefix_b, ""):
        status, _ = raw_request(server.url, "GET", f"{prefix}{proxy}/{relative}")
        assert status == 404, prefix
        listing = requests.get(
            f"{server.url}{prefix}{proxy}", params={"path": f"{experiment_a}/{run_a.run_id}/artifacts"}, timeout=30
        )
        assert listing.status_code == 200
        assert listing.json().get("files", []) == []
        # Nor can another workspace write into a's run.
        status, _ = raw_request(server.url, "PUT", f"{prefix}{proxy}/{relative}", b"overwritten")
        assert 400 <= status < 500, prefix
    assert raw_request(server.url, "GET", f"{prefix_a}{proxy}/{relative}") == (200, b"only in a")


def test_unknown_workspace_is_404(server):
    response = requests.get(
        f"{server.url}/w/{unique('absent')}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "Default"},
        timeout=30,
    )
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    duplicate = unique("ws")
    first = requests.post(f"{server.url}/api/tandem/v1/workspaces", json={"name": duplicate}, timeout=30)
    assert first.status_code == 201
    again = requests.post(f"{server.url}/api/tandem/v1/workspaces", json={"name": duplicate}, timeout=30)
    assert again.status_code == 400
    assert again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
