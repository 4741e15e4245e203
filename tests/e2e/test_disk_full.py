"""A disk that fills: `tandem server` on a small tmpfs of its own (mounted by
the test; root only), driven with the official client. A write that finds no
room is refused at once with 507 RESOURCE_EXHAUSTED (a status the client does
not retry), names which storage is full, leaves no partial file, journal
record or row behind, and the same write succeeds once space is freed.

SQLite only: the metadata database must live on the small disk, and the
PostgreSQL server's data directory is not the test's to fill.
"""

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from conftest import _start, _stop, _tandem_bin
from support import error_json, journal

DISK_MB = 8


@pytest.fixture
def small_disk(tmp_path):
    """A DISK_MB tmpfs mounted at a fresh directory, unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mountpoint)],
        capture_output=True, text=True, timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


@pytest.fixture
def full_disk_server(small_disk, tmp_path):
    # Synchronous FULL: the commit's own writes are the ones that meet the
    # full disk, as in production.
    previous = os.environ.get("TANDEM_SQLITE_SYNCHRONOUS")
    os.environ["TANDEM_SQLITE_SYNCHRONOUS"] = "FULL"
    try:
        server = _start(_tandem_bin(), "sqlite", small_disk / "data", tmp_path / "server.log", None)
    finally:
        if previous is None:
            os.environ.pop("TANDEM_SQLITE_SYNCHRONOUS")
        else:
            os.environ["TANDEM_SQLITE_SYNCHRONOUS"] = previous
    yield server
    _stop(server.process)


def fill(disk: Path) -> Path:
    """Writes a filler file until the disk refuses more; returns it."""
    filler = disk / "filler"
    chunk = b"\0" * (64 * 1024)
    with open(filler, "wb") as out:
        try:
            for _ in range(DISK_MB * 64):  # bounded: more than the disk holds
                out.write(chunk)
                out.flush()
        except OSError:
            pass
    return filler


def staged_or_partial(server) -> list[str]:
    """Files in the artifact store that no upload completed."""
    return sorted(path for path in server.stored_files() if "#" in path)


def test_an_artifact_larger_than_the_free_space_is_refused_and_leaves_nothing(full_disk_server, tmp_path):
    server = full_disk_server
    client = MlflowClient(server.url)
    run = client.create_run(client.create_experiment(f"full-{uuid.uuid4().hex[:8]}"))
    run_id = run.info.run_id
    root = run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    before = server.stored_files()

    # Twice the disk: it fills in the middle of the stream.
    big = os.urandom(2 * DISK_MB * 1024 * 1024)
    response = requests.put(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{root}/big.bin", data=big, timeout=120
    )
    assert response.status_code == 507, response.text
    payload = error_json(response.content)
    assert payload["error_code"] == "RESOURCE_EXHAUSTED"
    assert "artifact storage is full" in payload["message"]
    assert "nothing was written" in payload["message"]
    assert server.stored_files() == before, "the partial upload was removed"
    assert client.list_artifacts(run_id) == []

    # The official client fails at once (507 is not retried), not after
    # minutes of backoff.
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        client.log_artifact(run_id, str(path))
    assert time.monotonic() - started < 30
    assert "507" in str(caught.value) or "full" in str(caught.value), caught.value
    assert server.stored_files() == before

    # The space the refused uploads took is free again: a small one fits.
    small = tmp_path / "small.txt"
    small.write_text("fits")
    client.log_artifact(run_id, str(small))
    assert [entry.path for entry in client.list_artifacts(run_id)] == ["small.txt"]
    assert staged_or_partial(server) == []


def test_a_write_to_a_full_metadata_disk_rolls_back_and_succeeds_once_space_is_freed(full_disk_server):
    server = full_disk_server
    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment(f"full-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_param(run_id, "before", "1")
    journal_before = journal(server.url)

    filler = fill(server.data.parent)
    # ~1 MB of tags: more journal and WAL than a full disk can take.
    tags = [RunTag(f"t{i}", "x" * 5000) for i in range(200)]
    started = time.monotonic()
    with pytest.raises(MlflowException) as caught:
        client.log_batch(run_id, tags=tags)
    assert time.monotonic() - started < 30, "refused at once, not retried"
    assert caught.value.error_code == "RESOURCE_EXHAUSTED", caught.value.message
    assert "metadata storage is full" in caught.value.message
    assert "nothing was written" in caught.value.message

    # Rolled back: none of the batch is there, the server still answers,
    # and what was there before is intact.
    run = client.get_run(run_id)
    assert not any(key.startswith("t") and key[1:].isdigit() for key in run.data.tags)
    assert run.data.params == {"before": "1"}
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    assert journal(server.url) == journal_before, "no record of the refused batch"

    # Space freed: the same batch goes through, whole.
    filler.unlink()
    client.log_batch(run_id, tags=tags)
    run = client.get_run(run_id)
    assert sum(1 for key in run.data.tags if key.startswith("t") and key[1:].isdigit()) == 200
    assert run.data.tags["t199"] == "x" * 5000
