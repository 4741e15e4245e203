"""Experiments, runs, params, tags, metrics and their history, through the
official client's fluent API and MlflowClient."""

import math
import time

import mlflow
import pytest
from mlflow.entities import LifecycleStage, Metric, Param, RunStatus, RunTag, ViewType

from support import unique


def test_set_experiment_creates_once_and_tags(tracking_uri, client):
    name = unique("exp")
    experiment = mlflow.set_experiment(name)
    assert experiment.name == name
    assert experiment.lifecycle_stage == LifecycleStage.ACTIVE
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"

    # A second call finds the experiment instead of creating another.
    again = mlflow.set_experiment(name)
    assert again.experiment_id == experiment.experiment_id
    assert mlflow.set_experiment(experiment_id=experiment.experiment_id).name == name
    assert client.get_experiment_by_name(name).experiment_id == experiment.experiment_id

    client.set_experiment_tag(experiment.experiment_id, "team", "vision")
    client.set_experiment_tag(experiment.experiment_id, "note", "first")
    client.delete_experiment_tag(experiment.experiment_id, "note")
    fetched = client.get_experiment(experiment.experiment_id)
    assert fetched.tags == {"team": "vision"}

    new_name = unique("renamed")
    client.rename_experiment(experiment.experiment_id, new_name)
    assert client.get_experiment(experiment.experiment_id).name == new_name
    assert client.get_experiment_by_name(name) is None

    found = client.search_experiments(filter_string=f"name = '{new_name}'")
    assert [e.experiment_id for e in found] == [experiment.experiment_id]


def test_run_lifecycle_params_and_tags(tracking_uri, client):
    experiment_id = mlflow.set_experiment(unique("exp")).experiment_id
    with mlflow.start_run(run_name="first-run", description="a run") as run:
        assert run.info.status == "RUNNING"
        assert run.info.run_name == "first-run"
        run_id = run.info.run_id
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"layers": 3, "optimizer": "adam", "empty": ""})
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev", "temp": "x"})
        # Logging the same value again is allowed.
        mlflow.log_param("lr", 0.01)
        assert mlflow.active_run().info.run_id == run_id
    client.delete_tag(run_id, "temp")

    fetched = client.get_run(run_id)
    assert fetched.info.status == "FINISHED"
    assert fetched.info.experiment_id == experiment_id
    assert fetched.info.lifecycle_stage == LifecycleStage.ACTIVE
    assert fetched.info.start_time <= fetched.info.end_time <= int(time.time() * 1000) + 1000
    assert fetched.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    assert fetched.data.params == {"lr": "0.01", "layers": "3", "optimizer": "adam", "empty": ""}
    tags = fetched.data.tags
    assert tags["team"] == "vision"
    assert tags["stage"] == "dev"
    assert "temp" not in tags
    assert tags["mlflow.runName"] == "first-run"
    assert tags["mlflow.note.content"] == "a run"
    assert tags["mlflow.user"]

    client.update_run(run_id, status="FAILED", name="renamed-run")
    updated = client.get_run(run_id)
    assert updated.info.status == "FAILED"
    assert updated.info.run_name == "renamed-run"
    assert updated.data.tags["mlflow.runName"] == "renamed-run"

    # A run created without a name gets a generated one.
    unnamed = client.create_run(experiment_id)
    assert unnamed.info.run_name
    assert client.get_run(unnamed.info.run_id).data.tags["mlflow.runName"] == unnamed.info.run_name


