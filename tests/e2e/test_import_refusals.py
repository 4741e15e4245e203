"""`tandem import` refused by one side: a source that rejects the given
credentials, a target that is a secondary. Each is a precise error naming
the side, with its exit code, and nothing is written; with the right
credentials (or the primary) the same copy completes."""

import json
import os
import subprocess

import mlflow
import pytest

from cluster import make_cluster
from conftest import _tandem_bin
from support import journal, unique
from test_auth import AuthServer


def tandem(url, *args, expect=0, env=None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "TANDEM_TOKEN"))}
    environment.update(env or {})
    result = subprocess.run([os.environ.get("TANDEM_BIN") or _tandem_bin(), *args, "--url", url],
                            capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == expect, (args, result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    return result


def test_a_source_that_refuses_the_credentials_stops_the_copy_with_nothing_written(server, tmp_path):
    source = AuthServer(_tandem_bin(), tmp_path / "source")
    try:
        client = mlflow.MlflowClient(tracking_uri=source.url)
        os.environ["MLFLOW_TRACKING_TOKEN"] = source.admin_token
        try:
            name = unique("guarded")
            experiment_id = client.create_experiment(name)
            run_id = client.create_run(experiment_id).info.run_id
            client.log_metric(run_id, "m", 2.0)
        finally:
            del os.environ["MLFLOW_TRACKING_TOKEN"]
        head = len(journal(server.url))
        for credentials in (["--from-token", "tandem_wrong"], []):
            refused = tandem(server.url, "import", "--from", source.url, "--into", "default", *credentials, expect=6)
            assert "the source refused" in refused.stderr and "UNAUTHENTICATED" in refused.stderr, refused.stderr
            assert "check the credentials" in refused.stderr
        assert len(journal(server.url)) == head
        # The token in the environment, as users set it.
        done = tandem(server.url, "import", "--from", source.url, "--into", "default", "--experiment", name,
                      "--json", env={"FROM_MLFLOW_TRACKING_TOKEN": source.admin_token})
        report = json.loads(done.stdout)
        assert report["runs"]["created"] == 1 and not report["failures"]
        copied = mlflow.MlflowClient(tracking_uri=server.url).get_run(run_id)
        assert copied.data.metrics == {"m": 2.0}
    finally:
        source.stop()


def test_a_secondary_as_the_target_is_refused_and_names_the_primary(tmp_path):
    (tmp_path / "cluster").mkdir()
    cluster = make_cluster(_tandem_bin(), tmp_path / "cluster")
    try:
        primary, secondary = cluster.primary.url, cluster.secondaries[0].url
        source = unique("src")
        tandem(primary, "workspace", "create", source)
        client = mlflow.MlflowClient(tracking_uri=f"{primary}/w/{source}")
        name = unique("from-primary")
        run_id = client.create_run(client.create_experiment(name)).info.run_id
        cluster.wait_caught_up()
        head = len(journal(secondary))
        refused = tandem(secondary, "import", "--from", f"{primary}/w/{source}", "--into", "default", expect=1)
        assert "the target refused" in refused.stderr, (refused.stdout, refused.stderr)
        assert "eastus" in refused.stderr, refused.stderr
        assert len(journal(secondary)) == head
        # The same copy into the primary completes (the run under a new id:
        # the deployment holds its own).
        tandem(primary, "import", "--from", f"{primary}/w/{source}", "--into", "default")
        target = mlflow.MlflowClient(tracking_uri=primary)
        copied = target.search_runs([target.get_experiment_by_name(name).experiment_id])
        assert len(copied) == 1 and copied[0].info.run_id != run_id
    finally:
        cluster.close()
