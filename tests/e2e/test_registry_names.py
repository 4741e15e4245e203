"""Registered model names after deletion, through the official mlflow
client, the Tandem CLI and raw HTTP: as in MLflow a deleted registered model
frees its name at once, and `create_registered_model` with it succeeds; the
deleted model stays in `tandem deleted list` (under an id `name:<hex>`) and
is recoverable for its retention: under its name while the name is free,
else only under a new one (`--as`, or `{"name": …}` on the API). A backup
restored into another server (the journal replayed) holds the same."""

import requests
from mlflow.tracking import MlflowClient

from support import expect_error, unique
from test_recovery_softdelete import tandem, tandem_json


def model_with_versions(client, name: str, description: str, versions: int) -> None:
    client.create_registered_model(name, tags={"team": description}, description=description)
    for n in range(1, versions + 1):
        client.create_model_version(name, f"s3://bucket/{description}/{n}", tags={"n": str(n)})


def deleted_models(server, workspace: str, name: str) -> list[dict]:
    listed = tandem_json(server, "deleted", "list", "--workspace", workspace)
    return [item for item in listed if item["kind"] == "registered_model" and item["name"] == name]


def recover_url(server, workspace: str, item_id: str) -> str:
    return f"{server.url}/api/tandem/v1/workspaces/{workspace}/deleted/registered_model/{item_id}/recover"


