"""MLflow's own command line against Tandem: the venv's `mlflow` executable,
with MLFLOW_TRACKING_URI pointing at a fresh workspace of the server, runs
`mlflow experiments create/search/rename/delete/restore/csv`,
`mlflow runs list/describe/delete/restore` and
`mlflow artifacts log-artifact/log-artifacts/list/download`; the tests
assert what the commands print and what the server then holds."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from support import unique


def mlflow_bin() -> str:
    """The `mlflow` executable next to the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "mlflow"
    if not candidate.exists():
        pytest.skip(f"no mlflow executable beside {sys.executable}")
    return str(candidate)


@pytest.fixture
def cli(make_workspace, tmp_path):
    """Runs `mlflow …` against a fresh workspace; returns (stdout, stderr)."""
    uri = make_workspace()
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = uri
    env.pop("MLFLOW_REGISTRY_URI", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    env.pop("MLFLOW_EXPERIMENT_NAME", None)

    def run(*args: str, expect: int = 0) -> tuple[str, str]:
        result = subprocess.run(
            [mlflow_bin(), *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )
        assert result.returncode == expect, (args, result.returncode, result.stdout, result.stderr[-3000:])
        return result.stdout, result.stderr

    run.uri = uri
    run.client = MlflowClient(uri, uri)
    return run


def table(text: str) -> list[list[str]]:
    """The rows of a `tabulate` table as MLflow's CLI prints it (no header;
    no rows prints nothing)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    rule = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    return [line.split() for line in lines[rule + 1:] if set(line.replace(" ", "")) != {"-"}]


def test_experiments_create_search_rename_delete_restore_csv(cli, tmp_path):
    name = unique("exp")
    out, _ = cli("experiments", "create", "--experiment-name", name)
    assert out.strip().startswith(f"Created experiment '{name}' with id ")
    experiment_id = out.strip().rsplit(" ", 1)[1]
    assert cli.client.get_experiment(experiment_id).name == name

    out, _ = cli("experiments", "search")
    assert table(out) == [["0", "Default", "mlflow-artifacts:/0"],
                          [experiment_id, name, f"mlflow-artifacts:/{experiment_id}"]]

    renamed = f"{name}-renamed"
    out, _ = cli("experiments", "rename", "--experiment-id", experiment_id, "--new-name", renamed)
    assert out.strip() == f"Experiment with id {experiment_id} has been renamed to '{renamed}'."
    assert cli.client.get_experiment(experiment_id).name == renamed

    # A run to export.
    run = cli.client.create_run(experiment_id, run_name="exported", tags={"team": "cli"})
    cli.client.log_param(run.info.run_id, "alpha", "0.5")
    cli.client.log_metric(run.info.run_id, "loss", 0.25, step=3)
    cli.client.set_terminated(run.info.run_id)
    out, _ = cli("experiments", "csv", "--experiment-id", experiment_id)
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert (row["run_id"], row["experiment_id"], row["status"]) == (run.info.run_id, experiment_id, "FINISHED")
    assert (row["params.alpha"], row["metrics.loss"], row["tags.team"], row["tags.mlflow.runName"]) == (
        "0.5", "0.25", "cli", "exported")
    assert row["artifact_uri"] == f"mlflow-artifacts:/{experiment_id}/{run.info.run_id}/artifacts"
    out, _ = cli("experiments", "csv", "--experiment-id", experiment_id, "--filename", "runs.csv")
    assert out.strip() == f"Experiment with ID {experiment_id} has been exported as a CSV to file: runs.csv."
    [row] = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert row["run_id"] == run.info.run_id

    out, _ = cli("experiments", "delete", "--experiment-id", experiment_id)
    assert out.strip() == f"Experiment with ID {experiment_id} has been deleted."
    assert cli.client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    out, _ = cli("experiments", "search")
    assert [row[0] for row in table(out)] == ["0"]
    out, _ = cli("experiments", "search", "--view", "deleted_only")
    assert table(out) == [[experiment_id, renamed, f"mlflow-artifacts:/{experiment_id}"]]
    # MLflow's rule: a deleted experiment's name stays reserved.
    _, err = cli("experiments", "create", "--experiment-name", renamed, expect=1)
    assert "RESOURCE_ALREADY_EXISTS" in err

    out, _ = cli("experiments", "restore", "--experiment-id", experiment_id)
    assert out.strip() == f"Experiment with id {experiment_id} has been restored."
    assert cli.client.get_experiment(experiment_id).lifecycle_stage == "active"
    out, _ = cli("experiments", "search", "--view", "all")
    assert [row[:2] for row in table(out)] == [["0", "Default"], [experiment_id, renamed]]

    # Unknown experiments fail with MLflow's error.
    _, err = cli("experiments", "delete", "--experiment-id", "99999", expect=1)
    assert "RESOURCE_DOES_NOT_EXIST" in err


def test_runs_list_describe_delete_restore(cli):
    experiment_id = cli.client.create_experiment(unique("exp"))
    run = cli.client.create_run(experiment_id, run_name="described", tags={"team": "cli"})
    run_id = run.info.run_id
    cli.client.log_param(run_id, "alpha", "0.5")
    cli.client.log_metric(run_id, "loss", 0.25)
    cli.client.set_terminated(run_id)

    out, _ = cli("runs", "list", "--experiment-id", experiment_id)
    [row] = table(out)
    assert row[-2:] == ["described", run_id], out

    out, _ = cli("runs", "describe", "--run-id", run_id)
    described = json.loads(out)
    assert described["info"]["run_id"] == run_id
    assert described["info"]["experiment_id"] == experiment_id
    assert described["info"]["status"] == "FINISHED"
    assert described["info"]["lifecycle_stage"] == "active"
    assert described["info"]["run_name"] == "described"
    assert described["data"]["params"] == {"alpha": "0.5"}
    assert described["data"]["metrics"] == {"loss": 0.25}
    assert described["data"]["tags"]["team"] == "cli"
    assert described["data"]["tags"]["mlflow.runName"] == "described"

    out, _ = cli("runs", "delete", "--run-id", run_id)
    assert out.strip() == f"Run with ID {run_id} has been deleted."
    assert cli.client.get_run(run_id).info.lifecycle_stage == "deleted"
    out, _ = cli("runs", "list", "--experiment-id", experiment_id)
    assert table(out) == []
    out, _ = cli("runs", "list", "--experiment-id", experiment_id, "--view", "deleted_only")
    assert [row[-1] for row in table(out)] == [run_id]
    out, _ = cli("runs", "describe", "--run-id", run_id)
    assert json.loads(out)["info"]["lifecycle_stage"] == "deleted"

    out, _ = cli("runs", "restore", "--run-id", run_id)
    assert out.strip() == f"Run with id {run_id} has been restored."
    assert cli.client.get_run(run_id).info.lifecycle_stage == "active"
    out, _ = cli("runs", "list", "--experiment-id", experiment_id, "--view", "all")
    assert [row[-1] for row in table(out)] == [run_id]

    _, err = cli("runs", "describe", "--run-id", "0" * 32, expect=1)
    assert "RESOURCE_DOES_NOT_EXIST" in err


def test_artifacts_log_list_download(cli, tmp_path):
    experiment_id = cli.client.create_experiment(unique("exp"))
    run_id = cli.client.create_run(experiment_id).info.run_id
    single = tmp_path / "model.txt"
    single.write_text("weights\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.csv").write_text("x,y\n1,2\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(70_000))

    _, err = cli("artifacts", "log-artifact", "--local-file", str(single), "--run-id", run_id)
    assert "Logged artifact from local file" in err
    cli("artifacts", "log-artifact", "--local-file", str(single), "--run-id", run_id, "--artifact-path", "nested/one")
    _, err = cli("artifacts", "log-artifacts", "--local-dir", str(tree), "--run-id", run_id, "--artifact-path", "data")
    assert "Logged artifact from local dir" in err

    out, _ = cli("artifacts", "list", "--run-id", run_id)
    assert json.loads(out) == [
        {"path": "data", "is_dir": True},
        {"path": "model.txt", "is_dir": False, "file_size": 8},
        {"path": "nested", "is_dir": True},
    ]
    out, _ = cli("artifacts", "list", "--run-id", run_id, "--artifact-path", "data")
    assert json.loads(out) == [
        {"path": "data/a.csv", "is_dir": False, "file_size": 8},
        {"path": "data/sub", "is_dir": True},
    ]
    out, _ = cli("artifacts", "list", "--run-id", run_id, "--artifact-path", "data/sub")
    assert json.loads(out) == [{"path": "data/sub/b.bin", "is_dir": False, "file_size": 70_000}]

    # The whole run, a directory, one file, and by artifact URI.
    everything = tmp_path / "everything"
    out, _ = cli("artifacts", "download", "--run-id", run_id, "--dst-path", str(everything))
    assert Path(out.strip()) == everything
    files = sorted(str(p.relative_to(everything)) for p in everything.rglob("*") if p.is_file())
    assert files == ["data/a.csv", "data/sub/b.bin", "model.txt", "nested/one/model.txt"]
    assert (everything / "data" / "sub" / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()

    out, _ = cli("artifacts", "download", "--run-id", run_id, "--artifact-path", "data",
                 "--dst-path", str(tmp_path / "dir"))
    assert Path(out.strip()) == tmp_path / "dir" / "data"
    assert (tmp_path / "dir" / "data" / "a.csv").read_text() == "x,y\n1,2\n"

    out, _ = cli("artifacts", "download", "--run-id", run_id, "--artifact-path", "nested/one/model.txt")
    assert Path(out.strip()).read_text() == "weights\n"

    uri = f"runs:/{run_id}/data/sub/b.bin"
    out, _ = cli("artifacts", "download", "--artifact-uri", uri, "--dst-path", str(tmp_path / "by-uri"))
    assert Path(out.strip()).read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    artifact_uri = cli.client.get_run(run_id).info.artifact_uri
    out, _ = cli("artifacts", "download", "--artifact-uri", f"{artifact_uri}/model.txt")
    assert Path(out.strip()).read_text() == "weights\n"

    # A path that is not there fails.
    cli("artifacts", "download", "--run-id", run_id, "--artifact-path", "missing.txt", expect=1)
