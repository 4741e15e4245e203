"""Multi-region deployments of real `tandem server` processes for the
replication tests, and a fault proxy that can cut and heal the link between
a secondary and its primary.

Each region is its own process with its own data directory and port, joined
by a deployment file written here. The primary's address in the deployment
is a proxy in front of it, so a test can partition the secondaries from the
primary while clients keep talking to the primary directly.
"""

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests


def status(url: str) -> dict | None:
    """A region's view of the deployment, or None if it does not answer."""
    try:
        return requests.get(f"{url}/api/tandem/v1/regions", timeout=2).json()
    except (requests.RequestException, ValueError):
        return None


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    """The first truthy value of `condition()`, polled for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# Ports below Linux's ephemeral range (32768-60999 by default): a region
# restarted on its port must find it free, and a port the kernel hands out
# for bind(0) can meanwhile become the source port of any outgoing
# connection (that race failed a failover test once).
_PORTS = range(20000, 32768)


def free_port() -> int:
    for _ in range(200):
        port = random.choice(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range after 200 tries")


class FaultProxy:
    """A TCP proxy on loopback. `cut()` drops every connection and refuses
    new ones (a partition); `heal()` lets traffic through again.

    With several targets it is also a load balancer, as a user would put in
    front of a region's replicas: each connection goes to the next target
    in turn, and to the one after when that one refuses to connect (a
    replica that died)."""

    def __init__(self, target_port: int, *more_targets: int):
        self.target_ports = [target_port, *more_targets]
        self._next = 0
        self.port = free_port()
        self._open = True
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._connect()
            if upstream is None:
                client.close()
                continue
            # Checked and registered under the lock `cut()` takes: a
            # connection accepted while a cut is under way is refused, never
            # left open behind it (the partition would leak).
            with self._lock:
                admitted = self._open
                if admitted:
                    self._connections += [client, upstream]
            if not admitted:
                client.close()
                upstream.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        """A connection to the next target that accepts one, if any does."""
        targets = list(self.target_ports)
        for attempt in range(len(targets)):
            port = targets[(self._next + attempt) % len(targets)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                continue
            self._next = (self._next + attempt + 1) % len(targets)
            upstream.settimeout(None)
            return upstream
        return None

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        with self._lock:
            self._open = False
            connections, self._connections = self._connections, []
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def heal(self):
        self._open = True

    def close(self):
        self._stopped = True
        self.cut()
        self._listener.close()


@dataclass
class Region:
    name: str
    port: int
    data: Path
    log: Path
    metadata_url: str | None = None
    process: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)
    # A deployment file of this region's own instead of the cluster's (a
    # region whose file differs, e.g. in its secret).
    deployment: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    binary: str
    root: Path
    regions: list[Region]
    deployment: Path
    proxy: FaultProxy
    env: dict = field(default_factory=dict)
    # With `proxy_all`, every region's address in the deployment is a proxy
    # (by region name), so links can be cut in both directions.
    proxies: dict = field(default_factory=dict)
    # With a witness: each region reaches it through its own fault proxy.
    witness_proxies: dict = field(default_factory=dict)

    def cut_all(self):
        for proxy in self.proxies.values():
            proxy.cut()

    def heal_all(self):
        for proxy in self.proxies.values():
            proxy.heal()

    def region(self, name: str) -> Region:
        return next(region for region in self.regions if region.name == name)

    @property
    def primary(self) -> Region:
        return self.regions[0]

    @property
    def secondaries(self) -> list[Region]:
        return self.regions[1:]

    def start(self, region: Region, ready: bool = True):
        """Starts `region` and waits until it is ready to serve its role
        (`/ready`: a secondary has caught up with its primary), or only until
        it answers at all (`/health`) when `ready` is False."""
        arguments = [
            self.binary, "server",
            "--deployment", str(region.deployment or self.deployment),
            "--region", region.name,
            "--data", str(region.data),
            "--listen", f"127.0.0.1:{region.port}",
        ]
        if region.metadata_url:
            arguments += ["--metadata-url", region.metadata_url]
        log = open(region.log, "ab")
        region.process = subprocess.Popen(
            arguments, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env, **region.env}
        )
        path = "/ready" if ready else "/health"
        deadline = time.monotonic() + 30
        answer = "no answer"
        while time.monotonic() < deadline:
            if region.process.poll() is not None:
                raise RuntimeError(f"{region.name} exited at start-up:\n{self.log_tail(region)}")
            try:
                response = requests.get(f"{region.url}{path}", timeout=1)
                if response.status_code == 200:
                    return
                answer = response.text
            except requests.RequestException as error:
                answer = str(error)
            time.sleep(0.05)
        raise RuntimeError(f"{region.name} did not answer {path} with 200 ({answer}):\n{self.log_tail(region)}")

    def stop(self, region: Region, hard: bool = False):
        process = region.process
        if process is None or process.poll() is not None:
            return
        if hard:
            process.kill()
        else:
            process.send_signal(signal.SIGCONT)
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            raise AssertionError(f"{region.name} did not shut down gracefully within 10s:\n{self.log_tail(region)}")
        if not hard and process.returncode != 0:
            raise AssertionError(f"{region.name} exited with {process.returncode}:\n{self.log_tail(region)}")

    def pause(self, region: Region):
        region.process.send_signal(signal.SIGSTOP)

    def resume(self, region: Region):
        region.process.send_signal(signal.SIGCONT)

    def status(self, region: Region | None = None) -> dict:
        return requests.get(f"{(region or self.primary).url}/api/tandem/v1/regions", timeout=5).json()

    def ready(self, region: Region) -> dict | None:
        """`region`'s /ready document when it is ready, else None."""
        try:
            response = requests.get(f"{region.url}/ready", timeout=2)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_caught_up_with(self, region: Region, source: Region, timeout: float = 30.0):
        """Until `region` follows `source` and has applied its whole journal
        (as `source` reports its head now)."""
        head = self.status(source)["journal_head"]

        def applied():
            document = status(region.url) or {}
            this = next((r for r in document.get("regions", []) if r.get("this_region")), {})
            return any(f["source"] == source.name and f["applied"] >= head for f in this.get("following", []))

        try:
            wait_until(applied, timeout, f"{region.name} to apply {source.name}'s journal up to {head}")
        except AssertionError as error:
            # What the follower says of itself (its last error above all) and
            # the logs' ends: a stall here must be diagnosable from CI output.
            document = status(region.url) or {}
            this = next((r for r in document.get("regions", []) if r.get("this_region")), {})
            raise AssertionError(
                f"{error}\n{region.name} follows: {json.dumps(this.get('following'), indent=1)}\n"
                f"{region.name} role {document.get('role')}, primary {document.get('primary')}, "
                f"epoch {document.get('epoch')}, head {document.get('journal_head')}\n"
                f"--- {region.name} log ---\n{self.log_tail(region)}\n--- {source.name} log ---\n{self.log_tail(source)}"
            ) from None

    def wait_caught_up(self, timeout: float = 30.0):
        """Until every secondary has applied the primary's whole journal."""
        head = self.status()["journal_head"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            caught_up = all(
                self.status(region)["regions"][index + 1].get("applied", -1) >= head
                for index, region in enumerate(self.secondaries)
            )
            if caught_up:
                return
            time.sleep(0.05)
        raise AssertionError(f"secondaries did not catch up to {head}: {json.dumps(self.status(), indent=1)}")

    def log_tail(self, region: Region, lines: int = 40) -> str:
        try:
            return "\n".join(region.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def failure_logs(self, lines: int = 60) -> list[tuple[str, str]]:
        """Each region's last log lines, for a failing test's report."""
        return [(f"{region.name} log, last {lines} lines", self.log_tail(region, lines)) for region in self.regions]

    def close(self):
        problems = []
        for region in self.regions:
            if region.process is not None and region.process.poll() is None:
                region.process.send_signal(signal.SIGCONT)
        for region in self.regions:
            try:
                self.stop(region)
            except AssertionError as problem:
                problems.append(str(problem))
        for proxy in {id(p): p for p in [self.proxy, *self.proxies.values(), *self.witness_proxies.values()]}.values():
            proxy.close()
        assert not problems, "\n".join(problems)


def make_cluster(binary: str, root: Path, regions: int = 2, classes: str = "", secret: str = "s3cret",
                 metadata_urls: dict | None = None, env: dict | None = None, proxy_all: bool = False,
                 witness: "Etcd | None" = None, witness_settings: str = "", failover: str = "",
                 start: bool = True) -> Cluster:
    """A deployment of `regions` regions, each started and ready in turn
    (unless `start` is False: then the test starts them)."""
    names = ["eastus", "westus", "centralus"][:regions]
    members = []
    for name in names:
        members.append(Region(name=name, port=free_port(), data=root / name, log=root / f"{name}.log",
                              metadata_url=(metadata_urls or {}).get(name)))
    proxy = FaultProxy(members[0].port)
    proxies = {members[0].name: proxy}
    if proxy_all:
        proxies.update({member.name: FaultProxy(member.port) for member in members[1:]})
    text = f'name = "test"\nprimary = "eastus"\nreplication_secret = "{secret}"\n'
    for member in members:
        # Regions reach each other through the fault proxies (the primary
        # always; every region with `proxy_all`).
        port = proxies[member.name].port if member.name in proxies else member.port
        text += f'\n[[regions]]\nname = "{member.name}"\nurl = "http://127.0.0.1:{port}"\n'
    text += "\n" + classes
    witness_proxies = {}
    if witness is not None:
        text += f'\n[witness]\nkind = "etcd"\nendpoints = ["{witness.url}"]\n{witness_settings}\n'
        for member in members:
            witness_proxies[member.name] = FaultProxy(witness.port)
            member.env["TANDEM_WITNESS_ENDPOINTS"] = f"http://127.0.0.1:{witness_proxies[member.name].port}"
    if failover:
        text += f"\n[failover]\n{failover}\n"
    deployment = root / "deployment.toml"
    deployment.write_text(text)
    cluster = Cluster(binary=binary, root=root, regions=members, deployment=deployment, proxy=proxy,
                      env=env or {}, proxies=proxies, witness_proxies=witness_proxies)
    try:
        for member in members if start else []:
            cluster.start(member)
    except Exception:
        cluster.close()
        raise
    return cluster


@dataclass
class Gateway:
    """A `tandem gateway` process in front of a deployment's regions."""

    process: subprocess.Popen
    port: int
    log: Path
    # Credentials of an operator, for the gateway's own status where the
    # regions require authentication.
    headers: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict:
        return requests.get(f"{self.url}/gateway/status", timeout=5, headers=self.headers).json()

    def wait_for_primary(self, primary: str | None, timeout: float = 20.0) -> dict:
        """Until the gateway names `primary` as the primary (None: no primary)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if (status["primary"] or {}).get("region") == primary:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway never saw primary {primary!r}: {json.dumps(status, indent=1)}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM, then the exit code (it must stop gracefully within 10s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
                raise AssertionError(f"the gateway did not shut down within 10s:\n{self.log_tail()}")
        return self.process.returncode


def start_gateway(binary: str, deployment: Path, log: Path, failover_wait: str = "15s",
                  env: dict | None = None) -> Gateway:
    """Starts `tandem gateway` for `deployment` on a free port and waits until
    it answers and knows a primary."""
    port = free_port()
    handle = open(log, "ab")
    try:
        process = subprocess.Popen(
            [binary, "gateway", "--deployment", str(deployment), "--listen", f"127.0.0.1:{port}",
             "--poll-interval", "200ms", "--failover-wait", failover_wait],
            stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    finally:
        handle.close()
    gateway = Gateway(process=process, port=port, log=log)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited at start-up:\n{gateway.log_tail()}")
        try:
            # Ready: it knows a primary (callers wait for the one they expect).
            if requests.get(f"{gateway.url}/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            gateway.stop()
            raise RuntimeError(f"the gateway did not start:\n{gateway.log_tail()}")
        time.sleep(0.05)
    return gateway


class Etcd:
    """A real etcd (Debian's etcd-server) on loopback, the witness of the
    failover tests. `kill()` and `start()` again keep its data."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.peer_port = free_port()
        self.data = root / "etcd"
        self.log = root / "etcd.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        peer = f"http://127.0.0.1:{self.peer_port}"
        handle = open(self.log, "ab")
        try:
            self.process = subprocess.Popen(
                ["etcd", "--name", "witness", "--data-dir", str(self.data),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"witness={peer}"],
                stdout=handle, stderr=subprocess.STDOUT,
            )
        finally:
            handle.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited at start-up:\n{self.log.read_text(errors='replace')[-2000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).json().get("health") == "true":
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("etcd did not become healthy")

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
