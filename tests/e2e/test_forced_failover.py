"""A forced failover tells the truth: it refuses to depose a primary that
still serves unless the caller accepts the loss; when forced, it counts
what the old primary holds past the new epoch's fork — exactly what that
region's quarantine then takes — and when the old primary cannot be asked
it says the loss is unknown, why, and a lower bound, never a false 0."""

import json
import subprocess
import threading
import time

import requests

from cluster import status, wait_until
from test_failover import Deployment, MlflowClient, accepting


def force(deployment: Deployment, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([deployment.binary, "failover", "--to", "westus", "--force", "--json",
                           "--url", deployment.gateway.url, *extra],
                          capture_output=True, text=True, timeout=120)


def quarantine(url: str, epoch: int) -> list[dict]:
    records = requests.get(f"{url}/api/tandem/v1/divergence", timeout=10).json()["records"]
    return [record for record in records if record["voided_by_epoch"] == epoch]


def test_forcing_over_a_serving_primary_is_refused_unless_the_loss_is_accepted_and_then_counted(tmp_path):
    deployment = Deployment(tmp_path)
    stop = threading.Event()
    try:
        run_id, _ = deployment.setup_objects()
        refused = force(deployment)
        assert refused.returncode == 4, (refused.returncode, refused.stdout, refused.stderr)
        assert "reachable and serving" in refused.stderr and "--accept-data-loss" in refused.stderr
        assert accepting(deployment.east.url), "a refused failover changes nothing"
        assert status(deployment.west.url)["primary"] == "eastus"
        without_force = subprocess.run([deployment.binary, "failover", "--to", "westus", "--accept-data-loss",
                                        "--url", deployment.gateway.url], capture_output=True, text=True, timeout=30)
        assert without_force.returncode == 2, "--accept-data-loss only goes with --force"

        # Eight writers on the primary itself (tracking is asynchronous:
        # acknowledged before westus has it), forced over while they write.
        acknowledged = []

        def write(writer: int):
            client = MlflowClient(deployment.east.url)
            index = 0
            while not stop.is_set() and index < 10_000:
                index += 1
                try:
                    client.set_tag(run_id, f"w{writer}-{index}", "x")
                    acknowledged.append((writer, index))
                except Exception:  # noqa: BLE001 - refused once eastus stepped down
                    time.sleep(0.02)

        writers = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(8)]
        for writer in writers:
            writer.start()
        wait_until(lambda: len(acknowledged) >= 100, 60, "the writers to get going")
        forced = force(deployment, "--accept-data-loss")
        assert forced.returncode == 0, forced.stderr
        report = json.loads(forced.stdout)
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
        assert report["planned"] is False and report["accepted_data_loss"] is True
        assert report["loss_known"] is True, report
        lost = report["records_possibly_lost"]
        print(f"forced over 8 writers: {lost} records past the fork, {len(acknowledged)} acknowledged")
        assert isinstance(lost, int) and lost >= 0

        # eastus rejoins under the new epoch: its quarantine takes exactly
        # what the report counted.
        wait_until(lambda: status(deployment.east.url)["primary"] == "westus", 60, "eastus to follow westus")
        wait_until(lambda: len(quarantine(deployment.east.url, report["epoch"])) >= lost, 60,
                   f"eastus's quarantine to hold the {lost} records counted")
        held = quarantine(deployment.east.url, report["epoch"])
        assert len(held) == lost, (len(held), lost)
        # Every acknowledged write is in westus or in that quarantine.
        tags = MlflowClient(deployment.west.url).get_run(run_id).data.tags
        text = json.dumps(held)
        missing = [f"w{w}-{i}" for w, i in acknowledged if f"w{w}-{i}" not in tags and f'"w{w}-{i}"' not in text]
        assert not missing, missing[:10]
        # `tandem status` at westus shows the last failover it ran.
        shown = subprocess.run([deployment.binary, "status", "--url", deployment.west.url],
                               capture_output=True, text=True, timeout=30)
        assert "last failover run by westus: forced failover eastus → westus" in shown.stdout, shown.stdout
        deployment.epochs_have_one_primary()
    finally:
        stop.set()
        deployment.close()


def test_forcing_over_a_killed_primary_says_the_loss_is_unknown_and_why(tmp_path):
    deployment = Deployment(tmp_path, failover='mode = "manual"')
    try:
        run_id, _ = deployment.setup_objects()
        MlflowClient(deployment.gateway.url).set_tag(run_id, "before", "1")
        deployment.cluster.wait_caught_up()
        deployment.cluster.stop(deployment.east, hard=True)
        forced = force(deployment)
        assert forced.returncode == 0, forced.stderr
        report = json.loads(forced.stdout)
        assert report["loss_known"] is False and report["records_possibly_lost"] is None, report
        assert "unreachable" in report["loss_reason"], report
        assert report["loss_lower_bound"] == 0, report
        assert report["accepted_data_loss"] is False
        text = subprocess.run([deployment.binary, "status", "--url", deployment.west.url],
                              capture_output=True, text=True, timeout=30).stdout
        assert "records lost: at least 0, exact count unknown" in text, text
    finally:
        deployment.close()
