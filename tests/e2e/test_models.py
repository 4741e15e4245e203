"""Logged models (MLflow 3) and the model registry: a real scikit-learn
model logged, registered, and loaded back by version and alias; then the
registry's own operations on lightweight versions."""

import numpy as np
import mlflow
import requests
import mlflow.pyfunc
import mlflow.sklearn
import pytest
from mlflow.entities import LoggedModelStatus

from support import expect_error, unique


@pytest.fixture(scope="module")
def trained():
    """A small fitted classifier and data to predict on."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    features = rng.normal(size=(60, 4))
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    return model, features[:10]


def test_sklearn_model_log_register_and_load(tracking_uri, client, trained):
    model, sample = trained
    expected = model.predict(sample)
    experiment_id = mlflow.set_experiment(unique("models")).experiment_id
    name = unique("classifier")

    with mlflow.start_run() as run:
        run_id = run.info.run_id
        mlflow.log_param("C", model.C)
        # The default serialization format (skops); explicit requirements
        # skip the slow inference of pip requirements.
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        mlflow.log_metric("accuracy", 0.9, model_id=info.model_id)

    # The logged model: READY, linked to its run and experiment.
    logged = mlflow.get_logged_model(info.model_id)
    assert logged.model_id == info.model_id
    assert logged.name == "model"
    assert logged.status == LoggedModelStatus.READY
    assert logged.source_run_id == run_id
    assert logged.experiment_id == experiment_id
    assert logged.artifact_location.startswith(f"mlflow-artifacts:/{experiment_id}/")
    assert [(m.key, m.value, m.run_id) for m in logged.metrics] == [("accuracy", 0.9, run_id)]
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string="name = 'model'", output_format="list"
    )
    assert [m.model_id for m in found] == [info.model_id]
    assert mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string="name = 'other'", output_format="list"
    ) == []

    # Registered twice: versions 1 and 2 of the same model.
    first = mlflow.register_model(info.model_uri, name)
    assert (first.name, first.version) == (name, "1")
    assert first.status == "READY"
    assert first.run_id == run_id
    second = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert second.version == "2"
    client.set_registered_model_alias(name, "champion", "1")

    loaded = mlflow.sklearn.load_model(f"models:/{name}/1")
    np.testing.assert_array_equal(loaded.predict(sample), expected)
    np.testing.assert_allclose(loaded.coef_, model.coef_)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(sample)), expected)
    by_logged_id = mlflow.sklearn.load_model(info.model_uri)
    np.testing.assert_array_equal(by_logged_id.predict(sample), expected)
    latest = mlflow.pyfunc.load_model(f"models:/{name}/2")
    np.testing.assert_array_equal(np.asarray(latest.predict(sample)), expected)


def _registered_with_versions(client, count):
    """A registered model with `count` versions on lightweight sources."""
    name = unique("registry")
    experiment_id = client.create_experiment(unique("exp"))
    run_id = client.create_run(experiment_id).info.run_id
    client.create_registered_model(name, tags={"owner": "e2e"}, description="for tests")
    for index in range(count):
        version = client.create_model_version(
            name,
            f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/model{index}",
            run_id=run_id,
            tags={"index": str(index)},
        )
        assert version.version == str(index + 1)
    return name, run_id


def test_aliases(tracking_uri, client):
    name, _ = _registered_with_versions(client, 2)
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(name, "2").aliases == ["challenger"]

    # Moving an alias takes it off the old version.
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_model_version(name, "1").aliases == []
    assert sorted(client.get_model_version(name, "2").aliases) == ["challenger", "champion"]

    client.delete_registered_model_alias(name, "champion")
    assert client.get_registered_model(name).aliases == {"challenger": "2"}
    # MLflow's wording. (MLflow's SQL store answers INVALID_PARAMETER_VALUE
    # here; Tandem's store contract says RESOURCE_DOES_NOT_EXIST.)
    error = expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version_by_alias, name, "champion")
    assert error.message.endswith("Registered model alias champion not found.")

    # `latest` is reserved: it names the newest version.
    assert client.get_model_version_by_alias(name, "latest").version == "2"
    expect_error("INVALID_PARAMETER_VALUE", client.set_registered_model_alias, name, "latest", "1")


# Stages are deprecated in MLflow 3 but still served; the client warns.
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_stages_and_latest_versions(tracking_uri, client):
    name, _ = _registered_with_versions(client, 3)
    assert client.get_model_version(name, "1").current_stage == "None"
    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "Staging")
    assert client.get_model_version(name, "1").current_stage == "Production"

    def latest(stages=None):
        return {v.current_stage: v.version for v in client.get_latest_versions(name, stages)}

    assert latest() == {"Production": "1", "Staging": "2", "None": "3"}
    assert latest(["Production"]) == {"Production": "1"}

    # Promoting version 3 with archive_existing_versions archives version 1
    # (in Production) but leaves version 2 (in Staging) alone.
    promoted = client.transition_model_version_stage(name, "3", "Production", archive_existing_versions=True)
    assert promoted.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert client.get_model_version(name, "2").current_stage == "Staging"
    assert latest(["Production", "Archived"]) == {"Production": "3", "Archived": "1"}

    # Without archiving, two versions may share a stage; the newest is latest.
    client.transition_model_version_stage(name, "2", "Production")
    assert client.get_model_version(name, "3").current_stage == "Production"
    assert latest(["Production"]) == {"Production": "3"}
    expect_error("INVALID_PARAMETER_VALUE", client.transition_model_version_stage, name, "1", "Nonsense")


def test_rename_tags_search_and_delete(tracking_uri, client):
    name, run_id = _registered_with_versions(client, 2)
    client.set_model_version_tag(name, "1", "validated", "yes")
    client.set_model_version_tag(name, "2", "validated", "no")
    client.delete_model_version_tag(name, "2", "index")
    assert client.get_model_version(name, "1").tags == {"index": "0", "validated": "yes"}
    assert client.get_model_version(name, "2").tags == {"validated": "no"}
    client.set_registered_model_tag(name, "team", "vision")
    client.update_registered_model(name, description="updated")
    client.update_model_version(name, "1", description="first version")
    client.set_registered_model_alias(name, "prod", "1")

    new_name = unique("renamed")
    client.rename_registered_model(name, new_name)
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, name)
    model = client.get_registered_model(new_name)
    assert model.description == "updated"
    assert model.tags == {"owner": "e2e", "team": "vision"}
    assert model.aliases == {"prod": "1"}
    # The versions followed the rename.
    version = client.get_model_version(new_name, "1")
    assert (version.name, version.description, version.run_id) == (new_name, "first version", run_id)
    assert client.get_model_version_by_alias(new_name, "prod").version == "1"
    assert sorted(v.version for v in client.search_model_versions(f"name = '{new_name}'")) == ["1", "2"]
    assert client.search_model_versions(f"name = '{name}'") == []
    assert client.get_model_version_download_uri(new_name, "1").endswith(f"/{run_id}/artifacts/model0")

    # Searches with filters.
    assert [m.name for m in client.search_registered_models(f"name = '{new_name}'")] == [new_name]
    prefix = new_name[: len("renamed-") + 6]
    assert new_name in [m.name for m in client.search_registered_models(f"name LIKE '{prefix}%'")]
    assert [m.name for m in client.search_registered_models(f"name = '{new_name}' AND tags.team = 'vision'")] == [
        new_name
    ]
    assert client.search_registered_models(f"name = '{new_name}' AND tags.team = 'nlp'") == []
    assert [v.version for v in client.search_model_versions(f"name = '{new_name}' AND tags.validated = 'yes'")] == [
        "1"
    ]
    assert [v.version for v in client.search_model_versions(f"run_id = '{run_id}'")] in (["1", "2"], ["2", "1"])
    assert [v.version for v in client.search_model_versions(f"name = '{new_name}' AND version_number > 1")] == ["2"]

    client.delete_model_version(new_name, "2")
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version, new_name, "2")
    assert [v.version for v in client.search_model_versions(f"name = '{new_name}'")] == ["1"]

    client.delete_registered_model(new_name)
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_registered_model, new_name)
    assert client.search_registered_models(f"name = '{new_name}'") == []
    assert client.search_model_versions(f"name = '{new_name}'") == []
    # As in MLflow the name is free at once (the deleted model stays
    # recoverable under another key: test_registry_names.py).
    client.create_registered_model(new_name)
    fresh = client.get_registered_model(new_name)
    assert (fresh.latest_versions, fresh.aliases, fresh.tags, fresh.description) == ([], {}, {}, "")


def test_logged_model_lifecycle(tracking_uri, client):
    experiment_id = mlflow.set_experiment(unique("exp")).experiment_id
    with mlflow.start_run() as run:
        created = mlflow.initialize_logged_model(name="manual", tags={"kind": "test"}, params={"alpha": "1"})
    assert created.status == LoggedModelStatus.PENDING
    assert created.source_run_id == run.info.run_id
    pending = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string="status = 'PENDING'", output_format="list"
    )
    assert [m.model_id for m in pending] == [created.model_id]

    finalized = client.finalize_logged_model(created.model_id, LoggedModelStatus.READY)
    assert finalized.status == LoggedModelStatus.READY
    fetched = mlflow.get_logged_model(created.model_id)
    assert fetched.status == LoggedModelStatus.READY
    assert fetched.tags["kind"] == "test"
    assert fetched.params == {"alpha": "1"}
    client.set_logged_model_tags(created.model_id, {"extra": "1"})
    assert mlflow.get_logged_model(created.model_id).tags["extra"] == "1"
    assert mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string="status = 'PENDING'", output_format="list"
    ) == []
    ready = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string="tags.kind = 'test' AND params.alpha = '1'",
        output_format="list",
    )
    assert [m.model_id for m in ready] == [created.model_id]

    # Ordering by a metric of the models.
    other = mlflow.initialize_logged_model(name="other", experiment_id=experiment_id)
    with mlflow.start_run():
        mlflow.log_metric("score", 0.3, model_id=created.model_id)
        mlflow.log_metric("score", 0.7, model_id=other.model_id)
    ordered = mlflow.search_logged_models(
        experiment_ids=[experiment_id], order_by=[{"field_name": "metrics.score", "ascending": False}],
        output_format="list",
    )
    assert [m.model_id for m in ordered] == [other.model_id, created.model_id]
    above = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string="metrics.score > 0.5", output_format="list"
    )
    assert [m.model_id for m in above] == [other.model_id]

    client.delete_logged_model(created.model_id)
    expect_error("RESOURCE_DOES_NOT_EXIST", mlflow.get_logged_model, created.model_id)


def test_cloudpickle_model_in_a_workspace(workspace_uri, trained):
    """The whole model flow under `/w/<name>`: artifacts and registry resolve
    through the workspace's prefix."""
    model, sample = trained
    mlflow.set_experiment(unique("models"))
    name = unique("ws-model")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", serialization_format="cloudpickle", pip_requirements=["scikit-learn"]
        )
    version = mlflow.register_model(info.model_uri, name)
    client = mlflow.MlflowClient(workspace_uri, workspace_uri)
    client.set_registered_model_alias(name, "prod", version.version)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@prod")
    np.testing.assert_array_equal(np.asarray(loaded.predict(sample)), model.predict(sample))
    assert mlflow.sklearn.load_model(f"models:/{name}@latest").get_params() == model.get_params()
    # Nothing of it is visible at the root (the default workspace).
    root = workspace_uri.split("/w/")[0]
    expect_error("RESOURCE_DOES_NOT_EXIST", mlflow.MlflowClient(root, root).get_registered_model, name)


def test_registered_model_search_order_and_pages(tracking_uri, client):
    prefix = unique("paged")
    for index in range(5):
        client.create_registered_model(f"{prefix}-{index}")
    seen, token = [], None
    while True:
        page = client.search_registered_models(
            f"name LIKE '{prefix}-%'", max_results=2, order_by=["name DESC"], page_token=token
        )
        assert len(page) <= 2
        seen += [m.name for m in page]
        token = page.token
        if not token:
            break
    assert seen == [f"{prefix}-{index}" for index in reversed(range(5))]
