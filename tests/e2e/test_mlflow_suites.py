"""The behaviours MLflow's own REST suite `tests/tracking/test_rest_tracking.py`
pins for the classic tracking API (experiments, runs, metrics, params, tags,
inputs, outputs, artifacts, logged models and the UI's metric and dataset
endpoints), checked against a real `tandem server` with the official client
and raw HTTP. Each test's docstring names the MLflow test it corresponds to;
the tally of what matches and what differs on purpose is in README.md
("Differences from `mlflow server`")."""

import json
import math
import os
import subprocess
import time

import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag, ViewType
from mlflow.entities.logged_model_input import LoggedModelInput
from mlflow.entities.logged_model_output import LoggedModelOutput
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID, MLFLOW_USER

from cluster import free_port, wait_until
from conftest import _tandem_bin
from support import unique

TIMEOUT = 30


def post(base: str, path: str, body) -> requests.Response:
    return requests.post(f"{base}/api/2.0/mlflow/{path}", json=body, timeout=TIMEOUT)


def ajax_get(base: str, path: str, params) -> requests.Response:
    return requests.get(f"{base}/ajax-api/2.0/mlflow/{path}", params=params, timeout=TIMEOUT)


def refused(response: requests.Response, fragment: str, code: str = "INVALID_PARAMETER_VALUE") -> None:
    """A 400 in MLflow's error JSON whose raw text holds `fragment` (MLflow's
    suite matches the response text, JSON escapes included)."""
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == code, response.text
    assert fragment in response.text, response.text


def new_run(client: MlflowClient, prefix: str = "suite") -> str:
    experiment_id = client.create_experiment(unique(prefix))
    return client.create_run(experiment_id).info.run_id


# --- experiments -----------------------------------------------------------


def test_experiments_are_created_searched_deleted_and_paged(workspace_uri):
    """test_create_get_search_experiment"""
    client = MlflowClient(workspace_uri)
    experiment_id = client.create_experiment("My Experiment", tags={"key1": "val1", "key2": "val2"})
    experiment = client.get_experiment(experiment_id)
    assert experiment.name == "My Experiment"
    assert experiment.tags == {"key1": "val1", "key2": "val2"}

    names = lambda **kw: {e.name for e in client.search_experiments(**kw)}  # noqa: E731
    assert names() == {"My Experiment", "Default"}
    client.delete_experiment(experiment_id)
    assert names() == {"Default"}
    assert names(view_type=ViewType.ACTIVE_ONLY) == {"Default"}
    assert names(view_type=ViewType.DELETED_ONLY) == {"My Experiment"}
    assert names(view_type=ViewType.ALL) == {"My Experiment", "Default"}

    active = client.search_experiments(max_results=1)
    assert [e.name for e in active] == ["Default"] and active.token is None
    first = client.search_experiments(max_results=1, view_type=ViewType.ALL)
    second = client.search_experiments(max_results=1, view_type=ViewType.ALL, page_token=first.token)
    assert len(first) == len(second) == 1
    assert {first[0].name, second[0].name} == {"Default", "My Experiment"}


def test_experiment_create_validation_speaks_mlflow(tracking_uri):
    """test_create_experiment_validation"""
    refused(post(tracking_uri, "experiments/create", {"name": 123}), "Invalid value 123 for parameter 'name'")
    refused(post(tracking_uri, "experiments/create", {}), "Missing value for required parameter 'name'.")
    refused(post(tracking_uri, "experiments/create",
                 {"name": unique("x"), "artifact_location": 9.0, "tags": [{"key": "key", "value": "value"}]}),
            "Invalid value 9.0 for parameter 'artifact_location'")
    refused(post(tracking_uri, "experiments/create", {"name": unique("x"), "tags": "5"}),
            "Invalid value \\\"5\\\" for parameter 'tags'")


def test_experiments_delete_restore_rename_and_get(client):
    """test_delete_restore_experiment, test_rename_experiment, test_get_experiment,
    test_get_experiment_by_name"""
    name = unique("Deleterious")
    experiment_id = client.create_experiment(name)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"

    new_name = unique("GoodName")
    client.rename_experiment(experiment_id, new_name)
    assert client.get_experiment(experiment_id).name == new_name
    found = client.get_experiment_by_name(new_name)
    assert (found.experiment_id, found.name) == (experiment_id, new_name)
    assert client.get_experiment_by_name(unique("idontexist")) is None


def test_experiment_search_filters_orders_and_pages(workspace_uri):
    """test_search_experiments"""
    client = MlflowClient(workspace_uri)
    assert client.search_experiments()[0].name == "Default"
    ids = []
    for name, tags in [("a", {"key": "value"}), ("ab", {"key": "vaLue"}), ("Abc", None)]:
        time.sleep(0.002)
        ids.append(client.create_experiment(name, tags=tags))

    names = lambda **kw: [e.name for e in client.search_experiments(**kw)]  # noqa: E731
    assert names(filter_string="attribute.name = 'a'") == ["a"]
    assert names(filter_string="attribute.name != 'a'") == ["Abc", "ab", "Default"]
    assert names(filter_string="name LIKE 'a%'") == ["ab", "a"]
    assert names(filter_string="tag.key = 'value'") == ["a"]
    assert names(filter_string="tag.key != 'value'") == ["ab"]
    assert names(filter_string="tag.key ILIKE '%alu%'") == ["ab", "a"]
    assert names(order_by=["name DESC"]) == ["ab", "a", "Default", "Abc"]

    page = client.search_experiments(max_results=2)
    assert [e.name for e in page] == ["Abc", "ab"]
    assert names(page_token=page.token) == ["a", "Default"]

    time.sleep(0.002)
    client.delete_experiment(ids[1])
    assert names(view_type=ViewType.ACTIVE_ONLY) == ["Abc", "a", "Default"]
    assert names(view_type=ViewType.DELETED_ONLY) == ["ab"]
    assert names(view_type=ViewType.ALL) == ["Abc", "ab", "a", "Default"]


