"""Refusals as the official client sees them: MLflow's error codes, the HTTP
status behind them, and that a refused write changed nothing."""

import mlflow
import pytest
import requests
from mlflow.entities import Metric
from mlflow.exceptions import RestException

from support import expect_error, unique

MISSING_RUN = "0123456789abcdef0123456789abcdef"


def _status_of(url, **params):
    response = requests.get(url, params=params, timeout=30)
    return response.status_code, response.json().get("error_code")


def test_missing_resources_are_404(tracking_uri, client):
    for call, args in [
        (client.get_experiment, ("987654321",)),
        (client.get_run, (MISSING_RUN,)),
        (client.get_registered_model, (unique("nope"),)),
        (client.get_model_version, (unique("nope"), "1")),
        (client.delete_experiment, ("987654321",)),
    ]:
        error = expect_error("RESOURCE_DOES_NOT_EXIST", call, *args)
        assert isinstance(error, RestException)
        assert error.get_http_status_code() == 404
    assert client.get_experiment_by_name(unique("nope")) is None

    api = f"{tracking_uri}/api/2.0/mlflow"
    assert _status_of(f"{api}/experiments/get", experiment_id="987654321") == (404, "RESOURCE_DOES_NOT_EXIST")
    assert _status_of(f"{api}/runs/get", run_id=MISSING_RUN) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert _status_of(f"{api}/registered-models/get", name=unique("nope")) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert _status_of(f"{api}/experiments/get-by-name", experiment_name=unique("nope")) == (
        404, "RESOURCE_DOES_NOT_EXIST",
    )


def test_duplicates_are_refused(tracking_uri, client):
    name = unique("exp")
    experiment_id = client.create_experiment(name)
    error = expect_error("RESOURCE_ALREADY_EXISTS", client.create_experiment, name)
    assert error.get_http_status_code() == 400
    assert [e.experiment_id for e in client.search_experiments(filter_string=f"name = '{name}'")] == [experiment_id]

    model = unique("model")
    client.create_registered_model(model)
    expect_error("RESOURCE_ALREADY_EXISTS", client.create_registered_model, model)
    other = unique("model")
    client.create_registered_model(other)
    expect_error("RESOURCE_ALREADY_EXISTS", client.rename_registered_model, other, model)

    response = requests.post(f"{tracking_uri}/api/2.0/mlflow/experiments/create", json={"name": name}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"


def test_param_overwrite_is_refused_and_value_kept(tracking_uri, client):
    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again is fine
    expect_error("INVALID_PARAMETER_VALUE", client.log_param, run_id, "lr", "0.2")
    # In a batch, too, and the batch's other entries are not logged.
    expect_error(
        "INVALID_PARAMETER_VALUE", client.log_batch, run_id,
        metrics=[Metric("m", 1.0, 0, 0)], params=[mlflow.entities.Param("lr", "0.3")],
    )
    run = client.get_run(run_id)
    assert run.data.params == {"lr": "0.1"}
    assert run.data.metrics == {}


def test_writes_to_a_deleted_run_are_refused(tracking_uri, client):
    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "before", "1")
    client.delete_run(run_id)
    expect_error("INVALID_PARAMETER_VALUE", client.log_metric, run_id, "m", 1.0)
    expect_error("INVALID_PARAMETER_VALUE", client.log_param, run_id, "after", "1")
    expect_error("INVALID_PARAMETER_VALUE", client.set_tag, run_id, "t", "1")
    expect_error("INVALID_PARAMETER_VALUE", client.log_batch, run_id, metrics=[Metric("m", 1.0, 0, 0)])
    client.restore_run(run_id)
    run = client.get_run(run_id)
    assert run.data.metrics == {}
    assert run.data.params == {"before": "1"}
    assert "t" not in run.data.tags


@pytest.mark.parametrize(
    "key", ["a//b", "../up", "bad\nname", "/leading", ""],
    ids=["double-slash", "dot-dot", "newline", "leading-slash", "empty"],
)
def test_invalid_metric_names_are_refused(tracking_uri, client, key):
    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    expect_error("INVALID_PARAMETER_VALUE", client.log_metric, run_id, key, 1.0)
    assert client.get_run(run_id).data.metrics == {}


def test_overlong_param_key_and_value_are_refused(tracking_uri, client):
    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    expect_error("INVALID_PARAMETER_VALUE", client.log_param, run_id, "k" * 251, "v")
    expect_error("INVALID_PARAMETER_VALUE", client.log_param, run_id, "long", "v" * 6001)
    # The limits themselves are allowed.
    client.log_param(run_id, "k" * 250, "v")
    client.log_param(run_id, "long", "v" * 6000)
    assert client.get_run(run_id).data.params == {"k" * 250: "v", "long": "v" * 6000}


def test_batch_over_the_metric_limit_logs_nothing(tracking_uri, client):
    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    # The client splits big batches itself, so the request is sent raw.
    body = {
        "run_id": run_id,
        "metrics": [{"key": f"m{i}", "value": i, "timestamp": 0, "step": 0} for i in range(1001)],
        "params": [{"key": "p", "value": "1"}],
    }
    response = requests.post(f"{tracking_uri}/api/2.0/mlflow/runs/log-batch", json=body, timeout=60)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "at most 1000 metrics" in response.json()["message"]
    run = client.get_run(run_id)
    assert run.data.metrics == {}
    assert run.data.params == {}
    # Exactly 1000 entities is accepted.
    body["metrics"] = body["metrics"][:999]
    assert requests.post(f"{tracking_uri}/api/2.0/mlflow/runs/log-batch", json=body, timeout=60).status_code == 200
    run = client.get_run(run_id)
    assert len(run.data.metrics) == 999
    assert run.data.params == {"p": "1"}


def test_deleted_experiments_refuse_runs_and_keep_their_name(tracking_uri, client):
    name = unique("exp")
    experiment_id = client.create_experiment(name)
    client.delete_experiment(experiment_id)
    expect_error("INVALID_PARAMETER_VALUE", client.create_run, experiment_id)
    # A deleted experiment still holds its name until it is purged.
    expect_error("RESOURCE_ALREADY_EXISTS", client.create_experiment, name)
    assert client.search_runs([experiment_id], run_view_type=mlflow.entities.ViewType.ALL) == []


def test_duplicate_param_keys_in_a_batch_are_refused(tracking_uri, client):
    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    response = requests.post(
        f"{tracking_uri}/api/2.0/mlflow/runs/log-batch",
        json={"run_id": run_id, "params": [{"key": "p", "value": "1"}, {"key": "p", "value": "2"}],
              "metrics": [{"key": "m", "value": 1, "timestamp": 0, "step": 0}]},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    run = client.get_run(run_id)
    assert (run.data.params, run.data.metrics) == ({}, {})
