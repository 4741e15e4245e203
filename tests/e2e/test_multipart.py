"""MLflow 3's direct multipart artifact uploads (`mpu/create|complete|abort`)
with the official client: on a region whose artifacts are on S3 (moto), Azure
Blob (Azurite) or GCS, `log_artifact` of a large file sends its parts
straight to the bucket at presigned URLs, and the server records the
completed object like any proxied upload (journaled with its size and
SHA-256). On local storage the routes answer MLflow's NOT_IMPLEMENTED message
and the client falls back to a proxied PUT.

The emulators are started by the tests: moto's `moto_server` and Azurite's
`azurite-blob` on PATH (`TANDEM_SKIP_MOTO=1` / `TANDEM_SKIP_AZURITE=1` skip).

GCS is a stand-in, said so here: no GCS emulator that runs on this machine
implements the XML API's multipart uploads (fake-gcs-server needs Go or
Docker; gcp-storage-emulator has no XML multipart), and GCS's XML API speaks
S3's protocol for them, so the GCS region's XML endpoint is moto. moto does
not check Google's V4 signatures: the test checks one part URL's signature
itself with openssl and the region's public key, and the unit tests check
the signer against Google's published conformance cases.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import time
from email.utils import formatdate
from urllib.parse import quote, unquote, urlparse

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from cluster import free_port
from conftest import BACKENDS, _database_url, _psql, _start, _stop, _tandem_bin
from support import journal, unique

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BUCKET = "tandem-mpu"
# Small parts (moto is told to accept them): several parts of a small file.
CHUNK = 64 * 1024
FILE_SIZE = 4 * CHUNK + 1234


def _wait_for_port(port: int, process: subprocess.Popen, name: str, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited early: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    pytest.fail(f"{name} did not listen on {port} within 60 s")


@contextlib.contextmanager
def _emulator(name: str, command: list[str], port: int, log, env=None):
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
    try:
        _wait_for_port(port, process, name, log)
        yield
    finally:
        _stop(process)


@contextlib.contextmanager
def _environment(values: dict):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _region(tmp_path, env: dict):
    with _environment(env):
        server = _start(_tandem_bin(), "sqlite", tmp_path / "data", tmp_path / "server.log", None)
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture
def moto(tmp_path):
    if os.environ.get("TANDEM_SKIP_MOTO") == "1":
        pytest.skip("TANDEM_SKIP_MOTO=1")
    binary = shutil.which("moto_server")
    if binary is None:
        pytest.fail("moto_server is not on PATH (see tests/e2e/README.md)")
    port = free_port()
    with _emulator("moto", [binary, "-H", "127.0.0.1", "-p", str(port)], port, tmp_path / "moto.log",
                   env={"S3_UPLOAD_PART_MIN_SIZE": str(CHUNK)}):
        url = f"http://127.0.0.1:{port}"
        assert requests.put(f"{url}/{BUCKET}", timeout=30).status_code == 200
        yield url


@pytest.fixture
def s3_region(moto, tmp_path):
    env = {
        "TANDEM_ARTIFACTS_URL": f"s3://{BUCKET}/region",
        "AWS_ENDPOINT": moto,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    with _region(tmp_path, env) as server:
        yield server


def _azurite_create_container(url: str, container: str) -> None:
    date = formatdate(usegmt=True)
    version = "2023-11-03"
    resource = f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    to_sign = f"PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
    signature = base64.b64encode(
        hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    response = requests.put(
        f"{url}/{AZURITE_ACCOUNT}/{container}?restype=container",
        headers={"x-ms-date": date, "x-ms-version": version,
                 "Authorization": f"SharedKey {AZURITE_ACCOUNT}:{signature}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def azure_region(tmp_path):
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
        _azurite_create_container(url, "artifacts")
        env = {
            "TANDEM_ARTIFACTS_URL": "az://artifacts/region",
            "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
            "AZURE_ENDPOINT": f"{url}/{AZURITE_ACCOUNT}",
            "AZURE_ALLOW_HTTP": "true",
        }
        with _region(tmp_path, env) as server:
            yield server


def _service_account(tmp_path, endpoint: str) -> tuple:
    """A service account file with a fresh RSA key whose XML API endpoint is
    `endpoint` (object_store's `gcs_base_url`), and the key's public half."""
    key = tmp_path / "gcs-key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(key)], check=True, capture_output=True)
    public = tmp_path / "gcs-public.pem"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(public)],
                   check=True, capture_output=True)
    account = tmp_path / "service-account.json"
    account.write_text(json.dumps({
        "type": "service_account",
        "client_email": "tandem-test@example.iam.gserviceaccount.com",
        "private_key_id": "test",
        "private_key": key.read_text(),
        "gcs_base_url": endpoint,
        # Bearer tokens are then JWTs the server signs itself with the key
        # (object_store's self-signed JWT): no exchange with Google.
    }))
    return account, public


@pytest.fixture
def gcs_region(moto, tmp_path):
    account, public = _service_account(tmp_path, moto)
    env = {"TANDEM_ARTIFACTS_URL": f"gs://{BUCKET}/gcs", "GOOGLE_SERVICE_ACCOUNT": str(account)}
    with _region(tmp_path, env) as server:
        server.gcs_public_key = public
        yield server


def _verify_goog4(url: str, public_key, tmp_path) -> None:
    """Checks a V4 presigned URL's signature as GCS would: the canonical
    request rebuilt from the URL, the string to sign, RSA-SHA256 with the
    service account's public key (openssl)."""
    parsed = urlparse(url)
    pairs = [pair.split("=", 1) for pair in parsed.query.split("&")]
    signature = dict(pairs)["X-Goog-Signature"]
    query = "&".join(sorted(f"{k}={v}" for k, v in pairs if k != "X-Goog-Signature"))
    params = {k: unquote(v) for k, v in pairs}
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256" and params["X-Goog-SignedHeaders"] == "host"
    canonical = f"PUT\n{parsed.path}\n{query}\nhost:{parsed.netloc}\n\nhost\nUNSIGNED-PAYLOAD"
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    to_sign = f"GOOG4-RSA-SHA256\n{params['X-Goog-Date']}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    (tmp_path / "to-sign").write_text(to_sign)
    (tmp_path / "signature").write_bytes(bytes.fromhex(signature))
    verified = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public_key), "-signature",
                               str(tmp_path / "signature"), str(tmp_path / "to-sign")], capture_output=True)
    assert verified.returncode == 0, (verified.stdout, verified.stderr, canonical)