def test_metrics_steps_timestamps_and_special_values(tracking_uri, client):
    mlflow.set_experiment(unique("exp"))
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        mlflow.log_metric("loss", 0.5, step=5, timestamp=1_000)
        # A later timestamp at an earlier step does not become the latest value.
        mlflow.log_metric("loss", 0.9, step=2, timestamp=9_000)
        mlflow.log_metrics({"acc": 0.75, "f1": 0.5}, step=3)
        mlflow.log_metric("nan", float("nan"))
        mlflow.log_metric("pinf", float("inf"))
        mlflow.log_metric("ninf", float("-inf"))
        mlflow.log_metric("int", 7)
        mlflow.log_metric("neg", -1.25e-7, step=-1)

    metrics = client.get_run(run_id).data.metrics
    assert set(metrics) == {"loss", "acc", "f1", "nan", "pinf", "ninf", "int", "neg"}
    assert metrics["loss"] == 0.5
    assert metrics["acc"] == 0.75
    assert metrics["f1"] == 0.5
    assert math.isnan(metrics["nan"])
    assert metrics["pinf"] == math.inf
    assert metrics["ninf"] == -math.inf
    assert metrics["int"] == 7.0
    assert metrics["neg"] == -1.25e-7

    [acc] = client.get_metric_history(run_id, "acc")
    assert (acc.step, acc.value) == (3, 0.75)
    [nan] = client.get_metric_history(run_id, "nan")
    assert math.isnan(nan.value)
    [neg] = client.get_metric_history(run_id, "neg")
    assert (neg.step, neg.value) == (-1, -1.25e-7)


def test_metric_history_values_and_order(tracking_uri, client):
    experiment_id = mlflow.set_experiment(unique("exp")).experiment_id
    run_id = client.create_run(experiment_id).info.run_id
    logged = [
        # (step, timestamp, value), logged out of order on purpose.
        (3, 4_000, 0.25),
        (0, 1_000, 1.0),
        (2, 3_000, 0.5),
        (1, 2_000, 0.75),
        (1, 2_500, 0.7),  # the same step twice keeps both points
    ]
    for step, timestamp, value in logged:
        client.log_metric(run_id, "loss", value, timestamp=timestamp, step=step)
    history = client.get_metric_history(run_id, "loss")
    # MLflow returns a history ordered by timestamp, step, value.
    assert [(m.step, m.timestamp, m.value) for m in history] == sorted(
        logged, key=lambda point: (point[1], point[0], point[2])
    )
    assert all(m.key == "loss" for m in history)
    assert client.get_run(run_id).data.metrics["loss"] == 0.25
    assert client.get_metric_history(run_id, "missing") == []


def test_log_batch_of_1000_metrics(tracking_uri, client):
    experiment_id = mlflow.set_experiment(unique("exp")).experiment_id
    run_id = client.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(f"m{i:04d}", i * 0.5, now + i, i % 7) for i in range(1000)]
    # 1000 metrics alone fit one log-batch request (MLflow's limit).
    client.log_batch(run_id, metrics=metrics)
    client.log_batch(
        run_id,
        params=[Param(f"p{i}", str(i)) for i in range(100)],
        tags=[RunTag("batch", "yes")],
    )
    run = client.get_run(run_id)
    assert run.data.metrics == {f"m{i:04d}": i * 0.5 for i in range(1000)}
    assert run.data.params == {f"p{i}": str(i) for i in range(100)}
    assert run.data.tags["batch"] == "yes"
    [point] = client.get_metric_history(run_id, "m0999")
    assert (point.value, point.timestamp, point.step) == (499.5, now + 999, 999 % 7)


def _search_fixture(client):
    """Five runs with known values; returns (experiment_id, runs by name)."""
    experiment_id = client.create_experiment(unique("search"))
    specs = [
        # name, params, metrics, team tag, status
        ("alpha", {"lr": "0.1", "batch-size": "32"}, {"acc": 0.95, "my metric": 1.0}, "vision", "FINISHED"),
        ("beta", {"lr": "0.01"}, {"acc": 0.80}, "VISION-2", "FAILED"),
        ("gamma", {"lr": "0.1"}, {"acc": 0.60}, "nlp", "FINISHED"),
        ("delta", {"lr": "0.001"}, {"acc": 0.99}, "vision-x", "KILLED"),
        ("epsilon", {}, {}, "speech", "RUNNING"),
    ]
    runs = {}
    for index, (name, params, metrics, team, status) in enumerate(specs):
        run = client.create_run(
            experiment_id, start_time=1_700_000_000_000 + index * 1000, run_name=name,
            tags={"team": team},
        )
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, 1000, 0) for key, value in metrics.items()],
            params=[Param(key, value) for key, value in params.items()],
        )
        if status != "RUNNING":
            client.set_terminated(run_id, status=status, end_time=1_700_000_100_000 + index)
        runs[name] = run_id
    return experiment_id, runs


