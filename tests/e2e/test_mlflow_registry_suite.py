"""The behaviours MLflow's own registry suite `tests/tracking/test_model_registry.py`
pins (registered models, model versions, stages, tags, aliases, copies,
searches and their pages), checked against a real `tandem server` with the
official client. Each test's docstring names the MLflow test it corresponds
to. MLflow's suite registers `runs:/run_id/...` sources under other run ids,
which `mlflow server` 3.17.2 itself now refuses (its source check); these
tests name the run the source is in."""

import time

import pytest
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException


def now() -> int:
    return int(time.time() * 1000)


def between(start: int, end: int, value: int) -> None:
    assert start <= value <= end, (start, value, end)


def tick() -> None:
    """Apart by more than a millisecond, so creation and update times order."""
    time.sleep(0.003)


@pytest.fixture
def registry(workspace_uri) -> MlflowClient:
    """A client on a fresh workspace: searches see only this test's models."""
    return MlflowClient(tracking_uri=workspace_uri, registry_uri=workspace_uri)


def run_ids(client: MlflowClient, count: int) -> list[str]:
    experiment_id = client.create_experiment("runs")
    return [client.create_run(experiment_id).info.run_id for _ in range(count)]


# --- registered models -------------------------------------------------------


def test_a_registered_model_is_created_read_and_found(registry):
    """test_create_and_query_registered_model_flow"""
    name = "CreateRMTest"
    start = now()
    created = registry.create_registered_model(name, {"key": "value", "another key": "some other value",
                                                      "numeric value": 12345})
    end = now()
    tags = {"key": "value", "another key": "some other value", "numeric value": "12345"}
    assert isinstance(created, RegisteredModel)
    assert (created.name, created.tags) == (name, tags)
    read = registry.get_registered_model(name)
    assert (read.name, read.tags, str(read.description), read.latest_versions) == (name, tags, "", [])
    between(start, end, read.creation_timestamp)
    between(start, end, read.last_updated_timestamp)
    for filter_string in [None, "", f"name = '{name}'"]:
        kwargs = {} if filter_string is None else {"filter_string": filter_string}
        assert [m.name for m in registry.search_registered_models(**kwargs)] == [name]


def test_registered_model_search_filters_and_pages(registry):
    """test_search_registered_model_flow_paginated"""
    names = [f"CreateRMsearch{i:03}" for i in range(29)]
    for name in names:
        assert isinstance(registry.create_registered_model(name), RegisteredModel)
    cases = [
        (None, names),
        ("", names),
        ("name LIKE '%7'", [n for n in names if n.endswith("7")]),
        ("name ILIKE '%rm%00%'", [n for n in names if "00" in n]),
        ("name LIKE '%rm%00%'", []),
        ("name = 'badname'", []),
        ("name = 'CreateRMsearch023'", ["CreateRMsearch023"]),
    ]
    for filter_string, expected in cases:
        for max_results in [1, 8, 100]:
            found, token = [], None
            while True:
                page = registry.search_registered_models(filter_string=filter_string, max_results=max_results,
                                                         page_token=token)
                found += [m.name for m in page]
                token = page.token
                if not token:
                    break
            assert found == expected, (filter_string, max_results)


def test_a_registered_model_is_renamed_and_described(registry):
    """test_update_registered_model_flow"""
    name = "UpdateRMTest"
    start_1 = now()
    registry.create_registered_model(name)
    end_1 = now()
    tick()
    start_2 = now()
    registry.rename_registered_model(name=name, new_name="UpdateRMTest 2")
    end_2 = now()
    with pytest.raises(MlflowException, match="Registered Model with name=UpdateRMTest not found"):
        registry.get_registered_model(name)
    renamed = registry.get_registered_model("UpdateRMTest 2")
    assert (renamed.name, str(renamed.description)) == ("UpdateRMTest 2", "")
    between(start_1, end_1, renamed.creation_timestamp)
    between(start_2, end_2, renamed.last_updated_timestamp)

    tick()
    start_3 = now()
    registry.update_registered_model(name="UpdateRMTest 2", description="This is a test")
    end_3 = now()
    described = registry.get_registered_model("UpdateRMTest 2")
    assert described.description == "This is a test"
    between(start_1, end_1, described.creation_timestamp)
    between(start_3, end_3, described.last_updated_timestamp)

    tick()
    start_4 = now()
    registry.update_registered_model("UpdateRMTest 2", "4th update")
    registry.rename_registered_model("UpdateRMTest 2", "UpdateRMTest 4")
    end_4 = now()
    both = registry.get_registered_model("UpdateRMTest 4")
    assert (both.name, both.description) == ("UpdateRMTest 4", "4th update")
    between(start_1, end_1, both.creation_timestamp)
    between(start_4, end_4, both.last_updated_timestamp)
    for old in ["UpdateRMTest", "UpdateRMTest 2"]:
        with pytest.raises(MlflowException, match=r"Registered Model with name=UpdateRMTest( \d)? not found"):
            registry.get_registered_model(old)


