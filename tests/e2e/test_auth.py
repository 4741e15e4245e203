"""Authentication and role assignments, end to end: real `tandem server`
processes started with `--auth`, the official mlflow client with Basic and
Bearer credentials (MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_TOKEN),
MLflow's own AuthServiceClient for its user endpoints, and the `tandem` CLI
for users, tokens, roles and the audit."""

import base64
import json
import os
import stat
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request, verify_rest_response

from cluster import Etcd, free_port, make_cluster, start_gateway
from conftest import _tandem_bin
from support import unique

UNAUTHENTICATED, DENIED = 401, 403


@pytest.fixture
def tandem_bin() -> str:
    return _tandem_bin()


class AuthServiceClient:
    """The calls of MLflow's `mlflow.server.auth.client.AuthServiceClient`
    (which imports Flask, a server dependency the skinny client lacks),
    made the way it makes them: mlflow's own REST helpers and the
    credentials of the environment."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri

    def _request(self, endpoint, method, **kwargs):
        response = http_request(get_default_host_creds(self.tracking_uri), endpoint, method, **kwargs)
        return verify_rest_response(response, endpoint).json()

    def create_user(self, username: str, password: str):
        return self._request("/api/2.0/mlflow/users/create", "POST",
                             json={"username": username, "password": password})["user"]

    def get_user(self, username: str):
        return self._request("/api/2.0/mlflow/users/get", "GET", params={"username": username})["user"]


class AuthServer:
    def __init__(self, binary: str, root: Path, extra: tuple[str, ...] = ()):
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = root / "data"
        self.log = root / "server.log"
        root.mkdir(parents=True, exist_ok=True)
        handle = open(self.log, "ab")
        self.process = subprocess.Popen(
            [binary, "server", "--auth", "--data", str(self.data), "--listen", f"127.0.0.1:{self.port}", *extra],
            stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if requests.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        self.token_file = self.data / "admin.token"
        # A second process on a database that already has an administrator
        # makes none (and writes no token file).
        self.admin_token = self.token_file.read_text().strip() if self.token_file.exists() else None

    def cli(self, *args: str, token: str | None = None, stdin: str | None = None, expect: int = 0) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "TANDEM_"))}
        env["TANDEM_TOKEN"] = token if token is not None else self.admin_token
        result = subprocess.run([self.binary, *args, "--url", self.url], capture_output=True, text=True,
                                input=stdin, env=env, timeout=60)
        assert result.returncode == expect, (args, result.returncode, result.stdout, result.stderr)
        return result.stdout

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def server(tandem_bin, tmp_path):
    server = AuthServer(tandem_bin, tmp_path)
    yield server
    server.stop()


@contextmanager
def credentials(**variables):
    """MLflow client credentials in the environment, as users set them."""
    names = ["MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ.update({f"MLFLOW_TRACKING_{key.upper()}": value for key, value in variables.items()})
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)
            if saved[name] is not None:
                os.environ[name] = saved[name]


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def log_a_run(url: str, tmp_path: Path) -> str:
    """Logs a run with a metric and an artifact, reads both back: what a
    user with write access does."""
    client = mlflow.MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(unique("auth"))
    run = client.create_run(experiment).info.run_id
    client.log_metric(run, "loss", 0.25)
    artifact = tmp_path / f"{run}.txt"
    artifact.write_text("weights")
    client.log_artifact(run, str(artifact))
    downloaded = client.download_artifacts(run, artifact.name, str(tmp_path / "down"))
    assert Path(downloaded).read_text() == "weights"
    assert client.get_run(run).data.metrics == {"loss": 0.25}
    return run


def test_anonymous_requests_get_401_with_a_basic_challenge_and_public_probes_answer(server):
    assert server.token_file.exists()
    assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
    assert requests.get(f"{server.url}/health").status_code == 200
    assert requests.get(f"{server.url}/ready").status_code == 200
    # Every anonymous action the issue found open, and then some.
    for method, path in [("POST", "/api/2.0/mlflow/experiments/create"),
                         ("GET", "/api/2.0/mlflow/experiments/search"),
                         ("POST", "/api/tandem/v1/workspaces"),
                         ("DELETE", "/api/tandem/v1/workspaces/default"),
                         ("POST", "/api/tandem/v1/workspaces/default/purge"),
                         ("POST", "/api/tandem/v1/workspaces/default/recover"),
                         ("GET", "/api/tandem/v1/workspaces/default/deleted"),
                         ("POST", "/api/tandem/v1/workspaces/default/deleted/run/abc/recover"),
                         ("POST", "/api/tandem/v1/workspaces/default/deleted/run/abc/purge"),
                         ("DELETE", "/api/tandem/v1/salvage/abc"),
                         ("GET", "/api/tandem/v1/salvage/abc/files"),
                         ("GET", "/api/tandem/v1/salvage/abc/files/notes.md"),
                         ("GET", "/api/tandem/v1/journal?after=0"),
                         ("GET", "/w/default/api/tandem/v1/journal?after=0"),
                         ("POST", "/api/tandem/v1/backups"),
                         ("GET", "/api/tandem/v1/backups?from=s3://b/r"),
                         ("POST", "/api/tandem/v1/backups/prune"),
                         ("POST", "/api/tandem/v1/backups/verify"),
                         ("POST", "/api/tandem/v1/restores"),
                         ("GET", "/api/tandem/v1/gc"),
                         ("GET", "/api/tandem/v1/conflicts"),
                         ("GET", "/api/tandem/v1/principals"),
                         ("POST", "/api/tandem/v1/roles"),
                         ("GET", "/api/tandem/v1/workspaces/default/files"),
                         ("GET", "/metrics"),
                         ("GET", "/api/2.0/mlflow-artifacts/artifacts/x/y"),
                         ("PUT", "/api/2.0/mlflow-artifacts/artifacts/x/y")]:
        response = requests.request(method, f"{server.url}{path}", json={"to": "file:///tmp/x"})
        if path.startswith("/w/default/api/tandem"):
            assert response.status_code == 404, (method, path, response.text)  # no such route
            continue
        assert response.status_code == UNAUTHENTICATED, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
        assert response.json()["error_code"] == "UNAUTHENTICATED"
    # Malformed headers, wrong secrets: 401 and a precise reason, never 500.
    for headers, reason in [({"Authorization": "Digest abc"}, "unsupported authorization scheme"),
                            ({"Authorization": "Basic !!!"}, "base64"),
                            ({"Authorization": "Bearer"}, "empty"),
                            (bearer("tandem_" + "A" * 43), "unknown token"),
                            (basic("admin", "nope-nope"), "wrong username or password"),
                            (basic("ghost", "whatever1"), "wrong username or password")]:
        response = requests.get(f"{server.url}/api/2.0/mlflow/experiments/search", headers=headers)
        assert response.status_code == UNAUTHENTICATED, (headers, response.text)
        assert reason in response.json()["message"], response.text
    # Nothing of it was written.
    assert "Bearer" not in server.log.read_text()


def test_requests_cannot_choose_where_the_server_reads_writes_or_connects(server, tmp_path):
    """Even the admin: repositories are the configuration's, and object-store
    options never come from a request."""
    admin = bearer(server.admin_token)
    elsewhere = Path("/tmp") / f"tandem-not-allowed-{unique('x')}"
    for method, path, body in [("POST", "/api/tandem/v1/backups", {"to": f"file://{elsewhere}"}),
                               ("GET", "/api/tandem/v1/backups?from=s3://bucket/r", None),
                               ("POST", "/api/tandem/v1/backups/prune", {"from": "file:///", "keep": 1}),
                               ("POST", "/api/tandem/v1/restores",
                                {"from": f"file://{tmp_path}/../../etc", "workspace": "default"}),
                               ("POST", "/api/tandem/v1/restores",
                                {"from": f"file://{tmp_path}/repo", "options": {"aws_endpoint": "http://169.254.169.254"}})]:
        response = requests.request(method, f"{server.url}{path}", json=body, headers=admin)
        assert response.status_code == DENIED, (method, path, response.text)
        assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert not elsewhere.exists(), "nothing was created outside the allowed repositories"
    # Inside the allowed repositories (this session's temporary directory), backups work.
    inside = f"file://{tmp_path}/repo"
    created = requests.post(f"{server.url}/api/tandem/v1/backups", json={"to": inside}, headers=admin)
    assert '"result"' in created.text.splitlines()[-1], created.text


def test_the_mlflow_client_works_with_a_token_and_with_basic_credentials(server, tmp_path):
    with credentials(token=server.admin_token):
        log_a_run(server.url, tmp_path)
        # MLflow's own user API, as `mlflow server --app-name basic-auth` serves it.
        auth = AuthServiceClient(server.url)
        user = auth.create_user("alice", "alice-password-1")
        assert user["username"] == "alice" and user["is_admin"] is False
        assert auth.get_user("alice")["id"] == user["id"]
    # A user without roles authenticates, and is denied.
    with credentials(username="alice", password="alice-password-1"):
        with pytest.raises(mlflow.exceptions.MlflowException) as refused:
            mlflow.MlflowClient(tracking_uri=server.url).create_experiment(unique("denied"))
        assert "PERMISSION_DENIED" in str(refused.value)
        me = AuthServiceClient(server.url)._request("/api/2.0/mlflow/users/current", "GET")
        assert me["user"]["username"] == "alice"
    server.cli("role", "assign", "alice", "Contributor", "--workspace", "default")
    with credentials(username="alice", password="alice-password-1"):
        run = log_a_run(server.url, tmp_path)
    # Writes carry their author into the journal: the audit shows them.
    audit = [json.loads(line) for line in server.cli("audit", "--principal", "alice", "--json").splitlines()]
    assert {entry["action"] for entry in audit} >= {"experiment_created", "run_created", "run_data_logged",
                                                    "artifact_written"}, audit
    assert all(entry["principal"] == "alice" for entry in audit)
    admin_audit = server.cli("audit", "--json", "--since", "1h")
    assert '"role_assigned"' in admin_audit and '"principal_created"' in admin_audit
    # No secret in clear text anywhere it could leak.
    journal = requests.get(f"{server.url}/api/tandem/v1/journal?after=0", headers=bearer(server.admin_token)).text
    metrics = requests.get(f"{server.url}/metrics", headers=bearer(server.admin_token)).text
    for text in (journal, metrics, server.log.read_text()):
        assert "alice-password-1" not in text and server.admin_token not in text
    assert run in journal and "$argon2id$" in journal


def test_roles_scope_what_each_principal_may_do(server, tmp_path):
    out = json.loads(server.cli("user", "create", "reader", "--json", "--role", "Reader@default"))
    reader = out["token"]
    assert out["name"] == "reader" and reader.startswith("tandem_")
    operator = json.loads(server.cli("user", "create", "ops", "--service", "--role", "Operator", "--json"))["token"]
    server.cli("workspace", "create", "team")
    owner = json.loads(server.cli("user", "create", "lead", "--role", "Owner@team", "--json"))["token"]

    search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=5"
    create = f"{server.url}/api/2.0/mlflow/experiments/create"
    assert requests.get(search, headers=bearer(reader)).status_code == 200
    denied = requests.post(create, json={"name": unique("x")}, headers=bearer(reader))
    assert denied.status_code == DENIED and denied.json()["error_code"] == "PERMISSION_DENIED", denied.text
    assert "'reader' lacks the 'write' permission in workspace 'default'" in denied.json()["message"]
    # The owner of `team` writes there, manages its roles, and nothing else.
    team = f"{server.url}/w/team/api/2.0/mlflow/experiments/create"
    assert requests.post(team, json={"name": unique("t")}, headers=bearer(owner)).status_code == 200
    assert requests.post(create, json={"name": unique("t")}, headers=bearer(owner)).status_code == DENIED
    server.cli("role", "assign", "reader", "Reader", "--workspace", "team", token=owner)
    server.cli("role", "assign", "reader", "Admin", token=owner, expect=6)
    # The operator runs the deployment but reads no workspace data.
    assert requests.get(f"{server.url}/api/tandem/v1/journal?after=0", headers=bearer(operator)).status_code == 200
    assert requests.get(search, headers=bearer(operator)).status_code == DENIED
    assert requests.get(f"{server.url}/api/tandem/v1/journal?after=0", headers=bearer(owner)).status_code == DENIED
    assert requests.post(f"{server.url}/api/tandem/v1/workspaces", json={"name": "x"},
                         headers=bearer(owner)).status_code == DENIED
    # whoami, for each.
    assert "Reader@default" in server.cli("whoami", token=reader)
    assert json.loads(server.cli("whoami", "--json", token=operator))["name"] == "ops"
    # Bad input: precise errors, nothing changed.
    before = server.cli("role", "list", "--json")
    assert "Unknown role 'Superuser'" in subprocess.run(
        [server.binary, "role", "assign", "reader", "Superuser", "--url", server.url],
        env={**os.environ, "TANDEM_TOKEN": server.admin_token}, capture_output=True, text=True).stderr
    server.cli("role", "assign", "nobody", "Reader", expect=3)
    server.cli("role", "assign", "reader", "Operator", "--workspace", "team", expect=1)
    server.cli("workspace", "delete", "team")
    # Assigning roles in a deleted workspace: refused (conflicting state).
    refused = subprocess.run([server.binary, "role", "assign", "reader", "Contributor", "--workspace", "team",
                              "--url", server.url], env={**os.environ, "TANDEM_TOKEN": server.admin_token},
                             capture_output=True, text=True)
    assert refused.returncode == 4 and "is deleted" in refused.stderr, refused.stderr
    assert server.cli("role", "list", "--json") == before


def test_tokens_expire_are_revoked_at_once_and_die_with_their_principal(server):
    search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    created = json.loads(server.cli("user", "create", "bot", "--service", "--role", "Reader", "--json"))
    token = created["token"]
    assert requests.get(search, headers=bearer(token)).status_code == 200
    # Cached now; a revocation still takes effect on the next request.
    server.cli("token", "revoke", created["token_id"])
    refused = requests.get(search, headers=bearer(token))
    assert refused.status_code == UNAUTHENTICATED and "revoked" in refused.json()["message"]
    # An expiring token.
    short = json.loads(server.cli("token", "create", "--principal", "bot", "--expires-in", "2s", "--json"))
    assert requests.get(search, headers=bearer(short["token"])).status_code == 200
    deadline = time.monotonic() + 10
    while requests.get(search, headers=bearer(short["token"])).status_code == 200:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.2)
    assert "expired" in requests.get(search, headers=bearer(short["token"])).json()["message"]
    # Listing shows ids and state, never secrets; last use is recorded.
    listed = server.cli("token", "list", "--principal", "bot", "--json")
    assert short["token"] not in listed and token not in listed and "last_used_at" in listed
    # Disabled, then deleted: every credential stops working.
    again = json.loads(server.cli("token", "create", "--principal", "bot", "--json"))["token"]
    server.cli("user", "disable", "bot")
    assert "disabled" in requests.get(search, headers=bearer(again)).json()["message"]
    server.cli("user", "enable", "bot")
    assert requests.get(search, headers=bearer(again)).status_code == 200
    server.cli("user", "delete", "bot")
    assert requests.get(search, headers=bearer(again)).status_code == UNAUTHENTICATED
    # Users may change their own password, with the current one.
    server.cli("user", "create", "carol", "--password-stdin", stdin="carol-pass-1\n")
    auth = requests.patch(f"{server.url}/api/2.0/mlflow/users/update-password",
                          json={"username": "carol", "password": "carol-pass-2"},
                          headers=basic("carol", "carol-pass-1"))
    assert auth.status_code == 400 and "current_password" in auth.text, auth.text
    auth = requests.patch(f"{server.url}/api/2.0/mlflow/users/update-password",
                          json={"username": "carol", "password": "carol-pass-2", "current_password": "carol-pass-1"},
                          headers=basic("carol", "carol-pass-1"))
    assert auth.status_code == 200, auth.text
    me = f"{server.url}/api/tandem/v1/whoami"
    assert requests.get(me, headers=basic("carol", "carol-pass-1")).status_code == UNAUTHENTICATED
    assert requests.get(me, headers=basic("carol", "carol-pass-2")).json()["name"] == "carol"


def test_login_stores_a_token_that_later_commands_use(server, tmp_path):
    server.cli("user", "create", "dave", "--password-stdin", "--role", "Reader", stdin="dave-pass-1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "TANDEM_"))}
    login = subprocess.run([server.binary, "login", "--username", "dave", "--password-stdin", "--url", server.url],
                           input="dave-pass-1\n", capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert login.returncode == 0, login.stderr
    config = tmp_path / ".tandem.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "token = " in config.read_text()
    whoami = subprocess.run([server.binary, "whoami", "--json"], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=60)
    assert whoami.returncode == 0 and json.loads(whoami.stdout)["name"] == "dave", whoami.stderr
    # Without credentials the CLI says so, exit 6.
    anonymous = subprocess.run([server.binary, "whoami", "--url", server.url], capture_output=True, text=True,
                               env=env, timeout=60)
    assert anonymous.returncode == 6 and "UNAUTHENTICATED" in anonymous.stderr


def test_credentials_work_in_every_region_through_the_gateway_and_after_failover(tandem_bin, tmp_path):
    etcd = Etcd(tmp_path)
    etcd.start()
    cluster = make_cluster(tandem_bin, tmp_path, env={"TANDEM_AUTH": "1"}, witness=etcd)
    gateway = None
    try:
        primary, secondary = cluster.regions
        # The leader creates the admin as it takes the lead.
        token_file = primary.data / "admin.token"
        deadline = time.monotonic() + 20
        while not (token_file.exists() and requests.get(
                f"{primary.url}/api/tandem/v1/whoami",
                headers=bearer(token_file.read_text().strip())).status_code == 200):
            assert time.monotonic() < deadline, cluster.log_tail(primary)
            time.sleep(0.05)
        admin = token_file.read_text().strip()
        assert not (secondary.data / "admin.token").exists(), "only the leader bootstraps the admin"
        env = {**os.environ, "TANDEM_TOKEN": admin}
        created = subprocess.run([tandem_bin, "user", "create", "erin", "--role", "Contributor", "--json",
                                  "--url", primary.url], capture_output=True, text=True, env=env, timeout=60)
        assert created.returncode == 0, created.stderr
        token = json.loads(created.stdout)["token"]
        # Replicated: the secondary knows erin (reads are allowed there).
        deadline = time.monotonic() + 10
        while requests.get(f"{secondary.url}/api/tandem/v1/whoami", headers=bearer(token)).status_code != 200:
            assert time.monotonic() < deadline, "the secondary never learned erin's token"
            time.sleep(0.05)
        gateway = start_gateway(tandem_bin, cluster.deployment, tmp_path / "gateway.log")
        # The gateway's own status is for operators: it asks a region who the caller is.
        assert requests.get(f"{gateway.url}/gateway/status", timeout=5).status_code == UNAUTHENTICATED
        assert requests.get(f"{gateway.url}/gateway/status", headers=bearer(token), timeout=5).status_code == DENIED
        assert requests.get(f"{gateway.url}/metrics", headers=bearer(token), timeout=5).status_code == DENIED
        gateway.headers = bearer(admin)
        assert gateway.status()["primary"]["region"] == "eastus"
        with credentials(token=token):
            log_a_run(gateway.url, tmp_path)
        assert requests.post(f"{gateway.url}/api/2.0/mlflow/experiments/create",
                             json={"name": unique("anon")}).status_code == UNAUTHENTICATED
        # A failover: the credentials created in the old primary work in the new one.
        failover = subprocess.run([tandem_bin, "failover", "--to", "westus", "--url", primary.url],
                                  capture_output=True, text=True, env=env, timeout=120)
        assert failover.returncode == 0, failover.stdout + failover.stderr
        # Anonymous failover is refused.
        assert requests.post(f"{secondary.url}/api/tandem/v1/failover",
                             json={"to": "eastus"}).status_code == UNAUTHENTICATED
        gateway.wait_for_primary("westus")
        with credentials(token=token):
            log_a_run(gateway.url, tmp_path)
        journal = requests.get(f"{secondary.url}/api/tandem/v1/journal?after=0", headers=bearer(admin)).text
        assert '"principal":"erin"' in journal and token not in journal
        # The audit names who failed over (the new epoch's first record),
        # read from the new primary, and who created whom.
        audit = subprocess.run([tandem_bin, "audit", "--json", "--url", secondary.url], capture_output=True,
                               text=True, env=env, timeout=60)
        assert audit.returncode == 0, audit.stderr
        entries = [json.loads(line) for line in audit.stdout.splitlines()]
        epochs = [entry for entry in entries if entry["action"] == "epoch_began" and entry["region"] == "westus"]
        assert epochs and epochs[-1]["principal"] == "admin", epochs
        created = next(entry for entry in entries if entry["action"] == "principal_created"
                       and entry["change"]["name"] == "erin")
        assert created["principal"] == "admin" and created["region"] == "eastus"
    finally:
        if gateway is not None:
            gateway.stop()
        cluster.close()
        etcd.stop()


def test_a_restore_brings_back_principals_tokens_and_the_workspaces_roles(tandem_bin, tmp_path):
    """A deployment lost whole: its backup, restored into a fresh server,
    brings back who may log in (password hashes, tokens) and who may do
    what in the restored workspace."""
    source = AuthServer(tandem_bin, tmp_path / "source")
    target = None
    try:
        source.cli("workspace", "create", "team")
        frank = json.loads(source.cli("user", "create", "frank", "--password-stdin", "--role", "Owner@team",
                                      "--json", stdin="frank-pass-1\n"))["token"]
        grace = json.loads(source.cli("user", "create", "grace", "--role", "Operator", "--json"))["token"]
        revoked = json.loads(source.cli("token", "create", "--principal", "frank", "--json"))
        source.cli("token", "revoke", revoked["info"]["token_id"])
        team = f"{source.url}/w/team/api/2.0/mlflow/experiments/create"
        assert requests.post(team, json={"name": "kept"}, headers=bearer(frank)).status_code == 200
        repository = f"file://{tmp_path / 'repository'}"
        source.cli("backup", "create", "--to", repository)
        listed = source.cli("backup", "list", "--from", repository, "--json")
        assert "$argon2id$" not in listed and "token_hash" not in listed, "listing shows no hash"

        target = AuthServer(tandem_bin, tmp_path / "target")
        assert requests.get(f"{target.url}/api/tandem/v1/whoami", headers=bearer(frank)).status_code == 401
        target.cli("backup", "restore", "--from", repository, "--workspace", "team")
        # frank's token and password work, and he owns `team` again.
        search = f"{target.url}/w/team/api/2.0/mlflow/experiments/search?max_results=10"
        assert "kept" in requests.get(search, headers=bearer(frank)).text
        assert requests.get(search, headers=basic("frank", "frank-pass-1")).status_code == 200
        roles = json.loads(target.cli("role", "list", "--workspace", "team", "--json"))["assignments"]
        assert {"principal": "frank", "role": "Owner", "workspace": "team"} in roles
        # The operator, deployment-wide, too; the revoked token stays dead.
        assert requests.get(f"{target.url}/api/tandem/v1/journal?after=0",
                            headers=bearer(grace)).status_code == 200
        assert requests.get(search, headers=bearer(revoked["token"])).status_code == 401
        # The target's own admin is untouched.
        assert requests.get(f"{target.url}/api/tandem/v1/whoami",
                            headers=bearer(target.admin_token)).json()["name"] == "admin"
    finally:
        source.stop()
        if target is not None:
            target.stop()


def test_a_move_needs_write_access_to_both_workspaces(server, tmp_path):
    server.cli("workspace", "create", "here")
    server.cli("workspace", "create", "there")
    owner = json.loads(server.cli("user", "create", "mover", "--role", "Owner@here", "--json"))["token"]
    client = mlflow.MlflowClient(tracking_uri=f"{server.url}/w/here")
    with credentials(token=owner):
        experiment_id = client.create_experiment(unique("moving"))
        run_id = client.create_run(experiment_id).info.run_id
    with credentials(token=owner):
        name = client.get_experiment(experiment_id).name
    # Writing in `here` is not enough: the move writes `there` too.
    out = server.cli("move", "--experiment", name, "--from", "here", "--to", "there", token=owner, expect=6)
    assert out == ""
    server.cli("role", "assign", "mover", "Contributor", "--workspace", "there")
    moved = json.loads(server.cli("move", "--experiment", name, "--from", "here", "--to", "there", "--json",
                                  token=owner))
    assert moved["runs"] == 1
    with credentials(token=owner):
        there = mlflow.MlflowClient(tracking_uri=f"{server.url}/w/there")
        assert there.get_run(run_id).info.experiment_id == moved["experiments"][0]["to_id"]
    # Anonymous: refused before anything is read.
    anonymous = requests.post(f"{server.url}/api/tandem/v1/workspaces/there/move",
                              json={"to": "here", "experiments": [name]}, timeout=10)
    assert anonymous.status_code == 401
