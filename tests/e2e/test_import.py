"""`tandem import` and `tandem sync` against a real `mlflow server` 3.17.2
(the full mlflow package, in its own venv: TANDEM_MLFLOW_SERVER_VENV,
default ~/.cache/tandem-mlflow-server-venv, which scripts/test makes),
filled through the official client with nested runs, a deleted run and its
model version, version gaps, dataset inputs, a 100,000-point history,
NaN/±Inf values, aliases, stages, a logged model and artifacts. Everything
is compared object by object and byte by byte through the client; a second
import changes nothing; a change at the source is copied alone; a copy
killed midway finishes when run again; a Tandem workspace is a source too."""

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from cluster import FaultProxy, free_port
from conftest import _start, _stop, _tandem_bin
from support import unique

SERVER_VENV = Path(os.environ.get("TANDEM_MLFLOW_SERVER_VENV", Path.home() / ".cache/tandem-mlflow-server-venv"))
LONG_HISTORY = 100_000


def start_mlflow_server(root: Path, backend_store: str | None = None):
    """An `mlflow server` keeping its records in `backend_store` (a SQLite
    file under `root` by default) and its files under `root / "artifacts"`."""
    binary = SERVER_VENV / "bin" / "mlflow"
    if not binary.exists():
        pytest.fail(f"no `mlflow server` at {binary}: scripts/test installs mlflow==3.17.2 there", pytrace=False)
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / "mlflow.log", "ab")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    process = subprocess.Popen(
        [str(binary), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend_store or f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited: {(root / 'mlflow.log').read_text()[-3000:]}", pytrace=False)
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail("mlflow server not healthy after 120 s", pytrace=False)


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tandem(server, *args, expect=0, timeout=600):
    result = subprocess.run([os.environ["TANDEM_BIN"], *args, "--url", server.url],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == expect, (args, result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    return result


def import_json(server, source, workspace, *extra, expect=0):
    result = tandem(server, "import", "--from", source, "--into", workspace, "--json", *extra, expect=expect)
    return json.loads(result.stdout)


def fill(uri: str, tmp: Path) -> dict:
    """The source's content, made through the official client."""
    client = MlflowClient(uri, uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = unique("imp")
    experiment_id = client.create_experiment(name, tags={"team": "a"})
    gone_experiment = client.create_experiment(unique("imp-gone"))
    client.delete_experiment(gone_experiment)

    parent = client.create_run(experiment_id, run_name="parent", tags={"k": "v"})
    pid = parent.info.run_id
    client.log_batch(pid, params=[Param("lr", "0.01"), Param("layers", "3")])
    now = int(time.time() * 1000)
    special = [Metric("special", value, now + i, i) for i, value in enumerate([float("nan"), float("inf"), float("-inf"), 1.5])]
    client.log_batch(pid, metrics=special)
    for start in range(0, LONG_HISTORY, 1000):
        client.log_batch(pid, metrics=[Metric("loss", 1.0 / (step + 1), now + step, step)
                                       for step in range(start, start + 1000)])
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.1, 0.2, 0.3]})
    dataset = mlflow.data.from_pandas(frame, name="train-set")
    client.log_inputs(pid, datasets=[mlflow.entities.DatasetInput(dataset._to_mlflow_entity(),
                                                                  tags=[mlflow.entities.InputTag("mlflow.data.context", "training")])])
    files = tmp / "files"
    (files / "nested").mkdir(parents=True)
    (files / "notes.txt").write_text("hello")
    (files / "nested" / "blob.bin").write_bytes(os.urandom(1_500_000))
    client.log_artifacts(pid, str(files))
    client.set_terminated(pid, "FINISHED")

    child = client.create_run(experiment_id, run_name="child", tags={"mlflow.parentRunId": pid})
    client.log_metric(child.info.run_id, "acc", 0.9, step=1)
    client.set_terminated(child.info.run_id, "FAILED")

    doomed = client.create_run(experiment_id, run_name="doomed")
    client.log_artifact(doomed.info.run_id, str(files / "notes.txt"), "model")
    client.set_terminated(doomed.info.run_id)

    model = unique("imp-model")
    client.create_registered_model(model, tags={"owner": "x"}, description="the model")
    source = f"{parent.info.artifact_uri}/nested"
    v1 = client.create_model_version(model, source, pid, description="first")
    v2 = client.create_model_version(model, source, pid)
    v3 = client.create_model_version(model, f"{doomed.info.artifact_uri}/model", doomed.info.run_id,
                                     tags={"stage": "candidate"})
    client.delete_model_version(model, v2.version)
    client.transition_model_version_stage(model, v1.version, "Production")
    client.set_registered_model_alias(model, "champion", v3.version)
    client.delete_run(doomed.info.run_id)

    # A logged model with artifacts, registered from its models:/ URI.
    logged = client.create_logged_model(experiment_id, name="lm", source_run_id=pid, params={"alpha": "1"})
    client.log_model_artifacts(logged.model_id, str(files))
    client.finalize_logged_model(logged.model_id, mlflow.entities.LoggedModelStatus.READY)
    lm_model = unique("imp-lm")
    client.create_registered_model(lm_model)
    client.create_model_version(lm_model, f"models:/{logged.model_id}", model_id=logged.model_id)
    return {"experiment": name, "experiment_id": experiment_id, "model": model, "lm_model": lm_model,
            "parent": pid, "child": child.info.run_id, "doomed": doomed.info.run_id, "logged": logged.model_id,
            "gone_experiment": gone_experiment}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-source")
    process, url = start_mlflow_server(root / "server")
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    try:
        content = fill(url, root)
        content["url"] = url
        yield content
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
        stop(process)


def sha_tree(client: MlflowClient, run_id: str, tmp: Path) -> dict:
    out = tmp / unique("dl")
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="", dst_path=str(out),
                                                     tracking_uri=client._tracking_client.tracking_uri))
    return {str(path.relative_to(local)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in local.rglob("*") if path.is_file()}


def history(client, run_id, key):
    points = client.get_metric_history(run_id, key)
    return sorted((m.step, m.timestamp, "nan" if math.isnan(m.value) else m.value) for m in points)


def compare_runs(src: MlflowClient, dst: MlflowClient, run_id: str, tmp: Path):
    a, b = src.get_run(run_id), dst.get_run(run_id)
    for field in ("run_id", "run_name", "status", "start_time", "end_time", "user_id", "lifecycle_stage"):
        assert getattr(a.info, field) == getattr(b.info, field), field
    assert a.data.params == b.data.params
    assert a.data.tags == b.data.tags
    assert a.data.metrics.keys() == b.data.metrics.keys()
    for key in a.data.metrics:
        assert history(src, run_id, key) == history(dst, run_id, key), key
    assert [(d.dataset.name, d.dataset.digest, [(t.key, t.value) for t in d.tags]) for d in a.inputs.dataset_inputs] == \
        [(d.dataset.name, d.dataset.digest, [(t.key, t.value) for t in d.tags]) for d in b.inputs.dataset_inputs]
    if a.info.lifecycle_stage == "active":
        assert sha_tree(src, run_id, tmp) == sha_tree(dst, run_id, tmp)


def test_import_from_mlflow_server_is_lossless_and_idempotent(server, make_workspace, source, tmp_path):
    target_uri = make_workspace()
    workspace = target_uri.rsplit("/", 1)[1]
    report = import_json(server, source["url"], workspace, "--include-deleted")
    assert report["failures"] == [], report["failures"]
    assert report["runs"]["created"] == 3 and report["runs"]["failed"] == 0
    assert report["metric_points"] >= LONG_HISTORY
    src, dst = MlflowClient(source["url"], source["url"]), MlflowClient(target_uri, target_uri)

    # Experiments: name, tags, times, lifecycle (the deleted one with --include-deleted).
    a = src.get_experiment(source["experiment_id"])
    b = dst.get_experiment_by_name(source["experiment"])
    assert (a.tags, a.creation_time, a.last_update_time, a.lifecycle_stage) == \
        (b.tags, b.creation_time, b.last_update_time, b.lifecycle_stage)
    gone = src.get_experiment(source["gone_experiment"])
    copied = dst.get_experiment_by_name(gone.name)
    assert copied is not None and copied.lifecycle_stage == "deleted"

    # Runs: the same ids, every field, complete histories (NaN, ±Inf), datasets, artifacts byte for byte.
    for run_id in (source["parent"], source["child"], source["doomed"]):
        compare_runs(src, dst, run_id, tmp_path)
    assert len(dst.get_metric_history(source["parent"], "loss")) == LONG_HISTORY
    assert dst.get_run(source["child"]).data.tags["mlflow.parentRunId"] == source["parent"]
    assert dst.get_run(source["doomed"]).info.lifecycle_stage == "deleted"

    # Registered models: numbers with their gap, stages, aliases, tags, descriptions, sources here.
    def versions(client, name):
        return sorted((v.version, v.current_stage, v.description, v.tags, v.run_id, v.creation_timestamp)
                      for v in client.search_model_versions(f"name='{name}'"))
    assert versions(src, source["model"]) == versions(dst, source["model"])
    assert [v[0] for v in versions(dst, source["model"])] == ["1", "3"]
    ra, rb = src.get_registered_model(source["model"]), dst.get_registered_model(source["model"])
    assert (ra.description, ra.tags, ra.aliases, ra.creation_timestamp, ra.last_updated_timestamp) == \
        (rb.description, rb.tags, rb.aliases, rb.creation_timestamp, rb.last_updated_timestamp)
    assert dst.get_model_version(source["model"], "1").source.startswith("mlflow-artifacts:")
    # The version's files are the imported run's, downloadable here.
    mlflow.set_tracking_uri(target_uri)
    mlflow.set_registry_uri(target_uri)
    local = mlflow.artifacts.download_artifacts(f"models:/{source['model']}/1", tracking_uri=target_uri,
                                                dst_path=str(tmp_path / "mv"))
    assert [p.stat().st_size for p in Path(local).rglob("blob.bin")] == [1_500_000]

    # The logged model, its artifacts, and the version made from it.
    la, lb = src.get_logged_model(source["logged"]), dst.get_logged_model(source["logged"])
    assert (la.name, la.params, la.status, la.source_run_id) == (lb.name, lb.params, lb.status, lb.source_run_id)
    lm_version = requests.get(f"{target_uri}/api/2.0/mlflow/model-versions/get",
                              params={"name": source["lm_model"], "version": "1"}, timeout=30).json()["model_version"]
    assert (lm_version["model_id"], lm_version["source"]) == (source["logged"], f"models:/{source['logged']}")
    lm_files = mlflow.artifacts.download_artifacts(f"models:/{source['lm_model']}/1", tracking_uri=target_uri,
                                                   dst_path=str(tmp_path / "lm"))
    assert [p.read_text() for p in Path(lm_files).rglob("notes.txt")] == ["hello"]

    # A second import changes nothing: no journal record is written.
    head = requests.get(f"{server.url}/api/tandem/v1/region", timeout=30).json()
    again = import_json(server, source["url"], workspace, "--include-deleted")
    assert again["failures"] == []
    for kind in ("experiments", "runs", "logged_models", "registered_models"):
        assert again[kind]["created"] == 0 and again[kind]["updated"] == 0, (kind, again[kind])
    assert again["artifacts_copied"] == 0
    assert requests.get(f"{server.url}/api/tandem/v1/region", timeout=30).json() == head

    # A change at the source is copied alone.
    src.log_metric(source["child"], "acc", 0.95, step=2)
    src.set_tag(source["child"], "note", "later")
    third = import_json(server, source["url"], workspace, "--include-deleted")
    assert third["runs"]["updated"] == 1 and third["runs"]["created"] == 0, third["runs"]
    compare_runs(src, dst, source["child"], tmp_path)

    # A file logged to a finished run that had none (its directory did not
    # exist when the source was last listed) is noticed and copied.
    # (The source is shared by both backends' runs: a name of its own.)
    late = tmp_path / f"{unique('late')}.txt"
    late.write_text("late")
    src.log_artifact(source["child"], str(late))
    fourth = import_json(server, source["url"], workspace, "--include-deleted")
    assert fourth["runs"]["updated"] == 1 and fourth["artifacts_copied"] == 1, fourth
    compare_runs(src, dst, source["child"], tmp_path)


def test_name_clashes_are_refused_unless_told(server, make_workspace, source):
    target_uri = make_workspace()
    workspace = target_uri.rsplit("/", 1)[1]
    dst = MlflowClient(target_uri, target_uri)
    mine = dst.create_experiment(source["experiment"])
    result = tandem(server, "import", "--from", source["url"], "--into", workspace, "--json", expect=1)
    report = json.loads(result.stdout)
    failed = [f for f in report["failures"] if f["kind"] == "experiment"]
    assert failed and "was not copied from" in failed[0]["message"]
    assert "--on-conflict" in failed[0]["message"]
    # Nothing of it was copied into the clashing experiment.
    assert dst.search_runs([mine]) == []
    merged = import_json(server, source["url"], workspace, "--on-conflict", "merge")
    assert merged["failures"] == []
    # (Run ids are unique in a deployment: an earlier test's copy holds the
    # source's, so these copies have their own.)
    assert {r.info.run_name for r in dst.search_runs([mine])} == {"parent", "child"}


def test_an_unreachable_source_is_said_plainly(server, make_workspace):
    workspace = make_workspace().rsplit("/", 1)[1]
    result = tandem(server, "import", "--from", f"http://127.0.0.1:{free_port()}", "--into", workspace, expect=5)
    assert "cannot reach" in result.stderr


def runs_whole(dst: MlflowClient, source):
    """The source's three runs are at `dst` once each, the parent's long
    history whole; returns the parent there."""
    experiment = dst.get_experiment_by_name(source["experiment"])
    runs = dst.search_runs([experiment.experiment_id], run_view_type=mlflow.entities.ViewType.ALL)
    assert sorted(r.info.run_name for r in runs) == ["child", "doomed", "parent"]
    parent = next(r for r in runs if r.info.run_name == "parent")
    assert len(dst.get_metric_history(parent.info.run_id, "loss")) == LONG_HISTORY
    return parent


def test_a_killed_import_finishes_when_run_again(server, make_workspace, source):
    target_uri = make_workspace()
    workspace = target_uri.rsplit("/", 1)[1]
    process = subprocess.Popen([os.environ["TANDEM_BIN"], "import", "--from", source["url"], "--into", workspace,
                                "--json", "--url", server.url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    origins_url = f"{server.url}/api/tandem/v1/workspaces/{workspace}/import/origins"
    deadline = time.monotonic() + 120
    try:
        # Killed once the first run is under way (its origin is recorded with
        # the run's first chunk, before its history and artifacts).
        while time.monotonic() < deadline and process.poll() is None:
            origins = requests.get(origins_url, params={"source": source["url"]}, timeout=30).json()["origins"]
            if any(o["kind"] == "run" for o in origins):
                break
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    report = import_json(server, source["url"], workspace)
    assert report["failures"] == []
    runs_whole(MlflowClient(target_uri, target_uri), source)


def test_sync_from_another_tandem_workspace_is_incremental(server, make_workspace, tmp_path):
    first_uri, second_uri = make_workspace(), make_workspace()
    first = MlflowClient(first_uri, first_uri)
    experiment = first.create_experiment(unique("sync"))
    run = first.create_run(experiment)
    first.log_metric(run.info.run_id, "m", 1.0, step=0)
    (tmp_path / "a.txt").write_text("a")
    first.log_artifact(run.info.run_id, str(tmp_path / "a.txt"))
    second_ws = second_uri.rsplit("/", 1)[1]
    one = json.loads(tandem(server, "sync", "--from", first_uri, "--into", second_ws, "--json").stdout)
    assert one["runs"]["created"] == 1 and one["failures"] == []
    second = MlflowClient(second_uri, second_uri)
    # Run ids are unique in a deployment: the copy beside its original has its own.
    copied = second.search_runs([second.get_experiment_by_name(first.get_experiment(experiment).name).experiment_id])
    assert len(copied) == 1 and copied[0].info.run_id != run.info.run_id
    first.log_metric(run.info.run_id, "m", 2.0, step=1)
    two = json.loads(tandem(server, "sync", "--from", first_uri, "--into", second_ws, "--json").stdout)
    assert two["runs"]["updated"] == 1 and two["metric_points"] == 2
    assert [m.value for m in second.get_metric_history(copied[0].info.run_id, "m")] == [1.0, 2.0]



def test_sync_between_two_deployments_keeps_ids_and_copies_only_changes(server, make_workspace, tmp_path):
    """A workspace of one deployment synced into another deployment: the
    same run ids, a second pass writes nothing, a change goes across alone,
    and `--watch` keeps copying until interrupted."""
    other = _start(_tandem_bin(), "sqlite", tmp_path / "other", tmp_path / "other.log", None)
    try:
        first_uri = make_workspace()
        first, there = MlflowClient(first_uri, first_uri), MlflowClient(other.url, other.url)
        experiment = first.create_experiment(unique("across"))
        run_id = first.create_run(experiment, run_name="r").info.run_id
        first.log_batch(run_id, metrics=[Metric("m", float(i), 1_000 + i, i) for i in range(500)],
                        params=[Param("lr", "0.1")], tags=[RunTag("k", "v")])
        (tmp_path / "a.txt").write_text("a")
        first.log_artifact(run_id, str(tmp_path / "a.txt"))
        first.set_terminated(run_id)

        def sync(*extra):
            return json.loads(tandem(other, "sync", "--from", first_uri, "--into", "default", "--json", *extra).stdout)

        one = sync()
        assert one["failures"] == [] and one["runs"]["created"] == 1 and one["metric_points"] == 500, one
        compare_runs(first, there, run_id, tmp_path)  # the same id in the other deployment

        head = requests.get(f"{other.url}/api/tandem/v1/region", timeout=30).json()
        two = sync()
        assert two["runs"]["unchanged"] == 1 and two["artifacts_copied"] == 0 and two["metric_points"] == 0, two
        assert requests.get(f"{other.url}/api/tandem/v1/region", timeout=30).json() == head

        first.log_metric(run_id, "m", 7.0, step=1_000)
        (tmp_path / "b.txt").write_text("b")
        first.log_artifact(run_id, str(tmp_path / "b.txt"))
        three = sync()
        # A changed run's history is read again whole (501 points sent); the
        # target writes only the point it lacks.
        assert three["runs"]["updated"] == 1 and three["metric_points"] == 501 and three["artifacts_copied"] == 1, three
        compare_runs(first, there, run_id, tmp_path)

        # --watch: a pass every second until interrupted (SIGINT ends it, exit 0).
        watcher = subprocess.Popen([os.environ["TANDEM_BIN"], "sync", "--from", first_uri, "--into", "default",
                                    "--watch", "1", "--json", "--url", other.url],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first.set_tag(run_id, "watched", "yes")
            deadline = time.monotonic() + 60
            while there.get_run(run_id).data.tags.get("watched") != "yes":
                assert watcher.poll() is None, watcher.communicate()
                assert time.monotonic() < deadline, "the watching sync did not copy the tag within 60 s"
                time.sleep(0.1)
            watcher.send_signal(signal.SIGINT)
            out, err = watcher.communicate(timeout=60)
            assert watcher.returncode == 0, (out, err)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
    finally:
        _stop(other.process)


def test_sync_with_delete_follows_deletions_and_restores(server, make_workspace):
    first_uri, second_uri = make_workspace(), make_workspace()
    first, second = MlflowClient(first_uri, first_uri), MlflowClient(second_uri, second_uri)
    second_ws = second_uri.rsplit("/", 1)[1]
    experiment = first.create_experiment(unique("del"))
    runs = {name: first.create_run(experiment, run_name=name).info.run_id for name in ("keep", "drop")}
    for run_id in runs.values():
        first.set_terminated(run_id)
    model = unique("del-model")
    first.create_registered_model(model)
    logged = first.create_logged_model(experiment, name="lm")
    doomed_experiment = unique("del-exp")
    doomed_id = first.create_experiment(doomed_experiment)

    def sync(*extra, expect=0):
        result = tandem(server, "sync", "--from", first_uri, "--into", second_ws, "--json", *extra, expect=expect)
        return json.loads(result.stdout)

    def deleted(report):
        return {kind: report[kind]["deleted"] for kind in ("experiments", "runs", "logged_models", "registered_models")}

    one = sync("--delete")
    assert one["failures"] == [] and one["runs"]["created"] == 2
    here = second.get_experiment_by_name(first.get_experiment(experiment).name)
    copies = {r.info.run_name: r.info.run_id for r in second.search_runs([here.experiment_id])}

    first.delete_run(runs["drop"])
    first.delete_registered_model(model)
    first.delete_logged_model(logged.model_id)
    first.delete_experiment(doomed_id)
    # Without --delete a deletion at the source is not followed.
    assert set(deleted(sync()).values()) == {0}
    assert second.get_run(copies["drop"]).info.lifecycle_stage == "active"
    # A dry run counts what it would delete and deletes nothing.
    expected = {"experiments": 1, "runs": 1, "logged_models": 1, "registered_models": 1}
    assert deleted(sync("--delete", "--dry-run")) == expected
    assert second.get_run(copies["drop"]).info.lifecycle_stage == "active"

    assert deleted(sync("--delete")) == expected
    assert second.get_run(copies["drop"]).info.lifecycle_stage == "deleted"
    assert second.get_run(copies["keep"]).info.lifecycle_stage == "active"
    assert second.get_experiment_by_name(doomed_experiment).lifecycle_stage == "deleted"
    assert model not in {m.name for m in second.search_registered_models()}
    assert [m.name for m in second.search_logged_models([here.experiment_id])] == []
    assert set(deleted(sync("--delete")).values()) == {0}

    # Restored at the source, unchanged: restored here by the next pass.
    first_ws = first_uri.rsplit("/", 1)[1]
    first.restore_run(runs["drop"])
    listed = json.loads(tandem(server, "deleted", "list", "--workspace", first_ws, "--json").stdout)
    [kept] = [item for item in listed if item["kind"] == "registered_model" and item["name"] == model]
    tandem(server, "deleted", "recover", "registered_model", kept["id"], "--workspace", first_ws)
    tandem(server, "deleted", "recover", "logged_model", logged.model_id, "--workspace", first_ws)
    back = sync("--delete")
    assert back["failures"] == [] and set(deleted(back).values()) == {0}, back
    assert back["runs"]["updated"] == 1 and back["logged_models"]["updated"] == 1, back
    assert back["registered_models"]["created"] == 1, back
    assert second.get_run(copies["drop"]).info.lifecycle_stage == "active"
    assert model in {m.name for m in second.search_registered_models()}
    assert [m.name for m in second.search_logged_models([here.experiment_id])] == ["lm"]
    # ...and a copy deleted by hand here is brought back the same way.
    second.delete_registered_model(model)
    again = sync("--delete")
    assert again["registered_models"]["created"] == 1 and set(deleted(again).values()) == {0}, again
    assert model in {m.name for m in second.search_registered_models()}
    assert set(deleted(sync("--delete")).values()) == {0}

    # --delete takes a whole copy from the source itself.
    refused = tandem(server, "sync", "--from", first_uri, "--into", second_ws, "--delete", "--experiment", "x", expect=2)
    assert "whole copy" in refused.stderr


def without_origin(tags: dict) -> dict:
    return {k: v for k, v in tags.items() if k != "tandem.origin"}


def test_export_back_into_an_empty_mlflow_server(server, make_workspace, source, tmp_path):
    """MLflow source → Tandem → an empty `mlflow server`: everything MLflow's
    REST API can write compares equal with the source (ids and creation
    times are the new server's own); a second export writes nothing; a
    change in Tandem is exported alone."""
    target_uri = make_workspace()
    workspace = target_uri.rsplit("/", 1)[1]
    assert import_json(server, source["url"], workspace, "--include-deleted")["failures"] == []
    process, back = start_mlflow_server(tmp_path / "back")
    try:
        def export(*extra, expect=0):
            result = tandem(server, "export", "--workspace", workspace, "--to", back, "--include-deleted", "--json",
                            *extra, expect=expect)
            return json.loads(result.stdout)

        report = export()
        assert report["failures"] == [], report["failures"]
        assert report["runs"]["created"] == 3 and report["logged_models"]["created"] == 1, report
        assert report["metric_points"] >= LONG_HISTORY
        src, here, dst = (MlflowClient(u, u) for u in (source["url"], target_uri, back))

        a = src.get_experiment(source["experiment_id"])
        b = dst.get_experiment_by_name(source["experiment"])
        assert (a.tags, a.lifecycle_stage) == (without_origin(b.tags), b.lifecycle_stage)
        gone = dst.get_experiment_by_name(src.get_experiment(source["gone_experiment"]).name)
        assert gone is not None and gone.lifecycle_stage == "deleted"

        view = mlflow.entities.ViewType.ALL
        src_runs = {r.info.run_name: r for r in src.search_runs([source["experiment_id"]], run_view_type=view)}
        dst_runs = {r.info.run_name: r for r in dst.search_runs([b.experiment_id], run_view_type=view)}
        assert src_runs.keys() == dst_runs.keys() == {"parent", "child", "doomed"}
        ids = {src_runs[name].info.run_id: dst_runs[name].info.run_id for name in src_runs}
        for name, ra in src_runs.items():
            rb = dst.get_run(dst_runs[name].info.run_id)
            for field in ("run_name", "status", "start_time", "end_time", "user_id", "lifecycle_stage"):
                assert getattr(ra.info, field) == getattr(rb.info, field), (name, field)
            assert ra.data.params == rb.data.params
            expected_tags = dict(ra.data.tags)
            if "mlflow.parentRunId" in expected_tags:
                expected_tags["mlflow.parentRunId"] = ids[expected_tags["mlflow.parentRunId"]]
            assert without_origin(rb.data.tags) == expected_tags, name
            for key in ra.data.metrics:
                assert history(src, ra.info.run_id, key) == history(dst, rb.info.run_id, key), (name, key)
            assert [(d.dataset.name, d.dataset.digest) for d in ra.inputs.dataset_inputs] == \
                [(d.dataset.name, d.dataset.digest) for d in rb.inputs.dataset_inputs]
            if ra.info.lifecycle_stage == "active":
                assert sha_tree(src, ra.info.run_id, tmp_path) == sha_tree(dst, rb.info.run_id, tmp_path)
        assert len(dst.get_metric_history(ids[source["parent"]], "loss")) == LONG_HISTORY

        # Versions under their own numbers (the gap kept), stages, aliases,
        # tags, descriptions, runs mapped; the files of a version download.
        def versions(client, name, runs=None):
            return sorted((v.version, v.current_stage, v.description, v.tags, (runs or {}).get(v.run_id, v.run_id))
                          for v in client.search_model_versions(f"name='{name}'"))
        assert versions(src, source["model"], ids) == versions(dst, source["model"])
        assert [v[0] for v in versions(dst, source["model"])] == ["1", "3"]
        ma, mb = src.get_registered_model(source["model"]), dst.get_registered_model(source["model"])
        assert (ma.description, ma.tags, ma.aliases) == (mb.description, without_origin(mb.tags), mb.aliases)
        mlflow.set_tracking_uri(back)
        mlflow.set_registry_uri(back)
        local = mlflow.artifacts.download_artifacts(f"models:/{source['model']}/1", tracking_uri=back,
                                                    dst_path=str(tmp_path / "back-mv"))
        assert [p.stat().st_size for p in Path(local).rglob("blob.bin")] == [1_500_000]

        la = src.get_logged_model(source["logged"])
        [lb] = dst.search_logged_models(experiment_ids=[b.experiment_id])
        assert (la.name, la.params, la.status, ids[la.source_run_id]) == (lb.name, lb.params, lb.status, lb.source_run_id)
        lm_version = dst.get_model_version(source["lm_model"], "1")
        assert lm_version.source == f"models:/{lb.model_id}"
        lm_files = mlflow.artifacts.download_artifacts(f"models:/{source['lm_model']}/1", tracking_uri=back,
                                                       dst_path=str(tmp_path / "back-lm"))
        assert [p.read_text() for p in Path(lm_files).rglob("notes.txt")] == ["hello"]

        # Again: nothing written.
        again = export()
        for kind in ("experiments", "runs", "logged_models", "registered_models"):
            assert again[kind]["created"] == 0 and again[kind]["updated"] == 0, (kind, again[kind])
        assert again["artifacts_copied"] == 0 and again["metric_points"] == 0 and again["model_versions"] == 0

        # A change in Tandem goes across alone: the new point, the new tag.
        child_here = next(r for r in here.search_runs([here.get_experiment_by_name(source["experiment"]).experiment_id])
                          if r.info.run_name == "child")
        here.log_metric(child_here.info.run_id, "acc", 0.99, step=9)
        here.set_tag(child_here.info.run_id, "exported", "twice")
        third = export()
        assert third["runs"]["updated"] == 1 and third["runs"]["created"] == 0, third["runs"]
        assert third["metric_points"] == 1
        child_there = dst.get_run(ids[source["child"]])
        assert child_there.data.tags["exported"] == "twice"
        assert history(here, child_here.info.run_id, "acc") == history(dst, child_there.info.run_id, "acc")

        # A name the server holds for something else is refused, by name.
        clash = MlflowClient(back, back)
        clash_name = unique("clash")
        clash.create_experiment(clash_name)
        MlflowClient(target_uri, target_uri).create_experiment(clash_name)
        refused = export("--experiment", clash_name, expect=1)
        assert refused["failures"] and "was not copied from" in refused["failures"][0]["message"]
        renamed = export("--experiment", clash_name, "--on-conflict", "rename")
        assert renamed["experiments"]["created"] == 1 and renamed["failures"] == []
        assert dst.get_experiment_by_name(f"{clash_name} (from 127.0.0.1)") is not None
    finally:
        stop(process)


def test_a_killed_export_finishes_when_run_again(server, make_workspace, source, tmp_path):
    """An export to an `mlflow server` killed midway (its connection to the
    target cut once the first run exists there, then the process killed)
    finishes when run again: every run once, each history whole, the
    versions under their numbers; a third run writes nothing."""
    target_uri = make_workspace()
    workspace = target_uri.rsplit("/", 1)[1]
    assert import_json(server, source["url"], workspace, "--include-deleted")["failures"] == []
    process, back = start_mlflow_server(tmp_path / "back")
    proxy = FaultProxy(int(back.rsplit(":", 1)[1]))
    try:
        exporter = subprocess.Popen(
            [os.environ["TANDEM_BIN"], "export", "--workspace", workspace, "--to", f"http://127.0.0.1:{proxy.port}",
             "--include-deleted", "--json", "--url", server.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def runs_at_target() -> list:
            experiments = requests.get(f"{back}/api/2.0/mlflow/experiments/search",
                                       params={"max_results": 1000, "view_type": "ALL"}, timeout=30).json()
            ids = [e["experiment_id"] for e in experiments.get("experiments", [])]
            if not ids:
                return []
            found = requests.post(f"{back}/api/2.0/mlflow/runs/search",
                                  json={"experiment_ids": ids, "run_view_type": "ALL", "max_results": 1000},
                                  timeout=30).json()
            return found.get("runs", [])

        deadline = time.monotonic() + 120
        try:
            while exporter.poll() is None and not runs_at_target():
                assert time.monotonic() < deadline, "no run reached the target within 120 s"
                time.sleep(0.02)
            proxy.cut()
            assert exporter.poll() is None or exporter.returncode != 0, "the export finished before it was cut"
        finally:
            exporter.kill()
            exporter.wait()
        partial = runs_at_target()
        assert partial, "the first export wrote nothing before it was cut"
        proxy.heal()

        def export():
            result = tandem(server, "export", "--workspace", workspace, "--to", f"http://127.0.0.1:{proxy.port}",
                            "--include-deleted", "--json")
            return json.loads(result.stdout)

        report = export()
        assert report["failures"] == [], report["failures"]
        dst = MlflowClient(back, back)
        parent = runs_whole(dst, source)
        src = MlflowClient(source["url"], source["url"])
        assert sha_tree(src, source["parent"], tmp_path) == sha_tree(dst, parent.info.run_id, tmp_path)
        assert sorted(v.version for v in dst.search_model_versions(f"name='{source['model']}'")) == ["1", "3"]
        again = export()
        for kind in ("experiments", "runs", "logged_models", "registered_models"):
            assert again[kind]["created"] == 0 and again[kind]["updated"] == 0, (kind, again[kind])
        assert again["artifacts_copied"] == 0 and again["metric_points"] == 0 and again["model_versions"] == 0
    finally:
        proxy.close()
        stop(process)
