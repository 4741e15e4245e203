"""MLflow's own web UI against Tandem: the endpoints the UI calls that the
Python client does not (GraphQL, downloads by run, model version and
logged model, dataset summaries, bulk histories, the telemetry switch), in
MLflow's shapes and behind the same permissions as the REST API; and the
UI itself — MLflow 3.17.2's build, taken from the `mlflow` wheel the user
already has (here downloaded once with `pip download --no-deps` into the
cache; never copied into the repository) — served by `tandem server
--mlflow-ui DIR` at `/mlflow/` and driven in Debian's chromium."""

import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow.entities import Metric
from playwright.sync_api import sync_playwright
from sklearn.linear_model import LogisticRegression

from conftest import _point_client_at, _reset_fluent_state, _tandem_bin
from support import raw_request, unique
from test_auth import AuthServer
from test_console_browser import Watched, chromium

MLFLOW_VERSION = "3.17.2"


def mlflow_ui_build() -> Path:
    """MLflow's UI build: $TANDEM_MLFLOW_UI_BUILD (scripts/test sets it), else
    the cache, filled from the mlflow wheel on first use."""
    configured = os.environ.get("TANDEM_MLFLOW_UI_BUILD")
    if configured:
        path = Path(configured)
        assert (path / "index.html").is_file(), f"TANDEM_MLFLOW_UI_BUILD={path} holds no index.html"
        return path
    cache = Path.home() / ".cache" / f"mlflow-ui-{MLFLOW_VERSION}"
    build = cache / "mlflow" / "server" / "js" / "build"
    if not (build / "index.html").is_file():
        wheels = cache / "wheel"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        "-d", str(wheels), f"mlflow=={MLFLOW_VERSION}"], check=True, timeout=600)
        (wheel,) = wheels.glob("mlflow-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith("mlflow/server/js/build/"):
                    archive.extract(name, cache)
    return build


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """An authenticated server with MLflow's UI, a run with everything the
    UI shows (params, tags, a metric history, a dataset input, a file, a
    registered sklearn model), and a Reader who browses it."""
    root = tmp_path_factory.mktemp("mlflow-ui")
    server = AuthServer(_tandem_bin(), root / "server", ("--mlflow-ui", str(mlflow_ui_build())))
    # Everything the fluent client remembers points here while seeding (the
    # registry too: an earlier test may have pointed it elsewhere).
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    _point_client_at(server.url, patch)
    _reset_fluent_state()
    try:
        experiment = mlflow.set_experiment(unique("ui"))
        client = mlflow.MlflowClient(server.url)
        model_name = unique("ui-model")
        with mlflow.start_run(run_name="lr-0.1") as run:
            mlflow.log_param("lr", "0.1")
            mlflow.set_tag("team", "a")
            client.log_batch(run.info.run_id, metrics=[
                Metric("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step) for step in range(300)])
            client.log_metric(run.info.run_id, "odd", float("nan"), step=0)
            frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
            mlflow.log_input(mlflow.data.from_pandas(frame, name="tiny"), context="training")
            notes = root / "notes.txt"
            notes.write_text("learning rate 0.1")
            mlflow.log_artifact(str(notes))
            logged = mlflow.sklearn.log_model(LogisticRegression().fit(frame[["x"]], frame["y"]), name="model",
                                              registered_model_name=model_name)
        with mlflow.start_run(run_name="lr-0.01"):
            mlflow.log_param("lr", "0.01")
    finally:
        _reset_fluent_state()
        patch.undo()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    server.cli("user", "create", "viewer", "--password-stdin", "--role", "Reader@default", stdin="viewer-pass-1\n")
    server.cli("user", "create", "outsider", "--password-stdin", stdin="outsider-pass-1\n")
    yield {"server": server, "url": server.url, "experiment_id": experiment.experiment_id,
           "run_id": run.info.run_id, "model_name": model_name, "model_id": logged.model_id,
           "auth": ("viewer", "viewer-pass-1"), "root": root}
    server.stop()


def graphql(ui, query: str, variables: dict | None = None, auth=None, prefix: str = ""):
    response = requests.post(f"{ui['url']}{prefix}/graphql", json={"query": query, "variables": variables or {}},
                             auth=auth or ui["auth"], timeout=30)
    return response.status_code, response.json()


GET_RUN = """
query GetRun($data: MlflowGetRunInput!) @component(name: "Tandem.Test") {
  mlflowGetRun(input: $data) {
    apiError { code message }
    run {
      info { runName status runUuid experimentId artifactUri startTime endTime lifecycleStage userId }
      experiment { experimentId name lastUpdateTime tags { key value } }
      modelVersions { name version status source }
      data { metrics { key value step timestamp } params { key value } tags { key value } }
      inputs { datasetInputs { dataset { name digest sourceType } tags { key value } } modelInputs { modelId } }
      outputs { modelOutputs { modelId step } }
    }
  }
}
"""


def test_graphql_answers_the_uis_queries_in_mlflows_shapes(ui):
    status, body = graphql(ui, GET_RUN, {"data": {"runId": ui["run_id"]}})
    assert status == 200 and body["errors"] is None, body
    run = body["data"]["mlflowGetRun"]["run"]
    assert run["info"]["runName"] == "lr-0.1" and run["info"]["status"] == "FINISHED"
    assert run["info"]["runUuid"] == ui["run_id"] and run["info"]["experimentId"] == ui["experiment_id"]
    # 64-bit integers are MLflow's LongString: text.
    assert isinstance(run["info"]["startTime"], str) and int(run["info"]["startTime"]) > 0
    metrics = {metric["key"]: metric for metric in run["data"]["metrics"]}
    assert metrics["loss"]["step"] == "299" and metrics["loss"]["value"] == pytest.approx(1 / 300)
    assert metrics["odd"]["value"] is None  # NaN, as MLflow's extension answers it
    assert {"key": "lr", "value": "0.1"} in run["data"]["params"]
    assert run["experiment"]["experimentId"] == ui["experiment_id"]
    assert [(v["name"], v["version"], v["status"]) for v in run["modelVersions"]] == [(ui["model_name"], "1", "READY")]
    (dataset,) = run["inputs"]["datasetInputs"]
    assert dataset["dataset"]["name"] == "tiny"
    assert {"key": "mlflow.data.context", "value": "training"} in dataset["tags"]
    assert ui["model_id"] in [output["modelId"] for output in run["outputs"]["modelOutputs"]]
    assert body["data"]["mlflowGetRun"]["apiError"] is None

    # The UI's run search is a GraphQL mutation; aliases, fragments and
    # __typename work as GraphQL says.
    status, body = graphql(ui, """
        mutation SearchRuns($data: MlflowSearchRunsInput!) {
          found: mlflowSearchRuns(input: $data) { __typename runs { ...RunName } nextPageToken }
        }
        fragment RunName on MlflowRunExtension { info { runName } data { params { key value } } }
    """, {"data": {"experimentIds": [ui["experiment_id"]], "filter": "params.lr = '0.01'", "maxResults": 10}})
    assert status == 200 and body["errors"] is None, body
    found = body["data"]["found"]
    assert found["__typename"] == "MlflowSearchRunsResponse"
    assert [run["info"]["runName"] for run in found["runs"]] == ["lr-0.01"]

    status, body = graphql(ui, """
        query GetMetricHistoryBulkInterval($data: MlflowGetMetricHistoryBulkIntervalInput!) {
          mlflowGetMetricHistoryBulkInterval(input: $data) { __typename metrics { timestamp step runId key value } }
        }""", {"data": {"runIds": [ui["run_id"]], "metricKey": "loss", "maxResults": 20}})
    assert status == 200 and body["errors"] is None, body
    points = body["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    # Sampled (MLflow keeps the first and last steps besides its sample).
    assert 2 <= len(points) <= 21 and {point["runId"] for point in points} == {ui["run_id"]}
    steps = [int(point["step"]) for point in points]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 299

    status, body = graphql(ui, """
        query MlflowGetExperimentQuery($input: MlflowGetExperimentInput!) {
          mlflowGetExperiment(input: $input) { experiment { experimentId name creationTime lifecycleStage } }
        }""", {"input": {"experimentId": ui["experiment_id"]}})
    assert status == 200 and body["errors"] is None, body
    experiment = body["data"]["mlflowGetExperiment"]["experiment"]
    assert experiment["experimentId"] == ui["experiment_id"] and experiment["lifecycleStage"] == "active"

    # GET with the variables as JSON text, as GraphQL over HTTP allows.
    response = requests.get(f"{ui['url']}/graphql", auth=ui["auth"], timeout=30, params={
        "query": "query Q($input: MlflowListArtifactsInput) { mlflowListArtifacts(input: $input) "
                 "{ rootUri files { path isDir fileSize } } }",
        "variables": json.dumps({"input": {"runId": ui["run_id"]}})})
    assert response.status_code == 200, response.text
    files = {entry["path"]: entry for entry in response.json()["data"]["mlflowListArtifacts"]["files"]}
    assert files["notes.txt"]["fileSize"] == str(len("learning rate 0.1"))


def test_graphql_answers_in_the_workspace_the_ui_names(ui):
    """MLflow's UI names its workspace with the X-MLFLOW-WORKSPACE header; the
    fields answer there (and under /w/<name>/), never in another."""
    server, url = ui["server"], ui["url"]
    team = unique("team")
    server.cli("workspace", "create", team)
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    experiment_id = requests.post(f"{url}/w/{team}/api/2.0/mlflow/experiments/create", json={"name": "in-team"},
                                  headers=admin, timeout=30).json()["experiment_id"]
    run_id = requests.post(f"{url}/w/{team}/api/2.0/mlflow/runs/create",
                           json={"experiment_id": experiment_id, "run_name": "team-run", "start_time": 1},
                           headers=admin, timeout=30).json()["run"]["info"]["run_id"]
    query = {"query": GET_RUN, "variables": {"data": {"runId": run_id}}}
    for path, headers in [("/graphql", {"X-MLFLOW-WORKSPACE": team}), (f"/w/{team}/graphql", {}),
                          ("/mlflow/graphql", {"X-MLFLOW-WORKSPACE": team})]:
        response = requests.post(f"{url}{path}", json=query, headers={**admin, **headers}, timeout=30)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["data"]["mlflowGetRun"]["run"]["info"]["runName"] == "team-run", path
    # The default workspace has no such run; the Reader of default may not read the team's.
    body = requests.post(f"{url}/graphql", json=query, headers=admin, timeout=30).json()
    assert body["data"]["mlflowGetRun"] is None and body["errors"], body
    response = requests.post(f"{url}/graphql", json=query, headers={"X-MLFLOW-WORKSPACE": team}, auth=ui["auth"],
                             timeout=30)
    assert response.status_code == 403, response.text


def test_graphql_refuses_what_its_schema_and_bounds_refuse(ui):
    # A run that does not exist: the field is null and the error listed.
    status, body = graphql(ui, GET_RUN, {"data": {"runId": "0" * 32}})
    assert status == 200 and body["data"]["mlflowGetRun"] is None, body
    assert any("0" * 32 in error for error in body["errors"]), body
    for query, words in [
        ("query { mlflowGetRun(input: {runId: \"x\"}) { run { nope } } }", "Cannot query field 'nope'"),
        ("query { mlflowGetRun(input: {runId: \"x\", bogus: 1}) { run { info { runId } } } }",
         "'bogus' is not defined"),
        ("query { mlflowGetRun(input: {runId: \"x\"}) { run } }", "must have a selection of subfields"),
        ("query { mlflowGetRun(input: {runId: \"x\"}) { run { info { runId ", "Syntax Error"),
        ("query Q($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) { apiError { code } } }",
         "was not provided"),
        ("mutation { mlflowDeleteRun { x } }", "Cannot query field 'mlflowDeleteRun'"),
        ("subscription { test { output } }", "subscriptions"),
        ("query { " + " ".join("test(inputString: \"x\") { output }" for _ in range(11)) + " }",
         "at most 10 root fields"),
        ("query { test(inputString: \"x\") { " + " ".join(f"a{i}: output" for i in range(11)) + " } }",
         "at most 10 aliases"),
        ("query { mlflowGetRun(input: {runId: \"x\"}) { run { info { ...A } } } } "
         "fragment A on MlflowRunInfo { ...A }", "within itself"),
    ]:
        status, body = graphql(ui, query)
        # As `mlflow server` answers: 200 with the error listed; text that
        # is not GraphQL is a 400 (MLflow's is a 500).
        assert status == (400 if words == "Syntax Error" else 200) and body["data"] is None, (query, body)
        assert any(words in error for error in body["errors"]), (query, body)
    deep = "query { test(inputString: \"x\") { output } }"
    assert graphql(ui, deep)[0] == 200
    status, body = graphql(ui, "query { mlflowSearchRuns(input: {}) { runs { " + "info { " * 11 + "runId"
                           + " }" * 11 + " } } }")
    assert status == 200 and "maximum depth" in body["errors"][0], body
    # Not JSON, no query: clear refusals.
    response = requests.post(f"{ui['url']}/graphql", data=b"{", auth=ui["auth"],
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400 and "not valid JSON" in response.json()["errors"][0]
    response = requests.post(f"{ui['url']}/graphql", json={}, auth=ui["auth"], timeout=30)
    assert response.status_code == 400 and response.json()["errors"] == ["Must provide query string."]


def test_the_uis_endpoints_are_behind_the_same_gate(ui):
    url, run_id = ui["url"], ui["run_id"]
    # Anonymous: refused, with MLflow's Basic challenge, on every endpoint
    # that reads data; the UI's page and files are public (they hold none).
    for method, path in [("POST", "/graphql"), ("GET", f"/get-artifact?run_uuid={run_id}&path=notes.txt"),
                         ("POST", "/mlflow/graphql"), ("GET", "/mlflow/ajax-api/2.0/mlflow/experiments/search")]:
        response = requests.request(method, f"{url}{path}", json={"query": "{ test { output } }"}, timeout=30)
        assert response.status_code == 401, (path, response.text)
        assert response.headers.get("WWW-Authenticate", "").startswith("Basic"), path
    assert requests.get(f"{url}/mlflow/", timeout=30).status_code == 200
    # A principal with no role in the workspace: 403, also through GraphQL.
    outsider = ("outsider", "outsider-pass-1")
    status, body = graphql(ui, GET_RUN, {"data": {"runId": run_id}}, auth=outsider)
    assert status == 403, body
    response = requests.get(f"{url}/get-artifact", params={"run_uuid": run_id, "path": "notes.txt"}, auth=outsider,
                            timeout=30)
    assert response.status_code == 403


def test_downloads_by_run_model_version_and_logged_model(ui):
    url, auth = ui["url"], ui["auth"]
    response = requests.get(f"{url}/get-artifact", params={"run_uuid": ui["run_id"], "path": "notes.txt"},
                            auth=auth, timeout=30)
    assert response.status_code == 200 and response.text == "learning rate 0.1"
    assert response.headers["Content-Disposition"].startswith("attachment")
    # The same under the UI's prefix, and under a workspace's.
    for prefix in ["/mlflow", "/w/default"]:
        response = requests.get(f"{url}{prefix}/get-artifact", params={"run_id": ui["run_id"], "path": "notes.txt"},
                                auth=auth, timeout=30)
        assert response.status_code == 200 and response.text == "learning rate 0.1", prefix
    for bad in ["../notes.txt", "/etc/passwd", "a/../../b"]:
        response = requests.get(f"{url}/get-artifact", params={"run_uuid": ui["run_id"], "path": bad}, auth=auth,
                                timeout=30)
        assert response.status_code == 400 and response.json()["message"] == "Invalid path", bad
    response = requests.get(f"{url}/get-artifact", params={"run_uuid": ui["run_id"], "path": "missing.txt"},
                            auth=auth, timeout=30)
    assert response.status_code == 404

    response = requests.get(f"{url}/model-versions/get-artifact",
                            params={"name": ui["model_name"], "version": "1", "path": "MLmodel"}, auth=auth, timeout=30)
    assert response.status_code == 200 and "flavors" in response.text, response.text
    response = requests.get(f"{url}/model-versions/get-artifact",
                            params={"name": ui["model_name"], "version": "9", "path": "MLmodel"}, auth=auth, timeout=30)
    assert response.status_code == 404

    model = f"{url}/ajax-api/2.0/mlflow/logged-models/{ui['model_id']}/artifacts"
    listing = requests.get(f"{model}/directories", auth=auth, timeout=30).json()
    assert "MLmodel" in {entry["path"] for entry in listing["files"]}, listing
    assert listing["root_uri"].startswith("mlflow-artifacts:")
    response = requests.get(f"{model}/files", params={"artifact_file_path": "MLmodel"}, auth=auth, timeout=30)
    assert response.status_code == 200 and "flavors" in response.text
    response = requests.get(f"{model}/files", auth=auth, timeout=30)
    assert response.status_code == 400 and "artifact_file_path" in response.json()["message"]
    response = requests.get(f"{model}/files", params={"artifact_file_path": "../../x"}, auth=auth, timeout=30)
    assert response.status_code == 400 and response.json()["message"] == "Invalid path"


def test_datasets_bulk_histories_and_telemetry(ui):
    url, auth = ui["url"], ui["auth"]
    response = requests.post(f"{url}/ajax-api/2.0/mlflow/experiments/search-datasets",
                             json={"experiment_ids": [ui["experiment_id"]]}, auth=auth, timeout=30)
    assert response.status_code == 200, response.text
    (summary,) = response.json()["dataset_summaries"]
    assert (summary["experiment_id"], summary["name"], summary["context"]) == (ui["experiment_id"], "tiny", "training")
    response = requests.post(f"{url}/ajax-api/2.0/mlflow/experiments/search-datasets", json={}, auth=auth, timeout=30)
    assert response.status_code == 400 and "at least one experiment_id" in response.json()["message"]

    response = requests.get(f"{url}/ajax-api/2.0/mlflow/metrics/get-history-bulk",
                            params={"run_id": ui["run_id"], "metric_key": "loss", "max_results": 100}, auth=auth,
                            timeout=30)
    assert response.status_code == 200, response.text
    metrics = response.json()["metrics"]
    assert len(metrics) == 100 and all(metric["run_id"] == ui["run_id"] for metric in metrics)
    # In (timestamp, step) order; logging the model linked the run's latest
    # points to it, so step 0 is there twice (once with the model's id).
    steps = [metric["step"] for metric in metrics]
    assert steps == sorted(steps) and sorted(set(steps)) == list(range(len(set(steps))))
    response = requests.get(f"{url}/ajax-api/2.0/mlflow/metrics/get-history-bulk", params={"metric_key": "loss"},
                            auth=auth, timeout=30)
    assert response.status_code == 400 and "at least one run_id" in response.json()["message"]

    telemetry = requests.get(f"{url}/ajax-api/3.0/mlflow/ui-telemetry", timeout=30).json()
    assert telemetry["disable_ui_telemetry"] is True
    # Tandem keeps no traces: the GenAI views' searches find nothing, and
    # only for a principal who may read the workspace.
    for path in ["traces/search", "traces/metrics", "datasets/search"]:
        response = requests.post(f"{url}/ajax-api/3.0/mlflow/{path}", json={"experiment_ids": [ui["experiment_id"]]},
                                 auth=auth, timeout=30)
        assert response.status_code == 200 and response.json() == {}, (path, response.text)
        response = requests.post(f"{url}/ajax-api/3.0/mlflow/{path}", json={}, auth=("outsider", "outsider-pass-1"),
                                 timeout=30)
        assert response.status_code == 403, (path, response.text)
    response = requests.get(f"{url}/ajax-api/2.0/mlflow/gateway-proxy", params={"gateway_path": "api/2.0/endpoints/"},
                            auth=auth, timeout=30)
    assert response.status_code == 200 and response.json() == {"endpoints": []}


def test_the_uis_files_come_only_from_its_build(ui):
    url = ui["url"]
    response = requests.get(f"{url}/mlflow", allow_redirects=False, timeout=30)
    assert response.status_code in (301, 308) and response.headers["Location"] == "/mlflow/"
    index = requests.get(f"{url}/mlflow/", timeout=30)
    assert index.status_code == 200 and "static-files/static/js/main" in index.text
    script = index.text.split('src="', 1)[1].split('"', 1)[0]
    assert requests.get(f"{url}/mlflow/{script}", timeout=30).status_code == 200
    for path in ["/mlflow/static-files/../../../../etc/passwd", "/mlflow/static-files/%2e%2e/%2e%2e/etc/passwd",
                 "/mlflow/static-files/..%2f..%2f..%2fetc%2fpasswd"]:
        status, body = raw_request(url, "GET", path)
        assert status in (400, 404) and b"root:" not in body, (path, status)


def test_a_reader_browses_a_run_in_mlflows_own_ui(ui, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots in {shots}")
    url, experiment_id, run_id = ui["url"], ui["experiment_id"], ui["run_id"]
    username, password = ui["auth"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            context = browser.new_context(http_credentials={"username": username, "password": password})
            page = context.new_page()
            watched = Watched(page, shots)
            # What MLflow's UI asks for that Tandem does not serve: its AI
            # assistant (404, as from an `mlflow server` without one).
            unserved = ("/assistant/",)
            failures = []
            page.on("response", lambda response: response.status >= 400
                    and not any(path in response.url for path in unserved)
                    and failures.append(f"{response.status} {response.request.method} {response.url}"))
            watched.problems.clear()
            page.goto(f"{url}/mlflow/#/experiments/{experiment_id}/runs/{run_id}?workspace=default")
            page.get_by_text("lr-0.1").first.wait_for(timeout=30_000)
            page.get_by_text("tiny").first.wait_for(timeout=30_000)
            page.get_by_text(ui["model_name"]).first.wait_for(timeout=30_000)
            watched.shot("run")

            page.goto(f"{url}/mlflow/#/experiments/{experiment_id}/runs/{run_id}/artifacts?workspace=default")
            page.get_by_text("notes.txt").first.click(timeout=30_000)
            page.get_by_text("learning rate 0.1").first.wait_for(timeout=30_000)
            watched.shot("artifacts")

            page.goto(f"{url}/mlflow/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
                      "&workspace=default")
            page.get_by_text("lr-0.01").first.wait_for(timeout=30_000)
            page.get_by_text("lr-0.1", exact=True).first.wait_for(timeout=30_000)
            watched.shot("experiment")

            # The experiment's default view is MLflow's GenAI overview:
            # Tandem keeps no traces, so it shows none (and no error).
            page.goto(f"{url}/mlflow/#/experiments/{experiment_id}?workspace=default")
            page.get_by_text("No data available").first.wait_for(timeout=30_000)
            watched.shot("genai-overview")

            page.goto(f"{url}/mlflow/#/models/{ui['model_name']}/versions/1?workspace=default")
            page.get_by_text("Version 1").first.wait_for(timeout=30_000)
            watched.shot("model-version")
            # The UI's own console errors for the 404s above are expected;
            # any other failed request is not.
            real = [problem for problem in watched.problems
                    if "status of 404" not in problem and "request failed" in problem]
            assert not real, real
            assert not failures, failures
        finally:
            browser.close()


def test_the_gateway_serves_the_ui_and_proxies_its_calls(tmp_path):
    """`tandem gateway --mlflow-ui DIR`: the page from the gateway, its calls
    (relative to `/mlflow/`) proxied to the primary at their own paths."""
    from cluster import make_cluster, start_gateway

    binary = _tandem_bin()
    cluster = make_cluster(binary, tmp_path)
    gateway = None
    try:
        gateway = start_gateway(binary, cluster.deployment, tmp_path / "gateway.log",
                                env={"TANDEM_MLFLOW_UI": str(mlflow_ui_build())})
        gateway.wait_for_primary("eastus")
        client = mlflow.MlflowClient(gateway.url)
        experiment_id = client.create_experiment(unique("via-gateway"))
        run_id = client.create_run(experiment_id, run_name="through-the-gateway").info.run_id
        index = requests.get(f"{gateway.url}/mlflow/", timeout=10)
        assert index.status_code == 200 and "static-files/static/js/main" in index.text
        response = requests.post(f"{gateway.url}/mlflow/graphql", timeout=10, json={
            "query": "query Q($data: MlflowGetRunInput!) { mlflowGetRun(input: $data) { run { info { runName } } } }",
            "variables": {"data": {"runId": run_id}}})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["mlflowGetRun"]["run"]["info"]["runName"] == "through-the-gateway"
        assert response.headers["x-tandem-region"] == "eastus"
        response = requests.post(f"{gateway.url}/mlflow/ajax-api/2.0/mlflow/runs/search", timeout=10,
                                 json={"experiment_ids": [experiment_id]})
        assert [run["info"]["run_id"] for run in response.json()["runs"]] == [run_id]
    finally:
        if gateway is not None:
            gateway.stop()
        cluster.close()