def test_experiment_tags_set_overwrite_multiline_empty_and_delete(client):
    """test_set_experiment_tag, test_set_experiment_tag_with_empty_string_as_value,
    test_delete_experiment_tag"""
    first = client.create_experiment(unique("SetExperimentTagTest"))
    client.set_experiment_tag(first, "dataset", "imagenet1K")
    assert client.get_experiment(first).tags["dataset"] == "imagenet1K"
    client.set_experiment_tag(first, "dataset", "birdbike")
    second = client.create_experiment(unique("SetExperimentTagTest2"))
    assert client.get_experiment(second).tags == {}
    client.set_experiment_tag(second, "dataset", "birds200")
    assert client.get_experiment(first).tags["dataset"] == "birdbike"
    assert client.get_experiment(second).tags["dataset"] == "birds200"
    client.set_experiment_tag(first, "multiline tag", "value2\nvalue2\nvalue2")
    assert client.get_experiment(first).tags["multiline tag"] == "value2\nvalue2\nvalue2"
    client.set_experiment_tag(first, "tag_key", "")
    assert client.get_experiment(first).tags["tag_key"] == ""
    client.delete_experiment_tag(first, "dataset")
    assert "dataset" not in client.get_experiment(first).tags


# --- runs ------------------------------------------------------------------


@pytest.mark.parametrize("parent", [None, "my-parent-id"])
def test_a_run_keeps_every_argument_it_was_created_with(client, parent):
    """test_create_run_all_args"""
    experiment_id = client.create_experiment(unique("Run A Lot"))
    tags = {MLFLOW_USER: "username", "mlflow.source.type": "LOCAL", "mlflow.source.name": "Hello",
            "mlflow.project.entryPoint": "entry", "mlflow.source.git.commit": "abc",
            MLFLOW_PARENT_RUN_ID: parent or "7", "my": "tag", "other": "tag"}
    created = client.create_run(experiment_id, start_time=456, run_name="my name", tags=tags)
    fetched = client.get_run(created.info.run_id)
    for run in (created, fetched):
        assert run.info.experiment_id == experiment_id
        assert run.info.user_id == "username"
        assert run.info.start_time == 456
        assert run.info.run_name == "my name"
        assert tags.items() <= run.data.tags.items()
        assert [r.info for r in client.search_runs([experiment_id])] == [run.info]


def test_a_run_without_user_belongs_to_unknown(client):
    """test_create_run_defaults"""
    experiment_id = client.create_experiment(unique("Run A Little"))
    run = client.get_run(client.create_run(experiment_id).info.run_id)
    assert run.info.experiment_id == experiment_id
    assert run.info.user_id == "unknown"


def test_metrics_params_and_tags_round_trip(client):
    """test_log_metrics_params_tags, test_log_param_with_empty_string_as_value,
    test_set_tag_with_empty_string_as_value, test_log_batch,
    test_log_batch_containing_params_and_tags_with_empty_string_values"""
    run_id = new_run(client, "Oh My")
    client.log_metric(run_id, key="metric", value=123.456, timestamp=789, step=2)
    client.log_metric(run_id, key="nan_metric", value=float("nan"))
    client.log_metric(run_id, key="inf_metric", value=float("inf"))
    client.log_metric(run_id, key="-inf_metric", value=-float("inf"))
    client.log_metric(run_id, key="stepless-metric", value=987.654, timestamp=321)
    client.log_param(run_id, "param", "value")
    client.log_param(run_id, "empty_param", "")
    client.set_tag(run_id, "taggity", "do-dah")
    client.set_tag(run_id, "empty_tag", "")
    client.log_batch(run_id, metrics=[Metric("batched", 1.5, 790, 3)],
                     params=[Param("batch_param", "")], tags=[RunTag("batch_tag", "")])
    data = client.get_run(run_id).data
    assert data.metrics["metric"] == 123.456
    assert math.isnan(data.metrics["nan_metric"])
    assert data.metrics["inf_metric"] >= 1.7976931348623157e308
    assert data.metrics["-inf_metric"] <= -1.7976931348623157e308
    assert data.params == {"param": "value", "empty_param": "", "batch_param": ""}
    assert {"taggity": "do-dah", "empty_tag": "", "batch_tag": ""}.items() <= data.tags.items()

    [m] = client.get_metric_history(run_id, "metric")
    assert (m.key, m.value, m.timestamp, m.step) == ("metric", 123.456, 789, 2)
    [m] = client.get_metric_history(run_id, "stepless-metric")
    assert (m.value, m.timestamp, m.step) == (987.654, 321, 0)
    [m] = client.get_metric_history(run_id, "batched")
    assert (m.value, m.timestamp, m.step) == (1.5, 790, 3)
    assert client.get_metric_history(run_id, "a_test_accuracy") == []


def test_log_metric_validation_speaks_mlflow(client, tracking_uri):
    """test_log_metric_validation"""
    run_id = new_run(client)
    base = {"run_id": run_id, "key": "foo", "value": 31, "timestamp": 59, "step": 41}
    cases = [
        ({"run_id": 31}, "Invalid value 31 for parameter 'run_id' supplied"),
        ({"key": 31}, "Invalid value 31 for parameter 'key' supplied"),
        ({"step": "foo"}, "Invalid value \\\"foo\\\" for parameter 'step' supplied"),
        ({"timestamp": "foo"}, "Invalid value \\\"foo\\\" for parameter 'timestamp' supplied"),
        ({"run_id": None}, "Missing value for required parameter 'run_id'"),
        ({"key": None}, "Missing value for required parameter 'key'"),
    ]
    for change, message in cases:
        refused(post(tracking_uri, "runs/log-metric", {**base, **change}), message)
    missing_key = {k: v for k, v in base.items() if k != "key"}
    refused(post(tracking_uri, "runs/log-metric", missing_key), "Missing value for required parameter 'key'")


