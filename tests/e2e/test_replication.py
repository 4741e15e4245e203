"""Replication between regions running as real processes: the official mlflow
client writes to the primary and reads from secondaries; secondaries are
restarted, stalled and partitioned; sync mode and max_rpo are held to their
promises."""

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid

import mlflow
import pytest
import requests

from cluster import make_cluster, wait_until
from conftest import _database_url, _psql, _tandem_bin
from support import expect_error, journal, unique, up_credentials


def MlflowClient(url: str) -> mlflow.MlflowClient:
    """A client whose tracking *and* registry calls go to `url`: left unset,
    the registry URI falls back to a process-wide one other tests may set."""
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.fixture
def clusters(tmp_path):
    made = []

    def make(**options):
        root = tmp_path / f"cluster{len(made)}"
        root.mkdir()
        cluster = make_cluster(_tandem_bin(), root, **options)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def postgres_database():
    name = f"tandem_e2e_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    yield _database_url(name)
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def populate(primary_url: str, tmp_path) -> dict:
    """Writes a bit of everything through the client; returns what to check."""
    mlflow.set_tracking_uri(primary_url)
    client = MlflowClient(primary_url)
    experiment_id = client.create_experiment(unique("replicated"), tags={"team": "a"})
    run = client.create_run(experiment_id, run_name="source-run")
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[mlflow.entities.Metric("loss", 1.0 / (step + 1), 1000 + step, step) for step in range(50)],
        params=[mlflow.entities.Param("lr", "0.01")],
        tags=[mlflow.entities.RunTag("stage", "train")],
    )
    payload = os.urandom(3 * 1024 * 1024)
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(payload)
    client.log_artifact(run_id, str(artifact), artifact_path="model")
    client.set_terminated(run_id)
    name = unique("model")
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return {
        "experiment_id": experiment_id,
        "run_id": run_id,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "model": name,
    }


def check_replicated(source: MlflowClient, replica: MlflowClient, expected: dict, tmp_path):
    run_id = expected["run_id"]
    assert replica.get_run(run_id).to_dictionary() == source.get_run(run_id).to_dictionary()
    assert [m.value for m in replica.get_metric_history(run_id, "loss")] == [
        m.value for m in source.get_metric_history(run_id, "loss")
    ]
    assert replica.get_experiment(expected["experiment_id"]).tags == {"team": "a"}
    found = replica.search_runs([expected["experiment_id"]], "params.lr = '0.01'")
    assert [r.info.run_id for r in found] == [run_id]
    downloaded = replica.download_artifacts(run_id, "model/weights.bin", dst_path=str(tmp_path / f"dl-{uuid.uuid4().hex}"))
    with open(downloaded, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == expected["sha256"]
    version = replica.get_model_version_by_alias(expected["model"], "champion")
    assert version.run_id == run_id


@pytest.mark.parametrize("secondary_backend", ["sqlite", "postgres"])
def test_secondary_serves_what_the_primary_wrote(clusters, tmp_path, secondary_backend, request):
    urls = {}
    if secondary_backend == "postgres":
        urls["westus"] = request.getfixturevalue("postgres_database")
    cluster = clusters(metadata_urls=urls)
    expected = populate(cluster.primary.url, tmp_path)
    cluster.wait_caught_up()
    source, replica = MlflowClient(cluster.primary.url), MlflowClient(cluster.secondaries[0].url)
    check_replicated(source, replica, expected, tmp_path)

    # A secondary is read-only for hot-warm classes, and says where to write.
    error = expect_error("PERMISSION_DENIED", replica.create_experiment, unique("nope"))
    assert "eastus" in error.message and f"127.0.0.1:{cluster.proxy.port}" in error.message
    expect_error("PERMISSION_DENIED", replica.log_param, expected["run_id"], "x", "1")
    status = cluster.status()
    westus = next(r for r in status["regions"] if r["name"] == "westus")
    assert westus["applied"] == status["journal_head"] and westus["lag_records"] == 0
    assert "tandem_replication_lag_records" in requests.get(f"{cluster.primary.url}/metrics").text


def test_replication_requires_the_secret(clusters):
    cluster = clusters()
    response = requests.get(f"{cluster.primary.url}/api/tandem/v1/replication/journal?after=0", timeout=5)
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"


def refused_write(url: str, path: str, body: dict) -> dict:
    """Sends one write over plain HTTP and returns the refusal's error JSON.
    (The mlflow client turns any 503 into a generic retry error, hiding it.)"""
    response = requests.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=30)
    assert response.status_code == 503, response.text
    return response.json()


