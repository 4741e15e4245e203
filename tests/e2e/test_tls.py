"""TLS end to end, with certificates the test makes (the `openssl` CLI): a
region serving HTTPS with authentication, the official mlflow client over it
(`MLFLOW_TRACKING_SERVER_CERT_PATH`), the `tandem` CLI trusting the CA
(`--ca-file`, `TANDEM_CA_FILE`), and a deployment whose regions, witness
and gateway all speak HTTPS to each other (the deployment file's `ca_file`)."""

import json
import os
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import requests

from cluster import free_port
from conftest import _tandem_bin
from support import unique


@pytest.fixture
def tandem_bin() -> str:
    return _tandem_bin()


def make_certificates(directory: Path) -> dict:
    """A CA, and a certificate for 127.0.0.1 it signed."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str):
        result = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=tandem e2e CA")
    (directory / "leaf.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext")
    return {"ca": directory / "ca.pem", "cert": directory / "leaf.pem", "key": directory / "leaf.key"}


def start(arguments: list, log: Path, url: str, ca: Path, env: dict | None = None) -> subprocess.Popen:
    handle = open(log, "ab")
    process = subprocess.Popen(arguments, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    handle.close()
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if requests.get(f"{url}/ready", verify=str(ca), timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def stop(process: subprocess.Popen):
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def test_the_mlflow_client_and_the_cli_over_https_with_authentication(tandem_bin, tmp_path):
    certs = make_certificates(tmp_path / "certs")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    data = tmp_path / "data"
    server = start([tandem_bin, "server", "--auth", "--data", str(data), "--listen", f"127.0.0.1:{port}",
                    "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])],
                   tmp_path / "server.log", url, certs["ca"])
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_TOKEN")}
    try:
        token = (data / "admin.token").read_text().strip()
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(certs["ca"])
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
        client = mlflow.MlflowClient(tracking_uri=url)
        run = client.create_run(client.create_experiment(unique("tls"))).info.run_id
        client.log_metric(run, "loss", 0.125)
        artifact = tmp_path / "weights.txt"
        artifact.write_text("over TLS")
        client.log_artifact(run, str(artifact))
        assert Path(client.download_artifacts(run, "weights.txt", str(tmp_path / "down"))).read_text() == "over TLS"
        assert client.get_run(run).data.metrics == {"loss": 0.125}

        env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "MLFLOW_TRACKING_"))}
        env["TANDEM_TOKEN"] = token
        listed = subprocess.run([tandem_bin, "workspace", "list", "--json", "--url", url,
                                 "--ca-file", str(certs["ca"])], capture_output=True, text=True, env=env, timeout=60)
        assert listed.returncode == 0 and "default" in listed.stdout, listed.stderr
        by_env = subprocess.run([tandem_bin, "whoami", "--json", "--url", url], capture_output=True, text=True,
                                env={**env, "TANDEM_CA_FILE": str(certs["ca"])}, timeout=60)
        assert by_env.returncode == 0 and json.loads(by_env.stdout)["name"] == "admin", by_env.stderr
        # Without the CA the certificate is refused: the server is unreachable to it (exit 5).
        untrusted = subprocess.run([tandem_bin, "whoami", "--url", url], capture_output=True, text=True, env=env,
                                   timeout=60)
        assert untrusted.returncode == 5, untrusted.stderr
        # Plain HTTP to the TLS port gets nowhere, and the server goes on.
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert requests.get(f"{url}/health", verify=str(certs["ca"]), timeout=5).text == "OK"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        stop(server)


def test_a_deployment_replicates_and_fails_over_behind_tls(tandem_bin, tmp_path):
    certs = make_certificates(tmp_path / "certs")
    ports = {"witness": free_port(), "eastus": free_port(), "westus": free_port(), "gateway": free_port()}
    urls = {name: f"https://127.0.0.1:{port}" for name, port in ports.items()}
    deployment = tmp_path / "deployment.toml"
    deployment.write_text(
        'name = "tls"\nprimary = "eastus"\nreplication_secret = "tls-s3cret"\n'
        f'ca_file = "{certs["ca"]}"\n'
        f'\n[[regions]]\nname = "eastus"\nurl = "{urls["eastus"]}"\n'
        f'\n[[regions]]\nname = "westus"\nurl = "{urls["westus"]}"\n'
        f'\n[witness]\nkind = "embedded"\nurl = "{urls["witness"]}"\n')
    tls = ["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])]
    processes = []
    try:
        processes.append(start([tandem_bin, "witness", "--listen", f"127.0.0.1:{ports['witness']}", "--data",
                                str(tmp_path / "witness"), "--deployment", str(deployment), *tls],
                               tmp_path / "witness.log", urls["witness"], certs["ca"]))
        for name in ("eastus", "westus"):
            processes.append(start([tandem_bin, "server", "--deployment", str(deployment), "--region", name,
                                    "--data", str(tmp_path / name), "--listen", f"127.0.0.1:{ports[name]}", *tls],
                                   tmp_path / f"{name}.log", urls[name], certs["ca"]))
        processes.append(start([tandem_bin, "gateway", "--deployment", str(deployment), "--listen",
                                f"127.0.0.1:{ports['gateway']}", "--poll-interval", "200ms", *tls],
                               tmp_path / "gateway.log", urls["gateway"], certs["ca"]))
        saved = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(certs["ca"])
        try:
            client = mlflow.MlflowClient(tracking_uri=urls["gateway"])
            experiment = client.create_experiment(unique("tls-deployment"))
            # The secondary follows the primary's journal over TLS.
            replica = mlflow.MlflowClient(tracking_uri=urls["westus"])
            deadline = time.monotonic() + 20
            while True:
                try:
                    assert replica.get_experiment(experiment).experiment_id == experiment
                    break
                except mlflow.exceptions.MlflowException:
                    assert time.monotonic() < deadline, (tmp_path / "westus.log").read_text()
                    time.sleep(0.1)
            # A planned failover over TLS (the witness and the regions), then writes go on.
            env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
            failover = subprocess.run([tandem_bin, "failover", "--to", "westus", "--url", urls["gateway"],
                                       "--ca-file", str(certs["ca"])], capture_output=True, text=True, env=env,
                                      timeout=120)
            assert failover.returncode == 0, failover.stdout + failover.stderr
            deadline = time.monotonic() + 20
            while True:
                status = requests.get(f"{urls['gateway']}/gateway/status", verify=str(certs["ca"]), timeout=5,
                                      headers={"Authorization": "Bearer tls-s3cret"}).json()
                if (status.get("primary") or {}).get("region") == "westus":
                    break
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            run = client.create_run(experiment).info.run_id
            client.log_metric(run, "after", 1.0)
            assert client.get_run(run).data.metrics == {"after": 1.0}
            # The doctor reads each region's certificate: these expire in two
            # days, which it warns about (renew within 30 days).
            doctor = subprocess.run([tandem_bin, "doctor", "--json", "--url", urls["gateway"], "--ca-file",
                                     str(certs["ca"])], capture_output=True, text=True, env=env, timeout=120)
            assert doctor.stdout, doctor.stderr
            check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "tls")
            assert check["status"] == "warn" and "certificate expires in" in check["reason"], check
        finally:
            if saved is None:
                os.environ.pop("MLFLOW_TRACKING_SERVER_CERT_PATH", None)
            else:
                os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = saved
    finally:
        for process in reversed(processes):
            stop(process)
