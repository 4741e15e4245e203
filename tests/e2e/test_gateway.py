"""The gateway (`tandem gateway`), the deployment's global endpoint, in front
of real regions: the official mlflow client pointed at it works unchanged,
reads keep working from the secondary when the primary stops, writes are
refused with MLflow's error JSON while no primary is known, and `tandem up`
hands out the gateway as the tracking URI."""

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid

import mlflow
import pytest
import requests

from cluster import make_cluster, start_gateway
from conftest import _tandem_bin
from mlflow.exceptions import MlflowException
from support import unique, up_credentials


def MlflowClient(url: str) -> mlflow.MlflowClient:
    """Tracking and registry both at `url` (see test_replication.py)."""
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.fixture
def deployment(tmp_path):
    """A two-region deployment (eastus primary, westus secondary, hot-warm)
    and a gateway in front of it."""
    binary = _tandem_bin()
    root = tmp_path / "deployment"
    root.mkdir()
    cluster = make_cluster(binary, root)
    gateway = None
    try:
        # A short failover wait: no failover happens in these tests, so a
        # write without a primary is refused after it.
        gateway = start_gateway(binary, cluster.deployment, root / "gateway.log", failover_wait="2s")
        gateway.wait_for_primary("eastus")
        yield cluster, gateway
    finally:
        problems = []
        if gateway is not None:
            code = gateway.stop()
            log = gateway.log.read_text(errors="replace")
            if code != 0 or "panicked at" in log:
                problems.append(f"the gateway exited with {code}:\n{gateway.log_tail()}")
        cluster.close()
        assert not problems, "\n".join(problems)


def write_everything(client: mlflow.MlflowClient, tmp_path) -> dict:
    experiment_id = client.create_experiment(unique("gateway"), tags={"via": "gateway"})
    run_id = client.create_run(experiment_id, run_name="through-the-gateway").info.run_id
    client.log_batch(
        run_id,
        metrics=[mlflow.entities.Metric("loss", 1.0 / (step + 1), 1000 + step, step) for step in range(20)],
        params=[mlflow.entities.Param("lr", "0.01")],
    )
    client.log_metric(run_id, "accuracy", 0.9, step=1)
    payload = os.urandom(5 * 1024 * 1024)
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(payload)
    client.log_artifact(run_id, str(artifact), artifact_path="model")
    client.set_terminated(run_id)
    model = unique("model")
    client.create_registered_model(model)
    version = client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(model, "champion", version.version)
    return {
        "experiment_id": experiment_id,
        "run_id": run_id,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "model": model,
    }


