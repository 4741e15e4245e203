#!/usr/bin/env python3
"""A large artifact uploaded by the official mlflow client to a region whose
storage is S3 or GCS, through Tandem's proxy vs straight to the bucket with
MLflow 3's multipart protocol (issue 18). The bucket is moto's, also for GCS
(its XML API is S3's protocol; no GCS emulator here has its multipart
uploads): `--storage gcs` measures Tandem's GCS path (V4-signed part URLs,
object_store's GCS client), not Google's servers.

Both runs use the same release build, the same moto server and the same
file; only `TANDEM_DIRECT_UPLOADS` differs (0: the server offers no direct
uploads, the client PUTs through the proxy; 1: it PUTs each part to a
presigned URL). Figures: the client's `log_artifact` wall time, the
region's CPU seconds and its peak RSS during the upload. After each upload
the artifact is downloaded back and its SHA-256 compared (not timed).

    python3 bench/multipart.py                  # 1 GiB, S3
    python3 bench/multipart.py --size-mb 256 --storage gcs

The client runs in the e2e venv (`--client-python`, default
~/.cache/tandem-venv/bin/python); moto from ~/.cache/tandem-moto-venv.
Standard library only here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, log, peak_rss_mb, proc_cpu_s, table  # noqa: E402
from run import DEFAULT_TANDEM_BIN, Server  # noqa: E402

BUCKET = "bench"

CLIENT = r"""
import hashlib, json, os, sys, time
import mlflow
from mlflow import MlflowClient
path = sys.argv[1]
client = MlflowClient()
run = client.create_run(client.create_experiment(f"mpu-{time.time_ns()}")).info.run_id
started = time.perf_counter()
client.log_artifact(run, path)
seconds = time.perf_counter() - started
down = mlflow.artifacts.download_artifacts(run_id=run, artifact_path=os.path.basename(path),
                                           dst_path=sys.argv[2])
digest = hashlib.sha256()
with open(down, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
os.remove(down)
print(json.dumps({"seconds": seconds, "sha256": digest.hexdigest()}))
"""


def service_account(root: str, endpoint: str) -> str:
    """A service account file with a fresh RSA key (openssl) whose XML API
    endpoint is `endpoint`; returns its path."""
    key = os.path.join(root, "gcs-key.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
                   check=True, capture_output=True)
    path = os.path.join(root, "service-account.json")
    with open(key) as pem, open(path, "w") as out:
        json.dump({"type": "service_account", "client_email": "bench@example.iam.gserviceaccount.com",
                   "private_key_id": "bench", "private_key": pem.read(), "gcs_base_url": endpoint}, out)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tandem-bin", default=DEFAULT_TANDEM_BIN)
    parser.add_argument("--client-python", default=os.path.expanduser("~/.cache/tandem-venv/bin/python"))
    parser.add_argument("--moto", default=shutil.which("moto_server")
                        or os.path.expanduser("~/.cache/tandem-moto-venv/bin/moto_server"))
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--storage", choices=["s3", "gcs"], default="s3")
    parser.add_argument("--tmp-dir", default=None)
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="tandem-bench-mpu-", dir=args.tmp_dir)
    moto_port = free_port()
    moto_log = open(os.path.join(root, "moto.log"), "wb")
    moto = subprocess.Popen([args.moto, "-H", "127.0.0.1", "-p", str(moto_port)], stdout=moto_log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    moto_url = f"http://127.0.0.1:{moto_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(f"{moto_url}/{BUCKET}", method="PUT")
                with urllib.request.urlopen(request, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start; see {root}/moto.log")
                time.sleep(0.2)
        path = os.path.join(root, "weights.bin")
        digest = hashlib.sha256()
        with open(path, "wb") as f:
            for _ in range(args.size_mb):
                block = os.urandom(1 << 20)
                digest.update(block)
                f.write(block)
        expected = digest.hexdigest()
        storage_env = {"AWS_ENDPOINT": moto_url, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
        if args.storage == "gcs":
            storage_env = {"GOOGLE_SERVICE_ACCOUNT": service_account(root, moto_url)}
        results = {}
        for mode, direct in [("through the proxy", "0"), ("direct to the bucket", "1")]:
            data = os.path.join(root, f"data-{direct}")
            os.makedirs(data)
            port = free_port()
            scheme = "gs" if args.storage == "gcs" else "s3"
            env = {**os.environ, **storage_env, "TANDEM_LOG": "warn", "TANDEM_DIRECT_UPLOADS": direct,
                   "TANDEM_ARTIFACTS_URL": f"{scheme}://{BUCKET}/region-{direct}"}
            server = Server("tandem", [args.tandem_bin, "server", "--listen", f"127.0.0.1:{port}", "--data", data],
                            env, port, data, os.path.join(root, f"server-{direct}.log"))
            server.start(60)
            try:
                # Multipart for any file past one part (the client's default
                # threshold is 500 MB), in its default 100 MB parts.
                client_env = {**os.environ, "MLFLOW_TRACKING_URI": server.url,
                              "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true",
                              "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(1 << 20)}
                cpu = proc_cpu_s(server.proc.pid)
                log(f"uploading {args.size_mb} MiB {mode}…")
                downloads = os.path.join(root, f"downloaded-{direct}")
                os.makedirs(downloads)
                out = subprocess.run([args.client_python, "-c", CLIENT, path, downloads], env=client_env,
                                     capture_output=True, text=True, timeout=3600)
                if out.returncode != 0:
                    raise RuntimeError(out.stderr[-2000:])
                answer = json.loads(out.stdout.strip().splitlines()[-1])
                if answer["sha256"] != expected:
                    raise RuntimeError(f"{mode}: the artifact read back differs from the file")
                with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
                    completes = sum(float(line.rsplit(" ", 1)[1]) for line in response.read().decode().splitlines()
                                    if line.startswith("tandem_http_requests_total{") and "mpu/complete" in line)
                if completes != (1 if direct == "1" else 0):
                    raise RuntimeError(f"{mode}: {completes} multipart completions, expected {direct}")
                results[mode] = {"seconds": answer["seconds"], "server_cpu_s": proc_cpu_s(server.proc.pid) - cpu,
                                 "peak_rss_mb": peak_rss_mb(server.proc.pid)}
            finally:
                server.stop()
        proxied, direct = results["through the proxy"], results["direct to the bucket"]
        rows = [["upload", "log_artifact s", "MiB/s", "region CPU s", "region peak RSS MiB"]]
        for mode, figure in results.items():
            rows.append([mode, f"{figure['seconds']:.1f}", f"{args.size_mb / figure['seconds']:.0f}",
                         f"{figure['server_cpu_s']:.1f}", f"{figure['peak_rss_mb']:.0f}"])
        where = "GCS (its XML API served by moto)" if args.storage == "gcs" else "S3 (moto)"
        print(f"\n{args.size_mb} MiB uploaded by the official client to a region on {where}, same machine\n")
        table(rows, sys.stdout)
        print(f"\nratio (proxied / direct): time {proxied['seconds'] / direct['seconds']:.2f}×, "
              f"region CPU {proxied['server_cpu_s'] / max(direct['server_cpu_s'], 1e-9):.2f}×")
        print("both read back byte-identical (SHA-256)")
    finally:
        moto.terminate()
        try:
            moto.wait(timeout=20)
        except subprocess.TimeoutExpired:
            moto.kill()
        moto_log.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
