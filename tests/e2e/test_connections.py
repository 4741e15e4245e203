"""Connections cannot exhaust the server: a head sent slowly, a body that
stops, an idle keep-alive connection are closed after their timeouts; past
the connection cap new connections get a 503 while /health keeps
answering; with a low `ulimit -n` the server raises its soft limit and
caps below it, so idle sockets never make accept fail. Each server here is
started with short limits so the suite is quick."""

import os
import resource
import socket
import subprocess
import time

import requests

from cluster import free_port, wait_until
from conftest import _tandem_bin


class Region:
    def __init__(self, tmp_path, env: dict, nofile: int | None = None, hard: int | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tmp_path / "data"
        environment = dict(os.environ, TANDEM_SQLITE_SYNCHRONOUS="NORMAL", **env)

        def limit_files():
            if nofile is not None:
                _, current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard or current_hard))

        self.log = open(tmp_path / "region.log", "ab")
        self.process = subprocess.Popen(
            [_tandem_bin(), "server", "--listen", f"127.0.0.1:{self.port}", "--data", str(self.data)],
            stdout=self.log, stderr=subprocess.STDOUT, env=environment, preexec_fn=limit_files)
        wait_until(self.ready, 30, "the region to be ready")

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed `sock` (reads EOF or a reset)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_slow_heads_stalled_bodies_and_idle_connections_are_closed(tmp_path):
    region = Region(tmp_path, {"TANDEM_HEADER_TIMEOUT_MS": "1500", "TANDEM_BODY_TIMEOUT_MS": "1500"})
    try:
        # Slowloris: a head that never ends.
        slow = region.connect()
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        slow.sendall(b"X-Slow: 1\r\n")
        assert closed_within(slow, 10) < 5

        # A declared 10 GB body with one byte sent.
        stalled = region.connect()
        stalled.sendall(b"PUT /api/tandem/v1/workspaces/default/files/big.bin HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Length: 10000000000\r\n\r\nx")
        assert closed_within(stalled, 10) < 5
        listed = requests.get(f"{region.url}/api/tandem/v1/workspaces/default/files", timeout=10).json()
        assert listed["files"] == [], "nothing of the stalled upload is kept"

        # An idle keep-alive connection after a request.
        idle = region.connect()
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in idle.recv(65536)
        assert closed_within(idle, 10) < 5
        metrics = requests.get(f"{region.url}/metrics", timeout=10).text
        assert 'tandem_http_connections_closed_total{service="region",reason="timeout"}' in metrics
    finally:
        region.stop()


def test_past_the_cap_connections_get_503_and_health_still_answers(tmp_path):
    region = Region(tmp_path, {"TANDEM_MAX_CONNECTIONS": "50", "TANDEM_HEADER_TIMEOUT_MS": "60000"})
    held = []
    try:
        held = [region.connect() for _ in range(50)]
        # The cap is reached once the server accepted them all. Until then
        # an extra connection is one of the 50 (the server waits for its
        # request: no answer within a second), and is closed for the next try.
        def refused() -> bool:
            extra = region.connect()
            extra.settimeout(1)
            try:
                return extra.recv(4096).startswith(b"HTTP/1.1 503")
            except TimeoutError:
                replace_refused_held()
                return False
            finally:
                extra.close()

        # An extra accepted before every held one was lets the server refuse
        # a held one in its place (503, closed): held again, or the cap is
        # never reached once the extra closes.
        def replace_refused_held() -> None:
            for index, sock in enumerate(held):
                sock.setblocking(False)
                try:
                    sock.recv(1, socket.MSG_PEEK)
                except BlockingIOError:
                    continue  # accepted, waiting for its request
                finally:
                    sock.setblocking(True)
                sock.close()
                held[index] = region.connect()
        wait_until(refused, 20, "a connection past the cap to be refused with 503")
        metrics_before = None
        for sock in held:
            sock.close()
        held = []
        wait_until(region.ready, 20, "/ready to answer once connections are released")
        assert requests.get(f"{region.url}/health", timeout=5).status_code == 200
        metrics_before = requests.get(f"{region.url}/metrics", timeout=10).text
        assert 'tandem_http_connections_refused_total{service="region"}' in metrics_before
    finally:
        for sock in held:
            sock.close()
        region.stop()


