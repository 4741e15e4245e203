"""Backup retention end to end: `tandem backup prune --keep/--ttl` on a
repository the official client's writes went into, and the retention of the
deployment file applied by the primary after every scheduled backup."""

import json
import re

import mlflow

from cluster import make_cluster, wait_until
from conftest import _tandem_bin
from support import unique
from test_recovery import cli, cli_json, digest, generate, servers  # noqa: F401 (a fixture)


def test_prune_keeps_the_newest_and_what_they_need(servers, tmp_path):
    binary = _tandem_bin()
    server = servers("prune")
    workspace = unique("ws")
    generate(server.url, workspace, tmp_path)
    root = tmp_path / "repository"
    repository = f"file://{root}"
    client = mlflow.MlflowClient(f"{server.url}/w/{workspace}")
    experiment = [e for e in client.search_experiments() if e.name != "Default"][0]
    run = client.search_runs([experiment.experiment_id])[0].info.run_id

    first = cli_json(binary, server.url, "backup", "create", "--to", repository, "--workspace", workspace)
    client.log_metric(run, "after_first", 1.0)
    second = cli_json(binary, server.url, "backup", "create", "--to", repository, "--workspace", workspace,
                      "--full")
    client.log_metric(run, "after_second", 2.0)
    third = cli_json(binary, server.url, "backup", "create", "--to", repository, "--workspace", workspace)
    assert (first["kind"], second["kind"], third["kind"]) == ("full", "full", "incremental")
    expected = digest(server.url, workspace)

    # Usage errors: no rule, a zero keep, a malformed ttl.
    assert cli(binary, server.url, "backup", "prune", "--from", repository, check=False).returncode == 2
    assert cli(binary, server.url, "backup", "prune", "--from", repository, "--keep", "0",
               check=False).returncode == 2
    bad_ttl = cli(binary, server.url, "backup", "prune", "--from", repository, "--ttl", "3 weeks", check=False)
    assert bad_ttl.returncode == 1 and "unknown duration unit" in bad_ttl.stderr, bad_ttl.stderr

    dry = cli_json(binary, server.url, "backup", "prune", "--from", repository, "--keep", "2", "--dry-run")
    assert dry["dry_run"] and dry["pruned"] == [first["id"]], dry
    assert dry["kept"] == [second["id"], third["id"]]
    assert len(cli_json(binary, server.url, "backup", "list", "--from", repository)["backups"]) == 3

    pruned = cli_json(binary, server.url, "backup", "prune", "--from", repository, "--keep", "2")
    assert pruned["pruned"] == [first["id"]] and pruned["segments_deleted"] >= 1, pruned
    human = cli(binary, server.url, "backup", "prune", "--from", repository, "--keep", "2").stdout
    assert "deleted 0 backup(s)" in human, human
    listed = cli_json(binary, server.url, "backup", "list", "--from", repository)["backups"]
    assert [b["id"] for b in listed] == [second["id"], third["id"]]
    assert not (root / "backups" / first["id"]).exists()
    cli(binary, server.url, "backup", "verify", "--from", repository)

    # What is kept restores exactly, into another region.
    target = servers("target")
    cli_json(binary, target.url, "backup", "restore", "--from", repository, "--workspace", workspace,
             "--into", target.url)
    assert digest(target.url, workspace) == expected


def test_the_primary_applies_the_deployment_retention_after_scheduled_backups(tmp_path):
    binary = _tandem_bin()
    root = tmp_path / "deployment"
    root.mkdir()
    repository = tmp_path / "repository"
    backup = (f'[backup]\nurl = "file://{repository}"\narchive_interval = "200ms"\nschedule = "1s"\n'
              'full_every = 2\nkeep = 2\n')
    cluster = make_cluster(binary, root, classes=backup)
    try:
        east = cluster.region("eastus")
        client = mlflow.MlflowClient(east.url)
        run = client.create_run(client.create_experiment(unique("scheduled"))).info.run_id
        log = root / "eastus.log"

        def pruned_some():
            client.log_metric(run, "m", 1.0)
            counts = [int(n) for n in re.findall(r"pruned backups[^\n]*?pruned=(\d+)", log.read_text())]
            return sum(counts) >= 2

        wait_until(pruned_some, 60, "the primary to prune scheduled backups")
        manifests = [json.loads(p.read_text()) for p in (repository / "backups").glob("*/manifest.json")]
        # keep = 2, plus at most the full base of a kept incremental.
        assert 2 <= len(manifests) <= 3, [m["id"] for m in manifests]
        kinds = [m["kind"] for m in sorted(manifests, key=lambda m: m["created_at"])]
        assert "full" in kinds, kinds
        assert all(m["region"] == "eastus" for m in manifests)
        verify = cli(binary, east.url, "backup", "verify", "--from", f"file://{repository}")
        assert verify.returncode == 0
    finally:
        cluster.close()
