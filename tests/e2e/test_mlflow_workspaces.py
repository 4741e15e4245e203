"""MLflow's own workspace API against Tandem: `mlflow.set_workspace` and
`MLFLOW_WORKSPACE` (the client's `X-MLFLOW-WORKSPACE` header) land in the
same workspace as a `/w/<name>/` tracking URI, and `/api/3.0/mlflow/
workspaces` manages Tandem's workspaces in MLflow's shapes and codes, its
delete being Tandem's soft delete. With authentication on, the header is
authorized exactly as the URL prefix is."""

import json

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from support import expect_error, raw_request, unique
from test_auth import AuthServer, bearer, credentials

HEADER = "X-MLFLOW-WORKSPACE"


@pytest.fixture
def no_workspace():
    """The client's active workspace (and MLFLOW_WORKSPACE, which
    set_workspace also sets) cleared before and after the test."""
    mlflow.set_workspace(None)
    yield
    mlflow.set_workspace(None)


def workspace_name() -> str:
    # unique() is lowercase hex after a dash: inside MLflow's name rule.
    return unique("team")


def test_server_info_says_workspaces_are_on(server):
    for prefix in ["/api", "/ajax-api"]:
        info = requests.get(f"{server.url}{prefix}/3.0/mlflow/server-info", timeout=10)
        assert info.status_code == 200 and info.json()["workspaces_enabled"] is True, info.text
    # It answers whatever workspace the header names, as MLflow's does.
    info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", headers={HEADER: "no-such-ws"}, timeout=10)
    assert info.status_code == 200, info.text


def test_set_workspace_lands_where_the_url_prefix_does(server, tracking_uri, no_workspace, tmp_path):
    name = workspace_name()
    created = mlflow.create_workspace(name, description="vision team")
    assert (created.name, created.description) == (name, "vision team")
    mlflow.set_workspace(name)
    experiment_name = unique("exp")
    experiment = mlflow.set_experiment(experiment_name)
    notes = tmp_path / "notes.txt"
    notes.write_text("logged through the header")
    with mlflow.start_run() as run:
        mlflow.log_param("p", "1")
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(str(notes))
    run_id = run.info.run_id
    # The same client, same workspace: everything reads back.
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "logged through the header"

    # Through /w/<name>/: the same experiment, run, metrics and artifacts.
    scoped_uri = f"{server.url}/w/{name}"
    mlflow.set_workspace(None)
    scoped = MlflowClient(scoped_uri, scoped_uri)
    assert scoped.get_experiment_by_name(experiment_name).experiment_id == experiment.experiment_id
    fetched = scoped.get_run(run_id)
    assert fetched.data.params == {"p": "1"} and fetched.data.metrics == {"loss": pytest.approx(1 / 3)}
    assert [m.step for m in scoped.get_metric_history(run_id, "loss")] == [0, 1, 2]
    assert [f.path for f in scoped.list_artifacts(run_id)] == ["notes.txt"]
    downloaded = scoped.download_artifacts(run_id, "notes.txt", str(tmp_path / "out"))
    assert open(downloaded).read() == "logged through the header"

    # Through the Tandem API: the workspace, and its journal holds the run.
    tandem = requests.get(f"{server.url}/api/tandem/v1/workspaces/{name}", timeout=10).json()["workspace"]
    assert tandem["name"] == name and tandem["description"] == "vision team"
    lines = requests.get(f"{server.url}/api/tandem/v1/journal", params={"after": 0, "workspace": name},
                         timeout=30).text.splitlines()
    assert any(run_id in line for line in lines)

    # Not in default.
    default = MlflowClient(server.url, server.url)
    assert default.get_experiment_by_name(experiment_name) is None
    expect_error("RESOURCE_DOES_NOT_EXIST", default.get_run, run_id)


def test_the_mlflow_workspace_variable_selects_the_workspace(server, tracking_uri, no_workspace, monkeypatch):
    name = workspace_name()
    assert requests.post(f"{server.url}/api/3.0/mlflow/workspaces", json={"name": name},
                         timeout=10).status_code == 201
    monkeypatch.setenv("MLFLOW_WORKSPACE", name)
    client = MlflowClient(server.url, server.url)
    experiment_name = unique("exp")
    experiment_id = client.create_experiment(experiment_name)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "m", 2.0)
    model = unique("model")
    client.create_registered_model(model)
    monkeypatch.delenv("MLFLOW_WORKSPACE")

    scoped_uri = f"{server.url}/w/{name}"
    scoped = MlflowClient(scoped_uri, scoped_uri)
    assert scoped.get_run(run.info.run_id).data.metrics == {"m": 2.0}
    assert scoped.get_registered_model(model).name == model
    default = MlflowClient(server.url, server.url)
    assert default.get_experiment_by_name(experiment_name) is None
    expect_error("RESOURCE_DOES_NOT_EXIST", default.get_registered_model, model)