def test_a_metric_logged_for_a_model_shows_on_the_model(client):
    """test_log_metric_model"""
    experiment_id = client.create_experiment(unique("metrics model"))
    run = client.create_run(experiment_id)
    model = client.create_logged_model(experiment_id)
    client.log_metric(run.info.run_id, key="metric", value=0.5, timestamp=123456789, step=1,
                      dataset_name="name", dataset_digest="digest", model_id=model.model_id)
    assert client.get_logged_model(model.model_id).metrics == [
        Metric(key="metric", value=0.5, timestamp=123456789, step=1, model_id=model.model_id,
               dataset_name="name", dataset_digest="digest", run_id=run.info.run_id)
    ]


def test_log_param_and_set_tag_validation_speak_mlflow(client, tracking_uri):
    """test_log_param_validation, test_set_tag_validation"""
    run_id = new_run(client)
    refused(post(tracking_uri, "runs/log-parameter", {"run_id": 31, "key": "param", "value": 41}),
            "Invalid value 31 for parameter 'run_id' supplied")
    refused(post(tracking_uri, "runs/log-parameter", {"run_id": run_id, "key": 31, "value": 41}),
            "Invalid value 31 for parameter 'key' supplied")
    refused(post(tracking_uri, "runs/set-tag", {"run_id": 31, "key": "tag", "value": 41}),
            "Invalid value 31 for parameter 'run_id' supplied")
    refused(post(tracking_uri, "runs/set-tag", {"run_id": run_id, "key": "param", "value": 41}),
            "Invalid value 41 for parameter 'value' supplied")
    refused(post(tracking_uri, "runs/set-tag", {"run_id": run_id, "value": "value"}),
            "Missing value for required parameter 'key'")
    # The run's older name for its id is accepted.
    ok = post(tracking_uri, "runs/set-tag", {"run_uuid": run_id, "key": "key", "value": "value"})
    assert ok.status_code == 200, ok.text
    assert client.get_run(run_id).data.tags["key"] == "value"


def test_deleting_a_run_tag_and_its_refusals(client):
    """test_delete_tag"""
    run_id = new_run(client, "DeleteTagExperiment")
    client.set_tag(run_id, "taggity", "do-dah")
    client.delete_tag(run_id, "taggity")
    assert "taggity" not in client.get_run(run_id).data.tags
    with pytest.raises(MlflowException, match=r"Run .+ not found"):
        client.delete_tag("fake_run_id", "taggity")
    with pytest.raises(MlflowException, match="No tag with name: fakeTag"):
        client.delete_tag(run_id, "fakeTag")
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match=f"The run {run_id} must be in"):
        client.delete_tag(run_id, "taggity")


def test_log_batch_validation_speaks_mlflow(client, tracking_uri):
    """test_log_batch_validation"""
    run_id = new_run(client)
    for parameter in ["metrics", "params", "tags"]:
        refused(post(tracking_uri, "runs/log-batch", {"run_id": run_id, parameter: "foo"}),
                f"Invalid value \\\"foo\\\" for parameter '{parameter}' supplied")
    refused(post(tracking_uri, "runs/log-batch", {"run_id": run_id, "metrics": [{"key": "mae", "value": 2.5}]}),
            "Missing value for required parameter 'metrics[0].timestamp'")
    ok = post(tracking_uri, "runs/log-batch",
              {"run_id": run_id, "metrics": [{"key": "mae", "value": 2.5, "timestamp": 123456789}]})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("status", [None, "FAILED"])
def test_terminating_a_run_sets_status_and_end_time(client, status):
    """test_set_terminated_defaults, test_set_terminated_status"""
    run_id = new_run(client, "Terminator")
    assert client.get_run(run_id).info.status == "RUNNING"
    assert client.get_run(run_id).info.end_time is None
    if status:
        client.set_terminated(run_id, status)
    else:
        client.set_terminated(run_id)
    info = client.get_run(run_id).info
    assert info.status == (status or "FINISHED")
    assert info.end_time <= int(time.time() * 1000)


def test_renaming_a_finished_run_keeps_its_status(client):
    """test_update_run_name_without_changing_status"""
    run_id = new_run(client, "update run name")
    client.set_terminated(run_id, "FINISHED")
    client.update_run(run_id, name="name_abc")
    info = client.get_run(run_id).info
    assert (info.run_name, info.status) == ("name_abc", "FINISHED")


def test_run_search_pages_in_run_id_order_when_start_times_tie(client):
    """test_search_pagination"""
    experiment_id = client.create_experiment(unique("search_pagination"))
    runs = sorted(client.create_run(experiment_id, start_time=1).info.run_id for _ in range(10))
    page = client.search_runs([experiment_id], max_results=4)
    assert [r.info.run_id for r in page] == runs[0:4] and page.token is not None
    page = client.search_runs([experiment_id], max_results=4, page_token=page.token)
    assert [r.info.run_id for r in page] == runs[4:8] and page.token is not None
    page = client.search_runs([experiment_id], max_results=4, page_token=page.token)
    assert [r.info.run_id for r in page] == runs[8:] and page.token is None


def test_run_search_refuses_a_huge_max_results(client):
    """test_search_validation"""
    experiment_id = client.create_experiment(unique("search_validation"))
    with pytest.raises(MlflowException, match=r"Invalid value 123456789 for parameter 'max_results' supplied"):
        client.search_runs([experiment_id], max_results=123456789)