def test_delete_recreate_and_recover_under_a_new_name(server, tracking_uri, client):
    name = unique("model")
    model_with_versions(client, name, "old", 2)
    client.set_registered_model_alias(name, "prod", "2")
    client.delete_registered_model(name)

    # The name is free at once: the new model is the only one MLflow sees.
    model_with_versions(client, name, "new", 1)
    fresh = client.get_registered_model(name)
    assert (fresh.description, fresh.tags, fresh.aliases) == ("new", {"team": "new"}, {})
    assert [m.description for m in client.search_registered_models(f"name = '{name}'")] == ["new"]
    versions = client.search_model_versions(f"name = '{name}'")
    assert [(v.version, v.source) for v in versions] == [("1", "s3://bucket/new/1")]
    assert [v.version for v in client.get_latest_versions(name)] == ["1"]
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version, name, "2")
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version_by_alias, name, "prod")
    # Creating it a third time is MLflow's plain "already exists".
    expect_error("RESOURCE_ALREADY_EXISTS", client.create_registered_model, name)

    # The deleted one is listed, by the key it is kept under.
    [item] = deleted_models(server, "default", name)
    assert item["id"].startswith(f"{name}:"), item
    assert item["purge_after"] - item["deletion_time"] == 14 * 86_400_000

    # Its name is taken: recovery is refused (CLI exit 4, API 400
    # RESOURCE_ALREADY_EXISTS), and the message says to give a new name.
    error = tandem(server, "deleted", "recover", "registered_model", item["id"], "--workspace", "default", expect=4)
    assert "new name" in error and "--as" in error, error
    refused = requests.post(recover_url(server, "default", item["id"]), timeout=30)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert "new name" in refused.json()["message"]
    # A new name that is taken is refused too.
    refused = requests.post(recover_url(server, "default", item["id"]), json={"name": name}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error_code"] == "RESOURCE_ALREADY_EXISTS", refused.text
    # --as is for registered models only.
    tandem(server, "deleted", "recover", "run", "x", "--as", "y", "--workspace", "default", expect=2)

    # Recovered under a new name with the CLI: versions, tags and aliases follow.
    old_name = f"{name}-old"
    out = tandem(server, "deleted", "recover", "registered_model", item["id"], "--as", old_name,
                 "--workspace", "default")
    assert out.strip() == f"recovered registered_model {item['id']} as {old_name}", out
    old = client.get_registered_model(old_name)
    assert (old.description, old.tags, old.aliases) == ("old", {"team": "old"}, {"prod": "2"})
    by_alias = client.get_model_version_by_alias(old_name, "prod")
    assert (by_alias.name, by_alias.version, by_alias.source) == (old_name, "2", "s3://bucket/old/2")
    assert sorted(v.version for v in client.search_model_versions(f"name = '{old_name}'")) == ["1", "2"]
    assert client.create_model_version(old_name, "s3://bucket/old/3").version == "3"
    # The new model is untouched, and nothing is left deleted.
    assert client.get_registered_model(name).description == "new"
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert deleted_models(server, "default", name) == []
    assert deleted_models(server, "default", old_name) == []


def test_recovery_under_its_name_when_free_and_through_the_api(server, tracking_uri, client):
    name = unique("model")
    model_with_versions(client, name, "first", 1)
    client.delete_registered_model(name)
    model_with_versions(client, name, "second", 1)
    client.delete_registered_model(name)
    first, second = sorted(deleted_models(server, "default", name), key=lambda item: item["deletion_time"])
    assert first["id"] != second["id"]

    # Two deleted models share the name: it is ambiguous, their ids are not.
    ambiguous = tandem(server, "deleted", "recover", "registered_model", name, "--workspace", "default", expect=1)
    assert first["id"] in ambiguous and second["id"] in ambiguous, ambiguous
    # The name is free: the first comes back under it (by its id, no body).
    recovered = requests.post(recover_url(server, "default", first["id"]), timeout=30)
    assert recovered.status_code == 200, recovered.text
    assert client.get_registered_model(name).description == "first"
    # The second under a new name through the API's body.
    other = f"{name}-2"
    recovered = requests.post(recover_url(server, "default", second["id"]), json={"name": other}, timeout=30)
    assert recovered.status_code == 200, recovered.text
    assert recovered.json() == {"recovered": {"kind": "registered_model", "id": second["id"]}, "name": other}
    model = client.get_registered_model(other)
    assert (model.description, [v.version for v in client.search_model_versions(f"name = '{other}'")]) == (
        "second", ["1"])
    # A malformed body or name is refused.
    bad = requests.post(recover_url(server, "default", "nope"), json={"nom": "x"}, timeout=30)
    assert bad.status_code == 400, bad.text


def test_a_restore_replays_the_deleted_model_beside_the_new_one(server, tmp_path):
    from conftest import _start, _stop, _tandem_bin

    workspace = unique("ws")
    created = requests.post(f"{server.url}/api/tandem/v1/workspaces", json={"name": workspace}, timeout=30)
    assert created.status_code == 201, created.text
    uri = f"{server.url}/w/{workspace}"
    client = MlflowClient(uri, uri)
    model_with_versions(client, "clf", "old", 2)
    client.delete_registered_model("clf")
    model_with_versions(client, "clf", "new", 1)
    [kept] = deleted_models(server, workspace, "clf")

    repository = f"file://{tmp_path / 'repository'}"
    manifest = tandem_json(server, "backup", "create", "--to", repository, "--workspace", workspace)
    target_root = tmp_path / "restored"
    target_root.mkdir()
    restored = _start(_tandem_bin(), "sqlite", target_root / "data", target_root / "server.log", None)
    try:
        tandem_json(restored, "backup", "restore", "--from", repository, "--workspace", workspace,
                    "--backup", manifest["id"], "--into", restored.url)
        there = MlflowClient(f"{restored.url}/w/{workspace}", f"{restored.url}/w/{workspace}")
        assert there.get_registered_model("clf").description == "new"
        assert [v.source for v in there.search_model_versions("name = 'clf'")] == ["s3://bucket/new/1"]
        assert deleted_models(restored, workspace, "clf") == [kept]
        tandem(restored, "deleted", "recover", "registered_model", kept["id"], "--workspace", workspace, expect=4)
        tandem(restored, "deleted", "recover", "registered_model", kept["id"], "--as", "clf-old",
               "--workspace", workspace)
        assert sorted(v.version for v in there.search_model_versions("name = 'clf-old'")) == ["1", "2"]
        assert there.get_registered_model("clf-old").description == "old"
    finally:
        _stop(restored.process)
