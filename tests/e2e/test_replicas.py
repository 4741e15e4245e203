"""Several server processes ("replicas") per region on one PostgreSQL database
(issue 17, item 3), in a deployment of two regions with a real etcd as the
witness.

Each region's replicas share its database and artifact directory; its
address in the deployment is a load balancer over them (the proxy of
`cluster.py`, which skips a replica that refuses connections), as a user
would run it. Exactly one replica of a region holds its duties — following,
leadership and the witness's lease — and the others serve by what it
publishes, fenced by the database: a `kill -9` of the holder hands the
duties and the lease (under a new epoch) to another replica within seconds,
and nothing acknowledged is lost, here or in the other region.
"""

import json
import os
import signal
import subprocess
import threading
import time
import uuid

import mlflow
import pytest
import requests

from cluster import Etcd, Region, free_port, make_cluster, status, wait_until
from conftest import BACKENDS, _database_url, _psql, _tandem_bin
# The failover suite's lease timings and classes: registry writes wait for
# the secondary, so a synchronous write acknowledged by one replica must see
# the confirmation the secondary sent to another.
from test_failover import CLASSES, WITNESS
from test_failover import MlflowClient as client

pytestmark = pytest.mark.skipif("postgres" not in BACKENDS, reason="needs PostgreSQL")


def replica_of(url: str) -> dict:
    document = status(url)
    assert document is not None, f"{url} does not answer"
    return document["replica"]


def holds_duties(region: Region) -> bool:
    document = status(region.url)
    return bool(document and document["replica"]["holds_duties"])


class Writer:
    """Writes through `url` until stopped — a run's metric and a model's tag
    in turn, the tag synchronous — and remembers what was acknowledged."""

    def __init__(self, url: str, run_id: str, model: str):
        self.client = client(url)
        self.run_id = run_id
        self.model = model
        self.metrics: list[int] = []
        self.tags: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)

    def _write(self):
        step = 0
        while not self._stop.is_set():
            step += 1
            try:
                if step % 2:
                    self.client.log_metric(self.run_id, "m", float(step), step=step)
                    self.metrics.append(step)
                else:
                    self.client.set_registered_model_tag(self.model, f"k{step:05d}", str(step))
                    self.tags.append(f"k{step:05d}")
            except Exception as error:  # noqa: BLE001 - a connection cut by a kill -9 is expected
                self.failures.append(str(error)[:200])
                time.sleep(0.05)

    def count(self) -> int:
        return len(self.metrics) + len(self.tags)

    def wait_for_progress(self, writes: int = 10, timeout: float = 30.0):
        start = self.count()
        wait_until(lambda: self.count() >= start + writes, timeout, f"{writes} more acknowledged writes")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)


class Replicated:
    """eastus: `replicas` processes on one PostgreSQL database behind a
    balancer (the cluster's proxy); westus: one process on SQLite."""

    def __init__(self, tmp_path, replicas: int):
        self.binary = _tandem_bin()
        self.root = tmp_path / "deployment"
        self.root.mkdir()
        self.database = f"tandem_replicas_{uuid.uuid4().hex[:10]}"
        _psql(f"CREATE DATABASE {self.database}")
        self.etcd = Etcd(self.root)
        self.etcd.start()
        self.cluster = None
        self.extra: list[Region] = []
        try:
            self.cluster = make_cluster(self.binary, self.root, classes=CLASSES, witness=self.etcd,
                                        witness_settings=WITNESS, failover='grace_period = "1s"',
                                        metadata_urls={"eastus": _database_url(self.database)},
                                        env={"TANDEM_SYNC_TIMEOUT_MS": "5000"}, start=False)
            first = self.cluster.region("eastus")
            self.west = self.cluster.region("westus")
            for index in range(1, replicas):
                self.extra.append(Region(name="eastus", port=free_port(), data=first.data,
                                         log=self.root / f"eastus-{index}.log", metadata_url=first.metadata_url,
                                         env=dict(first.env)))
            self.east = [first, *self.extra]
            # The deployment's address of eastus balances over its replicas.
            self.cluster.proxy.target_ports = [replica.port for replica in self.east]
            for replica in self.east:
                self.cluster.start(replica)
            self.cluster.start(self.west)
        except Exception:
            self.close()
            raise

    @property
    def balancer(self) -> str:
        return f"http://127.0.0.1:{self.cluster.proxy.port}"

    def holder(self) -> Region:
        return wait_until(lambda: next((r for r in self.east if r.process and r.process.poll() is None
                                        and holds_duties(r)), None), 20, "a replica of eastus to hold the duties")

    def start(self, replica: Region):
        self.cluster.start(replica)

    def close(self):
        for replica in self.extra:
            try:
                self.cluster.stop(replica)
            except AssertionError:
                pass
        if self.cluster is not None:
            self.cluster.close()
        self.etcd.stop()
        _psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def logs(self) -> str:
        parts = []
        for index, replica in enumerate(self.east):
            parts.append(f"--- eastus replica {index} ---\n{self.cluster.log_tail(replica, 60)}")
        parts.append(f"--- westus ---\n{self.cluster.log_tail(self.west, 60)}")
        return "\n".join(parts)