# --- artifacts -------------------------------------------------------------


def test_run_artifacts_list_and_download(client, tmp_path):
    """test_artifacts (through Tandem's artifact proxy)"""
    experiment_id = client.create_experiment(unique("Art In Fact"))
    run_id = client.create_run(experiment_id).info.run_id
    source = tmp_path / "src"
    source.mkdir()
    (source / "my.file").write_text("Hello, World!")
    client.log_artifact(run_id, str(source / "my.file"), None)
    client.log_artifacts(run_id, str(source), "dir")
    assert {a.path for a in client.list_artifacts(run_id)} == {"my.file", "dir"}
    assert {a.path for a in client.list_artifacts(run_id, "dir")} == {"dir/my.file"}
    everything = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=".",
                                                     dst_path=str(tmp_path / "all"))
    assert open(f"{everything}/my.file").read() == "Hello, World!"
    assert open(f"{everything}/dir/my.file").read() == "Hello, World!"
    directory = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="dir",
                                                    dst_path=str(tmp_path / "dir"))
    assert open(f"{directory}/my.file").read() == "Hello, World!"


def test_artifact_paths_that_climb_are_refused(client, tracking_uri):
    """test_path_validation (the suite's `//model-versions/...` is answered 404:
    Tandem does not merge doubled slashes, see README)"""
    run_id = new_run(client)
    invalid = {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"}
    for response in [
        requests.get(f"{tracking_uri}/api/2.0/mlflow/artifacts/list",
                     params={"run_id": run_id, "path": "../path"}, timeout=TIMEOUT),
        requests.get(f"{tracking_uri}/get-artifact", params={"run_id": run_id, "path": "../path"},
                     timeout=TIMEOUT),
        requests.get(f"{tracking_uri}/model-versions/get-artifact",
                     params={"name": "model", "version": 1, "path": "../path"}, timeout=TIMEOUT),
    ]:
        assert (response.status_code, response.json()) == (400, invalid), response.url


# --- metric history (the UI's endpoints) ------------------------------------

HISTORY_A = [
    {"key": "metricA", "timestamp": 1, "step": 2, "value": 10.0},
    {"key": "metricA", "timestamp": 1, "step": 3, "value": 11.0},
    {"key": "metricA", "timestamp": 1, "step": 3, "value": 12.0},
    {"key": "metricA", "timestamp": 2, "step": 3, "value": 12.0},
]
HISTORY_B = [
    {"key": "metricB", "timestamp": 7, "step": -2, "value": -100.0},
    {"key": "metricB", "timestamp": 8, "step": 0, "value": 0.0},
    {"key": "metricB", "timestamp": 8, "step": 0, "value": 1.0},
    {"key": "metricB", "timestamp": 9, "step": 1, "value": 12.0},
]


def test_bulk_metric_history_refuses_bad_requests(tracking_uri):
    """test_get_metric_history_bulk_rejects_invalid_requests"""
    for params, message in [
        ({"metric_key": "key"}, "GetMetricHistoryBulk request must specify at least one run_id"),
        ({"run_id": [], "metric_key": "key"}, "GetMetricHistoryBulk request must specify at least one run_id"),
        ({"run_id": [f"id_{i}" for i in range(1000)], "metric_key": "key"},
         "GetMetricHistoryBulk request cannot specify more than"),
        ({"run_id": ["123"]}, "GetMetricHistoryBulk request must specify a metric_key"),
    ]:
        refused(ajax_get(tracking_uri, "metrics/get-history-bulk", params), message)


def test_bulk_metric_history_answers_in_order_and_within_max_results(client, tracking_uri):
    """test_get_metric_history_bulk_returns_expected_metrics_in_expected_order,
    test_get_metric_history_bulk_respects_max_results"""
    experiment_id = client.create_experiment(unique("bulk"))
    run1, run2, run3 = (client.create_run(experiment_id).info.run_id for _ in range(3))
    for metric in HISTORY_A + HISTORY_B:
        client.log_metric(run1, **metric)
        client.log_metric(run2, **{**metric, "value": metric["value"] + 1.0})

    def bulk(run_ids, key, **extra):
        response = ajax_get(tracking_uri, "metrics/get-history-bulk", {"run_id": run_ids, "metric_key": key, **extra})
        assert response.status_code == 200, response.text
        return response.json().get("metrics")

    of = lambda history, run, bump=0.0: [{**m, "run_id": run, "value": m["value"] + bump} for m in history]  # noqa: E731
    assert bulk([run1], "metricA") == of(HISTORY_A, run1)
    assert bulk([run2], "metricB") == of(HISTORY_B, run2, 1.0)
    assert bulk([run1, run2], "metricA") == sorted(of(HISTORY_A, run1) + of(HISTORY_A, run2, 1.0),
                                                   key=lambda m: m["run_id"])
    assert bulk([run1, run2, run3], "metricB") == sorted(of(HISTORY_B, run1) + of(HISTORY_B, run2, 1.0),
                                                         key=lambda m: m["run_id"])
    assert bulk([run1], "metricA", max_results=2) == of(HISTORY_A, run1)[:2]


def test_metric_history_pages_with_max_results_and_tokens(client, tracking_uri):
    """test_get_metric_history_respects_max_results, test_get_metric_history_with_page_token"""
    run_id = new_run(client, "history pages")
    for i in range(10):
        client.log_metric(run_id, "test_metric", float(i), step=i, timestamp=1000 + i)
    assert len(client.get_metric_history(run_id, "test_metric")) == 10

    def page(**params):
        response = ajax_get(tracking_uri, "metrics/get-history",
                            {"run_id": run_id, "metric_key": "test_metric", **params})
        assert response.status_code == 200, response.text
        return response.json()

    assert [m["step"] for m in page(max_results=3)["metrics"]] == [0, 1, 2]
    pages, token = [], None
    while True:
        answer = page(max_results=4, **({"page_token": token} if token else {}))
        pages.append(answer["metrics"])
        token = answer.get("next_page_token")
        if not token:
            break
    assert [len(p) for p in pages] == [4, 4, 2]
    assert [(m["step"], m["timestamp"], m["value"]) for p in pages for m in p] == [
        (i, 1000 + i, float(i)) for i in range(10)
    ]
    refused(ajax_get(tracking_uri, "metrics/get-history",
                     {"run_id": run_id, "metric_key": "test_metric", "page_token": "invalid_token"}), "")


def test_sampled_metric_history_refuses_bad_requests(tracking_uri):
    """test_get_metric_history_bulk_interval_rejects_invalid_requests"""
    for params, message in [
        ({"metric_key": "key"}, "Missing value for required parameter 'run_ids'."),
        ({"run_ids": [], "metric_key": "key"}, "Missing value for required parameter 'run_ids'."),
        ({"run_ids": [f"id_{i}" for i in range(1000)], "metric_key": "key"},
         "GetMetricHistoryBulkInterval request must specify at most 100 run_ids."),
        ({"run_ids": ["123"], "metric_key": "key", "max_results": 0}, "max_results must be between 1 and 2500"),
        ({"run_ids": ["123"], "metric_key": ""}, "Missing value for required parameter 'metric_key'"),
        ({"run_ids": ["123"], "max_results": 5}, "Missing value for required parameter 'metric_key'"),
        ({"run_ids": ["123"], "metric_key": "key", "start_step": 1, "end_step": 0, "max_results": 5},
         "end_step must be greater than start_step. "),
        ({"run_ids": ["123"], "metric_key": "key", "start_step": 1, "max_results": 5},
         "If either start step or end step are specified, both must be specified."),
    ]:
        refused(ajax_get(tracking_uri, "metrics/get-history-bulk-interval", params), message)


def test_sampled_metric_history_takes_each_buckets_first_row_and_the_last(client, tracking_uri):
    """test_get_metric_history_bulk_interval_respects_max_results, as `mlflow server`
    3.17.2 answers it: each run's rows (ordered by step, timestamp, value) cut
    into `max_results` NTILE buckets, the first row of each, the run's last row
    in place of the last one (the suite's older expectations sampled steps)."""
    experiment_id = client.create_experiment(unique("interval"))
    run1 = client.create_run(experiment_id).info.run_id
    for i in range(10):
        client.log_metric(run1, "metricA", 10.0, timestamp=1, step=i)

    def sampled(run_ids, **extra):
        response = ajax_get(tracking_uri, "metrics/get-history-bulk-interval",
                            {"run_ids": run_ids, "metric_key": "metricA", "max_results": 5, **extra})
        assert response.status_code == 200, response.text
        return [(m["run_id"], m["step"], m["timestamp"]) for m in response.json().get("metrics")]

    at = lambda run, points: [(run, step, timestamp) for step, timestamp in points]  # noqa: E731
    assert sampled([run1]) == at(run1, [(0, 1), (2, 1), (4, 1), (6, 1), (9, 1)])
    assert sampled([run1], start_step=0, end_step=4) == at(run1, [(i, 1) for i in range(5)])

    run2 = client.create_run(experiment_id).info.run_id
    for i in range(20):
        client.log_metric(run2, "metricA", 10.0, timestamp=1, step=i)
    assert sampled([run1, run2]) == at(run1, [(0, 1), (2, 1), (4, 1), (6, 1), (9, 1)]) + at(
        run2, [(0, 1), (4, 1), (8, 1), (12, 1), (19, 1)])

    for i in range(10):
        client.log_metric(run1, "metricA", 10.0, timestamp=2, step=i)
    assert sampled([run1]) == at(run1, [(0, 1), (2, 1), (4, 1), (6, 1), (9, 2)])


# --- datasets and inputs ------------------------------------------------------


def test_dataset_search_refuses_bad_requests(tracking_uri):
    """test_search_dataset_handler_rejects_invalid_requests"""
    url = f"{tracking_uri}/ajax-api/2.0/mlflow/experiments/search-datasets"
    for body, message in [
        ({}, "SearchDatasets request must specify at least one experiment_id."),
        ({"experiment_ids": []}, "SearchDatasets request must specify at least one experiment_id."),
        ({"experiment_ids": [f"id_{i}" for i in range(1000)]}, "SearchDatasets request cannot specify more than"),
    ]:
        refused(requests.post(url, json=body, timeout=TIMEOUT), message)


def test_dataset_search_summarizes_logged_inputs(client, tracking_uri):
    """test_search_dataset_handler_returns_expected_results"""
    experiment_id = client.create_experiment(unique("log inputs"))
    run_id = client.create_run(experiment_id).info.run_id
    dataset = Dataset(name="name1", digest="digest1", source_type="source_type1", source="source1")
    client.log_inputs(run_id, [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, "training")])])
    response = requests.post(f"{tracking_uri}/ajax-api/2.0/mlflow/experiments/search-datasets",
                             json={"experiment_ids": [experiment_id]}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json().get("dataset_summaries") == [
        {"experiment_id": experiment_id, "name": "name1", "digest": "digest1", "context": "training"}
    ]


def test_a_pandas_dataset_input_keeps_its_schema_profile_and_tags(client, tmp_path):
    """test_log_input"""
    frame = pd.DataFrame([[1, 2, 3], [1, 2, 3]], columns=["a", "b", "c"])
    path = tmp_path / "temp.csv"
    frame.to_csv(path)
    mlflow.set_experiment(unique("log input"))
    with mlflow.start_run() as run:
        mlflow.log_input(from_pandas(frame, source=path), "train", {"foo": "baz"})
    [logged] = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest, logged.dataset.source_type) == ("dataset", "f0f3e026", "local")
    assert json.loads(logged.dataset.source) == {"uri": str(path)}
    assert json.loads(logged.dataset.schema) == {"mlflow_colspec": [
        {"name": c, "type": "long", "required": True} for c in "abc"]}
    assert json.loads(logged.dataset.profile) == {"num_rows": 2, "num_elements": 6}
    assert [(t.key, t.value) for t in logged.tags] == [("foo", "baz"), (MLFLOW_DATASET_CONTEXT, "train")]


