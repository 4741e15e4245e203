#!/usr/bin/env bash
# Prepares bench/run.py: the peer's own venv with the full mlflow==3.17.2
# (it brings `mlflow server`), the client venv (mlflow-skinny 3.17.2), and
# Tandem's release binary. Idempotent; not run in CI.
#
#   bash bench/setup.sh
#
# Environment:
#   PEER_VENV         [/root/.cache/mlflow-peer-venv]
#   CLIENT_VENV       [/root/.cache/tandem-venv]  (reused if it has mlflow)
#   CARGO_TARGET_DIR  [/root/.cache/tandem-target-bench]
#   PYTHON            [python3]
set -euo pipefail

MLFLOW_VERSION=3.17.2
PEER_VENV=${PEER_VENV:-/root/.cache/mlflow-peer-venv}
CLIENT_VENV=${CLIENT_VENV:-/root/.cache/tandem-venv}
PYTHON=${PYTHON:-python3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/tandem-target-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

have_mlflow() { # venv, distribution
    [ -x "$1/bin/python" ] && "$1/bin/python" - "$2" "$MLFLOW_VERSION" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    sys.exit(0 if version(sys.argv[1]) == sys.argv[2] else 1)
except PackageNotFoundError:
    sys.exit(1)
EOF
}

if have_mlflow "$PEER_VENV" mlflow; then
    echo "peer venv ok: $PEER_VENV (mlflow $MLFLOW_VERSION)"
else
    echo "creating the peer venv $PEER_VENV (mlflow==$MLFLOW_VERSION)"
    "$PYTHON" -m venv "$PEER_VENV"
    "$PEER_VENV/bin/pip" install -q --upgrade pip
    "$PEER_VENV/bin/pip" install -q "mlflow==$MLFLOW_VERSION"
fi

if have_mlflow "$CLIENT_VENV" mlflow-skinny || have_mlflow "$CLIENT_VENV" mlflow; then
    echo "client venv ok: $CLIENT_VENV"
else
    echo "creating the client venv $CLIENT_VENV (mlflow-skinny==$MLFLOW_VERSION)"
    "$PYTHON" -m venv "$CLIENT_VENV"
    "$CLIENT_VENV/bin/pip" install -q --upgrade pip
    "$CLIENT_VENV/bin/pip" install -q "mlflow-skinny==$MLFLOW_VERSION"
fi

echo "building tandem (release) into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release -p tandem)
echo "ready: $CARGO_TARGET_DIR/release/tandem"
echo "run:   python3 bench/run.py --tandem-bin $CARGO_TARGET_DIR/release/tandem --peer-venv $PEER_VENV"