def test_search_runs_filters_order_and_pages(tracking_uri, client):
    experiment_id, runs = _search_fixture(client)
    name_of = {run_id: name for name, run_id in runs.items()}

    def names(filter_string="", order_by=None, view=ViewType.ACTIVE_ONLY):
        found = client.search_runs(
            [experiment_id], filter_string, run_view_type=view, max_results=1000, order_by=order_by
        )
        return [name_of[run.info.run_id] for run in found]

    def name_set(filter_string):
        return set(names(filter_string))

    assert name_set("metrics.acc > 0.7") == {"alpha", "beta", "delta"}
    assert name_set("metrics.acc <= 0.8") == {"beta", "gamma"}
    assert name_set("params.lr = '0.1'") == {"alpha", "gamma"}
    assert name_set("params.lr != '0.1'") == {"beta", "delta"}
    assert name_set("tags.team LIKE 'vision%'") == {"alpha", "delta"}
    assert name_set("tags.team ILIKE 'VISION%'") == {"alpha", "beta", "delta"}
    assert name_set("tags.team = 'nlp'") == {"gamma"}
    assert name_set("attributes.status = 'FAILED'") == {"beta"}
    assert name_set("attributes.status != 'FINISHED'") == {"beta", "delta", "epsilon"}
    assert name_set("attributes.run_name = 'gamma'") == {"gamma"}
    assert name_set("run_name = 'delta'") == {"delta"}
    # MLflow allows IN lists on run_id only.
    assert name_set(f"attributes.run_id IN ('{runs['beta']}', '{runs['gamma']}', 'nope')") == {"beta", "gamma"}
    assert name_set(f"attributes.run_id NOT IN ('{runs['beta']}', '{runs['gamma']}')") == {
        "alpha", "delta", "epsilon",
    }
    assert name_set("metrics.`my metric` >= 1") == {"alpha"}
    assert name_set("params.`batch-size` = '32'") == {"alpha"}
    assert name_set("params.lr = '0.1' AND metrics.acc > 0.7 AND tags.team LIKE 'vis%'") == {"alpha"}
    assert name_set("params.lr = '0.1' AND attributes.status = 'FINISHED' AND metrics.acc < 0.7") == {"gamma"}
    assert name_set("tags.team = 'nobody'") == set()
    assert name_set("params.lr IS NULL") == {"epsilon"}
    assert name_set("tags.team IS NOT NULL") == set(runs)
    assert name_set("params.lr LIKE '0.0%'") == {"beta", "delta"}
    assert name_set("metrics.acc = 0.8") == {"beta"}
    assert name_set("attributes.run_name ILIKE '%A'") == {"alpha", "beta", "gamma", "delta"}
    assert name_set("attributes.start_time >= 1700000002000") == {"gamma", "delta", "epsilon"}
    assert name_set("attributes.end_time < 1700000100002") == {"alpha", "beta"}

    # Default order: start_time descending.
    assert names() == ["epsilon", "delta", "gamma", "beta", "alpha"]
    assert names(order_by=["attributes.start_time ASC"]) == ["alpha", "beta", "gamma", "delta", "epsilon"]
    # Runs without the metric or param come last, whatever the direction.
    assert names(order_by=["metrics.acc DESC"]) == ["delta", "alpha", "beta", "gamma", "epsilon"]
    assert names(order_by=["metrics.acc ASC"]) == ["gamma", "beta", "alpha", "delta", "epsilon"]
    assert names(order_by=["params.lr ASC", "attributes.start_time DESC"]) == [
        "delta", "beta", "gamma", "alpha", "epsilon",
    ]
    assert names(order_by=["attributes.run_name"]) == sorted(runs)

    # Pagination: pages of two, following next-page tokens to the end.
    seen, token, pages = [], None, 0
    while True:
        page = client.search_runs(
            [experiment_id], "", max_results=2, order_by=["attributes.start_time ASC"], page_token=token
        )
        pages += 1
        assert len(page) <= 2
        seen += [name_of[run.info.run_id] for run in page]
        token = page.token
        if not token:
            break
    assert pages == 3
    assert seen == ["alpha", "beta", "gamma", "delta", "epsilon"]

    # The fluent API's DataFrame agrees.
    frame = mlflow.search_runs([experiment_id], "metrics.acc > 0.9", order_by=["metrics.acc DESC"])
    assert list(frame["tags.mlflow.runName"]) == ["delta", "alpha"]
    assert list(frame["metrics.acc"]) == [0.99, 0.95]


