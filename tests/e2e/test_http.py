"""The HTTP surface below the client: informational endpoints, malformed
requests, oversized bodies, artifact path traversal and uploads cut off
mid-body, sent raw."""

import json
import os
import socket
import time

import pytest
import requests

from support import error_json, journal, raw_request, unique


def test_health_version_and_server_info(server):
    health = requests.get(f"{server.url}/health", timeout=10)
    assert (health.status_code, health.text) == (200, "OK")
    # Ready, as distinct from alive: the store answers and holds the default workspace.
    ready = requests.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True and ready.json()["role"] == "standalone"
    assert [(check["name"], check["ok"]) for check in ready.json()["checks"]] == [("store", True), ("bootstrap", True)]
    version = requests.get(f"{server.url}/version", timeout=10)
    assert version.status_code == 200
    assert version.text.count(".") == 2
    info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", timeout=10)
    assert info.status_code == 200
    body = info.json()
    assert body["store_type"] == "SqlStore"
    assert body["workspaces_enabled"] is True


def test_malformed_json_is_a_400_with_error_json(server):
    for body in [b'{"name": ', b"not json", b'["a", "list"]', b'{"name": "x",}']:
        status, payload = raw_request(
            server.url, "POST", "/api/2.0/mlflow/experiments/create", body,
            {"Content-Type": "application/json"},
        )
        assert status == 400, (body, payload)
        error_json(payload)


def test_unknown_field_is_named(server):
    name = unique("exp")
    response = requests.post(
        f"{server.url}/api/2.0/mlflow/experiments/create",
        json={"name": name, "bogus_field": 1},
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "bogus_field" in error["message"]
    missing = requests.get(
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}, timeout=30
    )
    assert missing.status_code == 404


def test_wrong_types_are_400(server):
    api = f"{server.url}/api/2.0/mlflow"
    experiment_id = requests.post(
        f"{api}/experiments/create", json={"name": unique("exp")}, timeout=30
    ).json()["experiment_id"]
    run_id = requests.post(
        f"{api}/runs/create", json={"experiment_id": experiment_id}, timeout=30
    ).json()["run"]["info"]["run_id"]

    cases = [
        ("experiments/set-experiment-tag", {"experiment_id": int(experiment_id), "key": "k", "value": {"a": 1}}),
        ("experiments/set-experiment-tag", {"experiment_id": experiment_id, "key": "k", "value": ["x"]}),
        ("runs/log-metric", {"run_id": run_id, "key": "m", "value": "high", "timestamp": 0}),
        ("runs/log-metric", {"run_id": run_id, "key": "m", "value": 1, "timestamp": "yesterday"}),
        ("runs/log-parameter", {"run_id": run_id, "key": "p", "value": {"nested": True}}),
        ("runs/log-batch", {"run_id": run_id, "metrics": {"key": "m"}}),
    ]
    for path, body in cases:
        response = requests.post(f"{api}/{path}", json=body, timeout=30)
        assert response.status_code == 400, (path, body, response.text)
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE", (path, response.text)
    experiment = requests.get(f"{api}/experiments/get", params={"experiment_id": experiment_id}, timeout=30)
    assert "tags" not in experiment.json()["experiment"]
    run = requests.get(f"{api}/runs/get", params={"run_id": run_id}, timeout=30).json()["run"]
    assert "metrics" not in run["data"] and "params" not in run["data"]


