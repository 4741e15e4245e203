"""Every process exports Prometheus metrics through a maintained library:
requests by route and status with latency histograms, the store's commits,
replication, and the gateway's and witness's own traffic. The exposition is
parsed with the official `prometheus_client` parser, so a malformed line
fails the test."""

import subprocess

import mlflow
import requests
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from cluster import free_port, make_cluster, start_gateway, wait_until
from conftest import _tandem_bin
from support import unique


def scrape(url: str) -> dict:
    """{(sample name, frozenset of labels): value} of `url`/metrics."""
    response = requests.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def test_a_region_counts_requests_by_route_and_status(tracking_uri, server):
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(unique("metrics"))
    run_id = client.create_run(experiment_id).info.run_id
    before = scrape(server.url)

    for index in range(7):
        client.log_param(run_id, f"p{index}", index)
    missing = requests.get(f"{server.url}/api/2.0/mlflow/runs/get", params={"run_id": "0" * 32}, timeout=5)
    assert missing.status_code == 404

    after = scrape(server.url)
    route = "/api/2.0/mlflow/runs/log-parameter"
    counted = (value(after, "tandem_http_requests_total", service="region", route=route, status="200")
               - value(before, "tandem_http_requests_total", service="region", route=route, status="200"))
    assert counted == 7, "each log_param is one request of its route template"
    not_found = (value(after, "tandem_http_requests_total", route="/api/2.0/mlflow/runs/get", status="404")
                 - value(before, "tandem_http_requests_total", route="/api/2.0/mlflow/runs/get", status="404"))
    assert not_found == 1
    # Latency histograms per route, with buckets, and their counts agree.
    observed = (value(after, "tandem_http_request_duration_seconds_count", route=route)
                - value(before, "tandem_http_request_duration_seconds_count", route=route))
    assert observed == 7
    assert value(after, "tandem_http_request_duration_seconds_bucket", route=route, le="+Inf") >= 7
    # Concrete ids never become labels: the series stay bounded.
    assert not any(run_id in str(labels) for (_, labels) in after)
    # Every write committed, with its commit time.
    commits = (value(after, "tandem_store_commits_total", outcome="committed")
               - value(before, "tandem_store_commits_total", outcome="committed"))
    assert commits >= 7
    assert value(after, "tandem_store_commit_seconds_count") >= commits
    assert value(after, "tandem_journal_records_total") >= 7
    # The process's own figures, read at each scrape.
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_open_fds") > 0


def test_every_process_of_a_deployment_exports_its_own_metrics(tmp_path):
    binary = _tandem_bin()
    witness_port = free_port()
    witness_log = open(tmp_path / "witness.log", "ab")
    witness = subprocess.Popen(
        [binary, "witness", "--listen", f"127.0.0.1:{witness_port}", "--data", str(tmp_path / "witness")],
        stdout=witness_log, stderr=subprocess.STDOUT,
    )
    witness_log.close()
    witness_url = f"http://127.0.0.1:{witness_port}"
    cluster = gateway = None
    try:
        wait_until(lambda: _answers(f"{witness_url}/metrics"), 20, "the witness to answer")
        (tmp_path / "deployment").mkdir()
        cluster = make_cluster(binary, tmp_path / "deployment", regions=2)
        gateway = start_gateway(binary, cluster.deployment, tmp_path / "gateway.log")
        gateway.wait_for_primary("eastus")

        mlflow.set_tracking_uri(gateway.url)
        client = MlflowClient(gateway.url)
        experiment_id = client.create_experiment(unique("through-gateway"))
        run_id = client.create_run(experiment_id).info.run_id
        for step in range(5):
            client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        cluster.wait_caught_up()

        # The gateway labels what it proxies by class and kind, not by path.
        gateway_samples = scrape(gateway.url)
        proxied = value(gateway_samples, "tandem_http_requests_total", service="gateway",
                        route="proxy tracking write", status="200")
        assert proxied >= 7, "create_experiment, create_run and five log_metric calls went through"
        assert value(gateway_samples, "tandem_http_request_duration_seconds_count", service="gateway") >= proxied

        # The primary's gauges of the deployment, and the secondary's applies.
        primary = scrape(cluster.primary.url)
        assert value(primary, "tandem_is_primary", region="eastus") == 1
        assert value(primary, "tandem_replication_lag_records", region="westus") == 0
        secondary = scrape(cluster.secondaries[0].url)
        assert value(secondary, "tandem_is_primary", region="westus") == 0
        applied = value(secondary, "tandem_replication_records_applied_total", source="eastus")
        assert applied >= 7
        assert value(secondary, "tandem_replication_apply_seconds_count", source="eastus") == applied

        # The witness counts its own requests (a scrape is one).
        scrape(witness_url)
        witness_samples = scrape(witness_url)
        assert value(witness_samples, "tandem_http_requests_total", service="witness", route="/metrics") >= 1
    finally:
        if gateway is not None:
            gateway.stop()
        if cluster is not None:
            cluster.close()
        witness.terminate()
        witness.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