def test_a_deleted_registered_model_is_gone_and_its_name_free(registry):
    """test_delete_registered_model_flow"""
    name = "DeleteRMTest"
    registry.create_registered_model(name)
    assert [m.name for m in registry.search_registered_models()] == [name]
    with pytest.raises(MlflowException, match=r"Registered Model .+ already exists"):
        registry.create_registered_model(name)
    registry.delete_registered_model(name)
    with pytest.raises(MlflowException, match=r"Registered Model .+ not found"):
        registry.get_registered_model(name)
    with pytest.raises(MlflowException, match=r"Registered Model .+ not found"):
        registry.rename_registered_model(name=name, new_name="something else")
    assert registry.search_registered_models() == []
    tick()
    start = now()
    registry.create_registered_model(name)
    end = now()
    again = registry.get_registered_model(name)
    between(start, end, again.creation_timestamp)
    between(start, end, again.last_updated_timestamp)
    assert [m.name for m in registry.search_registered_models()] == [name]


def test_registered_model_tags_set_delete_and_empty(registry):
    """test_set_delete_registered_model_tag_flow,
    test_set_registered_model_tag_with_empty_string_as_value"""
    name = "SetDeleteRMTagTest"
    registry.create_registered_model(name)
    assert registry.get_registered_model(name).tags == {}
    registry.set_registered_model_tag(name, "key", "value")
    registry.set_registered_model_tag(name, "numeric value", 12345)
    assert registry.get_registered_model(name).tags == {"key": "value", "numeric value": "12345"}
    registry.delete_registered_model_tag(name, "key")
    assert registry.get_registered_model(name).tags == {"numeric value": "12345"}
    registry.set_registered_model_tag(name, "tag_key", "")
    assert registry.get_registered_model(name).tags["tag_key"] == ""


# --- model version searches ------------------------------------------------------


@pytest.fixture
def many_versions(registry):
    """29 models, 39 versions (the first ten models have two), created in order."""
    names = [f"CreateRMsearchForMV{i:03}" for i in range(29)]
    for name in names:
        registry.create_registered_model(name)
    [run_id] = run_ids(registry, 1)
    versions = []
    for name in names + names[:10]:
        tick()
        versions.append(registry.create_model_version(name, f"runs:/{run_id}/model", run_id))
    assert all(isinstance(version, ModelVersion) for version in versions)
    return versions[::-1]


def every_page(search) -> list[tuple[str, str]]:
    found, token = [], None
    while True:
        page = search(token)
        found += [(version.name, version.version) for version in page]
        token = page.token
        if not token:
            return found


def test_model_version_search_filters(registry, many_versions):
    """test_search_model_versions_filter_string"""
    for filter_string, keep in [
        (None, lambda v: True),
        ("", lambda v: True),
        ("name LIKE '%2'", lambda v: v.name.endswith("2")),
        ("name ILIKE '%rm%00%'", lambda v: "00" in v.name),
        ("name LIKE '%rm%00%'", lambda v: False),
        ("name = 'badname'", lambda v: False),
        ("name = 'CreateRMsearchForMV03'", lambda v: v.name == "CreateRMsearchForMV03"),
    ]:
        expected = sorted(filter(keep, many_versions), key=lambda v: v.last_updated_timestamp, reverse=True)
        found = every_page(lambda token: registry.search_model_versions(filter_string=filter_string,
                                                                        page_token=token))
        assert found == [(v.name, v.version) for v in expected], filter_string


@pytest.mark.parametrize("max_results", [1, 8, 100])
def test_model_version_search_pages(registry, many_versions, max_results):
    """test_search_model_versions_max_results"""
    expected = sorted(many_versions, key=lambda v: v.last_updated_timestamp, reverse=True)
    found = every_page(lambda token: registry.search_model_versions(max_results=max_results, page_token=token))
    assert found == [(v.name, v.version) for v in expected]


def test_model_version_search_orders(registry, many_versions):
    """test_search_model_versions_order_by"""
    for order_by, expected in [
        (None, sorted(many_versions, key=lambda v: (-int(v.last_updated_timestamp), v.name, -int(v.version)))),
        (["name DESC"], sorted(many_versions, key=lambda v: (v.name, v.version), reverse=True)),
        (["version_number DESC"], sorted(many_versions, key=lambda v: (-int(v.version), v.name))),
    ]:
        found = every_page(lambda token: registry.search_model_versions(order_by=order_by, page_token=token))
        assert found == [(v.name, v.version) for v in expected], order_by


# --- model versions ----------------------------------------------------------------