@pytest.fixture
def replicated(tmp_path):
    deployment = Replicated(tmp_path, replicas=3)
    yield deployment
    deployment.close()


def test_every_replica_serves_reads_and_writes_and_one_holds_the_duties(replicated):
    east = replicated.east
    documents = [status(replica.url) for replica in east]
    assert all(document["accepting_writes"] for document in documents), documents
    holders = [document["replica"]["id"] for document in documents if document["replica"]["holds_duties"]]
    assert len(holders) == 1, documents
    # Every replica names the same holder and the same epoch.
    assert {document["duty_holder"]["replica"] for document in documents} == set(holders)
    assert len({document["epoch"] for document in documents}) == 1
    # A write through each replica is read through every other one.
    experiment = client(east[0].url).create_experiment(f"replicas-{uuid.uuid4().hex[:8]}")
    run_id = client(east[0].url).create_run(experiment).info.run_id
    for index, replica in enumerate(east):
        client(replica.url).log_param(run_id, f"p{index}", str(index))
    for replica in east:
        params = client(replica.url).get_run(run_id).data.params
        assert params == {f"p{index}": str(index) for index in range(len(east))}
    # The secondary region applies them, whichever replica wrote them.
    replicated.cluster.wait_caught_up_with(replicated.west, east[0])
    assert client(replicated.west.url).get_run(run_id).data.params == {
        f"p{index}": str(index) for index in range(len(east))}
    # A synchronous write through a replica that does not serve the
    # secondary's stream is acknowledged: the confirmation is shared.
    model = f"model-{uuid.uuid4().hex[:8]}"
    for replica in east:
        client(replica.url).create_registered_model(f"{model}-{replica.port}")
    # The secondary's replica refuses writes with the primary's address.
    refused = requests.post(f"{replicated.west.url}/api/2.0/mlflow/experiments/create",
                            json={"name": "nope"}, timeout=10)
    assert refused.status_code == 403, refused.text
    assert "send writes to the primary region 'eastus'" in refused.text


def test_kill_9_of_the_duty_holder_and_of_another_replica_loses_nothing(replicated):
    east, west = replicated.east, replicated.west
    setup = client(replicated.balancer)
    experiment = setup.create_experiment(f"replicas-{uuid.uuid4().hex[:8]}")
    run_id = setup.create_run(experiment).info.run_id
    model = f"model-{uuid.uuid4().hex[:8]}"
    setup.create_registered_model(model)
    epoch_before = status(east[0].url)["epoch"]
    with Writer(replicated.balancer, run_id, model) as writer:
        writer.wait_for_progress()
        holder = replicated.holder()
        replicated.cluster.stop(holder, hard=True)
        killed_at = time.monotonic()
        survivors = [replica for replica in east if replica is not holder]
        new_holder = wait_until(lambda: next((r for r in survivors if holds_duties(r)), None), 15,
                                "another replica to take the duties")
        wait_until(lambda: (status(new_holder.url) or {}).get("accepting_writes"), 15,
                   "the new holder to accept writes")
        taken_over = time.monotonic() - killed_at
        writer.wait_for_progress()
        # Now a replica that does not hold the duties.
        other = next(replica for replica in survivors if replica is not new_holder)
        replicated.cluster.stop(other, hard=True)
        writer.wait_for_progress()
        # The killed ones come back as replicas and serve again.
        replicated.start(holder)
        replicated.start(other)
        writer.wait_for_progress()
    assert taken_over < 10, f"the duties were taken over after {taken_over:.1f} s"
    assert holds_duties(new_holder), "the duties moved again without a reason"
    # The lease was resumed under a new epoch by the new holder.
    document = status(new_holder.url)
    assert document["epoch"] > epoch_before, document["epochs"]
    assert document["epochs"][-1]["primary"] == "eastus"
    # Every acknowledged write is in eastus, through any replica, and in
    # westus, which kept following through the balancer.
    replicated.cluster.wait_caught_up_with(west, new_holder)
    for url in [replica.url for replica in east] + [west.url]:
        reader = client(url)
        points = {int(point.step) for point in reader.get_metric_history(run_id, "m")}
        lost = sorted(set(writer.metrics) - points)
        assert not lost, f"{url}: acknowledged metric points lost: {lost[:20]}\n{replicated.logs()}"
        tags = reader.get_registered_model(model).tags
        lost_tags = [key for key in writer.tags if key not in tags]
        assert not lost_tags, f"{url}: acknowledged synchronous tags lost: {lost_tags[:20]}"
    # Connections to a killed replica were cut; nothing else failed.
    assert writer.count() > 40, writer.count()
    assert len(writer.failures) <= 6, writer.failures