def test_restarts_of_either_side_resume_with_no_gap_and_no_duplicate(clusters):
    cluster = clusters()
    client = MlflowClient(cluster.primary.url)
    run_id = client.create_run("0").info.run_id
    written = []
    errors = []

    def writer(start: int, count: int):
        for step in range(start, start + count):
            try:
                client.log_metric(run_id, "m", float(step), step=step, timestamp=1000 + step)
                written.append(step)
            except Exception as error:  # noqa: BLE001 - a primary restart refuses some writes
                errors.append(error)
            time.sleep(0.002)

    thread = threading.Thread(target=writer, args=(0, 300))
    thread.start()
    wait_until(lambda: len(written) >= 30, 30, "writes under way")
    cluster.stop(cluster.secondaries[0], hard=True)  # kill -9 mid-stream
    # It stays down while the primary keeps writing.
    wait_until(lambda: len(written) >= 80 or not thread.is_alive(), 30, "writes while the secondary is down")
    cluster.start(cluster.secondaries[0])
    thread.join()
    cluster.stop(cluster.primary)  # and restart the primary
    cluster.start(cluster.primary)
    writer(300, 50)
    cluster.wait_caught_up()

    primary_records = journal(cluster.primary.url)
    secondary_records = journal(cluster.secondaries[0].url)
    assert [r["seq"] for r in primary_records] == list(range(1, len(primary_records) + 1))
    # Every primary record arrived exactly once, in order.
    assert [(r["origin_region"], r["origin_seq"]) for r in secondary_records] == [
        ("eastus", r["seq"]) for r in primary_records
    ]
    replica = MlflowClient(cluster.secondaries[0].url)
    history = [m.step for m in replica.get_metric_history(run_id, "m")]
    assert history == sorted(written) and not errors


def test_a_partition_heals_and_the_secondary_catches_up(clusters):
    cluster = clusters()
    client = MlflowClient(cluster.primary.url)
    replica = MlflowClient(cluster.secondaries[0].url)
    experiment_id = client.create_experiment(unique("partition"))
    cluster.wait_caught_up()
    cluster.proxy.cut()
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "during", "partition")
    # westus has lost its stream from eastus: nothing written now can reach it.
    def stream_lost():
        this = next(r for r in cluster.status(cluster.secondaries[0])["regions"] if r.get("this_region"))
        return not this["connected"]

    wait_until(stream_lost, 10, "westus to lose its replication stream")
    expect_error("RESOURCE_DOES_NOT_EXIST", replica.get_run, run_id)
    westus = next(r for r in cluster.status()["regions"] if r["name"] == "westus")
    assert westus["lag_records"] >= 2
    cluster.proxy.heal()
    cluster.wait_caught_up(timeout=30)
    assert replica.get_run(run_id).data.params == {"during": "partition"}