@pytest.fixture
def multipart_client(monkeypatch):
    """The official client set to upload files of FILE_SIZE in CHUNK parts."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(2 * CHUNK))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(CHUNK))


def _client(server, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    mlflow.set_tracking_uri(server.url)
    return MlflowClient(server.url)


def _requests_to(server, route_part: str, method: str) -> float:
    """Requests the server counted on routes containing `route_part`."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("tandem_http_requests_total{") and route_part in line and f'method="{method}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _run_dir(run) -> str:
    """The run's artifact root as the proxy's paths name it."""
    uri = run.info.artifact_uri
    assert uri.startswith("mlflow-artifacts:"), uri
    return urlparse(uri).path.strip("/")


def _big_file(tmp_path, name="weights.bin") -> tuple:
    data = os.urandom(FILE_SIZE)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def _written(server, path: str) -> list[dict]:
    return [record for record in journal(server.url) if path in str(record)]


def _direct_upload_round_trip(server, monkeypatch, tmp_path):
    client = _client(server, monkeypatch)
    info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", timeout=10).json()
    assert info["multipart_uploads_enabled"] is True
    run = client.create_run(client.create_experiment(unique("mpu")))
    local, data = _big_file(tmp_path)
    puts_before = _requests_to(server, "mlflow-artifacts/artifacts/", "PUT")
    client.log_artifact(run.info.run_id, str(local), artifact_path="model")
    # Straight to the bucket: one create, one complete, no proxied PUT.
    assert _requests_to(server, "mpu/create", "POST") == 1
    assert _requests_to(server, "mpu/complete", "POST") == 1
    assert _requests_to(server, "mlflow-artifacts/artifacts/", "PUT") == puts_before
    listed = client.list_artifacts(run.info.run_id, "model")
    assert [(f.path, f.file_size) for f in listed] == [("model/weights.bin", FILE_SIZE)]
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model/weights.bin",
                                                     dst_path=str(tmp_path / "down"))
    assert open(downloaded, "rb").read() == data
    path = f"{_run_dir(run)}/model/weights.bin"
    records = _written(server, path)
    assert records, f"no journal record names {path}"
    text = str(records[-1])
    assert str(FILE_SIZE) in text and hashlib.sha256(data).hexdigest() in text, records[-1]
    return client, run


