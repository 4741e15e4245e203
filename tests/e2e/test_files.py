"""The workspace file share and salvage (issue 5, item 5), through the Tandem
CLI, raw HTTP and the region's storage: files are uploaded, listed,
downloaded, deleted; they live under `workspaces/<id>/files/` in the
region's storage; they replicate to the secondary and are backed up and
restored with the workspace; after the workspace is deleted and even
purged, `tandem files salvage` retrieves them until the storage is purged
explicitly."""

import hashlib
import json
import os
import subprocess
import uuid

import requests

from support import unique
from test_recovery_softdelete import tandem, tandem_json, wait_until, workspace_files


def tree(root) -> dict[str, str]:
    """Relative path → SHA-256 of every file under a local directory."""
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def notebooks(tmp_path):
    """A directory of files as a team keeps them, one of them several MB."""
    local = tmp_path / "notebooks"
    (local / "data").mkdir(parents=True)
    (local / "train.ipynb").write_text(json.dumps({"cells": [{"source": "import mlflow"}]}))
    (local / "my notes.md").write_text("# notes\n" * 100)
    (local / "data" / "sample.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return local


def create_workspace(url: str) -> tuple[str, str]:
    name = unique("ws")
    created = requests.post(f"{url}/api/tandem/v1/workspaces", json={"name": name}, timeout=30)
    assert created.status_code == 201, created.text
    return name, created.json()["workspace"]["workspace_id"]


def test_files_are_uploaded_listed_downloaded_and_deleted(server, tmp_path):
    name, workspace_id = create_workspace(server.url)
    local = notebooks(tmp_path)
    uploaded = tandem_json(server, "files", "upload", str(local), "nb", "--workspace", name)["uploaded"]
    assert sorted(f["path"] for f in uploaded) == ["nb/data/sample.bin", "nb/my notes.md", "nb/train.ipynb"]

    listing = tandem_json(server, "files", "list", "--workspace", name)
    expected = {f"nb/{path}": digest for path, digest in tree(local).items()}
    assert {f["path"]: f["sha256"] for f in listing["files"]} == expected
    assert listing["bytes"] == sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    # In the region's storage, under the workspace id.
    assert workspace_files(server, workspace_id, "files") == {
        f"workspaces/{workspace_id}/files/{path}" for path in expected
    }

    out = tmp_path / "downloaded"
    tandem(server, "files", "download", "nb", "--out", str(out), "--workspace", name)
    assert tree(out) == tree(local)
    # A second download refuses to replace what is there (exit 4) unless told.
    error = tandem(server, "files", "download", "nb", "--out", str(out), "--workspace", name, expect=4)
    assert "--overwrite" in error
    tandem(server, "files", "download", "nb/train.ipynb", "--out", str(out / "again.ipynb"), "--workspace", name)
    assert (out / "again.ipynb").read_bytes() == (local / "train.ipynb").read_bytes()

    # Over HTTP: a byte range, an overwrite, and precise refusals.
    base = f"{server.url}/api/tandem/v1/workspaces/{name}/files"
    part = requests.get(f"{base}/nb/data/sample.bin", headers={"Range": "bytes=10-19"}, timeout=30)
    assert part.status_code == 206 and part.content == (local / "data" / "sample.bin").read_bytes()[10:20]
    replaced = requests.put(f"{base}/nb/train.ipynb", data=b"{}", timeout=30)
    assert replaced.status_code == 200 and replaced.json()["file"]["size"] == 2
    for path, status, code in [
        ("nb/..%2F..%2Fescape.txt", 400, "INVALID_PARAMETER_VALUE"),
        ("nb", 400, "RESOURCE_ALREADY_EXISTS"),  # a directory (MLflow's status for the code)
        ("nb/train.ipynb/inside", 400, "RESOURCE_ALREADY_EXISTS"),  # under a file
    ]:
        refused = requests.put(f"{base}/{path}", data=b"x", timeout=30)
        assert (refused.status_code, refused.json()["error_code"]) == (status, code), (path, refused.text)
    assert requests.get(f"{base}/nb/missing.txt", timeout=30).status_code == 404
    assert requests.get(f"{server.url}/api/tandem/v1/workspaces/{unique('nope')}/files", timeout=30).status_code == 404
    assert not list(server.data.rglob("escape.txt"))

    tandem(server, "files", "delete", "nb/data", "--workspace", name)
    listing = tandem_json(server, "files", "list", "--workspace", name)
    assert sorted(f["path"] for f in listing["files"]) == ["nb/my notes.md", "nb/train.ipynb"]
    assert not any("sample.bin" in path for path in workspace_files(server, workspace_id, "files"))
    tandem(server, "files", "delete", "nb/data", "--workspace", name, expect=3)


def test_files_of_a_purged_workspace_are_salvaged_until_storage_is_purged(server, tmp_path):
    name, workspace_id = create_workspace(server.url)
    local = notebooks(tmp_path)
    tandem(server, "files", "upload", str(local), "--workspace", name)
    error = tandem(server, "files", "purge-storage", "--workspace-id", workspace_id, "--yes", expect=4)
    assert "is active" in error

    tandem(server, "workspace", "delete", name)
    tandem(server, "files", "list", "--workspace", name, expect=3)
    tandem(server, "files", "purge-storage", "--workspace-id", workspace_id, "--yes", expect=4)
    tandem(server, "workspace", "purge", name)
    # The collector takes the purged workspace's artifacts, never its files.
    wait_until(
        lambda: requests.get(f"{server.url}/api/tandem/v1/gc", timeout=30).json()["pending"] == [],
        "the purge's collection to finish",
    )
    assert len(workspace_files(server, workspace_id, "files")) == 3

    listed = tandem_json(server, "files", "salvage", "--workspace-id", workspace_id, "--list")
    assert listed["workspace_state"] == "gone"
    assert sorted(f["path"] for f in listed["files"]) == sorted(f"notebooks/{p}" for p in tree(local))
    out = tmp_path / "salvaged"
    tandem(server, "files", "salvage", "--workspace-id", workspace_id, "--out", str(out))
    assert tree(out / "notebooks") == tree(local)
    tandem(server, "files", "salvage", "--workspace-id", workspace_id, "--out", str(out), expect=4)

    tandem(server, "files", "purge-storage", "--workspace-id", workspace_id, expect=2)  # no --yes
    purged = tandem_json(server, "files", "purge-storage", "--workspace-id", workspace_id, "--yes")
    assert purged["removed_objects"] == 3
    assert not workspace_files(server, workspace_id, "files")
    tandem(server, "files", "salvage", "--workspace-id", workspace_id, "--out", str(tmp_path / "late"), expect=3)
    bad = requests.get(f"{server.url}/api/tandem/v1/salvage/..%2F..%2Fetc/files", timeout=30)
    assert bad.status_code in (400, 404), bad.text


def test_files_replicate_and_are_backed_up_and_restored(tmp_path):
    from cluster import make_cluster
    from conftest import _start, _stop, _tandem_bin

    root = tmp_path / "cluster"
    root.mkdir()
    cluster = make_cluster(_tandem_bin(), root)
    restored_server = None
    try:
        primary, secondary = cluster.primary, cluster.secondaries[0]
        name, workspace_id = create_workspace(primary.url)
        local = notebooks(tmp_path)
        tandem(primary, "files", "upload", str(local), "--workspace", name)
        cluster.wait_caught_up()
        expected = tandem_json(primary, "files", "list", "--workspace", name)["files"]
        assert tandem_json(secondary, "files", "list", "--workspace", name)["files"] == expected
        assert workspace_files(secondary, workspace_id, "files") == workspace_files(primary, workspace_id, "files")
        out = tmp_path / "from-secondary"
        tandem(secondary, "files", "download", "notebooks", "--out", str(out), "--workspace", name)
        assert tree(out) == tree(local)
        # The secondary takes no writes; the error names the primary.
        refused = requests.put(f"{secondary.url}/api/tandem/v1/workspaces/{name}/files/x.txt", data=b"x", timeout=30)
        assert refused.status_code == 403, refused.text

        repository = f"file://{tmp_path / 'repository'}"
        manifest = tandem_json(primary, "backup", "create", "--to", repository, "--workspace", name)
        assert [f["path"] for f in manifest["workspaces"][0]["files"]] == [f["path"] for f in expected]
        listing = tandem_json(primary, "backup", "list", "--from", repository)
        assert [w["files"] for w in listing["backups"][0]["workspaces"]] == [3], listing

        # A deletion replicates: bytes leave the secondary's storage too.
        tandem(primary, "files", "delete", "notebooks/data", "--workspace", name)
        cluster.wait_caught_up()
        assert not any("sample.bin" in p for p in workspace_files(secondary, workspace_id, "files"))

        # Restored elsewhere, the share is as it was at the backup.
        target_root = tmp_path / "restored"
        target_root.mkdir()
        restored_server = _start(_tandem_bin(), "sqlite", target_root / "data", target_root / "server.log", None)
        result = tandem_json(restored_server, "backup", "restore", "--from", repository, "--workspace", name,
                             "--backup", manifest["id"], "--into", restored_server.url)
        assert result["files"] == 3, result
        assert tandem_json(restored_server, "files", "list", "--workspace", name)["files"] == expected
        out = tmp_path / "from-restore"
        tandem(restored_server, "files", "download", "notebooks", "--out", str(out), "--workspace", name)
        assert tree(out) == tree(local)
    finally:
        if restored_server is not None:
            _stop(restored_server.process)
        cluster.close()