def test_a_low_fd_limit_is_raised_and_idle_sockets_never_block_accept(tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    region = Region(tmp_path, {"TANDEM_HEADER_TIMEOUT_MS": "60000"}, nofile=256)
    sockets = []
    try:
        limits = open(f"/proc/{region.process.pid}/limits").read()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3] == str(hard), line  # soft raised to hard
        # More idle sockets than the limit it was started with.
        sockets = [region.connect() for _ in range(400)]
        assert requests.get(f"{region.url}/health", timeout=5).status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        region.stop()


def test_a_cap_above_the_fd_limit_is_lowered_so_accept_never_fails(tmp_path):
    """With a hard fd limit of 300 the default cap (10,000) is fitted under
    it: 250 idle sockets fill it, and the next connection gets a prompt
    503 instead of an accept that fails and a client that hangs."""
    region = Region(tmp_path, {"TANDEM_HEADER_TIMEOUT_MS": "60000"}, nofile=300, hard=300)
    sockets = []
    try:
        sockets = [region.connect() for _ in range(250)]
        # A connect() can return before the server accepted it (a busy
        # machine's full accept queue drops the handshake's last ACK and the
        # server takes it later), so /health may overtake some of the 250:
        # ask until the server holds its cap, each answer prompt.
        deadline = time.monotonic() + 20
        while True:
            started = time.monotonic()
            response = requests.get(f"{region.url}/health", timeout=5)
            assert time.monotonic() - started < 2, "an answer that was not prompt"
            if response.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert response.status_code == 503, response.text
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        for sock in sockets:
            sock.close()
        sockets = []
        wait_until(region.ready, 20, "/ready once the idle sockets are gone")
        assert "lowering it" in (tmp_path / "region.log").read_text()
    finally:
        for sock in sockets:
            sock.close()
        region.stop()


def test_the_gateway_and_the_witness_close_slow_heads_and_refuse_past_their_cap(tmp_path):
    """The gateway and the embedded witness serve through the same limits."""
    from cluster import make_cluster, start_gateway

    limits = {"TANDEM_HEADER_TIMEOUT_MS": "1500", "TANDEM_MAX_CONNECTIONS": "20"}
    (tmp_path / "deployment").mkdir()
    cluster = make_cluster(_tandem_bin(), tmp_path / "deployment", regions=2)
    gateway = witness = None
    witness_port = free_port()
    witness_log = open(tmp_path / "witness.log", "ab")
    held = []
    try:
        gateway = start_gateway(_tandem_bin(), cluster.deployment, tmp_path / "gateway.log", env=limits)
        witness = subprocess.Popen([_tandem_bin(), "witness", "--listen", f"127.0.0.1:{witness_port}",
                                    "--data", str(tmp_path / "witness")],
                                   stdout=witness_log, stderr=subprocess.STDOUT, env=dict(os.environ, **limits))
        def witness_ready() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{witness_port}/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_until(witness_ready, 30, "the witness to be ready")
        for port in (gateway.port, witness_port):
            slow = socket.create_connection(("127.0.0.1", port), timeout=10)
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
            assert closed_within(slow, 10) < 5, port
            held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]

            def refused() -> bool:
                extra = socket.create_connection(("127.0.0.1", port), timeout=10)
                try:
                    return extra.recv(4096).startswith(b"HTTP/1.1 503")
                finally:
                    extra.close()
            wait_until(refused, 20, f"a connection past the cap of :{port} to get 503")
            for sock in held:
                sock.close()
            held = []
    finally:
        for sock in held:
            sock.close()
        if witness is not None:
            witness.terminate()
            witness.wait(timeout=20)
        witness_log.close()
        if gateway is not None:
            gateway.stop()
        cluster.close()