def _post(server, action: str, directory: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/api/2.0/mlflow-artifacts/mpu/{action}/{directory}", json=body, timeout=30)


def test_s3_log_artifact_goes_direct_and_is_journaled(s3_region, moto, multipart_client, monkeypatch, tmp_path):
    _direct_upload_round_trip(s3_region, monkeypatch, tmp_path)
    # Nothing left open in the bucket.
    uploads = requests.get(f"{moto}/{BUCKET}?uploads", timeout=30).text
    assert "<UploadId>" not in uploads, uploads


def test_s3_abort_and_foreign_upload_ids(s3_region, moto, monkeypatch, tmp_path):
    client = _client(s3_region, monkeypatch)
    run = client.create_run(client.create_experiment(unique("mpu")))
    directory = _run_dir(run)
    created = _post(s3_region, "create", directory, {"path": "/local/a.bin", "num_parts": 2})
    assert created.status_code == 200, created.text
    body = created.json()
    assert [c["part_number"] for c in body["credentials"]] == [1, 2]
    upload_id = body["upload_id"]
    etags = []
    for credential, part in zip(body["credentials"], [b"x" * CHUNK, b"y" * 10]):
        put = requests.put(credential["url"], data=part, headers=credential.get("headers") or {}, timeout=30)
        assert put.status_code == 200, put.text
        etags.append(put.headers["ETag"])
    parts = [{"part_number": i + 1, "etag": etag} for i, etag in enumerate(etags)]
    # An upload id this server did not create, or created for another path.
    for path, wrong_id in [("/local/a.bin", "not-an-upload"), ("/local/b.bin", upload_id)]:
        refused = _post(s3_region, "complete", directory, {"path": path, "upload_id": wrong_id, "parts": parts})
        assert refused.status_code == 404, refused.text
        assert refused.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # Aborted: the parts are gone from the bucket and no artifact appears.
    aborted = _post(s3_region, "abort", directory, {"path": "/local/a.bin", "upload_id": upload_id})
    assert aborted.status_code == 200, aborted.text
    assert "<UploadId>" not in requests.get(f"{moto}/{BUCKET}?uploads", timeout=30).text
    assert client.list_artifacts(run.info.run_id) == []
    assert not _written(s3_region, f"{directory}/a.bin")
    # Once aborted, it cannot be completed.
    late = _post(s3_region, "complete", directory, {"path": "/local/a.bin", "upload_id": upload_id, "parts": parts})
    assert late.status_code == 404, late.text
    # Also under /ajax-api and a workspace's prefix.
    for base in ["/ajax-api/2.0", "/w/default/api/2.0"]:
        url = f"{s3_region.url}{base}/mlflow-artifacts/mpu"
        opened = requests.post(f"{url}/create/{directory}", json={"path": "d.bin", "num_parts": 1}, timeout=30)
        assert opened.status_code == 200, opened.text
        closed = requests.post(f"{url}/abort/{directory}",
                               json={"path": "d.bin", "upload_id": opened.json()["upload_id"]}, timeout=30)
        assert closed.status_code == 200, closed.text
    # Paths are checked as every artifact write's are.
    traversal = _post(s3_region, "create", f"{directory}/%2E%2E/%2E%2E", {"path": "a.bin", "num_parts": 1})
    assert traversal.status_code == 400, traversal.text
    outside = _post(s3_region, "create", "0/not-a-run/artifacts", {"path": "a.bin", "num_parts": 1})
    assert outside.status_code in (400, 403, 404), outside.text


def test_azure_log_artifact_goes_direct_and_is_journaled(azure_region, multipart_client, monkeypatch, tmp_path):
    client, run = _direct_upload_round_trip(azure_region, monkeypatch, tmp_path)
    directory = _run_dir(run)
    created = _post(azure_region, "create", directory, {"path": "c.bin", "num_parts": 1}).json()
    aborted = _post(azure_region, "abort", directory, {"path": "c.bin", "upload_id": created["upload_id"]})
    assert aborted.status_code == 200, aborted.text
    again = _post(azure_region, "abort", directory, {"path": "c.bin", "upload_id": created["upload_id"]})
    assert again.status_code == 404, again.text


def test_gcs_log_artifact_goes_direct_and_is_journaled(gcs_region, moto, multipart_client, monkeypatch,
                                                        tmp_path):
    client, run = _direct_upload_round_trip(gcs_region, monkeypatch, tmp_path)
    assert "<UploadId>" not in requests.get(f"{moto}/{BUCKET}?uploads", timeout=30).text
    # Stored under the region's prefix, where a proxied upload would be.
    listed = requests.get(f"{moto}/{BUCKET}?list-type=2&prefix=gcs/", timeout=30).text
    assert f"{_run_dir(run)}/model/weights.bin</Key>" in listed, listed
    # Each part URL is signed for its own part of this upload.
    directory = _run_dir(run)
    created = _post(gcs_region, "create", directory, {"path": "/local/signed.bin", "num_parts": 2}).json()
    upload_id = created["upload_id"]
    for number, credential in enumerate(created["credentials"], start=1):
        query = urlparse(credential["url"]).query
        assert f"partNumber={number}&" in query and f"uploadId={quote(upload_id, safe='')}&" in query, query
        _verify_goog4(credential["url"], gcs_region.gcs_public_key, tmp_path)
    aborted = _post(gcs_region, "abort", directory, {"path": "/local/signed.bin", "upload_id": upload_id})
    assert aborted.status_code == 200, aborted.text
    assert "<UploadId>" not in requests.get(f"{moto}/{BUCKET}?uploads", timeout=30).text


def test_gcs_without_a_private_key_offers_no_direct_uploads(moto, monkeypatch, tmp_path):
    """Credentials without a key (here: unsigned requests, as for a public
    bucket; in production also the metadata server or a user's login)
    cannot sign part URLs: the region says it offers no direct uploads and
    `mpu/create` answers MLflow's NOT_IMPLEMENTED, on which the client falls
    back to a proxied PUT (that fallback is driven in
    test_local_storage_falls_back_to_a_proxied_put). The proxied upload
    itself is not driven here: unsigned, object_store still sends an empty
    bearer token, which moto, standing in for GCS, cannot parse."""
    env = {"TANDEM_ARTIFACTS_URL": f"gs://{BUCKET}/unsigned", "GOOGLE_SKIP_SIGNATURE": "true",
           "GOOGLE_SERVICE_ACCOUNT_KEY": json.dumps({"gcs_base_url": moto, "disable_oauth": True,
                                                     "client_email": "x", "private_key": "", "private_key_id": ""})}
    with _region(tmp_path, env) as server:
        info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", timeout=10).json()
        assert info["multipart_uploads_enabled"] is False
        client = _client(server, monkeypatch)
        run = client.create_run(client.create_experiment(unique("u")))
        refused = _post(server, "create", _run_dir(run), {"path": "x.bin", "num_parts": 2})
        assert refused.status_code == 501, refused.text
        assert refused.json()["error_code"] == "NOT_IMPLEMENTED"


@pytest.mark.parametrize("storage", ["s3", "gcs"])
def test_an_abandoned_upload_is_aborted(storage, moto, monkeypatch, tmp_path):
    """A direct upload whose client went away is aborted by the region once
    it has been open for TANDEM_ABANDONED_UPLOAD_AFTER_MS: its parts leave
    the bucket, its URLs have expired, and it can no longer be completed."""
    env = {"TANDEM_ABANDONED_UPLOAD_AFTER_MS": "1500"}
    if storage == "s3":
        env |= {"TANDEM_ARTIFACTS_URL": f"s3://{BUCKET}/abandoned", "AWS_ENDPOINT": moto,
                "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1"}
    else:
        account, _ = _service_account(tmp_path, moto)
        env |= {"TANDEM_ARTIFACTS_URL": f"gs://{BUCKET}/abandoned", "GOOGLE_SERVICE_ACCOUNT": str(account)}
    with _region(tmp_path, env) as server:
        client = _client(server, monkeypatch)
        run = client.create_run(client.create_experiment(unique("abandoned")))
        directory = _run_dir(run)
        created = _post(server, "create", directory, {"path": "left.bin", "num_parts": 2}).json()
        upload_id = created["upload_id"]
        expires = dict(pair.split("=", 1) for pair in urlparse(created["credentials"][0]["url"]).query.split("&"))
        assert int(expires.get("X-Amz-Expires") or expires["X-Goog-Expires"]) <= 2, expires
        put = requests.put(created["credentials"][0]["url"], data=b"x" * CHUNK, timeout=30)
        assert put.status_code == 200, put.text
        assert upload_id in requests.get(f"{moto}/{BUCKET}?uploads", timeout=30).text
        deadline = time.monotonic() + 30
        while upload_id in requests.get(f"{moto}/{BUCKET}?uploads", timeout=30).text:
            assert time.monotonic() < deadline, "the abandoned upload was not aborted within 30 s"
            time.sleep(0.2)
        parts = [{"part_number": 1, "etag": put.headers["ETag"]}]
        late = _post(server, "complete", directory, {"path": "left.bin", "upload_id": upload_id, "parts": parts})
        assert late.status_code == 404, late.text
        assert client.list_artifacts(run.info.run_id) == []


def test_local_storage_falls_back_to_a_proxied_put(server, multipart_client, monkeypatch, tmp_path):
    client = _client(server, monkeypatch)
    info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", timeout=10).json()
    assert info["multipart_uploads_enabled"] is False
    run = client.create_run(client.create_experiment(unique("mpu")))
    refused = _post(server, "create", _run_dir(run), {"path": "x.bin", "num_parts": 2})
    assert refused.status_code == 501, refused.text
    assert refused.json() == {
        "error_code": "NOT_IMPLEMENTED",
        "message": "Multipart upload is not supported for the current artifact repository",
    }
    local, data = _big_file(tmp_path)
    client.log_artifact(run.info.run_id, str(local))
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="weights.bin",
                                                     dst_path=str(tmp_path / "down"))
    assert open(downloaded, "rb").read() == data


