"""Bundles: `tandem export --to file:///…|s3://…|az://…` writes a workspace
as a versioned, self-verifying bundle and `tandem import --from <bundle>`
brings it back, checked through the official mlflow client: everything
arrives as it was (run ids, times, histories with NaN/±Inf, artifacts byte
for byte, logged models, versions, stages, aliases), a second import
changes nothing, a dry run verifies and writes nothing, a selection takes
what it names and what its versions need, and a damaged, unfinished or
newer bundle is refused by name with nothing half-imported. S3 runs on
moto, Azure on Azurite, both started here."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from cluster import free_port
from conftest import _start, _stop, _tandem_bin
from support import journal
from test_move import client_for, fill, snapshot, workspace
from test_multipart import (AZURITE_ACCOUNT, AZURITE_KEY, _azurite_create_container, _emulator,
                            _environment, moto)  # noqa: F401 (moto is a fixture)

BUCKET = "tandem-mpu"


def tandem(url, *args, expect=0, env=None):
    result = subprocess.run([os.environ.get("TANDEM_BIN") or _tandem_bin(), *args, "--url", url],
                            capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    assert result.returncode == expect, (args, result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    return result


def export(url, source, to, *extra, expect=0, env=None):
    result = tandem(url, "export", "--workspace", source, "--to", to, "--json", *extra, expect=expect, env=env)
    return json.loads(result.stdout) if expect == 0 else result


def import_bundle(url, bundle, into, *extra, expect=0, env=None):
    result = tandem(url, "import", "--from", bundle, "--into", into, "--json", *extra, expect=expect, env=env)
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else result


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """A second deployment: where a bundle is carried to. Runs keep their ids
    there (inside one deployment a copy takes new ones)."""
    root = tmp_path_factory.mktemp("other")
    server = _start(_tandem_bin(), "sqlite", root / "data", root / "server.log", None)
    yield server
    _stop(server.process)


@pytest.fixture
def azurite(tmp_path):
    if os.environ.get("TANDEM_SKIP_AZURITE") == "1":
        pytest.skip("TANDEM_SKIP_AZURITE=1")
    binary = shutil.which("azurite-blob")
    if binary is None:
        pytest.fail("azurite-blob is not on PATH (see tests/e2e/README.md)")
    port = free_port()
    data = tmp_path / "azurite"
    data.mkdir()
    command = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data),
               "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"]
    with _emulator("azurite", command, port, tmp_path / "azurite.log"):
        url = f"http://127.0.0.1:{port}"
        _azurite_create_container(url, "bundles")
        yield url


@pytest.fixture(params=["file", "s3", "az"])
def location(request, tmp_path):
    """Where a bundle goes, and the environment the CLI needs to reach it."""
    if request.param == "file":
        yield f"file://{tmp_path}/bundle", {}
    elif request.param == "s3":
        endpoint = request.getfixturevalue("moto")
        yield f"s3://{BUCKET}/bundles/one", {
            "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    else:
        endpoint = request.getfixturevalue("azurite")
        yield "az://bundles/one", {
            "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
            "AZURE_ENDPOINT": f"{endpoint}/{AZURITE_ACCOUNT}", "AZURE_ALLOW_HTTP": "true"}


def relocated(snap):
    """A snapshot without what belongs to the workspace it was taken in."""
    snap = json.loads(json.dumps(snap, default=str))
    snap["experiment"][5] = None  # artifact_location names the workspace's storage
    for run in snap["runs"].values():
        run["run"]["info"].pop("artifact_uri", None)
    return snap


def test_a_bundle_round_trip_is_lossless_and_idempotent(server, other, tmp_path, location):
    url, env = location
    base = server.url
    source, target = workspace(base), workspace(other.url)
    expected = fill(client_for(base, source), tmp_path)
    before = snapshot(client_for(base, source), expected, tmp_path)

    exported = export(base, source, url, "--include-deleted", env=env)
    counts = exported["counts"]
    assert counts["runs"] == 3 and counts["logged_models"] == 1, counts
    assert counts["registered_models"] == 1 and counts["model_versions"] == 2, counts
    assert counts["metric_points"] == 2_004, counts
    # Two files of the runs, one of the logged model, each its own blob.
    assert exported["artifacts"] == 2 + 1 and counts["blobs"] == 3, exported
    assert counts["blob_bytes"] >= 1024 * 1024 + 17, counts
    again = export(base, source, url, env=env, expect=4)
    assert "already holds a bundle" in again.stderr, again.stderr

    # A dry run reads and checks everything and writes nothing.
    head = len(journal(other.url))
    planned = import_bundle(other.url, url, target, "--dry-run", "--include-deleted", env=env)
    assert planned["runs"]["created"] == 3 and planned["registered_models"]["created"] == 1, planned
    assert len(journal(other.url)) == head
    assert client_for(other.url, target).get_experiment_by_name(expected["experiment"]) is None

    report = import_bundle(other.url, url, target, "--include-deleted", env=env)
    assert report["failures"] == [], report
    assert report["runs"]["created"] == 3 and report["logged_models"]["created"] == 1, report
    assert report["metric_points"] == 2_004 and report["model_versions"] == 2, report
    after = snapshot(client_for(other.url, target), expected, tmp_path)
    assert after["weights"] == expected["sha256"]
    assert relocated(after) == relocated(before)

    # Importing it again changes nothing.
    head = len(journal(other.url))
    second = import_bundle(other.url, url, target, "--include-deleted", env=env)
    assert second["runs"]["unchanged"] == 3 and second["runs"]["created"] == 0, second
    assert second["registered_models"]["unchanged"] == 1, second
    assert len(journal(other.url)) == head


def file_bundle(base, tmp_path, *extra):
    """A workspace filled by `fill`, exported to a fresh directory."""
    source = workspace(base)
    expected = fill(client_for(base, source), tmp_path)
    directory = tmp_path / "bundle"
    export(base, source, f"file://{directory}", "--include-deleted", *extra)
    return expected, directory


def test_a_damaged_unfinished_or_newer_bundle_is_refused_by_name(server, other, tmp_path):
    expected, directory = file_bundle(server.url, tmp_path)
    base = other.url
    url = f"file://{directory}"
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == 1 and manifest["kind"] == "tandem-bundle"
    assert manifest["counts"]["runs"] == 3

    # A blob whose bytes changed: the dry run names it; an import copies
    # everything else, lists the run as failed, and leaves no partial file.
    weights = hashlib.sha256
    blob = next(p for p in (directory / "blobs").rglob("*") if p.is_file() and p.stat().st_size > 1024 * 1024)
    pristine = blob.read_bytes()
    damaged = bytearray(pristine)
    damaged[12345] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    target = workspace(base)
    head = len(journal(base))
    checked = import_bundle(base, url, target, "--dry-run", expect=1)
    assert "is damaged" in checked.stderr and blob.name in checked.stderr, checked.stderr
    assert len(journal(base)) == head
    report = import_bundle(base, url, target, "--include-deleted", expect=1)
    # The registered model waits for the run its first version was made from.
    assert [(f["kind"], f["source_id"]) for f in report["failures"]] == \
        [("run", expected["runs"][0]), ("registered_model", expected["model"])], report
    assert "is damaged" in report["failures"][0]["message"], report
    assert "which was not copied" in report["failures"][1]["message"], report
    client = client_for(base, target)
    copied = client.get_run(expected["runs"][1])
    assert copied.info.run_name == "child"
    partial = [a.path for a in client.list_artifacts(expected["runs"][0], "model")]
    assert partial == [], partial
    # With the blob mended, the same import finishes what was left.
    blob.write_bytes(pristine)
    mended = import_bundle(base, url, target, "--include-deleted")
    assert mended["failures"] == [] and mended["runs"]["unchanged"] == 2, mended
    assert mended["registered_models"]["created"] == 1, mended
    downloaded = client.download_artifacts(expected["runs"][0], "model/weights.bin", dst_path=str(tmp_path / "w"))
    assert weights(Path(downloaded).read_bytes()).hexdigest() == expected["sha256"]

    # A record that changed: refused before anything is written.
    record = next(p for p in (directory / "runs").glob("*.json") if '"child"' in p.read_text())
    text = record.read_text()
    record.write_text(text.replace('"child"', '"chilt"'))
    fresh = workspace(base)
    head = len(journal(base))
    refused = import_bundle(base, url, fresh, expect=1)
    assert f"record runs/{record.name} is damaged" in refused.stderr, refused.stderr
    assert len(journal(base)) == head
    record.write_text(text)

    # A newer format: refused, saying to upgrade.
    manifest_path.write_text(json.dumps({**manifest, "format": 99, "something_new": True}))
    refused = import_bundle(base, url, fresh, expect=1)
    assert "format 99, newer than this tandem reads" in refused.stderr, refused.stderr
    # No manifest: an export that did not finish.
    manifest_path.unlink()
    refused = import_bundle(base, url, fresh, expect=1)
    assert "holds no bundle" in refused.stderr and "did not finish" in refused.stderr, refused.stderr
    assert len(journal(base)) == head
    # A run filter is an export's choice.
    manifest_path.write_text(json.dumps(manifest))
    refused = import_bundle(base, url, fresh, "--run-filter", "params.lr = '0.01'", expect=2)
    assert "--run-filter chooses runs when exporting" in refused.stderr, refused.stderr


def test_a_selection_takes_what_it_names_and_what_its_versions_need(server, other, tmp_path):
    base = server.url
    source = workspace(base)
    expected = fill(client_for(base, source), tmp_path)
    parent, child, _ = expected["runs"]

    by_filter = export(base, source, f"file://{tmp_path}/filtered", "--experiment", expected["experiment"],
                       "--run-filter", "params.lr = '0.01'")
    assert by_filter["counts"]["experiments"] == 1 and by_filter["counts"]["runs"] == 1, by_filter
    assert by_filter["counts"]["registered_models"] == 0, by_filter
    target = workspace(other.url)
    import_bundle(other.url, f"file://{tmp_path}/filtered", target)
    client = client_for(other.url, target)
    runs = client.search_runs([client.get_experiment_by_name(expected["experiment"]).experiment_id])
    assert [run.info.run_id for run in runs] == [parent]

    # A registered model alone brings the run its first version was made
    # from (and the logged model of the second), not the other runs.
    by_model = export(base, source, f"file://{tmp_path}/model", "--registered-model", expected["model"])
    assert by_model["counts"]["registered_models"] == 1 and by_model["counts"]["runs"] == 1, by_model
    target = workspace(other.url)
    report = import_bundle(other.url, f"file://{tmp_path}/model", target)
    assert report["failures"] == [], report
    client = client_for(other.url, target)
    versions = sorted(client.search_model_versions(f"name = '{expected['model']}'"), key=lambda v: int(v.version))
    assert [v.version for v in versions] == ["1", "2"]
    # The deployment holds the parent's id already (the filtered import
    # above): this copy has an id of its own, and the version follows it.
    made_from = client.get_run(versions[0].run_id)
    assert made_from.info.run_name == "parent" and made_from.data.params == {"lr": "0.01"}
    assert versions[0].source == f"runs:/{made_from.info.run_id}/model"
    assert versions[1].source.startswith("models:/m-"), versions[1].source
    experiment_id = client.get_experiment_by_name(expected["experiment"]).experiment_id
    everything = client.search_runs([experiment_id], run_view_type=mlflow.entities.ViewType.ALL)
    assert [run.info.run_name for run in everything] == ["parent"], "the child and the deleted run stay out"
    assert child not in {run.info.run_id for run in everything}


def test_an_export_that_finds_the_disk_full_leaves_no_bundle(server, tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    base = server.url
    source = workspace(base)
    fill(client_for(base, source), tmp_path)
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        refused = export(base, source, f"file://{disk}/bundle", expect=1)
        assert "no room" in refused.stderr, refused.stderr
        assert not (disk / "bundle" / "manifest.json").exists()
        target = workspace(base)
        head = len(journal(base))
        unfinished = import_bundle(base, f"file://{disk}/bundle", target, expect=1)
        assert "holds no bundle" in unfinished.stderr, unfinished.stderr
        assert len(journal(base)) == head
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)