def test_oversized_body_is_refused_and_nothing_logged(server):
    api = f"{server.url}/api/2.0/mlflow"
    experiment_id = requests.post(
        f"{api}/experiments/create", json={"name": unique("exp")}, timeout=30
    ).json()["experiment_id"]
    run_id = requests.post(
        f"{api}/runs/create", json={"experiment_id": experiment_id}, timeout=30
    ).json()["run"]["info"]["run_id"]
    head = json.dumps({
        "run_id": run_id,
        "metrics": [{"key": "big", "value": 1, "timestamp": 0, "step": 0}],
        "tags": [{"key": "padding", "value": ""}],
    })
    # 17 MiB of padding inside the tag's value: valid JSON, just too big.
    body = head[: -len('"}]}')].encode() + b"x" * (17 * 1024 * 1024) + b'"}]}'
    response = requests.post(
        f"{api}/runs/log-batch", data=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert response.status_code == 400
    error = error_json(response.content)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "exceeds the limit" in error["message"]
    run = requests.get(f"{api}/runs/get", params={"run_id": run_id}, timeout=30).json()["run"]
    assert "metrics" not in run["data"]
    assert "padding" not in {tag["key"] for tag in run["data"].get("tags", [])}
    # The server still answers.
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200


@pytest.fixture
def artifact_run(server):
    api = f"{server.url}/api/2.0/mlflow"
    experiment_id = requests.post(
        f"{api}/experiments/create", json={"name": unique("exp")}, timeout=30
    ).json()["experiment_id"]
    run_id = requests.post(
        f"{api}/runs/create", json={"experiment_id": experiment_id}, timeout=30
    ).json()["run"]["info"]["run_id"]
    return experiment_id, run_id


def test_artifact_path_traversal_is_refused(server, artifact_run):
    experiment_id, run_id = artifact_run
    base = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts"
    before = server.stored_files()
    attempts = [
        f"{base}/../../../x",
        f"{base}/../../../../../../../../tmp/tandem-e2e-escape",
        f"{base}/sub/../../x",
        f"{base}/%2e%2e/%2e%2e/%2e%2e/x",
        f"{base}/%2E%2E/%2E%2E/%2E%2E/x",
        f"{base}/..%2f..%2f..%2fx",
        f"{base}/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fx",
        f"{base}/.%2e/.%2e/.%2e/x",
        f"{base}/./x",
        f"{base}//x",
        # Not inside any run's artifact root.
        "/api/2.0/mlflow-artifacts/artifacts/x",
        f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/x",
        f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/x",
        f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{'f' * 32}/artifacts/x",
        f"/api/2.0/mlflow-artifacts/artifacts/987654/{run_id}/artifacts/x",
    ]
    for path in attempts:
        status, body = raw_request(server.url, "PUT", path, b"escaped")
        assert 400 <= status < 500, (path, status, body)
    assert server.stored_files() == before

    # Reads with the same paths find nothing either.
    status, _ = raw_request(server.url, "GET", f"{base}/../../../../../../../../etc/passwd")
    assert 400 <= status < 500

    # The run's own root does accept an upload: the refusals above were not
    # a broken upload path.
    status, body = raw_request(server.url, "PUT", f"{base}/ok.txt", b"fine")
    assert status == 200, body
    status, body = raw_request(server.url, "GET", f"{base}/ok.txt")
    assert (status, body) == (200, b"fine")
    assert len(server.stored_files() - before) == 1


def _vanish_mid_upload(server, path: str, declared: int, sent: int) -> None:
    """Starts a PUT of `declared` bytes, sends `sent` of them, and closes."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        chunk = os.urandom(64 * 1024)
        remaining = sent
        while remaining > 0:
            piece = chunk[: min(remaining, len(chunk))]
            sock.sendall(piece)
            remaining -= len(piece)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(30)
        try:
            sock.recv(65536)  # the server's refusal, or its close
        except OSError:
            pass


def test_a_client_that_vanishes_mid_upload_leaves_nothing_and_keeps_the_old_bytes(server, artifact_run):
    experiment_id, run_id = artifact_run
    base = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts"
    status, body = raw_request(server.url, "PUT", f"{base}/model.bin", b"version one")
    assert status == 200, body
    before = server.stored_files()
    journal_before = journal(server.url)

    # A new file and an overwrite, each cut off a quarter of the way in.
    _vanish_mid_upload(server, f"{base}/new.bin", 8 * 1024 * 1024, 2 * 1024 * 1024)
    _vanish_mid_upload(server, f"{base}/model.bin", 8 * 1024 * 1024, 2 * 1024 * 1024)

    # The server notices the body ended short; give it a bounded moment.
    deadline = time.monotonic() + 10
    while server.stored_files() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.stored_files() == before, "no partial or staged file remains"
    status, body = raw_request(server.url, "GET", f"{base}/model.bin")
    assert (status, body) == (200, b"version one"), "the interrupted overwrite kept the old bytes"
    status, _ = raw_request(server.url, "GET", f"{base}/new.bin")
    assert status == 404
    listed = requests.get(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts",
        params={"path": f"{experiment_id}/{run_id}/artifacts"},
        timeout=30,
    ).json()
    assert [entry["path"] for entry in listed.get("files", [])] == ["model.bin"]
    since = journal(server.url)[len(journal_before):]
    assert [record for record in since if run_id in json.dumps(record)] == [], (
        "nothing of the interrupted uploads was journaled"
    )