def test_the_header_never_contradicts_the_path_and_names_a_workspace_that_exists(server, tracking_uri,
                                                                                  no_workspace):
    a, b = workspace_name(), workspace_name()
    for name in (a, b):
        assert requests.post(f"{server.url}/api/3.0/mlflow/workspaces", json={"name": name},
                             timeout=10).status_code == 201
    search = "/api/2.0/mlflow/experiments/search?max_results=5"
    # Agreeing: served.
    agreed = requests.get(f"{server.url}/w/{a}{search}", headers={HEADER: a}, timeout=10)
    assert agreed.status_code == 200, agreed.text
    # Contradicting: refused, whichever way round, and nothing chosen.
    for path_ws, header_ws in [(a, b), (b, a), ("default", a)]:
        refused = requests.post(f"{server.url}/w/{path_ws}/api/2.0/mlflow/experiments/create",
                                json={"name": unique("x")}, headers={HEADER: header_ws}, timeout=10)
        assert refused.status_code == 400, refused.text
        body = refused.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert f"'{path_ws}'" in body["message"] and f"'{header_ws}'" in body["message"], body
    # An unknown workspace in the header: MLflow's not-found, through the
    # client too.
    unknown = requests.get(f"{server.url}{search}", headers={HEADER: "no-such-workspace"}, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", unknown.text
    mlflow.set_workspace("no-such-workspace")
    error = expect_error("RESOURCE_DOES_NOT_EXIST", mlflow.search_experiments)
    assert "no-such-workspace" in error.message
    mlflow.set_workspace(None)
    # An empty header is no header: the default workspace.
    for blank in ["", "  "]:
        status, body = raw_request(server.url, "GET", search, headers={HEADER: blank})
        assert status == 200, body


def test_a_workspace_tracking_uri_and_the_same_workspace_set_agree(server, no_workspace, monkeypatch):
    name, other = workspace_name(), workspace_name()
    for workspace in (name, other):
        assert requests.post(f"{server.url}/api/3.0/mlflow/workspaces", json={"name": workspace},
                             timeout=10).status_code == 201
    scoped_uri = f"{server.url}/w/{name}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoped_uri)
    mlflow.set_tracking_uri(scoped_uri)
    # The client asks server-info relative to its URI before it uses a
    # workspace: answered under the prefix too.
    mlflow.set_workspace(name)
    client = MlflowClient(scoped_uri, scoped_uri)
    experiment_id = client.create_experiment(unique("exp"))
    assert MlflowClient(f"{server.url}/w/{name}").get_experiment(experiment_id).experiment_id == experiment_id
    # Another workspace set than the URI's: refused, nothing written.
    mlflow.set_workspace(other)
    error = expect_error("INVALID_PARAMETER_VALUE", client.create_experiment, unique("exp"))
    assert f"'{name}'" in error.message and f"'{other}'" in error.message


def test_the_workspace_api_in_mlflows_shapes_and_codes(server, tracking_uri, no_workspace):
    base = f"{server.url}/api/3.0/mlflow/workspaces"
    name = workspace_name()

    created = requests.post(base, json={"name": name, "description": "first"}, timeout=10)
    assert created.status_code == 201, created.text
    assert created.json() == {"workspace": {"name": name, "description": "first"}}
    listed = requests.get(base, timeout=10)
    assert listed.status_code == 200
    names = [workspace["name"] for workspace in listed.json()["workspaces"]]
    assert name in names and "default" in names and names == sorted(names)
    assert requests.get(f"{base}/{name}", timeout=10).json() == {"workspace": {"name": name, "description": "first"}}
    # The /ajax-api form, as MLflow serves it.
    ajax = requests.get(f"{server.url}/ajax-api/3.0/mlflow/workspaces/{name}", timeout=10)
    assert ajax.status_code == 200 and ajax.json()["workspace"]["name"] == name
    updated = requests.patch(f"{base}/{name}", json={"description": "second"}, timeout=10)
    assert updated.status_code == 200 and updated.json()["workspace"]["description"] == "second", updated.text

    def refused(response, status, code, says):
        assert response.status_code == status, response.text
        body = response.json()
        assert body["error_code"] == code and says in body["message"], body

    refused(requests.post(base, json={"name": name}, timeout=10), 400, "RESOURCE_ALREADY_EXISTS",
            f"Workspace '{name}' already exists")
    refused(requests.post(base, json={"name": "default"}, timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "The 'default' workspace is reserved and cannot be created")
    refused(requests.post(base, json={"name": "Team_A"}, timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "must match the pattern ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    refused(requests.post(base, json={"name": "a"}, timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "must be between 2 and 63 characters")
    refused(requests.post(base, json={"name": "x" * 64}, timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "must be between 2 and 63 characters")
    refused(requests.post(base, json={"name": "api"}, timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "Workspace name 'api' is reserved")
    refused(requests.post(base, json={}, timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'name'")
    refused(requests.post(base, json={"name": 5}, timeout=10), 400, "INVALID_PARAMETER_VALUE", "name")
    refused(requests.post(base, json={"name": unique("ws"), "colour": "red"}, timeout=10), 400,
            "INVALID_PARAMETER_VALUE", "colour")
    refused(requests.post(base, data=b'{"name": ', headers={"Content-Type": "application/json"}, timeout=10),
            400, "BAD_REQUEST", "Malformed JSON")
    refused(requests.post(base, json={"name": unique("ws"), "default_artifact_root": "s3://elsewhere"},
                          timeout=10), 400, "INVALID_PARAMETER_VALUE", "default_artifact_root")
    refused(requests.patch(f"{base}/{name}", json={}, timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "Workspace update must have at least one key")
    refused(requests.get(f"{base}/no-such-workspace", timeout=10), 404, "RESOURCE_DOES_NOT_EXIST",
            "no-such-workspace")
    refused(requests.get(f"{base}/Bad_Name", timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "must match the pattern")
    refused(requests.delete(f"{base}/default", timeout=10), 400, "INVALID_PARAMETER_VALUE",
            "The 'default' workspace is reserved and cannot be deleted")
    refused(requests.delete(f"{base}/{name}", params={"mode": "EVERYTHING"}, timeout=10), 400,
            "INVALID_PARAMETER_VALUE", "Invalid deletion mode 'EVERYTHING'. Must be one of: SET_DEFAULT, CASCADE")
    refused(requests.delete(f"{base}/{name}", params={"mode": "SET_DEFAULT"}, timeout=10), 400,
            "INVALID_PARAMETER_VALUE", "SET_DEFAULT is not supported")
    refused(requests.delete(f"{base}/no-such-workspace", timeout=10), 404, "RESOURCE_DOES_NOT_EXIST",
            "no-such-workspace")

    # Something in it, to see it come back.
    experiment = requests.post(f"{server.url}/api/2.0/mlflow/experiments/create", json={"name": "kept"},
                               headers={HEADER: name}, timeout=10)
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment_id"]

    # Delete: 204, no body; gone from MLflow's view, deleted in Tandem's.
    deleted = requests.delete(f"{base}/{name}", timeout=10)
    assert deleted.status_code == 204 and deleted.content == b"", deleted.text
    refused(requests.get(f"{base}/{name}", timeout=10), 404, "RESOURCE_DOES_NOT_EXIST", name)
    assert name not in [w["name"] for w in requests.get(base, timeout=10).json()["workspaces"]]
    gone = requests.get(f"{server.url}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id},
                        headers={HEADER: name}, timeout=10)
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", gone.text
    tandem = requests.get(f"{server.url}/api/tandem/v1/workspaces/{name}", timeout=10).json()["workspace"]
    assert tandem["lifecycle_stage"] == "deleted" and tandem["purge_after"] > tandem["deletion_time"]
    # The name stays taken until the deleted workspace is purged.
    refused(requests.post(base, json={"name": name}, timeout=10), 400, "RESOURCE_ALREADY_EXISTS", "deleted")

    # Recovered through Tandem's API: back with what it held.
    recovered = requests.post(f"{server.url}/api/tandem/v1/workspaces/{name}/recover", timeout=10)
    assert recovered.status_code == 200, recovered.text
    assert requests.get(f"{base}/{name}", timeout=10).json()["workspace"]["name"] == name
    back = requests.get(f"{server.url}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id},
                        headers={HEADER: name}, timeout=10)
    assert back.status_code == 200 and back.json()["experiment"]["name"] == "kept", back.text


def test_the_official_clients_workspace_calls(server, tracking_uri, no_workspace):
    name = workspace_name()
    workspace = mlflow.create_workspace(name, description="made by the client")
    assert workspace.name == name
    assert name in [w.name for w in mlflow.list_workspaces()]
    assert mlflow.get_workspace(name).description == "made by the client"
    assert mlflow.update_workspace(name, description="changed").description == "changed"
    expect_error("RESOURCE_ALREADY_EXISTS", mlflow.create_workspace, name)
    expect_error("RESOURCE_DOES_NOT_EXIST", mlflow.get_workspace, "no-such-workspace")
    mlflow.delete_workspace(name)
    expect_error("RESOURCE_DOES_NOT_EXIST", mlflow.get_workspace, name)
    # Deleted softly: recoverable with Tandem's API.
    assert requests.post(f"{server.url}/api/tandem/v1/workspaces/{name}/recover", timeout=10).status_code == 200
    assert mlflow.get_workspace(name).description == "changed"


@pytest.fixture
def auth_server(tandem_bin, tmp_path):
    server = AuthServer(tandem_bin, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def tandem_bin() -> str:
    from conftest import _tandem_bin

    return _tandem_bin()


def test_with_authentication_the_header_is_authorized_as_the_path_is(auth_server, monkeypatch, no_workspace):
    server = auth_server
    admin = bearer(server.admin_token)
    base = f"{server.url}/api/3.0/mlflow/workspaces"
    team_a, team_b = workspace_name(), workspace_name()
    for name in (team_a, team_b):
        assert requests.post(base, json={"name": name}, headers=admin, timeout=10).status_code == 201
    reader = json.loads(server.cli("user", "create", "reader", "--service", "--role", f"Reader@{team_a}",
                                   "--json"))["token"]
    owner = json.loads(server.cli("user", "create", "lead", "--service", "--role", f"Owner@{team_a}",
                                  "--json"))["token"]
    operator = json.loads(server.cli("user", "create", "ops", "--service", "--role", "Operator",
                                     "--json"))["token"]

    search = "/api/2.0/mlflow/experiments/search?max_results=5"
    create = "/api/2.0/mlflow/experiments/create"
    # A Reader of team-a reads there through the header, and cannot write.
    assert requests.get(f"{server.url}{search}", headers={**bearer(reader), HEADER: team_a},
                        timeout=10).status_code == 200
    write = requests.post(f"{server.url}{create}", json={"name": unique("x")},
                          headers={**bearer(reader), HEADER: team_a}, timeout=10)
    assert write.status_code == 403 and write.json()["error_code"] == "PERMISSION_DENIED", write.text
    assert f"'reader' lacks the 'write' permission in workspace '{team_a}'" in write.json()["message"]
    # The same through the official client.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    mlflow.set_tracking_uri(server.url)
    with credentials(token=reader):
        mlflow.set_workspace(team_a)
        client = MlflowClient(server.url, server.url)
        assert client.search_experiments(max_results=5) is not None
        expect_error("PERMISSION_DENIED", client.create_experiment, unique("x"))
        mlflow.set_workspace(None)

    # No role in team-b: refused through the header exactly as through /w/.
    for method, path in [("GET", search), ("POST", create)]:
        via_header = requests.request(method, f"{server.url}{path}", json={"name": "x"},
                                      headers={**bearer(reader), HEADER: team_b}, timeout=10)
        via_path = requests.request(method, f"{server.url}/w/{team_b}{path}", json={"name": "x"},
                                    headers=bearer(reader), timeout=10)
        assert via_header.status_code == via_path.status_code == 403, (via_header.text, via_path.text)
        assert via_header.json() == via_path.json()
    # A header cannot widen the path's workspace either way.
    mixed = requests.get(f"{server.url}/w/{team_b}{search}", headers={**bearer(reader), HEADER: team_a},
                         timeout=10)
    assert mixed.status_code == 400 and mixed.json()["error_code"] == "INVALID_PARAMETER_VALUE", mixed.text

    # The workspace API: listing shows each caller what it may read.
    listed = requests.get(base, headers=bearer(reader), timeout=10).json()["workspaces"]
    assert [w["name"] for w in listed] == [team_a]
    owned = [w["name"] for w in requests.get(base, headers=bearer(owner), timeout=10).json()["workspaces"]]
    assert owned == [team_a]
    # Those who create and delete workspaces see them all.
    for token in (server.admin_token, operator):
        everything = [w["name"] for w in requests.get(base, headers=bearer(token), timeout=10).json()["workspaces"]]
        assert {team_a, team_b, "default"} <= set(everything)
    assert requests.get(f"{base}/{team_a}", headers=bearer(reader), timeout=10).status_code == 200
    assert requests.get(f"{base}/{team_b}", headers=bearer(reader), timeout=10).status_code == 403
    # Create and delete are the operators'; update the workspace's owner's.
    assert requests.post(base, json={"name": workspace_name()}, headers=bearer(owner), timeout=10).status_code == 403
    assert requests.post(base, json={"name": workspace_name()}, headers=bearer(operator),
                         timeout=10).status_code == 201
    assert requests.patch(f"{base}/{team_a}", json={"description": "x"}, headers=bearer(reader),
                          timeout=10).status_code == 403
    assert requests.patch(f"{base}/{team_a}", json={"description": "x"}, headers=bearer(owner),
                          timeout=10).status_code == 200
    assert requests.delete(f"{base}/{team_a}", headers=bearer(owner), timeout=10).status_code == 403
    assert requests.delete(f"{base}/{team_a}", headers=bearer(operator), timeout=10).status_code == 204
    # Anonymous: 401 with MLflow's challenge.
    anonymous = requests.get(base, timeout=10)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers.get("WWW-Authenticate", "")