def test_model_versions_are_created_read_and_found(registry):
    """test_create_and_query_model_version_flow"""
    name = "CreateMVTest"
    run_1, run_2 = run_ids(registry, 2)
    registry.create_registered_model(name)
    mv1 = registry.create_model_version(name, f"runs:/{run_1}/model", run_1,
                                        {"key": "value", "another key": "some other value", "numeric value": 12345})
    tags = {"key": "value", "another key": "some other value", "numeric value": "12345"}
    assert (mv1.version, mv1.name, mv1.tags) == ("1", name, tags)
    mvd1 = registry.get_model_version(name, "1")
    assert mvd1.tags == tags
    latest = lambda: [m.latest_versions for m in registry.search_registered_models() if m.name == name]  # noqa: E731
    assert latest() == [[mvd1]]
    mv2 = registry.create_model_version(name, f"runs:/{run_1}/another_model", run_1)
    assert (mv2.version, mv2.name) == ("2", name)
    mvd2 = registry.get_model_version(name, "2")
    assert latest() == [[mvd2]]
    found = registry.search_model_versions(f"name = '{name}'")
    assert {v.version for v in found} == {"1", "2"} and {v.name for v in found} == {name}
    assert registry.create_model_version(name, f"runs:/{run_2}/another_model", run_2).version == "3"
    assert registry.search_model_versions(f"source_path = 'runs:/{run_1}/model'") == [mvd1]
    assert registry.search_model_versions(f"run_id = '{run_1}'") == [mvd2, mvd1]
    assert registry.get_model_version_download_uri(name, "1") == f"runs:/{run_1}/model"


def test_a_model_version_that_is_not_a_number_is_refused(registry):
    """test_get_model_version"""
    name = "GetModelVersionTest"
    [run_id] = run_ids(registry, 1)
    registry.create_registered_model(name)
    registry.create_model_version(name, f"runs:/{run_id}/model", run_id)
    version = registry.get_model_version(name, "1")
    assert (version.name, version.version) == (name, "1")
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE: Parameter 'version' must be an integer, "
                                              "got 'something not correct'."):
        registry.get_model_version(name=name, version="something not correct")


def test_which_model_version_changes_touch_the_registered_model(registry):
    """test_update_model_version_flow"""
    name = "UpdateMVTest"
    [run_id] = run_ids(registry, 1)
    start_0 = now()
    registry.create_registered_model(name)
    end_0 = now()
    tick()
    start_1 = now()
    registry.create_model_version(name, f"runs:/{run_id}/model", run_id)
    end_1 = now()
    mvd1 = registry.get_model_version(name, "1")
    assert str(mvd1.description) == ""
    between(start_1, end_1, mvd1.creation_timestamp)
    between(start_1, end_1, mvd1.last_updated_timestamp)
    model = registry.get_registered_model(name)
    between(start_0, end_0, model.creation_timestamp)
    between(start_1, end_1, model.last_updated_timestamp)

    registry.create_model_version(name, f"runs:/{run_id}/another_model", run_id)
    tick()
    start_2 = now()
    registry.transition_model_version_stage(name=name, version=1, stage="Staging")
    end_2 = now()
    staged = registry.get_model_version(name, 1)
    between(start_1, end_1, staged.creation_timestamp)
    between(start_2, end_2, staged.last_updated_timestamp)
    between(start_2, end_2, registry.get_registered_model(name).last_updated_timestamp)
    [latest] = [m.latest_versions for m in registry.search_registered_models() if m.name == name]
    assert {v.version for v in latest} == {"1", "2"} and {v.name for v in latest} == {name}

    tick()
    start_3 = now()
    registry.update_model_version(name=name, version=1, description="This is a test model")
    end_3 = now()
    described = registry.get_model_version(name, "1")
    assert str(described.description) == "This is a test model"
    between(start_1, end_1, described.creation_timestamp)
    between(start_3, end_3, described.last_updated_timestamp)
    # A version's description leaves its model's update time alone.
    between(start_2, end_2, registry.get_registered_model(name).last_updated_timestamp)


def test_the_latest_version_of_each_stage(registry):
    """test_latest_models"""
    name = "LatestVersionTest"
    [run_id] = run_ids(registry, 1)
    registry.create_registered_model(name)
    for version, stage in [("1", "Archived"), ("2", "Production"), ("3", "Archived"), ("4", "Production"),
                           ("5", "Staging"), ("6", "Staging"), ("7", "None")]:
        tick()
        assert registry.create_model_version(name, f"runs:/{run_id}/model", run_id).version == version
        if stage != "None":
            registry.transition_model_version_stage(name, version, stage=stage)
        assert registry.get_model_version(name, version).current_stage == stage

    latest = lambda stages: {v.current_stage: v.version for v in registry.get_latest_versions(name, stages)}  # noqa: E731
    assert latest(["None"]) == {"None": "7"}
    assert latest(["Staging"]) == {"Staging": "6"}
    assert latest(["None", "Staging"]) == {"None": "7", "Staging": "6"}
    every = {"Production": "4", "Staging": "6", "Archived": "3", "None": "7"}
    assert latest(None) == every
    assert latest([]) == every