def test_direct_uploads_can_be_turned_off(moto, multipart_client, monkeypatch, tmp_path):
    """TANDEM_DIRECT_UPLOADS=0 (clients that cannot reach the bucket): the
    server does not offer them, and the client uploads through the proxy."""
    env = {
        "TANDEM_ARTIFACTS_URL": f"s3://{BUCKET}/proxied",
        "AWS_ENDPOINT": moto,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "TANDEM_DIRECT_UPLOADS": "0",
    }
    with _region(tmp_path, env) as server:
        info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", timeout=10).json()
        assert info["multipart_uploads_enabled"] is False
        client = _client(server, monkeypatch)
        run = client.create_run(client.create_experiment(unique("proxied")))
        local, data = _big_file(tmp_path)
        client.log_artifact(run.info.run_id, str(local))
        assert _requests_to(server, "mlflow-artifacts/artifacts/", "PUT") == 1
        assert _requests_to(server, "mpu/complete", "POST") == 0
        downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="weights.bin",
                                                         dst_path=str(tmp_path / "down"))
        assert open(downloaded, "rb").read() == data


@pytest.mark.skipif("postgres" not in BACKENDS, reason="needs PostgreSQL")
def test_an_upload_created_through_one_replica_is_completed_through_another(moto, tmp_path):
    """Two processes of one region on one PostgreSQL database and one bucket:
    open direct uploads are kept in the database, so no sticky routing is
    needed; of two completions of one upload, through different processes,
    exactly one proceeds."""
    database = f"tandem_mpu_{unique('db').replace('-', '_')}"
    _psql(f"CREATE DATABASE {database}")
    env = {
        "TANDEM_ARTIFACTS_URL": f"s3://{BUCKET}/replicas",
        "AWS_ENDPOINT": moto,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    servers = []
    try:
        with _environment(env):
            for name in ("a", "b"):
                servers.append(_start(_tandem_bin(), "postgres", tmp_path / name, tmp_path / f"{name}.log",
                                      _database_url(database)))
        a, b = servers
        client = MlflowClient(a.url)
        run = client.create_run(client.create_experiment(unique("mpu")))
        directory = _run_dir(run)
        data = os.urandom(CHUNK) + b"tail"
        created = _post(a, "create", directory, {"path": "/local/w.bin", "num_parts": 2})
        assert created.status_code == 200, created.text
        body = created.json()
        etags = []
        for credential, part in zip(body["credentials"], [data[:CHUNK], data[CHUNK:]]):
            put = requests.put(credential["url"], data=part, headers=credential.get("headers") or {}, timeout=30)
            assert put.status_code == 200, put.text
            etags.append(put.headers["ETag"])
        completion = {"path": "/local/w.bin", "upload_id": body["upload_id"],
                      "parts": [{"part_number": i + 1, "etag": etag} for i, etag in enumerate(etags)]}
        # Completed through the other process; a second completion, through
        # the first, finds it no longer open.
        completed = _post(b, "complete", directory, completion)
        assert completed.status_code == 200, completed.text
        again = _post(a, "complete", directory, completion)
        assert again.status_code == 404, again.text
        read = requests.get(f"{a.url}/api/2.0/mlflow-artifacts/artifacts/{directory}/w.bin", timeout=30)
        assert read.status_code == 200 and read.content == data
        # Aborted through the other process likewise.
        opened = _post(b, "create", directory, {"path": "/local/x.bin", "num_parts": 1})
        assert opened.status_code == 200, opened.text
        aborted = _post(a, "abort", directory, {"path": "/local/x.bin", "upload_id": opened.json()["upload_id"]})
        assert aborted.status_code == 200, aborted.text
        assert "<UploadId>" not in requests.get(f"{moto}/{BUCKET}?uploads", timeout=30).text
    finally:
        for server in servers:
            _stop(server.process)
        _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
