"""Helpers shared by the end-to-end tests (fixtures live in conftest.py)."""

import contextlib
import http.client
import json
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from mlflow.exceptions import MlflowException


def unique(prefix: str) -> str:
    """A name no other test (or earlier session) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def expect_error(code: str, call, *args, **kwargs) -> MlflowException:
    """Calls `call`, which must raise an MlflowException with `code`."""
    with pytest.raises(MlflowException) as caught:
        call(*args, **kwargs)
    assert caught.value.error_code == code, caught.value.message
    return caught.value


def raw_request(base_url: str, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
    """Sends `path` byte for byte: unlike requests/urllib3, http.client does not
    normalize `..` segments away, which the traversal tests depend on."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def journal(url: str) -> list[dict]:
    """Every record of the server's journal, in order."""
    text = requests.get(f"{url}/api/tandem/v1/journal?after=0", timeout=30).text
    return [json.loads(line) for line in text.splitlines() if line]


def error_json(body: bytes) -> dict:
    """Parses MLflow's error JSON and checks its shape."""
    payload = json.loads(body)
    assert isinstance(payload.get("error_code"), str), payload
    assert isinstance(payload.get("message"), str), payload
    return payload


@contextlib.contextmanager
def up_credentials(up: dict):
    """The admin's token of a `tandem up` deployment (authentication is on
    by default) as MLFLOW_TRACKING_TOKEN, for the mlflow client, while the
    block runs. The token file is the owner's alone."""
    import os
    import stat

    path = up["admin_token_file"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
    saved = os.environ.get("MLFLOW_TRACKING_TOKEN")
    os.environ["MLFLOW_TRACKING_TOKEN"] = open(path).read().strip()
    try:
        yield os.environ["MLFLOW_TRACKING_TOKEN"]
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = saved
