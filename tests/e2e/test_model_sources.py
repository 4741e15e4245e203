"""Model version sources are checked as `mlflow server` 3.17 checks them
(issue 18): local paths, relative segments however encoded, NUL, and
`runs:/`, `models:/` or `mlflow-artifacts` sources outside the run or
logged model the request names are refused with 400
INVALID_PARAMETER_VALUE, and nothing is created; valid sources pass."""

import pytest
import requests
from mlflow.exceptions import MlflowException

from support import unique


@pytest.fixture
def registry(client):
    experiment = client.create_experiment(unique("sources"))
    run = client.create_run(experiment).info.run_id
    other = client.create_run(experiment).info.run_id
    name = unique("model")
    client.create_registered_model(name)
    return client, experiment, run, other, name


def refused(client, name, source, **ids):
    with pytest.raises(MlflowException) as raised:
        client.create_model_version(name, source, **ids)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE", raised.value
    assert "Invalid model version source" in raised.value.message or "not a valid remote uri" in raised.value.message
    return raised.value.message


def test_invalid_sources_are_refused_and_nothing_is_created(registry, tracking_uri):
    client, experiment, run, other, name = registry
    artifacts = f"mlflow-artifacts:/{experiment}/{run}/artifacts"
    cases = [
        ("/tmp/model", {"run_id": run}),
        ("file:///etc", {"run_id": run}),
        ("model", {}),
        (f"{artifacts}/../../../../", {"run_id": run}),
        ("mlflow-artifacts://host/..%2f..%2f..%2fetc", {"run_id": run}),
        ("mlflow-artifacts://host/..%252f..%252fetc", {"run_id": run}),
        ("http://host/api/2.0/mlflow-artifacts/artifacts/x%00", {"run_id": run}),
        ("s3://bucket/a/../../b", {}),
        ("ftp://host/a/./b", {}),
        (f"runs:/{other}/model", {"run_id": run}),
        (f"runs:/{run}/model", {}),
        ("runs://host/x/model", {"run_id": run}),
        (f"{artifacts}/model", {}),
        (f"mlflow-artifacts:/{experiment}/{other}/artifacts/model", {"run_id": run}),
        ("models:/m-0123456789abcdef", {}),
        (f"runs:/{run}/model", {"model_id": "m-0123456789abcdef"}),
    ]
    for source, ids in cases:
        message = refused(client, name, source, **ids)
        assert source.split("%")[0][:10] in message or "remote uri" in message, (source, message)
    assert client.search_model_versions(f"name = '{name}'") == []


def test_valid_sources_pass(registry):
    client, experiment, run, _, name = registry
    for source, ids in [
        (f"runs:/{run}/model", {"run_id": run}),
        (f"mlflow-artifacts:/{experiment}/{run}/artifacts/model", {"run_id": run}),
        ("s3://bucket/models/m", {}),
        (f"models:/{name}/1", {}),
    ]:
        assert client.create_model_version(name, source, **ids).source == source
    assert len(client.search_model_versions(f"name = '{name}'")) == 4


def test_the_refusal_is_mlflows_over_raw_http(registry, tracking_uri):
    _, _, run, _, name = registry
    answer = requests.post(f"{tracking_uri}/api/2.0/mlflow/model-versions/create",
                           json={"name": name, "source": "/etc/passwd", "run_id": run})
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert answer.json()["message"].startswith("Invalid model version source: '/etc/passwd'. To use a local path")
