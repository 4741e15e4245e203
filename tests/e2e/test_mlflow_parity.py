"""Behaviours where Tandem answers exactly as `mlflow server` 3.17.2 does
(its `server/handlers.py`, `server/validation.py`, `utils/validation.py`
and `utils/uri.py`): required metric timestamps, MLflow's wording for
values of the wrong JSON type, a model version's empty description, the
`mlflow.modelVersions` tag's text, logged models from runs the server does
not know, and `.` as the root of a run's artifacts."""

import requests
import mlflow
from mlflow.entities import Metric

from support import error_json, expect_error, raw_request, unique

SEE_DOCS = " See the API docs for more information about request parameters."


def wrong_type(value: str, parameter: str, python_type: str) -> str:
    """MLflow's message for a value of the wrong type (`invalid_value` with
    the schema check's hint: note the two spaces after the colon)."""
    return f"Invalid value {value} for parameter '{parameter}' supplied:  Hint: Value was of type '{python_type}'.{SEE_DOCS}"


def refusal(response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE", body
    return body["message"]


def new_run(client) -> str:
    experiment_id = client.create_experiment(unique("parity"))
    return client.create_run(experiment_id).info.run_id


def test_a_metric_without_timestamp_is_refused(tracking_uri, client):
    api = f"{tracking_uri}/api/2.0/mlflow"
    run_id = new_run(client)

    message = refusal(requests.post(f"{api}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1.0},
                                    timeout=30))
    assert message == f"Missing value for required parameter 'timestamp'.{SEE_DOCS}"

    batch = {"run_id": run_id, "metrics": [
        {"key": "a", "value": 1.0, "timestamp": 5, "step": 0},
        {"key": "b", "value": 2.0, "step": 0},
    ]}
    message = refusal(requests.post(f"{api}/runs/log-batch", json=batch, timeout=30))
    assert message == f"Missing value for required parameter 'metrics[1].timestamp'.{SEE_DOCS}"

    # Nothing was logged, and 0 is a timestamp like any other.
    assert client.get_run(run_id).data.metrics == {}
    ok = requests.post(f"{api}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 0},
                       timeout=30)
    assert ok.status_code == 200, ok.text
    assert [(m.value, m.timestamp) for m in client.get_metric_history(run_id, "m")] == [(1.0, 0)]

    # The official client always sends one.
    client.log_metric(run_id, "c", 3.0)
    client.log_batch(run_id, metrics=[Metric("d", 4.0, 7, 0)])
    assert client.get_run(run_id).data.metrics == {"m": 1.0, "c": 3.0, "d": 4.0}
    assert client.get_metric_history(run_id, "d")[0].timestamp == 7


def test_values_of_the_wrong_type_are_refused_in_mlflow_words(tracking_uri, client):
    api = f"{tracking_uri}/api/2.0/mlflow"
    run_id = new_run(client)
    cases = [
        ("runs/log-metric", {"run_id": 31, "key": "m", "value": 1, "timestamp": 0}, wrong_type("31", "run_id", "int")),
        ("runs/log-metric", {"run_id": run_id, "key": "m", "value": "foo", "timestamp": 0},
         wrong_type('"foo"', "value", "str")),
        ("runs/log-metric", {"run_id": run_id, "key": "m", "value": 1, "timestamp": "soon"},
         wrong_type('"soon"', "timestamp", "str")),
        ("runs/log-metric", {"run_id": run_id, "key": ["m"], "value": 1, "timestamp": 0},
         wrong_type('["m"]', "key", "list")),
        ("runs/log-parameter", {"run_id": run_id, "key": "p", "value": 5}, wrong_type("5", "value", "int")),
        ("runs/log-parameter", {"run_id": run_id, "key": "p", "value": {"b": 1, "a": "é"}},
         wrong_type('{"a":"\\u00e9","b":1}', "value", "dict")),
        ("runs/set-tag", {"run_id": 31, "key": "t", "value": "v"}, wrong_type("31", "run_id", "int")),
        ("runs/set-tag", {"run_id": run_id, "key": "t", "value": True}, wrong_type("true", "value", "bool")),
        ("runs/log-batch", {"run_id": run_id, "metrics": "foo"}, wrong_type('"foo"', "metrics", "str")),
        ("runs/log-batch", {"run_id": run_id, "params": {"key": "p"}}, wrong_type('{"key":"p"}', "params", "dict")),
        ("runs/log-batch", {"run_id": 2.5, "tags": []}, wrong_type("2.5", "run_id", "float")),
        ("experiments/create", {"name": 5}, wrong_type("5", "name", "int")),
        ("experiments/create", {"name": unique("exp"), "artifact_location": 1},
         wrong_type("1", "artifact_location", "int")),
        ("experiments/create", {"name": unique("exp"), "tags": {"a": 1}}, wrong_type('{"a":1}', "tags", "dict")),
    ]
    for path, body, expected in cases:
        response = requests.post(f"{api}/{path}", json=body, timeout=30)
        assert refusal(response) == expected, (path, body)
    run = client.get_run(run_id)
    assert run.data.metrics == {} and run.data.params == {}
    assert "t" not in run.data.tags

    # Unknown fields are still refused (MLflow ignores them; Tandem says so).
    unknown = requests.post(f"{api}/runs/log-metric",
                            json={"run_id": run_id, "key": "m", "value": 1, "timestamp": 0, "bogus": 1}, timeout=30)
    assert "bogus" in refusal(unknown)
    # Malformed JSON stays a BAD_REQUEST.
    malformed = requests.post(f"{api}/runs/log-metric", data=b'{"run_id": ', timeout=30,
                              headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error_code"] == "BAD_REQUEST"


def test_a_model_version_without_description_reads_back_empty(tracking_uri, client):
    api = f"{tracking_uri}/api/2.0/mlflow"
    run_id = new_run(client)
    name = unique("described")
    client.create_registered_model(name)
    source = f"runs:/{run_id}/model"

    created = requests.post(f"{api}/model-versions/create", json={"name": name, "source": source, "run_id": run_id},
                            timeout=30)
    assert created.status_code == 200, created.text
    assert created.json()["model_version"]["description"] == ""
    got = requests.get(f"{api}/model-versions/get", params={"name": name, "version": "1"}, timeout=30)
    assert got.json()["model_version"]["description"] == ""
    found = requests.get(f"{api}/model-versions/search", params={"filter": f"name = '{name}'"}, timeout=30)
    assert [v["description"] for v in found.json()["model_versions"]] == [""]

    # Through the client: "" rather than None, as against `mlflow server`.
    version = client.create_model_version(name, source, run_id=run_id)
    assert version.description == ""
    assert client.get_model_version(name, version.version).description == ""
    assert [v.description for v in client.search_model_versions(f"name = '{name}'")] == ["", ""]
    described = client.create_model_version(name, source, run_id=run_id, description="third")
    assert client.get_model_version(name, described.version).description == "third"


def test_the_model_versions_tag_holds_the_version_as_a_number(tracking_uri, client):
    api = f"{tracking_uri}/api/2.0/mlflow"
    experiment_id = client.create_experiment(unique("tagged"))
    run_id = client.create_run(experiment_id).info.run_id
    logged = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
    name = unique("registered")
    client.create_registered_model(name)

    for _ in range(2):
        created = requests.post(f"{api}/model-versions/create", timeout=30, json={
            "name": name, "source": f"models:/{logged.model_id}", "run_id": run_id, "model_id": logged.model_id})
        assert created.status_code == 200, created.text
    tag = client.get_logged_model(logged.model_id).tags["mlflow.modelVersions"]
    # `json.dumps` of MLflow's store's integer versions.
    assert tag == f'[{{"name": "{name}", "version": 1}}, {{"name": "{name}", "version": 2}}]'


def test_a_logged_model_may_name_a_run_the_server_does_not_know(tracking_uri, client):
    api = f"{tracking_uri}/api/2.0/mlflow"
    experiment_id = client.create_experiment(unique("foreign"))
    foreign_run = "0123456789abcdef0123456789abcdef"
    response = requests.post(f"{api}/logged-models", timeout=30,
                             json={"experiment_id": experiment_id, "name": "raw", "source_run_id": foreign_run})
    assert response.status_code == 200, response.text
    model = response.json()["model"]
    assert model["info"]["source_run_id"] == foreign_run
    through_client = client.create_logged_model(experiment_id, name="client", source_run_id=foreign_run)
    assert client.get_logged_model(through_client.model_id).source_run_id == foreign_run
    # The experiment is still checked.
    expect_error("RESOURCE_DOES_NOT_EXIST", client.create_logged_model, "999999999", source_run_id=foreign_run)


def test_a_whole_run_downloads_with_dot_and_traversal_is_refused(tracking_uri, client, tmp_path):
    api = f"{tracking_uri}/api/2.0/mlflow"
    run_id = new_run(client)
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "top.txt").write_text("top")
    (source / "sub" / "inner.txt").write_text("inner")
    client.log_artifacts(run_id, str(source))

    downloaded = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=".", dst_path=str(tmp_path / "dst"))
    root = tmp_path / "dst"
    assert (root / "top.txt").read_text() == "top"
    assert (root / "sub" / "inner.txt").read_text() == "inner"
    assert downloaded.rstrip("/").startswith(str(root))

    # `artifacts/list` takes `.` as the root and quotes the path back as
    # given, as MLflow's `posixpath.join` does; `..` is MLflow's `Invalid path`.
    listed = requests.get(f"{api}/artifacts/list", params={"run_id": run_id, "path": "."}, timeout=30).json()
    assert sorted(f["path"] for f in listed["files"]) == ["./sub", "./top.txt"]
    listed = requests.get(f"{api}/artifacts/list", params={"run_id": run_id, "path": "./sub"}, timeout=30).json()
    assert [f["path"] for f in listed["files"]] == ["./sub/inner.txt"]
    assert sorted(f.path for f in client.list_artifacts(run_id)) == ["sub", "top.txt"]
    for path in ["../x", "sub/../../x", "/etc", "sub#x", "%2e%2e/x"]:
        response = requests.get(f"{api}/artifacts/list", params={"run_id": run_id, "path": path}, timeout=30)
        assert refusal(response) == "Invalid path", path

    # The proxy: `.` segments are the directory they stand in, `..` is refused.
    experiment_id = client.get_run(run_id).info.experiment_id
    proxy = f"{tracking_uri}/api/2.0/mlflow-artifacts/artifacts"
    run_root = f"{experiment_id}/{run_id}/artifacts"
    listed = requests.get(proxy, params={"path": f"{run_root}/."}, timeout=30).json()
    assert sorted(f["path"] for f in listed["files"]) == ["sub", "top.txt"]
    assert refusal(requests.get(proxy, params={"path": f"{run_root}/../x"}, timeout=30)) == "Invalid path"
    # Sent byte for byte (requests would drop the dot segments itself).
    proxy_path = f"/api/2.0/mlflow-artifacts/artifacts/{run_root}"
    status, body = raw_request(tracking_uri, "GET", f"{proxy_path}/./sub/inner.txt")
    assert (status, body) == (200, b"inner")
    for traversal in ["sub/../../x", "%252e%252e/top.txt"]:
        status, body = raw_request(tracking_uri, "GET", f"{proxy_path}/{traversal}")
        assert status == 400 and error_json(body)["message"] == "Invalid path", (traversal, body)
