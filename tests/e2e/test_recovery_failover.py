"""Hot-cold classes at failover: not replicated continuously, they come back
in the new primary from the old primary's journal archive (and the artifact
bytes archived with it), with two real regions and a real etcd witness."""

import contextlib
import hashlib
import json

import mlflow
import requests

from cluster import Etcd, make_cluster, status, wait_until
from conftest import _tandem_bin

WITNESS = 'ttl = "3s"\nrenew_interval = "1s"\nretry_timeout = "1s"'


def archived_to(repository, region: str) -> int:
    infos = [json.loads(p.read_text()) for p in (repository / "journal" / region).glob("*.json")]
    return max((info["last_seq"] for info in infos), default=0)


@contextlib.contextmanager
def hot_cold_deployment(tmp_path, archive_interval: str, failover: str = ""):
    """Two regions with tracking `hot-cold`, archiving every
    `archive_interval` to a repository, a real etcd witness; yields the
    cluster (eastus leading) and the repository's directory."""
    root = tmp_path / "deployment"
    root.mkdir()
    repository = tmp_path / "repository"
    classes = (
        '[classes.tracking]\nlevel = "hot-cold"\n\n'
        f'[backup]\nurl = "file://{repository}"\narchive_interval = "{archive_interval}"\n'
    )
    etcd = Etcd(root)
    etcd.start()
    cluster = None
    try:
        cluster = make_cluster(_tandem_bin(), root, classes=classes, witness=etcd, witness_settings=WITNESS,
                               failover=failover)
        east = cluster.region("eastus")
        wait_until(lambda: (s := status(east.url)) and s.get("accepting_writes"), 20, "eastus to lead")
        yield cluster, repository
    finally:
        if cluster is not None:
            cluster.close()
        etcd.stop()


def test_hot_cold_tracking_is_restored_from_the_archive_at_failover(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with hot_cold_deployment(tmp_path, "300ms", failover='grace_period = "1s"') as (cluster, repository):
        east, west = cluster.region("eastus"), cluster.region("westus")

        client = mlflow.MlflowClient(east.url)
        experiment = client.create_experiment("cold-experiment")
        run = client.create_run(experiment, run_name="cold-run").info.run_id
        client.log_param(run, "alpha", "0.5")
        for step in range(20):
            client.log_metric(run, "loss", 1.0 / (step + 1), step=step)
        report = tmp_path / "report.txt"
        report.write_text("hot-cold bytes\n" * 500)
        client.log_artifact(run, str(report))
        client.set_terminated(run)
        expected_digest = hashlib.sha256(report.read_bytes()).hexdigest()

        # The secondary holds none of it: the class is not replicated.
        refused = requests.get(f"{west.url}/api/2.0/mlflow/runs/get", params={"run_id": run}, timeout=5)
        assert refused.status_code == 403, refused.text

        head = status(east.url)["journal_head"]
        wait_until(lambda: archived_to(repository, "eastus") >= head, 20, "eastus's journal to be archived")
        assert (repository / "blobs").exists(), "the artifact's bytes were not archived"

        cluster.stop(east, hard=True)
        wait_until(lambda: (s := status(west.url)) and s.get("accepting_writes"), 30, "westus to take over")
        restored = wait_until(lambda: (s := status(west.url)) and s.get("restoring") == [] and s, 30,
                              "westus to restore the hot-cold classes")
        assert restored["primary"] == "westus"

        west_client = mlflow.MlflowClient(west.url)
        got = west_client.get_run(run)
        assert got.info.run_name == "cold-run" and got.info.status == "FINISHED"
        assert got.data.params == {"alpha": "0.5"}
        history = west_client.get_metric_history(run, "loss")
        assert [m.step for m in history] == list(range(20))
        local = west_client.download_artifacts(run, "report.txt", str(tmp_path / "down"))
        assert hashlib.sha256(open(local, "rb").read()).hexdigest() == expected_digest
        # And the class takes writes again at the new primary.
        west_client.log_metric(run, "after_failover", 1.0)


def test_a_planned_failover_archives_first_and_loses_no_hot_cold_change(tmp_path, monkeypatch):
    """With an archive interval far longer than the test, only the archiving
    the planned failover does before handing over can bring the hot-cold
    changes to the new primary."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with hot_cold_deployment(tmp_path, "1h") as (cluster, repository):
        east, west = cluster.region("eastus"), cluster.region("westus")
        client = mlflow.MlflowClient(east.url)
        run = client.create_run(client.create_experiment("planned-cold")).info.run_id
        for step in range(10):
            client.log_metric(run, "loss", 1.0 / (step + 1), step=step)
        assert archived_to(repository, "eastus") == 0, "nothing is archived before the failover"

        answer = requests.post(f"{east.url}/api/tandem/v1/failover", json={"to": "westus"}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["zero_loss"], answer.text
        assert archived_to(repository, "eastus") >= answer.json()["records_confirmed"]
        wait_until(lambda: (s := status(west.url)) and s.get("restoring") == [] and s.get("accepting_writes"), 30,
                   "westus to lead with the hot-cold classes restored")
        history = mlflow.MlflowClient(west.url).get_metric_history(run, "loss")
        assert [m.step for m in history] == list(range(10))