def test_run_inputs_datasets_and_models(client, tracking_uri):
    """test_log_inputs, test_log_inputs_validation, test_log_inputs_model"""
    experiment_id = client.create_experiment(unique("log inputs"))
    run_id = client.create_run(experiment_id).info.run_id
    dataset = Dataset(name="name1", digest="digest1", source_type="source_type1", source="source1")
    client.log_inputs(run_id, [DatasetInput(dataset=dataset, tags=[InputTag(key="tag1", value="value1")])])
    [logged] = client.get_run(run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest, logged.dataset.source_type, logged.dataset.source) == (
        "name1", "digest1", "source_type1", "source1")
    assert [(t.key, t.value) for t in logged.tags] == [("tag1", "value1")]

    datasets = [{"dataset": {"name": "n", "digest": "d", "source_type": "s", "source": "x"}, "tags": []}]
    refused(post(tracking_uri, "runs/log-inputs", {"datasets": datasets}),
            "Missing value for required parameter 'run_id'")

    model = client.create_logged_model(experiment_id=experiment_id)
    client.log_inputs(run_id, models=[LoggedModelInput(model_id=model.model_id)], datasets=[
        DatasetInput(dataset=dataset, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value="training")])])
    assert len(client.get_run(run_id).inputs.model_inputs) == 1