def test_sync_mode_never_acknowledges_a_write_the_secondary_lacks(clusters):
    cluster = clusters(
        classes='[classes.tracking]\nlevel = "hot-warm"\nsync = true\n',
        env={"TANDEM_SYNC_TIMEOUT_MS": "1500"},
    )
    client = MlflowClient(cluster.primary.url)
    replica = MlflowClient(cluster.secondaries[0].url)
    run_id = client.create_run("0").info.run_id
    for step in range(25):
        client.log_metric(run_id, "sync", float(step), step=step)
        # Acknowledged means already applied at the secondary: no waiting.
        assert replica.get_run(run_id).data.metrics["sync"] == float(step)
    cluster.pause(cluster.secondaries[0])
    started = time.monotonic()
    error = refused_write(cluster.primary.url, "runs/log-metric",
                          {"run_id": run_id, "key": "sync", "value": 99.0, "timestamp": 1, "step": 99})
    assert error["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "did not confirm" in error["message"] and 1.4 < time.monotonic() - started < 10
    cluster.resume(cluster.secondaries[0])
    cluster.wait_caught_up()
    client.log_metric(run_id, "sync", 100.0, step=100)
    assert replica.get_run(run_id).data.metrics["sync"] == 100.0


def test_max_rpo_refuses_writes_and_recovers(clusters):
    cluster = clusters(classes='[classes.tracking]\nlevel = "hot-warm"\nmax_rpo = "1s"\n')
    client = MlflowClient(cluster.primary.url)
    run_id = client.create_run("0").info.run_id
    cluster.wait_caught_up()
    cluster.proxy.cut()
    client.log_param(run_id, "accepted", "yes")  # within the RPO budget
    deadline = time.monotonic() + 15
    refused = None
    while time.monotonic() < deadline and refused is None:
        time.sleep(0.2)
        response = requests.post(f"{cluster.primary.url}/api/2.0/mlflow/runs/set-tag",
                                 json={"run_id": run_id, "key": "probe", "value": "x"}, timeout=10)
        if response.status_code != 200:
            refused = response
    assert refused is not None and refused.status_code == 503, "writes were never refused"
    assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "max_rpo" in refused.json()["message"]
    tracking = next(c for c in cluster.status()["classes"] if c["class"] == "tracking")
    assert tracking["refusing_writes"] and tracking["rpo_seconds"] > 1.0
    cluster.proxy.heal()
    deadline = time.monotonic() + 20
    while True:
        try:
            client.set_tag(run_id, "after", "heal")
            break
        except mlflow.exceptions.MlflowException:
            assert time.monotonic() < deadline, "writes were not accepted again after the secondary caught up"
            time.sleep(0.2)
    cluster.wait_caught_up()
    assert MlflowClient(cluster.secondaries[0].url).get_run(run_id).data.tags["after"] == "heal"


def test_hot_cold_classes_are_not_replicated_nor_served_stale(clusters):
    cluster = clusters(classes='[classes.registry]\nlevel = "hot-cold"\n')
    client = MlflowClient(cluster.primary.url)
    name = unique("cold")
    client.create_registered_model(name)
    run_id = client.create_run("0").info.run_id
    cluster.wait_caught_up()
    replica = MlflowClient(cluster.secondaries[0].url)
    assert replica.get_run(run_id).info.run_id == run_id  # tracking is hot-warm
    error = expect_error("PERMISSION_DENIED", replica.get_registered_model, name)
    assert "hot-cold" in error.message


def test_three_regions_follow_the_primary(clusters, tmp_path):
    cluster = clusters(regions=3)
    expected = populate(cluster.primary.url, tmp_path)
    cluster.wait_caught_up()
    source = MlflowClient(cluster.primary.url)
    for region in cluster.secondaries:
        check_replicated(source, MlflowClient(region.url), expected, tmp_path)


def test_tandem_up_runs_a_deployment_and_stops_it_cleanly(tmp_path):
    directory = tmp_path / "up"
    process = subprocess.Popen([_tandem_bin(), "up", "--dir", str(directory)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        up_file = directory / "up.json"
        deadline = time.monotonic() + 30
        while not up_file.exists():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "up.json never appeared"
            time.sleep(0.1)
        up = json.loads(up_file.read_text())
        assert [part["kind"] for part in up["parts"]] == ["witness", "region", "region", "gateway"]
        regions = [part for part in up["parts"] if part["kind"] == "region"]
        assert up["tracking_uri"] == up["parts"][3]["url"]
        client = MlflowClient(up["tracking_uri"])
        with up_credentials(up):
            experiment_id = client.create_experiment(unique("up"))
            replica = MlflowClient(regions[1]["url"])
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert replica.get_experiment(experiment_id).experiment_id == experiment_id
                    break
                except mlflow.exceptions.MlflowException:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        for part in up["parts"]:
            assert not os.path.exists(f"/proc/{part['pid']}") or "zombie" in open(f"/proc/{part['pid']}/status").read().lower()
        assert not up_file.exists()
    finally:
        # Stop `tandem up` the way a user does, so it stops its parts; if it
        # cannot, stop the parts it started by their pids, then it.
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if (directory / "up.json").exists():
            for part in json.loads((directory / "up.json").read_text())["parts"]:
                if part["pid"] is None:
                    continue
                try:
                    os.kill(part["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
