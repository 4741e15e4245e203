"""`tandem verify` proves replicas equal: every region fingerprints each
workspace's rows and stored bytes at the same changes, and the verifying
region names each object that differs. A secondary's database row or
artifact bytes changed behind its back are found, exactly; writes still
replicating are never reported as differences."""

import json
import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import mlflow
import requests
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from cluster import make_cluster, wait_until
from conftest import _tandem_bin
from support import unique


def verify(url: str, *extra: str) -> tuple[int, dict]:
    done = subprocess.run([_tandem_bin(), "verify", "--json", "--url", url, *extra],
                          capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout)


def differences(report: dict) -> list[dict]:
    return [d for w in report["workspaces"] for d in w["differences"]]


def stored_file(data: Path, name: str) -> Path:
    found = [p for p in (data / "artifacts").rglob(name) if p.is_file()]
    assert len(found) == 1, found
    return found[0]


def test_verify_finds_exactly_the_row_and_the_bytes_changed_behind_a_secondarys_back(tmp_path):
    cluster = make_cluster(_tandem_bin(), tmp_path, regions=2)
    try:
        primary, secondary = cluster.primary, cluster.secondaries[0]
        mlflow.set_tracking_uri(primary.url)
        client = MlflowClient(primary.url)
        experiment_id = client.create_experiment(unique("verify"))
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "lr", "0.1")
        client.log_metric(run_id, "loss", 0.5, step=1)
        model = tmp_path / "model.txt"
        model.write_text("weights: 1 2 3\n")
        client.log_artifact(run_id, str(model))
        cluster.wait_caught_up()

        code, report = verify(primary.url)
        assert code == 0, report
        assert report["ok"] is True and report["differences"] == 0
        assert sorted(report["regions"]) == ["eastus", "westus"]
        default = next(w for w in report["workspaces"] if w["name"] == "default")
        assert default["status"] == "equal"
        assert {"workspace", "tracking"} <= set(default["classes"])

        # A row changed in the secondary's database, not through Tandem.
        database = sqlite3.connect(secondary.data / "metadata.db", timeout=30)
        with database:
            changed = database.execute(
                "UPDATE run_params SET value = '0.9' WHERE run_id = ? AND key = 'lr'", (run_id,)).rowcount
        assert changed == 1
        code, report = verify(primary.url)
        assert code == 1 and report["ok"] is False
        found = differences(report)
        assert [(d["table"], d["key"]) for d in found] == [("run_params", f"{run_id}/lr")], found
        assert found[0]["regions"]["eastus"] != found[0]["regions"]["westus"]
        default = next(w for w in report["workspaces"] if w["name"] == "default")
        assert default["status"] == "different"
        with database:
            database.execute("UPDATE run_params SET value = '0.1' WHERE run_id = ? AND key = 'lr'", (run_id,))
        database.close()
        assert verify(primary.url)[0] == 0

        # The artifact's bytes changed on the secondary's disk, same size.
        stored = stored_file(secondary.data, "model.txt")
        original = stored.read_bytes()
        stored.write_bytes(original.replace(b"1 2 3", b"1 2 4"))
        code, report = verify(primary.url, "--workspace", "default")
        assert code == 1
        found = differences(report)
        assert len(found) == 1 and found[0]["table"] == "artifact_bytes", found
        assert found[0]["key"].endswith("model.txt")
        assert found[0]["regions"]["westus"] != found[0]["regions"]["eastus"]
        # The primary's copy is the one the metadata records.
        import hashlib
        assert found[0]["regions"]["eastus"] == hashlib.sha256(original).hexdigest()

        # Text output names it too, and the outcome is on /metrics and kept.
        text = subprocess.run([_tandem_bin(), "verify", "--url", primary.url], capture_output=True, text=True,
                              timeout=300)
        assert text.returncode == 1
        assert "artifact_bytes" in text.stdout and "model.txt" in text.stdout
        assert "not proven equal" in text.stderr
        last = requests.get(f"{primary.url}/api/tandem/v1/verify", timeout=10).json()
        assert last["ok"] is False and last["differences"] == 1
        families = {f.name: f for f in text_string_to_metric_families(
            requests.get(f"{primary.url}/metrics", timeout=10).text)}
        runs = {s.labels["outcome"]: s.value for s in families["tandem_verify_runs"].samples
                if s.name == "tandem_verify_runs_total"}
        assert runs["different"] >= 2 and runs["equal"] >= 2
        assert [s.value for s in families["tandem_verify_differences"].samples] == [1.0]

        stored.write_bytes(original)
        assert verify(primary.url)[0] == 0
    finally:
        cluster.close()


def test_writes_in_flight_are_never_reported_as_differences(tmp_path):
    cluster = make_cluster(_tandem_bin(), tmp_path, regions=2)
    stop = threading.Event()
    try:
        client = MlflowClient(cluster.primary.url)
        run_id = client.create_run(client.create_experiment(unique("busy"))).info.run_id
        written = []

        def write():
            step = 0
            while not stop.is_set() and step < 5000:
                client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
                written.append(step)
                step += 1

        writer = threading.Thread(target=write)
        writer.start()
        wait_until(lambda: len(written) >= 20, 30, "the writer to get going")
        for _ in range(3):
            code, report = verify(cluster.primary.url)
            assert report["differences"] == 0, differences(report)
            for workspace in report["workspaces"]:
                assert workspace["status"] in ("equal", "unverified"), workspace
        stop.set()
        writer.join(timeout=60)
        cluster.wait_caught_up()
        code, report = verify(cluster.primary.url)
        assert code == 0, report
    finally:
        stop.set()
        cluster.close()


def test_the_primary_verifies_periodically(tmp_path):
    cluster = make_cluster(_tandem_bin(), tmp_path, regions=2, classes='\n[verify]\ninterval = "1s"\n')
    try:
        def verified() -> bool:
            response = requests.get(f"{cluster.primary.url}/api/tandem/v1/verify", timeout=10)
            return response.status_code == 200 and response.json()["ok"] is True

        wait_until(verified, 60, "a periodic verification")
        # Secondaries do not verify on their own.
        assert requests.get(f"{cluster.secondaries[0].url}/api/tandem/v1/verify", timeout=10).status_code == 404
    finally:
        cluster.close()