# --- logged models -----------------------------------------------------------


def test_logged_models_are_created_with_what_they_were_given(client):
    """test_create_logged_model, test_log_logged_model_params"""
    exp_id = client.create_experiment(unique("create_logged_model"))
    model = client.create_logged_model(exp_id)
    assert client.get_logged_model(model.model_id).model_id == model.model_id
    assert client.get_logged_model(client.create_logged_model(exp_id, name="my_model").model_id).name == "my_model"
    assert client.get_logged_model(client.create_logged_model(exp_id, model_type="LLM").model_id).model_type == "LLM"
    assert client.get_logged_model(
        client.create_logged_model(exp_id, params={"param": "value"}).model_id).params == {"param": "value"}
    assert client.get_logged_model(
        client.create_logged_model(exp_id, tags={"tag": "value"}).model_id).tags == {"tag": "value"}
    client.log_model_params(model.model_id, {"param": "value"})
    assert client.get_logged_model(model.model_id).params == {"param": "value"}


def test_logged_models_finalize_delete_and_tags(client):
    """test_finalize_logged_model, test_delete_logged_model, test_set_logged_model_tags,
    test_delete_logged_model_tag"""
    exp_id = client.create_experiment(unique("logged model"))
    model = client.create_logged_model(exp_id)
    assert client.finalize_logged_model(model.model_id, LoggedModelStatus.READY).status == LoggedModelStatus.READY
    assert client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED).status == LoggedModelStatus.FAILED

    client.set_logged_model_tags(model.model_id, {"tag1": "value1", "tag2": "value2"})
    assert client.get_logged_model(model.model_id).tags == {"tag1": "value1", "tag2": "value2"}
    client.set_logged_model_tags(model.model_id, {"tag1": "value3"})
    assert client.get_logged_model(model.model_id).tags == {"tag1": "value3", "tag2": "value2"}
    client.delete_logged_model_tag(model.model_id, "tag1")
    assert client.get_logged_model(model.model_id).tags == {"tag2": "value2"}
    with pytest.raises(MlflowException, match="No tag with key"):
        client.delete_logged_model_tag(model.model_id, "tag1")

    client.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException, match="not found"):
        client.get_logged_model(model.model_id)
    assert len(client.search_logged_models(experiment_ids=[exp_id])) == 0


def test_logged_model_search_pages_filters_and_orders(client):
    """test_search_logged_models"""
    exp_id = client.create_experiment(unique("search logged models"))
    model_1 = client.create_logged_model(exp_id)
    time.sleep(0.002)
    assert [m.name for m in client.search_logged_models(experiment_ids=[exp_id])] == [model_1.name]
    model_2 = client.create_logged_model(exp_id)
    page_1 = client.search_logged_models(experiment_ids=[exp_id], max_results=1)
    assert [m.name for m in page_1] == [model_2.name] and page_1.token is not None
    page_2 = client.search_logged_models(experiment_ids=[exp_id], max_results=1, page_token=page_1.token)
    assert [m.name for m in page_2] == [model_1.name] and page_2.token is None
    assert [m.name for m in client.search_logged_models(
        experiment_ids=[exp_id], filter_string=f"name = {model_1.name!r}")] == [model_1.name]

    run_id = client.create_run(exp_id).info.run_id
    client.log_metric(run_id, key="metric", value=1, dataset_name="dataset", dataset_digest="123",
                      model_id=model_1.model_id)
    assert [m.name for m in client.search_logged_models(
        experiment_ids=[exp_id], datasets=[{"dataset_name": "dataset", "dataset_digest": "123"}])] == [model_1.name]
    assert [m.name for m in client.search_logged_models(
        experiment_ids=[exp_id], order_by=[{"field_name": "creation_timestamp", "ascending": False}])] == [
        model_2.name, model_1.name]


