"""`tandem doctor` against real deployments: every region a `tandem server`
process, a real etcd as the witness where the test needs one, the doctor
run as a process and read through `--json` (and once as text).

A healthy deployment passes every check and exits 0; a stopped secondary,
a region with another replication secret, and a region whose deployment
file changed each fail the check that names the problem, with exit 1."""

import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from cluster import Etcd, make_cluster
from conftest import _tandem_bin
from support import unique

# The doctor's own exit codes (see `tandem --help`).
PASSED = 0
FAILED = 1


@pytest.fixture
def tandem_bin() -> str:
    return _tandem_bin()


def doctor(binary: str, url: str, *extra: str) -> tuple[int, dict]:
    """Runs `tandem doctor --json` against `url`; its exit code and report."""
    result = subprocess.run([binary, "doctor", "--json", "--url", url, *extra],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout, f"no report (exit {result.returncode}): {result.stderr}"
    return result.returncode, json.loads(result.stdout)


# The doctor's thresholds of free space (crates/tandem-cli/src/doctor/checks.rs).
FREE_FAIL_BYTES, FREE_FAIL_SHARE = 256 << 20, 0.02
FREE_WARN_BYTES, FREE_WARN_SHARE = 2 << 30, 0.10


def storage_status(path: Path) -> str:
    usage = shutil.disk_usage(path)
    share = usage.free / usage.total if usage.total else 1.0
    if usage.free < FREE_FAIL_BYTES or share < FREE_FAIL_SHARE:
        return "fail"
    if usage.free < FREE_WARN_BYTES or share < FREE_WARN_SHARE:
        return "warn"
    return "pass"


def host_storage_statuses(path: Path) -> set:
    """The storage statuses the host's free space allows now: the status
    measured now, and its neighbours when the free space sits near a
    threshold (within 64 MiB), since the doctor measured a moment earlier."""
    statuses = {storage_status(path)}
    usage = shutil.disk_usage(path)
    for delta in (-(64 << 20), 64 << 20):
        free = max(0, usage.free + delta)
        share = free / usage.total if usage.total else 1.0
        if free < FREE_FAIL_BYTES or share < FREE_FAIL_SHARE:
            statuses.add("fail")
        elif free < FREE_WARN_BYTES or share < FREE_WARN_SHARE:
            statuses.add("warn")
        else:
            statuses.add("pass")
    return statuses


def check(report: dict, name: str) -> dict:
    return next(entry for entry in report["checks"] if entry["name"] == name)


def test_a_healthy_deployment_passes_every_check(tandem_bin, tmp_path):
    etcd = Etcd(tmp_path)
    etcd.start()
    repository = f"file://{tmp_path / 'backups'}"
    cluster = make_cluster(tandem_bin, tmp_path, witness=etcd,
                           classes=f'[classes.tracking]\nlevel = "hot-warm"\nmax_rpo = "30s"\n\n'
                                   f'[backup]\nurl = "{repository}"\n')
    try:
        client = mlflow.MlflowClient(tracking_uri=cluster.primary.url)
        experiment = client.create_experiment(unique("doctor"))
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "loss", 0.5)
        cluster.wait_caught_up()
        created = subprocess.run([tandem_bin, "backup", "create", "--to", repository, "--json",
                                  "--url", cluster.primary.url], capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stderr

        # Never verified: a warning, which does not stop a failover.
        code, report = doctor(tandem_bin, cluster.primary.url)
        allowed = {"storage"} if "fail" in host_storage_statuses(tmp_path) else set()
        assert set(report["failed"]) <= allowed, json.dumps(report, indent=1)
        assert code == (FAILED if report["failed"] else PASSED), json.dumps(report, indent=1)
        assert check(report, "verification")["status"] == "warn", json.dumps(report, indent=1)
        assert "have not been verified" in check(report, "verification")["reason"]
        verified = subprocess.run([tandem_bin, "verify", "--url", cluster.primary.url],
                                  capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0, verified.stdout + verified.stderr

        code, report = doctor(tandem_bin, cluster.primary.url)
        statuses = {entry["name"]: entry["status"] for entry in report["checks"]}
        # Free space is the host's, not the deployment's: a test machine
        # whose disk is nearly full fails the storage check (below 2% or
        # 256 MiB free) and warns below 10% or 2 GiB, exactly as the doctor
        # would on a real one. Measured before and after the doctor ran; at
        # a boundary either neighbouring status is right.
        expected = host_storage_statuses(tmp_path)
        storage = check(report, "storage")
        assert storage["status"] in expected, (expected, storage)
        if storage["status"] == "fail":
            assert code == FAILED and report["failed"] == ["storage"], json.dumps(report, indent=1)
            assert report["failover_ready"] is False and "free" in storage["reason"], storage
        else:
            assert code == PASSED, json.dumps(report, indent=1)
            assert report["failover_ready"] is True and report["failed"] == []
        # TLS does not apply: tandem serves plain HTTP. Everything else passes.
        assert statuses.pop("tls") == "skip", statuses
        assert set(statuses) == {"regions", "witness", "clock-skew", "replication-lag", "storage", "backups",
                                 "deployment-files", "replication-secret", "verification"}
        if statuses.pop("storage") != "pass":
            assert "free" in storage["reason"], storage
        assert set(statuses.values()) == {"pass"}, json.dumps(report["checks"], indent=1)
        assert "eastus (primary), westus (secondary)" in check(report, "regions")["reason"]
        assert "tracking RPO" in check(report, "replication-lag")["reason"]
        assert "accepted eastus → westus, westus → eastus" in check(report, "replication-secret")["reason"]
        assert repository in check(report, "backups")["reason"]
        assert "replicas proven equal" in check(report, "verification")["reason"]
        assert all(region["reachable"] and region["clock_offset_ms"] is not None for region in report["regions"])

        # The same verdict as text, through the other region.
        text = subprocess.run([tandem_bin, "doctor", "--url", cluster.region("westus").url],
                              capture_output=True, text=True, timeout=120)
        assert "PASS  regions" in text.stdout and "SKIP  tls" in text.stdout, text.stdout
        if "FAIL  storage" in text.stdout:
            assert "fail" in host_storage_statuses(tmp_path), text.stdout
            assert text.returncode == FAILED, text.stdout + text.stderr
        else:
            assert text.returncode == PASSED, text.stdout + text.stderr
            assert "A failover would succeed now" in text.stdout, text.stdout
    finally:
        cluster.close()
        etcd.stop()


def test_a_stopped_secondary_fails_the_regions_check(tandem_bin, tmp_path):
    cluster = make_cluster(tandem_bin, tmp_path)
    try:
        westus = cluster.region("westus")
        cluster.stop(westus, hard=True)  # kill -9 of its pid

        code, report = doctor(tandem_bin, cluster.primary.url)
        assert code == FAILED, json.dumps(report, indent=1)
        assert report["failover_ready"] is False
        regions = check(report, "regions")
        assert regions["status"] == "fail", regions
        assert f"westus ({westus.url}) is unreachable" in regions["reason"], regions
        assert regions["fix"], regions
        assert "regions" in report["failed"]
        # eastus says it cannot reach westus either.
        secret = check(report, "replication-secret")
        assert secret["status"] == "fail" and "eastus cannot reach westus" in secret["reason"], secret
        assert [region["reachable"] for region in report["regions"]] == [True, False]

        # From a deployment file, with nothing to ask for the region list.
        code, report = doctor(tandem_bin, westus.url, "--deployment", str(cluster.deployment))
        assert code == FAILED and check(report, "regions")["status"] == "fail", json.dumps(report, indent=1)
    finally:
        cluster.close()


def test_a_region_with_another_replication_secret_fails_the_secret_check(tandem_bin, tmp_path):
    cluster = make_cluster(tandem_bin, tmp_path, start=False)
    try:
        westus = cluster.region("westus")
        own: Path = tmp_path / "westus-deployment.toml"
        own.write_text(cluster.deployment.read_text().replace('replication_secret = "s3cret"',
                                                              'replication_secret = "not-the-same"'))
        westus.deployment = own
        cluster.start(cluster.primary)
        # It cannot follow the primary, so it never becomes ready: alive is enough.
        cluster.start(westus, ready=False)

        code, report = doctor(tandem_bin, cluster.primary.url)
        assert code == FAILED, json.dumps(report, indent=1)
        secret = check(report, "replication-secret")
        assert secret["status"] == "fail", secret
        assert "westus refuses eastus's replication secret" in secret["reason"], secret
        assert "eastus refuses westus's replication secret" in secret["reason"], secret
        assert "replication_secret" in secret["fix"], secret
        # The secret is not part of the definition: the files otherwise agree.
        assert check(report, "deployment-files")["status"] == "pass", check(report, "deployment-files")
    finally:
        cluster.close()


def test_a_deployment_file_changed_in_one_region_fails_the_digest_check(tandem_bin, tmp_path):
    classes = '[classes.tracking]\nlevel = "hot-warm"\nmax_rpo = "30s"\n'
    cluster = make_cluster(tandem_bin, tmp_path, classes=classes, start=False)
    try:
        westus = cluster.region("westus")
        own: Path = tmp_path / "westus-deployment.toml"
        own.write_text(cluster.deployment.read_text().replace('max_rpo = "30s"', 'max_rpo = "45s"'))
        westus.deployment = own
        for region in cluster.regions:
            cluster.start(region)

        code, report = doctor(tandem_bin, cluster.primary.url)
        assert code == FAILED, json.dumps(report, indent=1)
        files = check(report, "deployment-files")
        assert files["status"] == "fail", files
        assert "westus's deployment differs from eastus's" in files["reason"], files
        assert "classes.tracking.max_rpo_ms 30000 vs 45000" in files["reason"], files
        assert "deployment-files" in report["failed"]
        # Only that: both regions run and accept each other's secret.
        assert check(report, "regions")["status"] == "pass", check(report, "regions")
        assert check(report, "replication-secret")["status"] == "pass", check(report, "replication-secret")
    finally:
        cluster.close()