def read_everything(client: mlflow.MlflowClient, expected: dict, tmp_path):
    run_id = expected["run_id"]
    run = client.get_run(run_id)
    assert run.data.params == {"lr": "0.01"}
    assert run.data.metrics["accuracy"] == 0.9
    assert len(client.get_metric_history(run_id, "loss")) == 20
    assert client.get_experiment(expected["experiment_id"]).tags == {"via": "gateway"}
    found = client.search_runs([expected["experiment_id"]], "params.lr = '0.01'")
    assert [r.info.run_id for r in found] == [run_id]
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/weights.bin"]
    downloaded = client.download_artifacts(run_id, "model/weights.bin",
                                           dst_path=str(tmp_path / f"dl-{uuid.uuid4().hex}"))
    with open(downloaded, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == expected["sha256"]
    assert client.get_model_version_by_alias(expected["model"], "champion").run_id == run_id
    assert [m.name for m in client.search_registered_models(f"name = '{expected['model']}'")] == [expected["model"]]


def test_the_mlflow_client_works_through_the_gateway(deployment, tmp_path):
    cluster, gateway = deployment
    client = MlflowClient(gateway.url)
    expected = write_everything(client, tmp_path)
    read_everything(client, expected, tmp_path)

    # Everything went to the primary: the secondary has it by replication.
    response = requests.get(f"{gateway.url}/api/2.0/mlflow/runs/get", params={"run_id": expected["run_id"]},
                            timeout=10)
    assert response.headers["x-tandem-region"] == "eastus"
    cluster.wait_caught_up()
    read_everything(MlflowClient(cluster.secondaries[0].url), expected, tmp_path)

    # Workspaces: created through the Tandem API, used through /w/<name>.
    workspace = unique("ws")
    response = requests.post(f"{gateway.url}/api/tandem/v1/workspaces", json={"name": workspace}, timeout=10)
    assert response.status_code in (200, 201), response.text
    scoped = MlflowClient(f"{gateway.url}/w/{workspace}")
    experiment_id = scoped.create_experiment(unique("scoped"))
    assert scoped.get_experiment(experiment_id).name.startswith("scoped-")
    assert requests.get(f"{gateway.url}/api/tandem/v1/workspaces/{workspace}", timeout=10).status_code == 200

    # MLflow's workspaces through the gateway: its workspace API reaches the
    # primary, and the X-MLFLOW-WORKSPACE header passes unchanged, so
    # set_workspace lands where /w/<name> does, in every region.
    team = unique("team")
    mlflow.set_tracking_uri(gateway.url)
    try:
        assert mlflow.create_workspace(team).name == team
        mlflow.set_workspace(team)
        run_id = MlflowClient(gateway.url).create_run(
            MlflowClient(gateway.url).create_experiment(unique("header"))).info.run_id
    finally:
        mlflow.set_workspace(None)
    assert MlflowClient(f"{gateway.url}/w/{team}").get_run(run_id).info.run_id == run_id
    cluster.wait_caught_up()
    assert MlflowClient(f"{cluster.secondaries[0].url}/w/{team}").get_run(run_id).info.run_id == run_id

    status = gateway.status()
    assert status["primary"]["region"] == "eastus"
    assert [region["healthy"] for region in status["regions"]] == [True, True]
    assert [region["role"] for region in status["regions"]] == ["primary", "secondary"]
    assert requests.get(f"{gateway.url}/health", timeout=5).text == "OK"


def test_reads_go_to_the_secondary_when_the_primary_stops(deployment, tmp_path):
    cluster, gateway = deployment
    client = MlflowClient(gateway.url)
    expected = write_everything(client, tmp_path)
    cluster.wait_caught_up()

    cluster.stop(cluster.primary)
    status = gateway.wait_for_primary(None)
    assert [region["healthy"] for region in status["regions"]] == [False, True]

    # Hot-warm reads: the secondary serves them, through the same URL.
    read_everything(client, expected, tmp_path)
    response = requests.get(f"{gateway.url}/api/2.0/mlflow/runs/get", params={"run_id": expected["run_id"]},
                            timeout=10)
    assert response.status_code == 200
    assert response.headers["x-tandem-region"] == "westus"

    # Writes need a primary (no automatic failover yet): MLflow's error JSON,
    # after the gateway waited for one.
    started = time.monotonic()
    response = requests.post(f"{gateway.url}/api/2.0/mlflow/experiments/create",
                             json={"name": unique("orphan")}, timeout=30)
    assert response.status_code == 503, response.text
    error = response.json()
    assert error["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "no primary region is known" in error["message"] and "eastus unreachable" in error["message"]
    assert time.monotonic() - started >= 1.5
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.create_experiment(unique("orphan"))
    # Nothing was written anywhere.
    westus = MlflowClient(cluster.secondaries[0].url)
    assert not westus.search_experiments(filter_string="name LIKE 'orphan-%'")

    # The primary comes back: writes flow again.
    cluster.start(cluster.primary)
    gateway.wait_for_primary("eastus")
    assert client.create_experiment(unique("after"))


def test_tandem_up_serves_mlflow_through_its_gateway(tmp_path):
    directory = tmp_path / "up"

    def up() -> tuple[subprocess.Popen, dict]:
        process = subprocess.Popen([_tandem_bin(), "up", "--dir", str(directory)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        up_file = directory / "up.json"
        deadline = time.monotonic() + 30
        while not up_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"up.json never appeared: {process.stdout.read().decode()}")
            time.sleep(0.1)
        return process, json.loads(up_file.read_text())

    def down(process: subprocess.Popen, up_file: dict):
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        for part in up_file["parts"]:
            assert not os.path.exists(f"/proc/{part['pid']}") or "zombie" in open(f"/proc/{part['pid']}/status").read().lower()

    def stop_parts():
        # If `tandem up` could not stop its parts, stop them by their pids.
        up_file = directory / "up.json"
        if up_file.exists():
            for part in json.loads(up_file.read_text())["parts"]:
                if part["pid"] is None:
                    continue
                try:
                    os.kill(part["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass

    process, first = up()
    try:
        assert [(part["name"], part["kind"]) for part in first["parts"]] == [
            ("witness", "witness"), ("eastus", "region"), ("westus", "region"), ("gateway", "gateway")]
        gateway_url = next(part["url"] for part in first["parts"] if part["kind"] == "gateway")
        assert first["tracking_uri"] == gateway_url
        client = MlflowClient(first["tracking_uri"])
        # Authentication is on: anonymous writes are refused, the admin's
        # token (up.json's admin_token_file) works.
        with pytest.raises(MlflowException, match="UNAUTHENTICATED"):
            client.create_experiment(unique("anonymous"))
        with up_credentials(first):
            experiment_id = client.create_experiment(unique("up"))
            run_id = client.create_run(experiment_id).info.run_id
            client.log_metric(run_id, "loss", 0.25)
            assert client.get_run(run_id).data.metrics == {"loss": 0.25}
        assert requests.get(f"{gateway_url}/gateway/status", timeout=5).status_code == 401
        with up_credentials(first) as token:
            status = requests.get(f"{gateway_url}/gateway/status", timeout=5,
                                  headers={"Authorization": f"Bearer {token}"}).json()
        assert status["primary"]["region"] == "eastus"
        # The embedded witness answers the regions only: an anonymous seize
        # (which would stop every write) is refused, the probes answer.
        witness_url = next(part["url"] for part in first["parts"] if part["kind"] == "witness")
        seize = requests.post(f"{witness_url}/api/tandem/v1/witness/seize",
                              json={"region": "westus", "ttl_seconds": 6}, timeout=5)
        assert seize.status_code == 401, seize.text
        assert requests.get(f"{witness_url}/api/tandem/v1/witness/leader", timeout=5).status_code == 401
        assert requests.get(f"{witness_url}/ready", timeout=5).status_code == 200
        # Nor may anyone fail the deployment over, or read its journal.
        assert requests.post(f"{gateway_url}/api/tandem/v1/failover", json={"to": "westus"},
                             timeout=5).status_code == 401
        assert requests.get(f"{gateway_url}/api/tandem/v1/journal?after=0", timeout=5).status_code == 401
        # `tandem status` through the gateway reaches the primary, with the
        # token `up` wrote into DIR/.tandem.toml (readable by its owner only).
        config = directory / ".tandem.toml"
        assert os.stat(config).st_mode & 0o777 == 0o600 and "token = " in config.read_text()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "MLFLOW_TRACKING_"))}
        shown = subprocess.run([_tandem_bin(), "status", "--json"], cwd=directory, env=env,
                               capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["primary"] == "eastus"
        output = process.stdout
        down(process, first)
        printed = output.read().decode()
        assert f"MLFLOW_TRACKING_URI={gateway_url}" in printed
        assert f"MLFLOW_TRACKING_TOKEN=$(cat {first['admin_token_file']})" in printed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            stop_parts()

    # Started again in the same directory: the same tracking URI, the same data.
    process, second = up()
    try:
        assert second["tracking_uri"] == first["tracking_uri"]
        assert second["admin_token_file"] == first["admin_token_file"]
        with up_credentials(second):
            assert MlflowClient(second["tracking_uri"]).get_run(run_id).data.metrics == {"loss": 0.25}
        down(process, second)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            stop_parts()