def test_run_outputs_name_logged_models(client):
    """test_log_outputs"""
    exp_id = client.create_experiment(unique("log_outputs"))
    run_id = client.create_run(experiment_id=exp_id).info.run_id
    model = client.create_logged_model(experiment_id=exp_id)
    outputs = [LoggedModelOutput(model.model_id, 1)]
    client.log_outputs(run_id, outputs)
    assert client.get_run(run_id).outputs.model_outputs == outputs


def test_a_logged_models_files_are_listed_and_served_to_the_ui(tracking_uri):
    """test_list_logged_model_artifacts, test_get_logged_model_artifact"""

    class Model(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    mlflow.set_experiment(unique("logged model files"))
    info = mlflow.pyfunc.log_model(name="model", python_model=Model())
    base = f"{tracking_uri}/ajax-api/2.0/mlflow/logged-models/{info.model_id}/artifacts"
    listing = requests.get(f"{base}/directories", timeout=TIMEOUT)
    assert listing.status_code == 200, listing.text
    assert "MLmodel" in [f["path"] for f in listing.json()["files"]]
    file = requests.get(f"{base}/files", params={"artifact_file_path": "MLmodel"}, timeout=TIMEOUT)
    assert file.status_code == 200, file.text
    assert info.model_id in file.text


# --- the UI's upload and GraphQL ----------------------------------------------


def test_the_uis_upload_refuses_bad_requests_in_mlflows_order(client, tracking_uri):
    """test_upload_artifact_handler_rejects_invalid_requests"""
    run_id = new_run(client, "upload_artifacts_test")
    url = f"{tracking_uri}/ajax-api/2.0/mlflow/upload-artifact"
    for params, message in [
        ({}, "Request must specify run_uuid."),
        ({"run_uuid": run_id}, "Request must specify path."),
        ({"run_uuid": run_id, "path": ""}, "Request must specify path."),
        ({"run_uuid": run_id, "path": "../test.txt"}, "Invalid path"),
        ({"run_uuid": run_id, "path": "test.txt"}, "Request must specify data."),
    ]:
        refused(requests.post(url, params=params, timeout=TIMEOUT), message)
    assert client.list_artifacts(run_id) == []


def test_the_uis_upload_stores_a_file_the_run_then_serves(client, tracking_uri):
    """test_upload_artifact_handler"""
    run_id = new_run(client, "upload_artifacts_test")
    response = requests.post(f"{tracking_uri}/ajax-api/2.0/mlflow/upload-artifact",
                             params={"run_uuid": run_id, "path": "dir/test.txt"}, data="hello world",
                             timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    served = requests.get(f"{tracking_uri}/get-artifact", params={"run_uuid": run_id, "path": "dir/test.txt"},
                          timeout=TIMEOUT)
    assert (served.status_code, served.text) == (200, "hello world")
    assert [(a.path, a.file_size) for a in client.list_artifacts(run_id, "dir")] == [("dir/test.txt", 11)]


def graphql(tracking_uri: str, query: str) -> dict:
    response = requests.post(f"{tracking_uri}/graphql", json={"query": query, "operationName": "testQuery"},
                             headers={"content-type": "application/json; charset=utf-8"}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def test_graphql_answers_the_test_field_and_bounds_queries(tracking_uri):
    """test_graphql_handler, test_graphql_handler_batching_raise_error"""
    assert graphql(tracking_uri, 'query testQuery {test(inputString: "abc") { output }}')["data"] == {
        "test": {"output": "abc"}}
    roots = " ".join(f'key_{i}: test(inputString: "abc") {{ output }}' for i in range(12))
    assert "GraphQL queries should have at most 10" in graphql(tracking_uri, f"query testQuery {{{roots}}}")["errors"][0]
    aliases = " ".join(f"experiment_{i}: experiment {{ name }}" for i in range(12))
    answer = graphql(tracking_uri, f'query testQuery {{mlflowGetExperiment(input: {{experimentId: "123"}}) {{{aliases}}}}}')
    assert "queries should have at most 10 aliases" in answer["errors"][0]
    inner = "name"
    for _ in range(12):
        inner = f"name {{ {inner} }}"
    answer = graphql(tracking_uri, 'query testQuery { mlflowGetExperiment(input: {experimentId: "123"}) '
                                   f"{{ experiment {{ {inner} }} }} }}")
    assert "Query exceeds maximum depth of 10" in answer["errors"][0]
    selections = " ".join(f"field_{i} {{ name }}" for i in range(1002))
    answer = graphql(tracking_uri, 'query testQuery { mlflowGetExperiment(input: {experimentId: "123"}) '
                                   f"{{ experiment {{ {selections} }} }} }}")
    assert "Query exceeds maximum total selections of 1000" in answer["errors"][0]


def test_graphql_reads_experiments_runs_and_their_model_versions(client, tracking_uri):
    """test_get_experiment_graphql, test_get_run_and_experiment_graphql, test_search_runs_graphql"""
    name = unique("GraphqlTest")
    client.create_registered_model(name)
    experiment_id = client.create_experiment(name)
    answer = graphql(tracking_uri, f'query testQuery {{mlflowGetExperiment(input: {{experimentId: "{experiment_id}"}})'
                                   " { experiment { name } }}")
    assert answer["data"]["mlflowGetExperiment"]["experiment"]["name"] == name
    run_1 = client.create_run(experiment_id)
    run_2 = client.create_run(experiment_id)
    client.create_model_version(name, f"runs:/{run_2.info.run_id}/model", run_2.info.run_id)
    answer = graphql(tracking_uri, f'''query testQuery @component(name: "Test") {{
        mlflowGetRun(input: {{runId: "{run_2.info.run_id}"}}) {{
            run {{ info {{ status }} experiment {{ name }} modelVersions {{ name }} }} }} }}''')
    assert answer["errors"] is None
    run = answer["data"]["mlflowGetRun"]["run"]
    assert (run["info"]["status"], run["experiment"]["name"], run["modelVersions"][0]["name"]) == (
        run_2.info.status, name, name)
    answer = graphql(tracking_uri, f'''mutation testQuery {{
        mlflowSearchRuns(input: {{ experimentIds: ["{experiment_id}"] }}) {{ runs {{ info {{ runId }} }} }} }}''')
    assert answer["data"]["mlflowSearchRuns"]["runs"] == [
        {"info": {"runId": run_2.info.run_id}}, {"info": {"runId": run_1.info.run_id}}]


def test_graphql_reads_metrics_artifacts_and_datasets(client, tracking_uri, tmp_path):
    """test_get_metric_history_bulk_interval_graphql, test_list_artifacts_graphql,
    test_search_datasets_graphql, test_graphql_nan_metric_handling"""
    experiment_id = client.create_experiment(unique("GraphqlTest"))
    run_id = client.create_run(experiment_id).info.run_id
    for i in range(10):
        client.log_metric(run_id, "metric_0", i, step=i)
    answer = graphql(tracking_uri, f'''query testQuery {{ mlflowGetMetricHistoryBulkInterval(input: {{
        runIds: ["{run_id}"], metricKey: "metric_0" }}) {{ metrics {{ key timestamp value }} }} }}''')
    metrics = answer["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    assert [(m["key"], m["value"]) for m in metrics] == [("metric_0", i) for i in range(10)]

    client.log_metric(run_id, "normal_metric", 123, timestamp=1, step=1)
    client.log_metric(run_id, "nan_metric", math.nan, timestamp=2, step=2)
    answer = graphql(tracking_uri, f'''query testQuery {{ mlflowGetRun(input: {{runId: "{run_id}"}}) {{
        run {{ data {{ metrics {{ key value timestamp step }} }} }} }} }}''')
    assert answer["errors"] is None
    metrics = {m["key"]: m for m in answer["data"]["mlflowGetRun"]["run"]["data"]["metrics"]}
    assert metrics["normal_metric"] == {"key": "normal_metric", "value": 123, "timestamp": "1", "step": "1"}
    assert metrics["nan_metric"] == {"key": "nan_metric", "value": None, "timestamp": "2", "step": "2"}

    file = tmp_path / "test.txt"
    file.write_text("hello world")
    client.log_artifact(run_id, str(file))
    client.log_artifact(run_id, str(file), "testDir")
    fields = "files { path isDir fileSize }"
    answer = graphql(tracking_uri, f'query testQuery {{ files: mlflowListArtifacts(input: {{ runId: "{run_id}" }})'
                                   f" {{ {fields} }} }}")
    assert answer["data"]["files"]["files"] == [
        {"path": "test.txt", "isDir": False, "fileSize": "11"}, {"path": "testDir", "isDir": True, "fileSize": "0"}]
    answer = graphql(tracking_uri, 'query testQuery { subdir: mlflowListArtifacts(input: '
                                   f'{{ runId: "{run_id}", path: "testDir" }}) {{ {fields} }} }}')
    assert answer["data"]["subdir"]["files"] == [{"path": "testDir/test.txt", "isDir": False, "fileSize": "11"}]

    client.log_inputs(run_id, [
        DatasetInput(Dataset(name="test-dataset-1", digest="12345", source_type="script", source="test"), []),
        DatasetInput(Dataset(name="test-dataset-2", digest="12346", source_type="script", source="test"),
                     [InputTag(MLFLOW_DATASET_CONTEXT, "training")]),
    ])
    answer = graphql(tracking_uri, f'''mutation testQuery {{ mlflowSearchDatasets(input:{{experimentIds: ["{experiment_id}"]}})
        {{ datasetSummaries {{ experimentId name digest context }} }} }}''')
    assert sorted(answer["data"]["mlflowSearchDatasets"]["datasetSummaries"], key=lambda d: d["digest"]) == [
        {"experimentId": experiment_id, "name": "test-dataset-1", "digest": "12345", "context": ""},
        {"experimentId": experiment_id, "name": "test-dataset-2", "digest": "12346", "context": "training"},
    ]


def test_a_relative_artifact_location_is_kept_as_given(client):
    """test_create_get_search_experiment's `artifact_location="my_location"`: a
    deliberate difference, MLflow resolves it against its own working directory
    (see README)"""
    experiment_id = client.create_experiment(unique("relative"), artifact_location="my_location")
    assert client.get_experiment(experiment_id).artifact_location == "my_location"


def test_an_operators_source_pattern_refuses_other_sources(tmp_path):
    """test_create_model_version_with_validation_regex:
    a server started with MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX"""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = dict(os.environ, TANDEM_SQLITE_SYNCHRONOUS="NORMAL",
                       MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX=r"^mlflow-artifacts:/.*$")
    with open(tmp_path / "region.log", "ab") as log:
        process = subprocess.Popen([_tandem_bin(), "server", "--listen", f"127.0.0.1:{port}",
                                    "--data", str(tmp_path / "data")],
                                   stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        def ready() -> bool:
            try:
                return requests.get(f"{url}/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 30, "the region to be ready")
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        client.create_registered_model("test")
        with pytest.raises(MlflowException, match="Invalid model version source: 's3://path/to/model'."):
            client.create_model_version("test", source="s3://path/to/model")
        run = client.create_run(experiment_id=client.create_experiment("test"))
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        version = client.create_model_version("test", source=f"{run.info.artifact_uri}/model",
                                              run_id=run.info.run_id)
        assert version.version == "1"
    finally:
        process.terminate()
        process.wait(timeout=20)