def test_delete_and_restore_runs_and_experiments(tracking_uri, client):
    name = unique("exp")
    experiment_id = client.create_experiment(name)
    keep = client.create_run(experiment_id, run_name="keep").info.run_id
    gone = client.create_run(experiment_id, run_name="gone").info.run_id

    client.delete_run(gone)
    assert client.get_run(gone).info.lifecycle_stage == LifecycleStage.DELETED

    def ids(view):
        return {run.info.run_id for run in client.search_runs([experiment_id], run_view_type=view)}

    assert ids(ViewType.ACTIVE_ONLY) == {keep}
    assert ids(ViewType.DELETED_ONLY) == {gone}
    assert ids(ViewType.ALL) == {keep, gone}
    frame = mlflow.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert list(frame["run_id"]) == [gone]

    client.restore_run(gone)
    assert client.get_run(gone).info.lifecycle_stage == LifecycleStage.ACTIVE
    assert ids(ViewType.ACTIVE_ONLY) == {keep, gone}
    assert ids(ViewType.DELETED_ONLY) == set()

    client.delete_experiment(experiment_id)
    deleted = client.get_experiment(experiment_id)
    assert deleted.lifecycle_stage == LifecycleStage.DELETED
    assert client.get_experiment_by_name(name).lifecycle_stage == LifecycleStage.DELETED
    # Deleting an experiment deletes its runs.
    assert client.get_run(keep).info.lifecycle_stage == LifecycleStage.DELETED

    def experiments(view):
        return [e.experiment_id for e in client.search_experiments(view_type=view, filter_string=f"name = '{name}'")]

    assert experiments(ViewType.ACTIVE_ONLY) == []
    assert experiments(ViewType.DELETED_ONLY) == [experiment_id]
    assert experiments(ViewType.ALL) == [experiment_id]

    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == LifecycleStage.ACTIVE
    assert experiments(ViewType.ACTIVE_ONLY) == [experiment_id]
    assert client.get_run(keep).info.lifecycle_stage == LifecycleStage.ACTIVE
    assert ids(ViewType.ACTIVE_ONLY) == {keep, gone}
    assert RunStatus.to_string(RunStatus.RUNNING) == client.get_run(keep).info.status


def test_nested_runs_and_unicode_values(tracking_uri, client):
    experiment_id = mlflow.set_experiment(unique("exp")).experiment_id
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_param("greeting", "héllo wörld ✓ 你好")
            mlflow.set_tag("emoji", "🚀")
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    children = client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert [run.info.run_id for run in children] == [child.info.run_id]
    data = client.get_run(child.info.run_id).data
    assert data.params["greeting"] == "héllo wörld ✓ 你好"
    assert data.tags["emoji"] == "🚀"
    found = client.search_runs([experiment_id], "params.greeting = 'héllo wörld ✓ 你好'")
    assert [run.info.run_id for run in found] == [child.info.run_id]


