"""`tandem import --from <backend store URI>`: an `mlflow server` read
through its own database (SQLite or PostgreSQL, read-only) and artifact
root instead of its REST API (issue 16: the incremental sync).

Each source is a real `mlflow server` 3.17.2 filled through the official
client (nested runs, a deleted run and its model version, a version gap, a
dataset input, a 100,000-point history, NaN/±Inf, aliases, stages, a logged
model); what comes across is compared with what the server itself answers
through the client, object by object and byte by byte, as the REST import's
test does. Then: a second pass writes nothing, a change made through the
server is copied alone, a run filter is applied here, and a store whose files
are behind the proxy without `--from-artifacts` fails per object, plainly.
"""

import math
import uuid
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from conftest import _database_url, _psql
from support import unique
from test_import import (LONG_HISTORY, compare_runs, fill, import_json, start_mlflow_server, stop,
                         tandem)


def _filled(root, backend_store):
    process, url = start_mlflow_server(root / "server", backend_store)
    try:
        content = fill(url, root)
    except BaseException:
        stop(process)
        raise
    content["url"] = url
    content["artifacts"] = str(root / "server" / "artifacts")
    return process, content


@pytest.fixture(scope="module")
def sqlite_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-sqlite")
    process, content = _filled(root, None)
    content["store"] = f"sqlite:///{root}/server/mlflow.db"
    yield content
    stop(process)


@pytest.fixture(scope="module")
def postgres_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-postgres")
    database = f"mlflow_src_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE DATABASE "{database}"')
    url = _database_url(database).replace("postgres://", "postgresql://", 1)
    process = None
    try:
        process, content = _filled(root, url)
        content["store"] = url
        yield content
    finally:
        if process is not None:
            stop(process)
        _psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def versions(client, name):
    return sorted((v.version, v.current_stage, v.description, v.tags, v.run_id, v.creation_timestamp)
                  for v in client.search_model_versions(f"name='{name}'"))


def check_copy(source, target_uri, tmp_path):
    """Everything the server answers for `source` is the same at `target_uri`."""
    src, dst = MlflowClient(source["url"], source["url"]), MlflowClient(target_uri, target_uri)
    a = src.get_experiment(source["experiment_id"])
    b = dst.get_experiment_by_name(source["experiment"])
    assert (a.tags, a.creation_time, a.last_update_time, a.lifecycle_stage) == \
        (b.tags, b.creation_time, b.last_update_time, b.lifecycle_stage)
    gone = dst.get_experiment_by_name(src.get_experiment(source["gone_experiment"]).name)
    assert gone is not None and gone.lifecycle_stage == "deleted"
    for run_id in (source["parent"], source["child"], source["doomed"]):
        compare_runs(src, dst, run_id, tmp_path)
    assert len(dst.get_metric_history(source["parent"], "loss")) == LONG_HISTORY
    special = sorted((m.step, "nan" if math.isnan(m.value) else m.value)
                     for m in dst.get_metric_history(source["parent"], "special"))
    assert special == sorted((m.step, "nan" if math.isnan(m.value) else m.value)
                             for m in src.get_metric_history(source["parent"], "special"))
    # Numbers with their gap (version 2 was deleted), stages, aliases, tags.
    assert versions(src, source["model"]) == versions(dst, source["model"])
    assert [v[0] for v in versions(dst, source["model"])] == ["1", "3"]
    ra, rb = src.get_registered_model(source["model"]), dst.get_registered_model(source["model"])
    assert (ra.description, ra.tags, ra.aliases, ra.creation_timestamp, ra.last_updated_timestamp) == \
        (rb.description, rb.tags, rb.aliases, rb.creation_timestamp, rb.last_updated_timestamp)
    la, lb = src.get_logged_model(source["logged"]), dst.get_logged_model(source["logged"])
    assert (la.name, la.params, la.status, la.source_run_id, la.tags) == \
        (lb.name, lb.params, lb.status, lb.source_run_id, lb.tags)
    version = requests.get(f"{target_uri}/api/2.0/mlflow/model-versions/get",
                           params={"name": source["lm_model"], "version": "1"}, timeout=30).json()["model_version"]
    assert (version["model_id"], version["source"]) == (source["logged"], f"models:/{source['logged']}")
    files = mlflow.artifacts.download_artifacts(f"models:/{source['lm_model']}/1", tracking_uri=target_uri,
                                                dst_path=str(tmp_path / unique("lm")))
    assert [p.read_text() for p in Path(files).rglob("notes.txt")] == ["hello"]


def import_store(server, source, workspace, *extra, expect=0):
    return import_json(server, source["store"], workspace, "--from-artifacts", source["artifacts"],
                       "--include-deleted", *extra, expect=expect)


