"""`tandem up` supervises its deployment, with real processes and the official
mlflow client through the gateway: a `kill -9` of the primary fails over
while `up` keeps the gateway and the other region running, and the old
primary is started again and rejoins as a caught-up secondary, with `up.json`
current; a killed witness is started again and the primary keeps its lease; a
killed gateway comes back at the same tracking URI; a crash-looping part is
left down while the rest keeps serving; Ctrl-C stops every part quickly,
even with a request waiting in the gateway."""

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import mlflow
import pytest
import requests

from cluster import wait_until
from conftest import _tandem_bin

KILLED = "was killed by signal 9 (SIGKILL)"


def MlflowClient(url: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read().lower()
    except FileNotFoundError:
        return False


class Up:
    """A `tandem up` process and its directory."""

    def __init__(self, directory: Path, *arguments: str):
        self.directory = directory
        self.output = directory.parent / f"{directory.name}-up.out"
        handle = open(self.output, "ab")
        try:
            self.process = subprocess.Popen([_tandem_bin(), "up", "--dir", str(directory), *arguments],
                                            stdout=handle, stderr=subprocess.STDOUT)
        finally:
            handle.close()
        # up.json appears once every part is alive and ready.
        wait_until(lambda: self.process.poll() is not None or (directory / "up.json").exists(), 60,
                   "up.json to appear")
        assert self.process.poll() is None, f"tandem up exited:\n{self.text()}"
        self.tracking_uri = self.file()["tracking_uri"]
        # Authentication is on by default: the mlflow client and the CLI
        # use the admin's token while the deployment runs.
        self.token = Path(self.file()["admin_token_file"]).read_text().strip()
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self._saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_TOKEN", "TANDEM_TOKEN")}
        os.environ["MLFLOW_TRACKING_TOKEN"] = self.token
        os.environ["TANDEM_TOKEN"] = self.token

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def file(self) -> dict:
        return json.loads((self.directory / "up.json").read_text())

    def part(self, name: str) -> dict:
        return next(part for part in self.file()["parts"] if part["name"] == name)

    def gateway_status(self) -> dict:
        return requests.get(f"{self.tracking_uri}/gateway/status", timeout=5, headers=self.headers).json()

    def primary(self) -> str:
        return wait_until(lambda: (self.gateway_status()["primary"] or {}).get("region"), 30, "a primary")

    def stop(self, sig=signal.SIGINT, within: float = 30) -> float:
        """Signals `tandem up` and returns how long it took to exit (0)."""
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=within)
        took = time.monotonic() - started
        assert code == 0, f"tandem up exited with {code}:\n{self.text()}"
        return took

    def close(self):
        """Stops `tandem up` the way a user does; if it cannot, kills its parts."""
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if (self.directory / "up.json").exists():
            for part in self.file()["parts"]:
                if part["pid"] is not None:
                    try:
                        os.kill(part["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        pass


@pytest.fixture
def up(tmp_path):
    started = []

    def start(*arguments: str) -> Up:
        started.append(Up(tmp_path / "up", *arguments))
        return started[-1]

    yield start
    for deployment in started:
        deployment.close()


def ready(url: str) -> dict | None:
    """A part's /ready document when it is ready, else None."""
    try:
        response = requests.get(f"{url}/ready", timeout=2)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def test_a_killed_primary_fails_over_and_comes_back_as_a_caught_up_secondary(up):
    deployment = up()
    assert [(part["name"], part["state"]) for part in deployment.file()["parts"]] == [
        ("witness", "running"), ("eastus", "running"), ("westus", "running"), ("gateway", "running")]
    for part in deployment.file()["parts"]:
        assert ready(part["url"]) is not None, f"{part['name']} is in up.json but not ready"
    client = MlflowClient(deployment.tracking_uri)
    run_id = client.create_run(client.create_experiment(f"up-{uuid.uuid4().hex[:8]}")).info.run_id
    acknowledged = []
    for step in range(5):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        acknowledged.append(step)

    assert deployment.primary() == "eastus"
    killed = deployment.part("eastus")
    os.kill(killed["pid"], signal.SIGKILL)

    # Writes keep working through the gateway: it waits for the failover.
    # (A write the gateway had already sent to eastus when it died may be
    # answered 503, outcome unknown; it is not counted as acknowledged.)
    failures = []
    step = 5

    def five_more_writes():
        nonlocal step
        try:
            client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
            acknowledged.append(step)
        except mlflow.exceptions.MlflowException as error:
            failures.append(str(error))
        step += 1
        return len(acknowledged) >= 10

    wait_until(five_more_writes, 60, "writes through the gateway to resume after the kill", interval=0.05)
    assert deployment.primary() == "westus"

    # `up` said what happened, and started eastus again with a new pid.
    restarted = wait_until(lambda: (part := deployment.part("eastus"))["state"] == "running" and part, 60,
                           "eastus to be started again and ready")
    assert restarted["pid"] not in (None, killed["pid"]) and alive(restarted["pid"])
    assert restarted["restarts"] == 1 and restarted["last_exit"] == KILLED
    output = deployment.text()
    assert f"region eastus (pid {killed['pid']}) {KILLED}" in output, output
    assert f"region eastus is back (pid {restarted['pid']}) and ready as secondary" in output, output

    # It rejoined as a secondary of westus and caught up.
    east = ready(restarted["url"])
    assert east is not None and east["role"] == "secondary", east
    shown = subprocess.run([_tandem_bin(), "status", "--url", deployment.tracking_uri, "--json"],
                           capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["primary"] == "westus" and status["epoch"] > 1
    assert {region["name"]: region["role"] for region in status["regions"]} == {
        "eastus": "secondary", "westus": "primary"}
    table = subprocess.run([_tandem_bin(), "status", "--url", deployment.tracking_uri],
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    assert any(line.split()[:3] == ["eastus", "secondary", "streaming"] for line in table.stdout.splitlines()), \
        table.stdout
    replica = MlflowClient(restarted["url"])
    wait_until(lambda: {m.step for m in replica.get_metric_history(run_id, "loss")} >= set(acknowledged), 30,
               "every acknowledged write at the restarted eastus")
    assert set(acknowledged) <= {m.step for m in client.get_metric_history(run_id, "loss")}

    # The other parts never stopped.
    for name in ("witness", "westus", "gateway"):
        part = deployment.part(name)
        assert part["restarts"] == 0 and part["state"] == "running" and alive(part["pid"]), part
    deployment.stop()


def test_ctrl_c_stops_every_part_quickly_even_with_a_request_waiting_in_the_gateway(up):
    deployment = up()
    pids = [part["pid"] for part in deployment.file()["parts"]]
    os.kill(deployment.part(deployment.primary())["pid"], signal.SIGKILL)
    wait_until(lambda: deployment.gateway_status()["primary"] is None, 10, "the gateway to lose the primary")
    # A write that no region can take yet: the gateway holds it, waiting
    # for the failover (up to 15 s).
    host, port = deployment.tracking_uri.removeprefix("http://").split(":")
    body = json.dumps({"name": f"waiting-{uuid.uuid4().hex[:8]}"}).encode()
    waiting = socket.create_connection((host, int(port)), timeout=30)
    waiting.sendall(b"POST /api/2.0/mlflow/experiments/create HTTP/1.1\r\nHost: gateway\r\n"
                    b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                    b"\r\nConnection: close\r\n\r\n" + body)
    waiting.settimeout(0.5)
    with pytest.raises(socket.timeout):
        waiting.recv(1)  # still waiting: this is the request a shutdown used to wait 10 s for

    took = deployment.stop(signal.SIGINT)
    assert took < 5, f"tandem up took {took:.1f}s to stop"
    waiting.settimeout(5)
    answer = b""
    while chunk := waiting.recv(65536):
        answer += chunk
    waiting.close()
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"TEMPORARILY_UNAVAILABLE" in answer and b"shutting down" in answer, answer
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert not (deployment.directory / "up.json").exists()
    assert "Tandem stopped." in deployment.text()
    for name in ("gateway", "westus", "witness"):
        assert "did not stop within" not in deployment.text(), deployment.text()


def test_sigterm_stops_a_healthy_deployment_quickly(up):
    deployment = up()
    client = MlflowClient(deployment.tracking_uri)
    client.create_experiment(f"up-{uuid.uuid4().hex[:8]}")
    pids = [part["pid"] for part in deployment.file()["parts"]]
    took = deployment.stop(signal.SIGTERM)
    assert took < 5, f"tandem up took {took:.1f}s to stop"
    assert not any(alive(pid) for pid in pids)


def test_a_killed_witness_is_started_again_and_the_primary_keeps_its_lease(up):
    deployment = up()
    client = MlflowClient(deployment.tracking_uri)
    experiment = client.create_experiment(f"up-{uuid.uuid4().hex[:8]}")
    epoch = requests.get(f"{deployment.tracking_uri}/api/tandem/v1/regions", timeout=5, headers=deployment.headers).json()["epoch"]
    killed = deployment.part("witness")
    os.kill(killed["pid"], signal.SIGKILL)
    restarted = wait_until(
        lambda: (part := deployment.part("witness"))["state"] == "running" and part["pid"] != killed["pid"] and part,
        30, "the witness to be started again and ready")
    assert restarted["last_exit"] == KILLED and alive(restarted["pid"])
    assert ready(restarted["url"]) is not None
    # The witness keeps its state on disk: the primary renews the same lease.
    run_id = client.create_run(experiment).info.run_id
    client.set_tag(run_id, "after", "witness restart")
    status = requests.get(f"{deployment.tracking_uri}/api/tandem/v1/regions", timeout=5, headers=deployment.headers).json()
    assert status["primary"] == "eastus" and status["epoch"] == epoch, status
    for name in ("eastus", "westus", "gateway"):
        assert deployment.part(name)["restarts"] == 0
    deployment.stop()


def test_a_killed_gateway_is_started_again_at_the_same_tracking_uri(up):
    deployment = up()
    client = MlflowClient(deployment.tracking_uri)
    experiment = client.create_experiment(f"up-{uuid.uuid4().hex[:8]}")
    killed = deployment.part("gateway")
    os.kill(killed["pid"], signal.SIGKILL)
    restarted = wait_until(
        lambda: (part := deployment.part("gateway"))["state"] == "running" and part["pid"] != killed["pid"] and part,
        30, "the gateway to be started again and ready")
    assert restarted["url"] == deployment.tracking_uri and restarted["last_exit"] == KILLED
    assert deployment.file()["tracking_uri"] == deployment.tracking_uri
    assert client.get_experiment(experiment).experiment_id == experiment
    client.create_run(experiment)
    deployment.stop()


def test_a_crash_looping_part_is_left_down_and_the_rest_keeps_serving(up):
    deployment = up("--restart-delay", "100ms", "--restart-limit", "3", "--restart-window", "60s")
    westus = deployment.part("westus")
    # From now on westus cannot start: its data directory is a file.
    data = deployment.directory / "westus"
    data.rename(deployment.directory / "westus.moved")
    data.write_text("not a directory")
    os.kill(westus["pid"], signal.SIGKILL)

    down = wait_until(lambda: (part := deployment.part("westus"))["state"] == "down" and part, 30,
                      "westus to be left down")
    assert down["pid"] is None and down["restarts"] == 2 and down["last_exit"] == "exited with code 1", down
    output = deployment.text()
    assert "region westus" in output and "exited 3 times within 60s, so it is left down" in output, output
    # Left down: not started again, and the rest serves on.
    assert deployment.process.poll() is None
    client = MlflowClient(deployment.tracking_uri)
    client.create_experiment(f"after-{uuid.uuid4().hex[:8]}")
    assert deployment.part("westus")["state"] == "down"
    deployment.stop()
    assert "westus had been left down after crash-looping" in deployment.text()