def test_a_deleted_model_version_is_gone_and_its_number_not_reused(registry):
    """test_delete_model_version_flow"""
    name = "DeleteMVTest"
    run_1, run_2 = run_ids(registry, 2)
    start_0 = now()
    registry.create_registered_model(name)
    end_0 = now()
    registry.create_model_version(name, f"runs:/{run_1}/model", run_1)
    registry.create_model_version(name, f"runs:/{run_1}/another_model", run_1)
    assert registry.create_model_version(name, f"runs:/{run_2}/a/b/c", run_2).version == "3"
    [latest] = [m.latest_versions for m in registry.search_registered_models() if m.name == name]
    assert latest[0].version == "3"
    versions = lambda: {v.version for v in registry.search_model_versions(f"name = '{name}'")}  # noqa: E731
    assert versions() == {"1", "2", "3"}

    tick()
    start_2 = now()
    registry.delete_model_version(name, "1")
    end_2 = now()
    assert versions() == {"2", "3"}
    model = registry.get_registered_model(name)
    between(start_0, end_0, model.creation_timestamp)
    between(start_2, end_2, model.last_updated_timestamp)
    with pytest.raises(MlflowException, match=r"Model Version .+ not found"):
        registry.delete_model_version(name, "1")
    with pytest.raises(MlflowException, match=r"Model Version .+ not found"):
        registry.update_model_version(name=name, version=1, description="Test model")
    with pytest.raises(MlflowException, match=r"Model Version .+ not found"):
        registry.transition_model_version_stage(name=name, version=1, stage="Staging")

    registry.delete_model_version(name, 3)
    assert versions() == {"2"}
    assert registry.create_model_version(name, f"runs:/{run_2}/a/b/c", run_2).version == "4"
    assert versions() == {"2", "4"}


def test_model_version_tags_set_delete_and_empty(registry):
    """test_set_delete_model_version_tag_flow, test_set_model_version_tag_with_empty_string_as_value"""
    name = "SetDeleteMVTagTest"
    [run_id] = run_ids(registry, 1)
    registry.create_registered_model(name)
    registry.create_model_version(name, f"runs:/{run_id}/model", run_id)
    assert registry.get_model_version(name, "1").tags == {}
    registry.set_model_version_tag(name, "1", "key", "value")
    registry.set_model_version_tag(name, "1", "numeric value", 12345)
    assert registry.get_model_version(name, "1").tags == {"key": "value", "numeric value": "12345"}
    registry.delete_model_version_tag(name, "1", "key")
    assert registry.get_model_version(name, "1").tags == {"numeric value": "12345"}
    registry.set_model_version_tag(name, "1", "tag_key", "")
    assert registry.get_model_version(name, "1").tags["tag_key"] == ""


def test_an_alias_names_a_version_until_deleted(registry):
    """test_set_delete_registered_model_alias_and_get_model_version_by_alias_flow"""
    name = "SetDeleteGetRMAliasTest"
    [run_id] = run_ids(registry, 1)
    registry.create_registered_model(name)
    registry.create_model_version(name, f"runs:/{run_id}/model", run_id)
    assert registry.get_registered_model(name).aliases == {}
    assert registry.get_model_version(name, "1").aliases == []
    registry.set_registered_model_alias(name, "test_alias", "1")
    assert registry.get_registered_model(name).aliases == {"test_alias": "1"}
    version = registry.get_model_version(name, "1")
    assert version.aliases == ["test_alias"]
    assert registry.get_model_version_by_alias(name, "test_alias") == version
    registry.delete_registered_model_alias(name, "test_alias")
    assert registry.get_registered_model(name).aliases == {}
    assert registry.get_model_version(name, "1").aliases == []


def test_a_copied_version_points_at_its_source_version(registry):
    """test_copy_model_version_flow"""
    name = "CopyMVTest"
    [run_id] = run_ids(registry, 1)
    registry.create_registered_model(name)
    source = registry.create_model_version(name, f"runs:/{run_id}/model", run_id, description="dummy",
                                           tags={"hello": "world"})
    registry.set_registered_model_alias(name, "test_alias", "1")
    copy = registry.copy_model_version(f"models:/{name}@test_alias", name)
    assert (copy.version, copy.name) == ("2", name)
    copy = registry.get_model_version(name, 2)
    assert (copy.source, copy.description, copy.run_id, copy.tags) == (
        f"models:/{name}/1", "dummy", run_id, {"hello": "world"})
    assert registry.get_model_version_download_uri(name, 2) == source.source