def test_planned_failover_with_replicas_on_both_sides_loses_nothing(tmp_path):
    """Both regions on PostgreSQL with two replicas each: `tandem failover`
    sent to a replica that does not hold the duties is carried out by the
    one that does, the hand-over stops every replica's writes before it
    reads the head it hands over, and every acknowledged write is there."""
    binary = _tandem_bin()
    root = tmp_path / "deployment"
    root.mkdir()
    databases = {name: f"tandem_replicas_{uuid.uuid4().hex[:10]}" for name in ("eastus", "westus")}
    for database in databases.values():
        _psql(f"CREATE DATABASE {database}")
    etcd = Etcd(root)
    etcd.start()
    cluster = None
    extra: dict[str, Region] = {}
    try:
        cluster = make_cluster(binary, root, classes=CLASSES, witness=etcd, witness_settings=WITNESS,
                               failover='grace_period = "1s"', proxy_all=True,
                               metadata_urls={name: _database_url(db) for name, db in databases.items()},
                               start=False)
        for name in ("eastus", "westus"):
            first = cluster.region(name)
            extra[name] = Region(name=name, port=free_port(), data=first.data, log=root / f"{name}-b.log",
                                 metadata_url=first.metadata_url, env=dict(first.env))
            cluster.proxies[name].target_ports = [first.port, extra[name].port]
        for name in ("eastus", "westus"):
            cluster.start(cluster.region(name))
            cluster.start(extra[name])
        east = [cluster.region("eastus"), extra["eastus"]]
        west = [cluster.region("westus"), extra["westus"]]
        east_url = f"http://127.0.0.1:{cluster.proxies['eastus'].port}"
        setup = client(east_url)
        experiment = setup.create_experiment(f"replicas-{uuid.uuid4().hex[:8]}")
        run_id = setup.create_run(experiment).info.run_id
        model = f"model-{uuid.uuid4().hex[:8]}"
        setup.create_registered_model(model)
        with Writer(east_url, run_id, model) as writer:
            writer.wait_for_progress()
            # Sent to the replica of eastus that does not hold the duties.
            not_holder = next(replica for replica in east if not holds_duties(replica))
            answer = subprocess_failover(binary, not_holder.url)
            assert answer["planned"] and answer["zero_loss"], answer
            assert answer["to"] == "westus"
            # Every replica of eastus refuses writes now, naming westus.
            for replica in east:
                wait_until(lambda: not (status(replica.url) or {}).get("accepting_writes", True), 10,
                           "eastus's replicas to stop accepting writes")
        # Every replica of westus accepts writes, all in the new epoch.
        for replica in west:
            wait_until(lambda: (status(replica.url) or {}).get("accepting_writes"), 15,
                       "westus's replicas to accept writes")
        west_client = client(west[1].url)
        west_client.log_metric(run_id, "after", 1.0)
        refused = requests.post(f"{east[0].url}/api/2.0/mlflow/runs/log-metric",
                                json={"run_id": run_id, "key": "late", "value": 1, "timestamp": 1, "step": 0},
                                timeout=10)
        assert refused.status_code != 200 and "westus" in refused.text, refused.text
        for url in [replica.url for replica in west]:
            reader = client(url)
            points = {int(point.step) for point in reader.get_metric_history(run_id, "m")}
            lost = sorted(set(writer.metrics) - points)
            assert not lost, f"{url}: acknowledged metric points lost: {lost[:20]}"
            tags = reader.get_registered_model(model).tags
            assert all(key in tags for key in writer.tags)
    finally:
        for replica in extra.values():
            try:
                cluster.stop(replica)
            except AssertionError:
                pass
        if cluster is not None:
            cluster.close()
        etcd.stop()
        for database in databases.values():
            _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def subprocess_failover(binary: str, url: str) -> dict:
    """`tandem failover --to westus` sent to `url`, its JSON report."""
    result = subprocess.run([binary, "failover", "--to", "westus", "--url", url, "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def test_tandem_up_runs_three_replicas_per_region_and_survives_the_loss_of_the_duty_holder(tmp_path, monkeypatch):
    """`tandem up --replicas 3` on the local PostgreSQL: three replicas per
    region behind the gateway, which balances across them; `tandem status`
    lists them; a `kill -9` of the replica holding eastus's duties, then of
    another one, costs the mlflow client nothing (the gateway and the
    client's retries absorb it), `up` starts each again, and westus holds
    every acknowledged write."""
    from test_up import Up

    # The client as users run it: it retries a 503 (the suite turns that
    # off elsewhere). A write in flight at the replica killed is answered
    # 503 by the gateway, which cannot know whether it was applied; the
    # client sends it again (a metric point may then be logged twice).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

    directory = tmp_path / "up"
    deployment = Up(directory, "--replicas", "3")
    databases = []
    try:
        for region in ("eastus", "westus"):
            url = (directory / region / "metadata.url").read_text().strip()
            databases.append(url.rsplit("/", 1)[1])
        names = [part["name"] for part in deployment.file()["parts"]]
        assert names == ["witness", "eastus-1", "eastus-2", "eastus-3",
                         "westus-1", "westus-2", "westus-3", "gateway"], names
        assert deployment.primary() == "eastus"
        headers = deployment.headers

        seen = {}

        def view(part: str) -> dict:
            url = deployment.part(part)["url"]
            answer = requests.get(f"{url}/api/tandem/v1/regions", headers=headers, timeout=5)
            seen[part] = answer.text[:2000]
            # westus knows the admin's token once the access class has
            # replicated there: until then it answers 401.
            return answer.json() if answer.status_code == 200 else {}

        # Each region: three replicas alive, one holding the duties.
        for region in ("eastus", "westus"):
            try:
                wait_until(lambda: len(replicas := view(f"{region}-1").get("replicas", [])) == 3
                           and sum(replica["holds_duties"] for replica in replicas) == 1, 20,
                           f"{region}'s three replicas to be listed, one holding the duties")
            except AssertionError as error:
                raise AssertionError(f"{error}: {seen}") from None
        table = subprocess.run([_tandem_bin(), "status", "--url", deployment.tracking_uri],
                               capture_output=True, text=True, timeout=30)
        assert table.returncode == 0, table.stderr
        assert "REPLICAS OF eastus" in table.stdout and "holds" in table.stdout, table.stdout
        # The gateway spreads requests over eastus's replicas.
        def east_replicas_healthy():
            east = next(region for region in deployment.gateway_status()["regions"] if region["name"] == "eastus")
            return [replica["healthy"] for replica in east["replicas"]] == [True, True, True]

        wait_until(east_replicas_healthy, 20, "the gateway to see eastus's three replicas ready")

        writer = client(deployment.tracking_uri)
        run_id = writer.create_run(writer.create_experiment(f"up-{uuid.uuid4().hex[:8]}")).info.run_id
        acknowledged, failures = [], []
        step = 0

        def write(count: int):
            nonlocal step
            for _ in range(count):
                try:
                    writer.log_metric(run_id, "loss", float(step), step=step)
                    acknowledged.append(step)
                except mlflow.exceptions.MlflowException as error:
                    failures.append(str(error)[:300])
                step += 1

        write(20)
        holder = next(f"eastus-{index}" for index in (1, 2, 3)
                      if view(f"eastus-{index}").get("replica", {}).get("holds_duties"))
        killed = deployment.part(holder)
        os.kill(killed["pid"], signal.SIGKILL)
        write(60)
        assert not failures, failures
        # Another replica took the duties; `up` started the killed one again.
        wait_until(lambda: any(view(f"eastus-{index}").get("replica", {}).get("holds_duties")
                               for index in (1, 2, 3) if f"eastus-{index}" != holder), 20,
                   "another replica of eastus to hold the duties")
        restarted = wait_until(lambda: (part := deployment.part(holder))["state"] == "running"
                               and part["pid"] != killed["pid"] and part, 60, f"{holder} to be started again")
        assert restarted["restarts"] == 1, restarted
        write(20)
        assert not failures, failures
        # Then one that does not hold the duties.
        other = next(f"eastus-{index}" for index in (1, 2, 3)
                     if f"eastus-{index}" != holder and not view(f"eastus-{index}").get("replica", {}).get("holds_duties"))
        victim = deployment.part(other)
        os.kill(victim["pid"], signal.SIGKILL)
        write(40)
        assert not failures, failures
        wait_until(lambda: (part := deployment.part(other))["state"] == "running"
                   and part["pid"] != victim["pid"], 60, f"{other} to be started again")
        west = client(deployment.part("westus-2")["url"])
        wait_until(lambda: {int(m.step) for m in west.get_metric_history(run_id, "loss")} >= set(acknowledged), 30,
                   "every acknowledged write at westus")
        deployment.stop()
    finally:
        deployment.close()
        for database in databases:
            _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
