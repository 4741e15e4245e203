"""Hot-hot classes with real processes: every region accepts writes, the
regions are partitioned while both write the same things through the official
mlflow client, and after the link heals every region holds the same state and
lists the same conflicts."""

import json
import subprocess
import time

import mlflow
import pytest
import requests

from cluster import make_cluster
from conftest import _tandem_bin
from support import unique

HOT_HOT = """
[classes.tracking]
level = "hot-hot"

[classes.registry]
level = "hot-hot"
"""


def MlflowClient(url: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.fixture(params=[2, 3], ids=["two-regions", "three-regions"])
def cluster(tmp_path, request):
    made = make_cluster(_tandem_bin(), tmp_path, regions=request.param, classes=HOT_HOT, proxy_all=True)
    yield made
    made.close()


def wait_for(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except Exception as problem:  # a region mid-merge may not have an object yet
            last = problem
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def conflicts(url: str) -> list[dict]:
    response = requests.get(f"{url}/api/tandem/v1/conflicts", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["conflicts"]


def snapshot(client: mlflow.MlflowClient, experiment_ids: list[str], run_id: str, model: str) -> dict:
    """What a user sees of the objects the test wrote, in a comparable form."""
    run = client.get_run(run_id)
    return {
        "experiments": sorted(
            (e.experiment_id, e.name, e.lifecycle_stage) for e in (client.get_experiment(i) for i in experiment_ids)
        ),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "params": run.data.params,
        "metrics": sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss")),
        "versions": sorted(int(v.version) for v in client.search_model_versions(f"name='{model}'")),
        "description": client.get_registered_model(model).description,
    }


def test_concurrent_writes_converge_in_every_region_with_conflicts_listed(cluster):
    east, west = cluster.regions[:2]
    clients = [MlflowClient(region.url) for region in cluster.regions]
    a, b = clients[:2]
    experiment_id = a.create_experiment(unique("shared"))
    run_id = a.create_run(experiment_id).info.run_id
    a.set_tag(run_id, "doomed", "x")
    model = unique("model")
    a.create_registered_model(model)
    assert a.create_model_version(model, "s3://bucket/m").version == "1"
    for other in clients[1:]:
        wait_for(lambda: other.get_run(run_id).data.tags.get("doomed") == "x", "the run to reach every region")
        wait_for(lambda: other.get_registered_model(model), "the model to reach every region")

    # Partition: each region keeps accepting writes, of the same objects.
    cluster.cut_all()
    a.set_tag(run_id, "k", "from-east")
    b.set_tag(run_id, "k", "from-west")
    a.log_param(run_id, "p", "east")
    b.log_param(run_id, "p", "west")
    a.delete_tag(run_id, "doomed")
    b.set_tag(run_id, "doomed", "revived")
    a.log_metric(run_id, "loss", 0.5, step=1)
    b.log_metric(run_id, "loss", 0.7, step=2)
    name = unique("dup")
    exp_east = a.create_experiment(name)
    exp_west = b.create_experiment(name)
    assert exp_east != exp_west, "experiment ids come from each region's own stripe"
    v_east = a.create_model_version(model, "s3://bucket/east").version
    v_west = b.create_model_version(model, "s3://bucket/west").version
    assert v_east != v_west, "model version numbers come from each region's own stripe"
    stride = len(cluster.regions)
    assert (int(v_east) - 1) % stride == 0 and (int(v_west) - 1) % stride == 1, (v_east, v_west)
    a.update_registered_model(model, "described in east")
    b.update_registered_model(model, "described in west")
    # Before the link heals, each region sees only its own writes.
    assert b.get_run(run_id).data.tags["k"] == "from-west"
    assert a.get_run(run_id).data.tags["k"] == "from-east"

    cluster.heal_all()
    ids = [experiment_id, exp_east, exp_west]

    def converged():
        first, *others = [snapshot(client, ids, run_id, model) for client in clients]
        complete = len(first["versions"]) == 3 and len(first["metrics"]) == 2
        return first if complete and all(other == first for other in others) else None

    state = wait_for(converged, "every region to hold the same state")
    assert state["tags"]["k"] in ("from-east", "from-west")
    assert "doomed" not in state["tags"], "a delete wins over a concurrent write"
    assert state["params"]["p"] in ("east", "west")
    assert state["metrics"] == [(1, 0.5), (2, 0.7)], "metrics from both regions are kept"
    assert state["versions"] == sorted([1, int(v_east), int(v_west)])
    assert state["description"] in ("described in east", "described in west")
    names = sorted(n for _, n, _ in state["experiments"] if n.startswith(name))
    assert names.count(name) == 1, names
    assert any(n.startswith(f"{name} (conflict ") for n in names), names

    # Every region lists the same conflicts, each with both versions.
    def same_conflicts():
        first, *others = [conflicts(region.url) for region in cluster.regions]
        ids = sorted(c["id"] for c in first)
        return first if ids and all(sorted(c["id"] for c in other) == ids for other in others) else None

    listed = wait_for(same_conflicts, "every region to list the same conflicts")
    registers = {c["register"]: c for c in listed}
    for expected in (f"run/{run_id}/tag/k", f"run/{run_id}/param/p", f"run/{run_id}/tag/doomed",
                     f"expname/{name}", f"rm/{model}/description"):
        assert expected in registers, f"no conflict on {expected}: {sorted(registers)}"
    doomed = registers[f"run/{run_id}/tag/doomed"]
    assert doomed["resolution"] == "delete wins"
    assert {doomed["winner"]["origin_region"], doomed["loser"]["origin_region"]} == {"eastus", "westus"}
    assert doomed["winner"]["change"]["type"] == "run_tag_deleted"
    assert doomed["loser"]["change"]["type"] == "run_data_logged"
    tag_conflict = registers[f"run/{run_id}/tag/k"]
    winner_value = tag_conflict["winner"]["change"]["tags"][0]["value"]
    assert winner_value == state["tags"]["k"], "the listed winner is the value both regions hold"

    # The CLI shows the same list.
    output = subprocess.run(
        [_tandem_bin(), "conflicts", "--url", west.url, "--json"], capture_output=True, text=True, timeout=30
    )
    assert output.returncode == 0, output.stderr
    assert sorted(c["id"] for c in json.loads(output.stdout)) == sorted(c["id"] for c in listed)
    text = subprocess.run([_tandem_bin(), "conflicts", "--url", east.url], capture_output=True, text=True, timeout=30)
    assert text.returncode == 0 and "delete wins" in text.stdout, text.stdout


def test_a_region_serves_nothing_before_the_bootstrap_arrives_and_is_not_ready(tmp_path):
    """A hot-hot region that joined the deployment empty refuses writes (503,
    not 404 for the missing default workspace) and says it is not ready until
    the primary's journal brings the bootstrap."""
    cluster = make_cluster(_tandem_bin(), tmp_path, regions=2, classes=HOT_HOT, proxy_all=True, start=False)
    try:
        east, west = cluster.regions
        cluster.start(east)
        cluster.proxies["eastus"].cut()
        cluster.start(west, ready=False)

        answer = requests.get(f"{west.url}/ready", timeout=5)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["ready"] is False and body["error_code"] == "TEMPORARILY_UNAVAILABLE", body
        failed = {check["name"]: check["detail"] for check in body["checks"] if not check["ok"]}
        assert set(failed) == {"bootstrap", "caught_up"}, body
        assert "'default' workspace is not here yet" in failed["bootstrap"], failed
        assert "eastus" in failed["caught_up"], failed
        assert requests.get(f"{west.url}/health", timeout=5).status_code == 200, "alive, though not ready"
        assert requests.get(f"{west.url}/api/tandem/v1/regions", timeout=5).json()["ready"] is False

        refused = requests.post(f"{west.url}/api/2.0/mlflow/experiments/create", json={"name": unique("early")},
                                timeout=5)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", refused.text
        assert "not ready" in refused.json()["message"] and "default" in refused.json()["message"], refused.text
        journal = requests.get(f"{west.url}/api/tandem/v1/journal", params={"after": 0}, timeout=5)
        assert journal.status_code == 200 and journal.text.strip() == "", "nothing was written"

        cluster.proxies["eastus"].heal()
        document = wait_for(lambda: cluster.ready(west), "westus to be ready once the bootstrap arrives")
        assert document["role"] == "secondary" and all(check["ok"] for check in document["checks"]), document
        experiment_id = MlflowClient(west.url).create_experiment(unique("ready"))
        wait_for(lambda: MlflowClient(east.url).get_experiment(experiment_id), "the write to reach eastus")
    finally:
        cluster.close()


def test_every_region_serves_writes_and_status_shows_the_mesh(cluster):
    east, west = cluster.regions[:2]
    b = MlflowClient(west.url)
    experiment_id = b.create_experiment(unique("written-in-west"))
    run_id = b.create_run(experiment_id).info.run_id
    b.log_metric(run_id, "m", 1.0)
    a = MlflowClient(east.url)
    wait_for(lambda: a.get_run(run_id).data.metrics == {"m": 1.0}, "westus's run to reach eastus")
    status = requests.get(f"{east.url}/api/tandem/v1/regions", timeout=5).json()
    this = next(r for r in status["regions"] if r["name"] == "eastus")
    assert sorted(f["source"] for f in this["following"]) == sorted(r.name for r in cluster.regions[1:]), this
    levels = {c["class"]: c["level"] for c in status["classes"]}
    assert levels["tracking"] == "hot-hot" and levels["registry"] == "hot-hot"
    # Workspaces are still managed by the primary alone.
    refused = requests.post(f"{west.url}/api/tandem/v1/workspaces", json={"name": unique("ws")}, timeout=5)
    assert refused.status_code == 403 and "primary" in refused.json()["message"], refused.text
    # Renaming a registered model cannot be merged and is refused clearly.
    model = unique("model")
    b.create_registered_model(model)
    response = requests.post(
        f"{west.url}/api/2.0/mlflow/registered-models/rename", json={"name": model, "new_name": model + "-2"}, timeout=5
    )
    assert response.status_code == 400 and "hot-hot" in response.json()["message"], response.text
