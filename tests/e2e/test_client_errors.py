"""Client errors are 4xx with MLflow's error JSON, never 5xx: an oversized
experiment list, refusals that depend on a resource's state (purging an
active workspace, recovering one that is not deleted), and a sweep of
malformed requests over the Tandem API. A 5xx tells the MLflow client to
retry for minutes; these must fail at once with the reason."""

import time

import pytest
import requests

from support import unique


def assert_client_error(response: requests.Response, status: int | None = None, code: str | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.request.method, response.request.url,
                                               response.status_code, response.text[:500])
    body = response.json()
    assert set(body) >= {"error_code", "message"}, body
    if status is not None:
        assert response.status_code == status, body
    if code is not None:
        assert body["error_code"] == code, body
    return body


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/runs/search", "/api/2.0/mlflow/logged-models/search"])
def test_a_search_over_too_many_experiments_is_a_prompt_400(server, path):
    ids = [str(i) for i in range(32_766)]
    started = time.monotonic()
    response = requests.post(f"{server.url}{path}", json={"experiment_ids": ids}, timeout=60)
    body = assert_client_error(response, 400, "INVALID_PARAMETER_VALUE")
    assert "at most 10000 experiment_ids" in body["message"], body
    # A few thousand ids are still a search.
    fine = requests.post(f"{server.url}{path}", json={"experiment_ids": ids[:5000]}, timeout=60)
    assert fine.status_code == 200, fine.text
    assert time.monotonic() - started < 30


def test_refusals_that_depend_on_a_workspaces_state_are_409(server):
    name = unique("state")
    base = f"{server.url}/api/tandem/v1/workspaces"
    created = requests.post(base, json={"name": name}, timeout=10)
    assert created.status_code == 201, created.text
    workspace_id = created.json()["workspace"]["workspace_id"]
    assert_client_error(requests.post(f"{base}/{name}/purge", timeout=10), 409, "INVALID_STATE")
    assert_client_error(requests.post(f"{base}/{name}/recover", timeout=10), 409, "INVALID_STATE")
    salvage = requests.delete(f"{server.url}/api/tandem/v1/salvage/{workspace_id}", timeout=10)
    assert_client_error(salvage, 409, "INVALID_STATE")
    # Nothing changed: the workspace is still active.
    assert requests.get(f"{base}/{name}", timeout=10).json()["workspace"]["lifecycle_stage"] == "active"


def test_malformed_requests_to_the_tandem_api_are_4xx(server, tmp_path):
    name = unique("sweep")
    base = f"{server.url}/api/tandem/v1"
    assert requests.post(f"{base}/workspaces", json={"name": name}, timeout=10).status_code == 201
    cases = [
        ("POST", "/workspaces", {"data": b"{not json"}),
        ("POST", "/workspaces", {"json": {"name": 7}}),
        ("POST", "/workspaces", {"json": {"name": "x", "retention_days": "soon"}}),
        ("POST", "/workspaces", {"json": {"name": "x", "retention_days": 10**30}}),
        ("POST", "/workspaces", {"json": {"name": "x", "retention_days": 0}}),
        ("POST", "/workspaces", {"json": {"name": "has space"}}),
        ("POST", "/workspaces", {"json": {"name": "x" * 10_000}}),
        ("PATCH", f"/workspaces/{name}", {"json": {}}),
        ("PATCH", f"/workspaces/{name}", {"json": {"retention_days": -1}}),
        ("PATCH", f"/workspaces/{name}", {"json": {"colour": "red"}}),
        ("GET", "/workspaces?deleted=perhaps", {}),
        ("GET", "/journal?after=-1", {}),
        ("GET", "/journal?after=abc", {}),
        ("GET", "/journal?limit=0", {}),
        ("GET", "/journal?workspace=no-such-workspace", {}),
        ("GET", "/conflicts?limit=-5", {}),
        ("GET", f"/workspaces/{name}/deleted/bogus-kind/1/recover", {}),
        ("POST", f"/workspaces/{name}/deleted/bogus-kind/1/recover", {}),
        ("POST", f"/workspaces/{name}/deleted/run/no-such-run/recover", {}),
        ("POST", f"/workspaces/{name}/deleted/run/no-such-run/purge", {"data": b"[]"}),
        ("POST", f"/workspaces/{name}/purge", {"json": {"keep_artifacts": "yes"}}),
        ("PUT", f"/workspaces/{name}/files/%2e%2e/x", {"data": b"x"}),
        ("GET", f"/workspaces/{name}/files/no/such/file", {}),
        ("GET", f"/workspaces/{name}/files?path=../x", {}),
        ("GET", "/salvage/..%2F..%2Fetc/files", {}),
        ("GET", "/backups", {}),
        ("GET", "/backups?from=ftp://example/repo", {}),
        ("GET", f"/backups?from=file://{tmp_path}/no-repository-here", {}),
        ("POST", "/backups", {"json": {"to": "not a url"}}),
        ("POST", "/backups", {"json": {"to": f"file://{tmp_path}/r", "colour": 1}}),
        ("POST", "/backups/verify", {"json": {}}),
        ("POST", "/backups/prune", {"json": {"from": f"file://{tmp_path}/r", "keep": 0}}),
        ("POST", "/backups/prune", {"json": {"from": f"file://{tmp_path}/r", "ttl": "forever"}}),
        ("POST", "/restores", {"json": {"from": f"file://{tmp_path}/r", "seq": 1, "backup": "b"}}),
        ("POST", "/restores", {"json": {"from": f"file://{tmp_path}/r", "at": "yesterday"}}),
        ("POST", "/restores", {"data": b"{"}),
    ]
    wrong = []
    for method, path, kwargs in cases:
        response = requests.request(method, f"{base}{path}", timeout=30, **kwargs)
        if response.status_code == 405:
            continue  # a method the route does not take: the router's own answer
        try:
            assert_client_error(response)
        except (AssertionError, ValueError):
            wrong.append((method, path, response.status_code, response.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))


def test_an_experiment_cannot_put_its_artifacts_inside_another_runs(server, client, tmp_path):
    """A location inside a run's artifacts would have its runs' bytes
    collected when that run is purged: refused at creation, so a live run
    never loses its artifacts to another's purge."""
    from mlflow.exceptions import MlflowException

    experiment_id = client.create_experiment(unique("outer"))
    run_id = client.create_run(experiment_id).info.run_id
    note = tmp_path / "note.txt"
    note.write_text("kept\n")
    client.log_artifact(run_id, str(note))
    inside = f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/nested"
    with pytest.raises(MlflowException) as refused:
        client.create_experiment(unique("nested"), artifact_location=inside)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "inside the artifacts of an existing run" in refused.value.message
    # Beside it is fine.
    beside = client.create_experiment(unique("beside"), artifact_location=f"mlflow-artifacts:/{experiment_id}/beside")
    assert client.get_experiment(beside).artifact_location.endswith(f"{experiment_id}/beside")