def test_search_experiments(tracking_uri, client):
    prefix = unique("search-exp")
    ids = [client.create_experiment(f"{prefix}-{i}", tags={"rank": str(i)}) for i in range(3)]
    client.set_experiment_tag(ids[1], "team", "vision")

    def names(filter_string, order_by=None, max_results=1000, page_token=None):
        page = client.search_experiments(
            filter_string=filter_string, order_by=order_by, max_results=max_results, page_token=page_token
        )
        return [e.name for e in page], page.token

    assert names(f"name LIKE '{prefix}%'", ["name DESC"])[0] == [f"{prefix}-2", f"{prefix}-1", f"{prefix}-0"]
    assert names(f"name LIKE '{prefix}%' AND tags.team = 'vision'")[0] == [f"{prefix}-1"]
    assert names(f"name LIKE '{prefix}%' AND tags.rank != '1'", ["name ASC"])[0] == [f"{prefix}-0", f"{prefix}-2"]
    first, token = names(f"name LIKE '{prefix}%'", ["name ASC"], max_results=2)
    assert first == [f"{prefix}-0", f"{prefix}-1"] and token
    rest, token = names(f"name LIKE '{prefix}%'", ["name ASC"], max_results=2, page_token=token)
    assert rest == [f"{prefix}-2"] and not token


@pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0")
def test_run_name_tag_and_dataset_inputs(tracking_uri, client):
    import pandas as pd

    experiment_id = mlflow.set_experiment(unique("exp")).experiment_id
    assert client.get_experiment_by_name("Default").experiment_id == "0"
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0]})
    dataset = mlflow.data.from_pandas(frame, name="toy", targets="y")
    with mlflow.start_run(run_name="before") as run:
        mlflow.log_input(dataset, context="training")
        # Setting the run-name tag renames the run.
        mlflow.set_tag("mlflow.runName", "after")
    fetched = client.get_run(run.info.run_id)
    assert fetched.info.run_name == "after"
    [dataset_input] = fetched.inputs.dataset_inputs
    assert dataset_input.dataset.name == "toy"
    assert dataset_input.dataset.digest == dataset.digest
    assert {tag.key: tag.value for tag in dataset_input.tags}["mlflow.data.context"] == "training"
    for filter_string in ["datasets.name = 'toy'", f"datasets.digest = '{dataset.digest}'",
                          "datasets.context = 'training'"]:
        found = client.search_runs([experiment_id], filter_string)
        assert [r.info.run_id for r in found] == [run.info.run_id], filter_string
    assert client.search_runs([experiment_id], "datasets.name = 'other'") == []


def test_metric_history_pages_over_rest(tracking_uri, client):
    import requests

    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, metrics=[Metric("loss", 100.0 - i, 1_000 + i, i) for i in range(25)])
    seen, token = [], None
    while True:
        params = {"run_id": run_id, "metric_key": "loss", "max_results": 10}
        if token:
            params["page_token"] = token
        response = requests.get(f"{tracking_uri}/api/2.0/mlflow/metrics/get-history", params=params, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body.get("metrics", [])) <= 10
        seen += [(m["step"], m["value"]) for m in body.get("metrics", [])]
        token = body.get("next_page_token")
        if not token:
            break
    assert seen == [(i, 100.0 - i) for i in range(25)]


def test_pagination_with_ties_across_experiments(tracking_uri, client):
    """Equal sort keys must not make pages skip or repeat runs."""
    experiments = [client.create_experiment(unique("exp")) for _ in range(2)]
    expected = set()
    for index in range(9):
        run = client.create_run(experiments[index % 2], start_time=1_600_000_000_000)
        client.log_metric(run.info.run_id, "score", float(index // 4))
        expected.add(run.info.run_id)
    for order_by in (None, ["metrics.score DESC"], ["attributes.start_time ASC"]):
        seen, token = [], None
        while True:
            page = client.search_runs(experiments, "", max_results=2, order_by=order_by, page_token=token)
            seen += [run.info.run_id for run in page]
            token = page.token
            if not token:
                break
        assert len(seen) == 9 and set(seen) == expected, order_by
        whole = [run.info.run_id for run in client.search_runs(experiments, "", order_by=order_by)]
        assert seen == whole, order_by
