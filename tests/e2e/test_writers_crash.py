"""Many writers at once, then `kill -9` (issue 17: "64 concurrent clients
logging metrics, params and tags, durably: nothing acknowledged is lost on
kill -9, and no writer starved"). Concurrent writes share commits (group
commit); a write is answered only once the commit that holds it is durable,
so every write a client saw acknowledged must be there after the crash."""

import signal
import threading
import uuid

import pytest
import requests

from conftest import BACKENDS, _database_url, _psql, _start, _stop, _tandem_bin
from support import journal

WRITERS = 64
# Enough acknowledged writes that many commits were shared, few enough to
# stay quick on two cores.
KILL_AFTER = 3000
WRITE_BOUND_S = 60


def _api(session, url: str, route: str, body: dict) -> requests.Response:
    return session.post(f"{url}/api/2.0/mlflow/{route}", json=body, timeout=30)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_acknowledged_is_lost_when_the_server_is_killed_under_64_writers(backend, tmp_path, monkeypatch):
    # Durable commits, as deployed: the suite's other servers relax them.
    monkeypatch.setenv("TANDEM_SQLITE_SYNCHRONOUS", "FULL")
    database = None
    metadata_url = None
    if backend == "postgres":
        database = f"tandem_e2e_crash_{uuid.uuid4().hex[:12]}"
        _psql(f'CREATE DATABASE "{database}"')
        metadata_url = _database_url(database)
    server = _start(_tandem_bin(), backend, tmp_path / "data", tmp_path / "server.log", metadata_url)
    restarted = None
    try:
        setup = requests.Session()
        experiment = _api(setup, server.url, "experiments/create", {"name": "crash"}).json()["experiment_id"]
        runs = [
            _api(setup, server.url, "runs/create", {"experiment_id": experiment, "run_name": f"w{i}"}).json()[
                "run"
            ]["info"]["run_id"]
            for i in range(WRITERS)
        ]
        # What each writer saw acknowledged: metric steps, param keys, the
        # last tag value.
        acked = [{"steps": [], "params": [], "tag": -1} for _ in range(WRITERS)]
        total = [0]
        lock = threading.Lock()
        stop = threading.Event()
        enough = threading.Event()

        def writer(index: int) -> None:
            session = requests.Session()
            run_id = runs[index]
            n = 0
            while not stop.is_set():
                kind = n % 3
                if kind == 0:
                    route, body = "runs/log-metric", {
                        "run_id": run_id, "key": "loss", "value": 1.0 / (n + 1), "timestamp": n, "step": n}
                elif kind == 1:
                    route, body = "runs/log-parameter", {"run_id": run_id, "key": f"p{n}", "value": str(n)}
                else:
                    route, body = "runs/set-tag", {"run_id": run_id, "key": "phase", "value": str(n)}
                try:
                    answer = _api(session, server.url, route, body)
                except requests.RequestException:
                    return  # the server is gone
                if answer.status_code != 200:
                    return
                record = acked[index]
                if kind == 0:
                    record["steps"].append(n)
                elif kind == 1:
                    record["params"].append(f"p{n}")
                else:
                    record["tag"] = n
                with lock:
                    total[0] += 1
                    if total[0] >= KILL_AFTER:
                        enough.set()
                n += 1

        threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        assert enough.wait(WRITE_BOUND_S), f"only {total[0]} writes acknowledged in {WRITE_BOUND_S}s"
        # Mid-flight: requests are in every stage (queued, in a shared
        # transaction, committing, answered).
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

        # No writer starved: each got writes through beside 63 others.
        assert min(len(r["steps"]) + len(r["params"]) for r in acked) > 0, [
            len(r["steps"]) + len(r["params"]) for r in acked]

        restarted = _start(_tandem_bin(), backend, tmp_path / "data", tmp_path / "server.log", metadata_url)
        reader = requests.Session()
        for index, run_id in enumerate(runs):
            record = acked[index]
            run = reader.get(f"{restarted.url}/api/2.0/mlflow/runs/get", params={"run_id": run_id},
                             timeout=30).json()["run"]
            params = {p["key"] for p in run["data"].get("params", [])}
            missing = [key for key in record["params"] if key not in params]
            assert not missing, f"run {index}: acknowledged params lost: {missing[:5]}"
            history = reader.get(f"{restarted.url}/api/2.0/mlflow/metrics/get-history",
                                 params={"run_id": run_id, "metric_key": "loss"}, timeout=30).json()
            steps = {m["step"] for m in history.get("metrics", [])}
            lost = [step for step in record["steps"] if step not in steps]
            assert not lost, f"run {index}: acknowledged metric steps lost: {lost[:5]}"
            if record["tag"] >= 0:
                tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
                # A later write may have committed unanswered; never an older one.
                assert int(tags["phase"]) >= record["tag"], f"run {index}: tag went back"
        # The store takes writes again, and numbers them on after the crash.
        answer = _api(reader, restarted.url, "runs/log-metric",
                      {"run_id": runs[0], "key": "after", "value": 1.0, "timestamp": 0, "step": 0})
        assert answer.status_code == 200, answer.text
        # Gap-free and in commit order across shared commits, a crash and
        # the writes that failed with it.
        seqs = [record["seq"] for record in journal(restarted.url)]
        assert seqs == list(range(1, len(seqs) + 1)), "the journal has a gap or a repeat"
        assert len(seqs) >= KILL_AFTER
    finally:
        for running in (server, restarted):
            if running is not None:
                _stop(running.process)
        if database is not None:
            _psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