def whole_copy_then_changes(server, make_workspace, source, tmp_path):
    target_uri = make_workspace()
    workspace = target_uri.rsplit("/", 1)[1]
    report = import_store(server, source, workspace)
    assert report["failures"] == [], report["failures"]
    assert report["runs"]["created"] == 3 and report["logged_models"]["created"] == 1, report
    assert report["metric_points"] >= LONG_HISTORY
    check_copy(source, target_uri, tmp_path)

    # A second pass changes nothing: no journal record is written.
    head = requests.get(f"{server.url}/api/tandem/v1/region", timeout=30).json()
    again = import_store(server, source, workspace)
    assert again["failures"] == []
    for kind in ("experiments", "runs", "logged_models", "registered_models"):
        assert again[kind]["created"] == 0 and again[kind]["updated"] == 0, (kind, again[kind])
    assert again["artifacts_copied"] == 0
    assert requests.get(f"{server.url}/api/tandem/v1/region", timeout=30).json() == head

    # Changes made through the server are read from its database and files.
    src = MlflowClient(source["url"], source["url"])
    src.log_metric(source["child"], "acc", 0.97, step=unique_step())
    src.set_tag(source["child"], "note", unique("later"))
    late = tmp_path / f"{unique('late')}.txt"
    late.write_text("late")
    src.log_artifact(source["child"], str(late))
    third = import_store(server, source, workspace)
    assert third["runs"]["updated"] == 1 and third["runs"]["created"] == 0, third["runs"]
    assert third["artifacts_copied"] == 1, third
    compare_runs(src, MlflowClient(target_uri, target_uri), source["child"], tmp_path)


_steps = iter(range(10, 10_000))


def unique_step() -> int:
    return next(_steps)


def test_import_from_an_mlflow_sqlite_store_is_lossless_and_incremental(server, make_workspace, sqlite_source,
                                                                          tmp_path):
    whole_copy_then_changes(server, make_workspace, sqlite_source, tmp_path)


def test_import_from_an_mlflow_postgres_store_is_lossless_and_incremental(server, make_workspace, postgres_source,
                                                                            tmp_path):
    whole_copy_then_changes(server, make_workspace, postgres_source, tmp_path)


def test_a_run_filter_is_applied_to_a_store(server, make_workspace, sqlite_source):
    target_uri = make_workspace()
    workspace = target_uri.rsplit("/", 1)[1]
    report = import_store(server, sqlite_source, workspace, "--experiment", sqlite_source["experiment"],
                          "--run-filter", "params.lr = '0.01'")
    assert report["failures"] == [], report["failures"]
    dst = MlflowClient(target_uri, target_uri)
    experiment = dst.get_experiment_by_name(sqlite_source["experiment"])
    names = {r.info.run_name for r in dst.search_runs([experiment.experiment_id], run_view_type=3)}
    # The child has no such param; the deleted run comes along for the model version made from it.
    assert "parent" in names and "child" not in names, names
    broken = tandem(server, "import", "--from", sqlite_source["store"], "--into", workspace, "--json",
                    "--run-filter", "params.lr >", expect=2)
    assert "--run-filter" in broken.stderr


def test_a_store_behind_the_proxy_needs_its_artifact_root(server, make_workspace, sqlite_source, tmp_path):
    workspace = make_workspace().rsplit("/", 1)[1]
    # No run's files can be found: the copy stops at the first, saying why.
    result = tandem(server, "import", "--from", sqlite_source["store"], "--into", workspace, expect=2)
    assert "--from-artifacts" in result.stderr and "artifact proxy" in result.stderr, result.stderr
    dst = MlflowClient(f"{server.url}/w/{workspace}", f"{server.url}/w/{workspace}")
    experiment_ids = [e.experiment_id for e in dst.search_experiments(view_type=3)]
    assert experiment_ids and dst.search_runs(experiment_ids, run_view_type=3) == []
    missing = tandem(server, "import", "--from", f"sqlite:///{tmp_path}/nothing.db", "--into", workspace,
                     expect=2)
    assert "no database file" in missing.stderr
    not_mlflow = tmp_path / "other.db"
    not_mlflow.write_bytes(b"")
    refused = tandem(server, "import", "--from", f"sqlite:///{not_mlflow}", "--into", workspace, expect=2)
    assert "not an MLflow tracking database" in refused.stderr
    stray = tandem(server, "import", "--from", "http://127.0.0.1:9", "--from-artifacts", str(tmp_path),
                   "--into", workspace, expect=2)
    assert "--from-artifacts goes with a backend store" in stray.stderr
