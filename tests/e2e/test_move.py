"""`tandem move`: experiments and registered models move between two
workspaces of one deployment, online, in one transaction, checked through
the official mlflow client: everything arrives as it was (ids, times,
histories, artifacts byte for byte, versions, stages, aliases), nothing is
left behind, what would break a reference is refused with what to add, and
moving back restores the source exactly. On a replicated pair the move
reaches the secondary."""

import hashlib
import json
import math
import os
import subprocess
import uuid

import mlflow
import pytest
import requests
from mlflow.entities import Metric, Param, RunTag

from cluster import make_cluster
from conftest import BACKENDS, _point_client_at, _reset_fluent_state, _tandem_bin, own_server
from support import expect_error, journal, unique


def tandem(url, *args, expect=0):
    result = subprocess.run([os.environ.get("TANDEM_BIN") or _tandem_bin(), *args, "--url", url],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == expect, (args, result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    return result


def move(url, source, target, *objects, expect=0, dry_run=False):
    args = ["move", "--from", source, "--to", target, "--json", *objects]
    if dry_run:
        args.append("--dry-run")
    result = tandem(url, *args, expect=expect)
    return json.loads(result.stdout) if expect == 0 else result


def client_for(base, workspace):
    uri = f"{base}/w/{workspace}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def workspace(base):
    name = unique("ws")
    response = requests.post(f"{base}/api/tandem/v1/workspaces", json={"name": name}, timeout=30)
    assert response.status_code in (200, 201), response.text
    return name


def fill(client, tmp_path):
    """An experiment with nested, deleted and finished runs, a history with
    NaN and ±Inf, a dataset input, binary artifacts, a logged model, and a
    registered model whose versions come from a run and from the logged
    model (stage, alias, tags)."""
    name = unique("moving")
    experiment_id = client.create_experiment(name, tags={"team": "a"})
    parent = client.create_run(experiment_id, run_name="parent", start_time=1_000)
    child = client.create_run(experiment_id, run_name="child", start_time=2_000,
                              tags={"mlflow.parentRunId": parent.info.run_id})
    points = [Metric("loss", 1.0 / (step + 1), 10_000 + step, step) for step in range(2_000)]
    points += [Metric("odd", value, 20_000 + i, i) for i, value in enumerate([math.nan, math.inf, -math.inf, 0.5])]
    client.log_batch(parent.info.run_id, metrics=points, params=[Param("lr", "0.01")], tags=[RunTag("stage", "train")])
    client.log_inputs(child.info.run_id, [mlflow.entities.DatasetInput(
        mlflow.entities.Dataset(name="train", digest="abc123", source_type="local", source="/data/train.csv"),
        tags=[mlflow.entities.InputTag("mlflow.data.context", "training")])])
    payload = os.urandom(1024 * 1024 + 17)
    (tmp_path / "weights.bin").write_bytes(payload)
    client.log_artifact(parent.info.run_id, str(tmp_path / "weights.bin"), artifact_path="model")
    (tmp_path / "notes.txt").write_text("moved with its run\n")
    client.log_artifact(child.info.run_id, str(tmp_path / "notes.txt"))
    client.set_terminated(child.info.run_id, end_time=3_000)
    client.set_terminated(parent.info.run_id, end_time=4_000)
    doomed = client.create_run(experiment_id, run_name="doomed")
    client.log_param(doomed.info.run_id, "p", "1")
    client.delete_run(doomed.info.run_id)
    logged = client.create_logged_model(experiment_id, name="packaged", params={"depth": "3"}, tags={"k": "v"})
    (tmp_path / "packaged").mkdir()
    (tmp_path / "packaged" / "MLmodel").write_text("flavors: {}\n")
    client.log_model_artifacts(logged.model_id, str(tmp_path / "packaged"))
    client.finalize_logged_model(logged.model_id, mlflow.entities.LoggedModelStatus.READY)
    model = unique("model")
    client.create_registered_model(model, tags={"owner": "ml"}, description="moves")
    first = client.create_model_version(model, f"runs:/{parent.info.run_id}/model", run_id=parent.info.run_id)
    client.transition_model_version_stage(model, first.version, "Production")
    client.set_model_version_tag(model, first.version, "checked", "yes")
    second = client.create_model_version(model, f"models:/{logged.model_id}", model_id=logged.model_id)
    client.set_registered_model_alias(model, "champion", second.version)
    return {
        "experiment": name,
        "experiment_id": experiment_id,
        "runs": [parent.info.run_id, child.info.run_id, doomed.info.run_id],
        "logged_model": logged.model_id,
        "model": model,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def snapshot(client, expected, tmp_path):
    """Everything the client shows of what `fill` made, ids included."""
    experiment = client.get_experiment_by_name(expected["experiment"])
    runs = {}
    for run_id in expected["runs"]:
        run = client.get_run(run_id)
        runs[run_id] = {
            "run": run.to_dictionary(),
            "history": [(m.step, m.timestamp, repr(m.value)) for m in client.get_metric_history(run_id, "loss")],
            "odd": [repr(m.value) for m in client.get_metric_history(run_id, "odd")],
            "artifacts": sorted(a.path for a in client.list_artifacts(run_id)),
        }
    weights = client.download_artifacts(expected["runs"][0], "model/weights.bin",
                                        dst_path=str(tmp_path / uuid.uuid4().hex))
    with open(weights, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    logged = client.get_logged_model(expected["logged_model"])
    versions = sorted(
        (v.version, v.current_stage, v.source, v.run_id, v.tags, v.creation_timestamp, v.status)
        for v in client.search_model_versions(f"name = '{expected['model']}'")
    )
    registered = client.get_registered_model(expected["model"])
    return {
        "experiment": (experiment.experiment_id, experiment.name, experiment.tags, experiment.creation_time,
                       experiment.last_update_time, experiment.artifact_location),
        "runs": runs,
        "weights": digest,
        "logged": (logged.model_id, logged.name, logged.params, logged.tags, str(logged.status),
                   logged.creation_timestamp),
        "versions": versions,
        "registered": (registered.name, registered.description, registered.tags, registered.aliases,
                       registered.creation_timestamp, registered.last_updated_timestamp),
    }


def test_a_move_takes_everything_leaves_nothing_and_moving_back_undoes_it(server, tmp_path, monkeypatch):
    base = server.url
    source, target = workspace(base), workspace(base)
    source_client, target_client = client_for(base, source), client_for(base, target)
    expected = fill(source_client, tmp_path)
    before = snapshot(source_client, expected, tmp_path)
    assert before["weights"] == expected["sha256"]
    experiment, model = expected["experiment"], expected["model"]

    # Either half alone would leave a version pointing across workspaces:
    # refused, naming what to add, and nothing moves.
    refused = move(base, source, target, "--experiment", experiment, expect=1)
    assert f"move '{model}' too" in refused.stderr, refused.stderr
    refused = move(base, source, target, "--registered-model", model, expect=1)
    assert f"--experiment '{experiment}'" in refused.stderr, refused.stderr
    assert snapshot(source_client, expected, tmp_path) == before

    # A dry run counts and writes nothing.
    head = len(journal(base))
    planned = move(base, source, target, "--experiment", experiment, "--registered-model", model, dry_run=True)
    assert planned["dry_run"] and planned["runs"] == 3 and planned["logged_models"] == 1
    assert planned["model_versions"] == 2 and planned["metric_points"] == 2_004 and planned["artifacts"] == 3
    assert len(journal(base)) == head

    moved = move(base, source, target, "--experiment", experiment, "--registered-model", model)
    assert not moved["dry_run"]
    assert moved["experiments"] == [{"name": experiment, "from_id": expected["experiment_id"],
                                     "to_id": expected["experiment_id"]}]
    assert moved["registered_models"] == [model]
    assert {k: moved[k] for k in ("runs", "logged_models", "model_versions", "metric_points", "artifacts")} == \
        {k: planned[k] for k in ("runs", "logged_models", "model_versions", "metric_points", "artifacts")}
    # One transaction: the departures in the source's journal, the arrivals
    # in the target's, nothing else in between.
    records = journal(base)[head:]
    assert len(records) == moved["changes"]
    kinds = [r["change"]["type"] for r in records]
    assert kinds.count("experiment_moved_out") == 1 and kinds.count("registered_model_moved_out") == 1
    assert kinds[:2] == ["registered_model_moved_out", "experiment_moved_out"]

    # Everything is in the target, as it was, under the same ids.
    assert snapshot(target_client, expected, tmp_path) == before
    _point_client_at(f"{base}/w/{target}", monkeypatch)
    download = mlflow.artifacts.download_artifacts(f"models:/{model}/1", dst_path=str(tmp_path / "by-version"))
    with open(os.path.join(download, "weights.bin"), "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == expected["sha256"]
    _reset_fluent_state()
    # Nothing is left in the source.
    assert source_client.get_experiment_by_name(experiment) is None
    for run_id in expected["runs"]:
        expect_error("RESOURCE_DOES_NOT_EXIST", source_client.get_run, run_id)
    expect_error("RESOURCE_DOES_NOT_EXIST", source_client.get_registered_model, model)
    expect_error("RESOURCE_DOES_NOT_EXIST", source_client.get_logged_model, expected["logged_model"])

    # The target keeps working on what arrived.
    target_client.log_metric(expected["runs"][1], "after", 1.0)

    # Moving back undoes the move.
    back = move(base, target, source, "--experiment", experiment, "--registered-model", model)
    assert back["experiments"][0]["to_id"] == expected["experiment_id"]
    after = snapshot(source_client, expected, tmp_path)
    child = expected["runs"][1]
    assert [m.value for m in source_client.get_metric_history(child, "after")] == [1.0]
    # The only difference is the metric logged in between.
    for snap in (after, before):
        snap["runs"][child]["run"]["data"]["metrics"].pop("after", None)
    assert after == before
    assert target_client.get_experiment_by_name(experiment) is None


def test_a_move_refuses_names_the_target_holds_and_unknown_objects(server, tmp_path):
    base = server.url
    source, target = workspace(base), workspace(base)
    source_client, target_client = client_for(base, source), client_for(base, target)
    name = unique("clash")
    experiment_id = source_client.create_experiment(name)
    run_id = source_client.create_run(experiment_id).info.run_id
    target_client.create_experiment(name)
    head = len(journal(base))
    refused = move(base, source, target, "--experiment", name, expect=4)
    assert f"already has an experiment named '{name}'" in refused.stderr
    assert len(journal(base)) == head
    assert source_client.get_run(run_id).info.experiment_id == experiment_id

    missing = move(base, source, target, "--experiment", unique("none"), expect=3)
    assert "No experiment" in missing.stderr
    missing = move(base, source, unique("nowhere"), "--experiment", name, expect=3)
    default = move(base, source, target, "--experiment", "0", expect=1)
    assert "Default experiment" in default.stderr
    usage = tandem(base, "move", "--from", source, "--to", target, expect=2)
    assert "--experiment" in usage.stderr

    # The experiment id is kept only where it is free: each workspace
    # numbers its own, so the target's clashing experiment holds it.
    renamed = unique("renumbered")
    source_client.rename_experiment(experiment_id, renamed)
    taken = [e.experiment_id for e in target_client.search_experiments()]
    assert experiment_id in taken
    moved = move(base, source, target, "--experiment", renamed)
    new_id = moved["experiments"][0]["to_id"]
    assert new_id not in taken
    run = target_client.get_run(run_id)
    assert run.info.experiment_id == new_id
    assert run.info.artifact_uri.startswith(f"mlflow-artifacts:/{new_id}/")


def test_a_move_reaches_the_secondary(tmp_path):
    (tmp_path / "cluster").mkdir()
    cluster = make_cluster(_tandem_bin(), tmp_path / "cluster")
    try:
        base = cluster.primary.url
        source, target = workspace(base), workspace(base)
        client = client_for(base, source)
        name = unique("replicated")
        experiment_id = client.create_experiment(name)
        run_id = client.create_run(experiment_id).info.run_id
        client.log_metric(run_id, "m", 1.5, step=3)
        payload = os.urandom(300_000)
        (tmp_path / "blob.bin").write_bytes(payload)
        client.log_artifact(run_id, str(tmp_path / "blob.bin"))
        client.set_terminated(run_id)
        move(base, source, target, "--experiment", name)
        cluster.wait_caught_up()
        replica_source = client_for(cluster.secondaries[0].url, source)
        replica_target = client_for(cluster.secondaries[0].url, target)
        assert replica_source.get_experiment_by_name(name) is None
        expect_error("RESOURCE_DOES_NOT_EXIST", replica_source.get_run, run_id)
        run = replica_target.get_run(run_id)
        assert run.data.metrics == {"m": 1.5}
        path = replica_target.download_artifacts(run_id, "blob.bin", dst_path=str(tmp_path / "replica"))
        with open(path, "rb") as handle:
            assert handle.read() == payload
    finally:
        cluster.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_moving_back_and_forth_while_the_collector_runs_loses_no_file(backend, tmp_path, monkeypatch):
    """A move out queues the source's prefix for collection; moving back
    copies into that same prefix before its commit gives the files their
    owner again. A collection between that copy and the commit deleted
    them (now and then, in the test above); with a run of 300 files to copy
    and the collector every 100 ms, one lands there in most rounds unless
    moves and the collector are fenced apart."""
    monkeypatch.setenv("TANDEM_GC_INTERVAL_MS", "100")
    with own_server(backend, tmp_path, "fence") as server:
        base = server.url
        a, b = workspace(base), workspace(base)
        client = client_for(base, a)
        name = unique("fenced")
        experiment_id = client.create_experiment(name)
        run_id = client.create_run(experiment_id).info.run_id
        files = tmp_path / "files"
        files.mkdir()
        for i in range(300):
            (files / f"f{i:03d}.txt").write_text(f"file {i}\n")
        client.log_artifacts(run_id, str(files))
        here, there = a, b
        for round in range(8):
            move(base, here, there, "--experiment", name)
            here, there = there, here
            held = [f.path for f in client_for(base, here).list_artifacts(run_id)]
            assert len(held) == 300, f"round {round}: {len(held)} of 300 files left"
            response = requests.get(f"{base}/w/{here}/get-artifact", params={"run_uuid": run_id, "path": "f123.txt"},
                                    timeout=30)
            assert response.status_code == 200 and response.text == "file 123\n", (round, response.status_code)
